"""Settings, as data: the shared core's group of them, and what every composed profile can do.

A profile (`ue_lib.profiles.Profile`) is composed of settings groups, one dataclass per part of
the library, each declared where its code lives: `CoreSettings` here (data, network, optimiser,
training: what every model needs), and one group in each paper's system folder
(`ue_lib.<system>.settings`), which subclasses `CoreSettings` and adds its own fields and
checks. A group's `check` calls ``super().check()`` first, so a composed profile checks every
group once, the core first.

Each field is made with :func:`setting`: its default, its *group* (`Profile.group`: a model's
fingerprint holds the groups it depends on) and what it means. Loss parameters live in
`loss_params`, keyed by loss name (``{"kl": {"temperature": 0.05, …}}``); their defaults are
the loss classes' own (`ue_lib.losses.loss_defaults`), so a new loss needs no entry here. On the
command line a loss parameter is ``LOSS.PARAM``: ``-p kl.temperature 0.1``. A settings group
whose loss is registered by its own module (`ue_lib.losses.register_metric_loss`) names that
module in ``LOSS_MODULES``.

This module does not import torch (the runner and the sweep use profiles before any kernel
starts); looking up the losses imports it.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
from dataclasses import dataclass, field

from .config import ModelSettings, Validated, choice, positive
from .data import parse_domains

BACKBONES = ("small_cnn", "efficientnet_lite0", "resnet18", "resnet50", "googlenet")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
MAX_IMAGE_SIZE = 1024  # pixels a side: 100000 held 23 GB before the kernel died


def setting(default, group: str, help: str = ""):
    """A settings field: its default, its group and what it means."""
    kind = "default_factory" if callable(default) else "default"
    return field(**{kind: default}, metadata={"group": group, "help": help})


def comma_list(text: str) -> list[str]:
    """'kl, distance_mse,' -> ['kl', 'distance_mse']."""
    return [m.strip() for m in str(text).split(",") if m.strip()]


_MADE: dict[tuple, object] = {}  # `made`: each distinct settings object, checked once


def made(cls, values: dict):
    """``cls.from_dict(values)``, checked once per distinct `values` in a process and then
    copied: making a profile checks its tuning grid and conditions by making a profile for each
    of their points, so a run made thousands of them (1.2 s of a worker's 2 s of loading
    four models). The key is the values' `repr`, which tells 1 from 1.0 and a list
    from a tuple; only a valid profile is kept."""
    key = (cls, repr(values))
    if key not in _MADE:
        _MADE[key] = cls.from_dict(values)
    return copy.deepcopy(_MADE[key])


@dataclass
class CoreSettings(Validated):
    """What every model needs: its data, network, optimiser and training loop."""

    name: str = setting("custom", "run")
    # ---- data
    domains: str = setting("omniglot,fashion,glyphs", "data", "comma-separated domains or a suite")
    image_size: int = setting(32, "data")
    channels: int = setting(1, "data", "1 (grey) or 3 (RGB)")
    per_domain: dict = setting(dict, "data", 'e.g. {"fashion": {"max_per_class": 400}}')
    test_fraction: float = setting(0.5, "data")
    val_fraction: float = setting(0.2, "data")
    lazy: bool = setting(False, "data", "benchmarks: decode files per batch instead of holding them")
    num_workers: int = setting(0, "data", "DataLoader workers decoding file-backed images")
    # ---- model
    backbone: str = setting("small_cnn", "model")
    width: int = setting(32, "model", "small_cnn: channels of its first block")
    embedding_dim: int = setting(64, "model")
    weights: str | None = setting(None, "model", 'None (random init), "imagenet" or a local .pth file')
    frozen_bn: bool = setting(False, "model")
    head_hidden: int = setting(0, "model", "0: a linear head; else a 2-layer MLP with this many units")
    trainable_stages: int = setting(-1, "model", "-1: train the whole network; k >= 0: freeze a "
                                    "pretrained trunk but its last k stages, and cache the frozen "
                                    "part's outputs")
    cache_features: bool = setting(True, "model", "with a frozen trunk: train on its cached outputs")
    # ---- optimiser
    optimizer: str = setting("adam", "optim")
    lr: float = setting(1e-3, "optim")
    weight_decay: float = setting(0.0, "optim")
    lr_schedule: str = setting("constant", "optim")
    momentum: float = setting(0.9, "optim", "sgd only")
    # ---- training (every model)
    metric_loss: str = setting("multi_similarity", "train", "the loss of models trained on labels")
    loss_params: dict = setting(dict, "train", "parameters of each loss, keyed by loss name (the "
                                "losses' own defaults, with this profile's changes)")
    p: int = setting(16, "train", "classes per batch")
    k: int = setting(4, "train", "images per class in a batch")
    batches_per_domain: int = setting(0, "train", "0: an epoch is each domain's natural batch count; "
                                      "N: N batches of every domain, for every model (equal budgets)")
    eval_every: int = setting(1, "train", "evaluate every N epochs (and after the last)")
    eval_batch_size: int = setting(512, "train")
    domain_schedule: str = setting("round_robin", "train", "round_robin | proportional | dynamic")
    augment: bool = setting(False, "train")
    device: str = setting("auto", "train")
    threads: int = setting(0, "train", "CPU threads while training (0: torch's default); small heads "
                           "on cached features train fastest on 1")
    amp: str = setting("auto", "train", "bfloat16 autocast on CUDA (see ue_lib.device)")
    deterministic: bool = setting(False, "train", "deterministic algorithms (torch and cuDNN): the "
                                  "same seed gives the same numbers on a GPU too, at some speed")
    checkpoint_seconds: float = setting(0.0, "train", "write a training's checkpoint after an epoch "
                                        "when this many seconds passed since the last one (0: after "
                                        "every epoch); a resumed training ends with the same numbers "
                                        "either way")
    workers: int = setting(1, "train", "independent models of a notebook are trained and scored in "
                           "this many processes (1: in the notebook's own); the numbers do not change")

    LOSS_MODULES = ()  # modules that register a settings group's own losses (not a field)

    def check(self) -> None:
        super().check()
        parse_domains(self.domains)
        choice("Profile", "backbone", self.backbone, BACKBONES)
        choice("Profile", "optimizer", self.optimizer, OPTIMIZERS)
        choice("Profile", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not (math.isfinite(self.checkpoint_seconds) and self.checkpoint_seconds >= 0):
            raise ValueError(f"Profile.checkpoint_seconds must be a finite number >= 0, got "
                             f"{self.checkpoint_seconds!r}")
        positive("Profile", embedding_dim=self.embedding_dim, width=self.width, lr=self.lr, p=self.p,
                 eval_every=self.eval_every, eval_batch_size=self.eval_batch_size)
        if self.channels not in (1, 3):
            raise ValueError(f"Profile.channels must be 1 or 3, got {self.channels}")
        if not 1 <= self.image_size <= MAX_IMAGE_SIZE:  # the domains are held in memory, decoded
            raise ValueError(f"Profile.image_size must be 1 to {MAX_IMAGE_SIZE} pixels, got "
                             f"{self.image_size} (one {self.channels}-channel image of that size "
                             f"takes {self.image_size ** 2 * self.channels / 2**20:,.1f} MiB); "
                             f"the paper profile uses 224")
        if self.workers < 1:
            raise ValueError(f"Profile.workers must be >= 1, got {self.workers}")
        if self.k < 2:
            raise ValueError(f"Profile.k must be >= 2 (positives need two images), got {self.k}")
        self.non_negative("weight_decay", "num_workers", "head_hidden", "batches_per_domain", "threads")
        self._check_engine_names()
        from .models import split_stage

        split_stage(ModelSettings.part_of(self))

    def _check_engine_names(self) -> None:
        from .device import AMP_MODES
        from .losses import METRIC_LOSSES, check_loss_params, needs_negatives
        from .samplers import SCHEDULES

        defaults = self.loss_defaults()  # every loss registered, also those of LOSS_MODULES
        choice("Profile", "amp", self.amp, AMP_MODES)
        choice("Profile", "domain_schedule", self.domain_schedule, SCHEDULES)
        choice("Profile", "metric_loss", self.metric_loss, METRIC_LOSSES)
        if self.p < 2 and needs_negatives(self.metric_loss):
            raise ValueError(f"Profile.p must be >= 2 with metric_loss {self.metric_loss}: with p = "
                             f"{self.p} each batch holds one class, so the loss has no negative pair "
                             f"and learns nothing; use -p p 2 or more")
        check_loss_params(self.loss_params)
        # canonical form: every loss with all its parameters (a new dict: the caller's is kept)
        self.loss_params = {name: {**values, **self.loss_params.get(name, {})}
                            for name, values in defaults.items()}

    def non_negative(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 0:
                raise ValueError(f"Profile.{name} must be >= 0, got {getattr(self, name)}")

    def canonical_seeds(self, *names: str) -> None:
        """Seed settings in their canonical form, "0,1,2" (checked)."""
        for which in names:
            seeds = self.seed_list(which)
            if not seeds:
                raise ValueError(f"Profile.{which} has no seed: nothing would run; give one or "
                                 f"more, such as \"0\" or \"0,1,2\"")
            setattr(self, which, ",".join(map(str, seeds)))

    # ---- the losses
    @classmethod
    def loss_defaults(cls) -> dict[str, dict]:
        """Every loss's settable parameters and defaults (`ue_lib.losses.loss_defaults`),
        including the losses that this class's settings groups register (`LOSS_MODULES`)."""
        for klass in cls.__mro__:
            for module in vars(klass).get("LOSS_MODULES", ()):
                importlib.import_module(module)
        from .losses import loss_defaults

        return loss_defaults()

    def loss(self, name: str) -> dict:
        """The parameters of loss `name` (its defaults with this profile's changes)."""
        return {**self.loss_defaults().get(name, {}), **self.loss_params.get(name, {})}

    # ---- names and values
    @classmethod
    def field_names(cls) -> list[str]:
        """Every setting's name but `name` (the profile's own)."""
        return [f.name for f in dataclasses.fields(cls) if f.name != "name"]

    @classmethod
    def setting_path(cls, name: str) -> tuple[str, ...]:
        """('lr',) for a setting, ('loss_params', 'kl', 'temperature') for 'kl.temperature';
        an unknown name raises ValueError listing the valid ones."""
        if name in cls.field_names():
            return (name,)
        loss, _, param = name.partition(".")
        if param:
            known = cls.loss_defaults()
            if loss in known and param in known[loss]:
                return ("loss_params", loss, param)
            if loss in known:
                raise ValueError(f"unknown parameter {name}: loss {loss!r} takes "
                                 f"{', '.join(known[loss]) or 'no parameters'}")
        raise ValueError(f"unknown parameter(s) {name}; valid: {', '.join(cls.field_names())}, "
                         f"or LOSS.PARAM for a loss parameter (e.g. kl.temperature)")

    def setting(self, name: str):
        """The value of a setting: `lr`, or `LOSS.PARAM` for a loss parameter (`kl.temperature`)."""
        path = self.setting_path(name)
        return getattr(self, name) if len(path) == 1 else self.loss(path[1]).get(path[2])

    def group(self, name: str) -> dict:
        """The settings of one group ("data", "model", "optim", "train", …), by their names."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("group") == name}

    def groups(self) -> dict[str, str]:
        """{setting: its group}."""
        return {f.name: f.metadata.get("group") for f in dataclasses.fields(self)}

    def with_overrides(self, overrides: dict):
        """A copy with `overrides` applied: setting names, or `LOSS.PARAM` for a loss parameter."""
        values = dataclasses.asdict(self)
        for name, value in overrides.items():
            path = self.setting_path(name)
            if len(path) == 1:
                values[name] = value
            else:
                values["loss_params"] = {**values["loss_params"],
                                         path[1]: {**values["loss_params"].get(path[1], {}),
                                                   path[2]: value}}
        return made(type(self), values)

    # ---- derived settings
    @property
    def domain_names(self) -> list[str]:
        return parse_domains(self.domains)

    def methods(self, which: str) -> list[str]:
        """A comma-separated setting as a list: `methods("distill_methods")`."""
        return comma_list(getattr(self, which))

    def seed_list(self, which: str, offset: int = 0) -> list[int]:
        """The seeds of setting `which` ("seeds", "ablation_seeds", …), each plus `offset` (a
        run's base seed: `ue run --seed 10` repeats over seeds 10, 11, 12)."""
        value = getattr(self, which)
        # "0,1", 0, (0, 1), or "(0, 1)" as a tuple reaches a notebook through papermill
        items = value if isinstance(value, (tuple, list)) else str(value).strip("()[] ").split(",")
        try:
            return [offset + int(s) for s in items if str(s).strip()]
        except ValueError as exc:
            raise ValueError(f"Profile.{which} must be comma-separated integers, got "
                             f"{value!r}") from exc

    def k_list(self, which: str) -> list[int]:
        """A setting of Ks ("1,5,10") as a list of positive integers."""
        try:
            ks = [int(k) for k in str(getattr(self, which)).split(",")]
        except ValueError:
            ks = []
        if not ks or min(ks) < 1:
            raise ValueError(f"Profile.{which} must be positive integers like \"1,5,10\", got "
                             f"{getattr(self, which)!r}")
        return ks

    def data_kwargs(self, seed: int) -> dict:
        """What `ue_lib.data.load_domains` takes under this profile and `seed`."""
        return {"image_size": self.image_size, "channels": self.channels, "seed": seed,
                "test_fraction": self.test_fraction, "val_fraction": self.val_fraction,
                "lazy": self.lazy, "num_workers": self.num_workers, "per_domain": self.per_domain}
