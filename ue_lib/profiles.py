"""Profiles: every setting of a run, in one place, as data.

`Profile` holds each setting once, with its default; the named profiles below only list what
they change. The engine reads the profile directly (a model's settings are the `ModelSettings`
part of it, same names), so no setting is declared twice or renamed on its way.

* `smoke` — tiny subsets and 2-3 epochs: seconds per notebook, for CI regression.
* `mini` — the default demo, in the paper's regime: an ImageNet-pretrained trunk (frozen,
  its features cached) adapted to five real domains of very different size, 3 seeds.
* `scratch` — the earlier demo: a small CNN from scratch on three grayscale domains.
* `paper` — the real experiment on a GPU: CUB-200-2011, Cars196, Stanford Online Products and
  In-Shop from their official layouts, read lazily at 224 px, an ImageNet-pretrained ResNet-50
  with frozen BatchNorm, bfloat16 mixed precision (README, "Reproduce at paper scale").

Loss parameters live in `loss_params`, keyed by loss name (`{"kl": {"temperature": 0.05, …}}`);
their defaults are the loss classes' own (`ue_lib.losses.loss_defaults`), so a new loss needs no
entry here. On the command line a loss parameter is `LOSS.PARAM`: `-p kl.temperature 0.1`.

Settings are grouped (`group=` in each field's metadata): a model's fingerprint holds the groups
it depends on, so a change of, say, a distillation setting retrains only the students.

`distill_tuning` gives every distillation method the same small tuning budget: a grid over
settings of the student's training (`{"lr": [2e-3, 6e-4]}`), one student per point at the run's
base seed, the best by mean validation recall@1 kept for every seed (`RunFolder.tuning`). A
profile's own value goes first in its grid: a tie keeps it, and that point's student is the
untuned one, reused.

This module does not import torch (the runner and the sweep use it before any kernel starts);
validating a profile's loss parameters imports it.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import itertools
from dataclasses import dataclass, field

from .config import Validated, choice, positive
from .data import parse_domains

BACKBONES = ("small_cnn", "efficientnet_lite0", "resnet18", "resnet50", "googlenet")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")


def _f(default, group: str, help: str = ""):
    """A profile field: its default, its group and what it means."""
    kind = "default_factory" if callable(default) else "default"
    return field(**{kind: default}, metadata={"group": group, "help": help})


def _loss_defaults() -> dict:
    from .losses import loss_defaults

    return loss_defaults()


# Notebook 07's ladder (SGML, Manandhar et al., 2020): each rung is the settings its specialists
# train with. "ms" is the project's specialists as they are (notebook 02's models, reused). The
# soft-binomial-deviance rungs are our reconstruction (`ue_lib.losses.SoftBinomialDevianceLoss`);
# gamma 0.25 places a negative pair whose attributes agree fully at beta + 0.25 = 0.75 (our
# choice, a parameter like every other).
SGML_LADDER = {
    "ms": {},
    "bd": {"metric_loss": "binomial_deviance"},
    "bd+attr": {"metric_loss": "binomial_deviance", "attribute_weight": 1.0},
    "sbd-a": {"metric_loss": "soft_binomial_deviance", "attribute_weight": 1.0,
              "soft_binomial_deviance.form": "weights", "soft_binomial_deviance.weight": 1.0},
    "sbd-b": {"metric_loss": "soft_binomial_deviance", "attribute_weight": 1.0,
              "soft_binomial_deviance.form": "targets", "soft_binomial_deviance.gamma": 0.25},
}


@dataclass
class Profile(Validated):
    name: str = _f("custom", "run")
    # ---- data
    domains: str = _f("omniglot,fashion,glyphs", "data", "comma-separated domains or a suite")
    image_size: int = _f(32, "data")
    channels: int = _f(1, "data", "1 (grey) or 3 (RGB)")
    per_domain: dict = _f(dict, "data", 'e.g. {"fashion": {"max_per_class": 400}}')
    test_fraction: float = _f(0.5, "data")
    val_fraction: float = _f(0.2, "data")
    lazy: bool = _f(False, "data", "benchmarks: decode files per batch instead of holding them")
    num_workers: int = _f(0, "data", "DataLoader workers decoding file-backed images")
    # ---- model
    backbone: str = _f("small_cnn", "model")
    width: int = _f(32, "model", "small_cnn: channels of its first block")
    embedding_dim: int = _f(64, "model")
    weights: str | None = _f(None, "model", 'None (random init), "imagenet" or a local .pth file')
    frozen_bn: bool = _f(False, "model")
    head_hidden: int = _f(0, "model", "0: a linear head; else a 2-layer MLP with this many units")
    trainable_stages: int = _f(-1, "model", "-1: train the whole network; k >= 0: freeze a pretrained "
                               "trunk but its last k stages, and cache the frozen part's outputs")
    cache_features: bool = _f(True, "model", "with a frozen trunk: train on its cached outputs")
    # ---- optimiser
    optimizer: str = _f("adam", "optim")
    lr: float = _f(1e-3, "optim")
    weight_decay: float = _f(0.0, "optim")
    lr_schedule: str = _f("constant", "optim")
    momentum: float = _f(0.9, "optim", "sgd only")
    # ---- training (every model)
    metric_loss: str = _f("multi_similarity", "train", "the loss of specialists and naive fusion")
    loss_params: dict = _f(_loss_defaults, "train", "parameters of each loss, keyed by loss name")
    p: int = _f(16, "train", "classes per batch")
    k: int = _f(4, "train", "images per class in a batch")
    epochs_specialist: int = _f(10, "train")
    epochs_naive: int = _f(20, "train")
    epochs_distill: int = _f(10, "train")
    epochs_quantize: int = _f(10, "train", "OPQN models (notebook 06)")
    batches_per_domain: int = _f(0, "train", "0: an epoch is each domain's natural batch count; "
                                 "N: N batches of every domain, for every model (equal budgets)")
    eval_every: int = _f(1, "train", "evaluate every N epochs (and after the last)")
    eval_batch_size: int = _f(512, "train")
    domain_schedule: str = _f("round_robin", "train", "round_robin | proportional | dynamic")
    augment: bool = _f(False, "train")
    device: str = _f("auto", "train")
    threads: int = _f(0, "train", "CPU threads while training (0: torch's default); small heads on "
                      "cached features train fastest on 1")
    amp: str = _f("auto", "train", "bfloat16 autocast on CUDA (see ue_lib.device)")
    deterministic: bool = _f(False, "train", "deterministic algorithms (torch and cuDNN): the same "
                             "seed gives the same numbers on a GPU too, at some speed (README)")
    workers: int = _f(1, "train", "notebooks 06-07 train and score their independent models in "
                      "this many processes (1: in the notebook's own); the numbers do not change")
    # ---- distillation (students only)
    distill_methods: str = _f("kl,distance_mse,embedding_mse,rkd_distance,rkd_angle,darkrank",
                              "notebook", "the students notebook 03 trains")
    final_methods: str = _f("kl,distance_mse,embedding_mse", "notebook",
                            "the students notebook 04 repeats per seed")
    metric_weight: float = _f(0.0, "distill", "weight of the metric loss added to distillation")
    attribute_weight: float = _f(0.0, "train", "SGML: weight of the attribute head's BCE "
                                 "(0: no attribute head; notebook 07's ladder sets it per rung)")
    distill_tuning: dict = _f(dict, "distill", 'the same grid for every distillation method, on '
                              'validation at the base seed: e.g. {"lr": [2e-3, 6e-4]}; {}: none')
    # ---- notebooks
    seeds: str | int | tuple | list = _f("0,1,2", "notebook", 'notebook 04; "0,1,2", 0 or (0, 1)')
    ablation_grid: dict = _f(lambda: {"kl.temperature": [0.02, 0.05, 0.2]}, "notebook",
                             "notebook 05: one 1-D grid of the kl student per knob")
    ablation_seeds: str | int | tuple | list = _f("0", "notebook")
    # ---- compressed retrieval (notebook 06)
    quantize_dim: int = _f(192, "notebook", "embedding size of the OPQN networks (D = M x d)")
    quantize_codes: str = _f("4x16,6x16,8x16,12x16", "notebook",
                             "code shapes MxK compared (M subspaces of K codewords: M log2 K bits)")
    quantize_experiments: str = _f("orl:seen,orl:unseen,omniglot:unseen,universal", "notebook",
                                   "DOMAIN:PROTOCOL experiments, and `universal` (all domains)")
    quantize_seeds: str | int | tuple | list = _f("0,1,2", "notebook")
    quantize_baselines: str = _f("pq,opq", "notebook", "faiss indexes compared: pq, opq, ivfpq")
    quantize_queries: int = _f(1000, "notebook", "at most this many queries (a seeded sample) per "
                               "experiment rank the whole database; 0: all")
    quantize_bench_items: int = _f(1_000_000, "notebook", "items of the synthetic search benchmark")
    quantize_ablation: dict = _f(lambda: {"opqn.codebook": ["dct", "random", "learned"],
                                          "opqn.entropy_weight": [0.1, 0.0],
                                          "opqn.x_branch": [True, False]}, "notebook",
                                 "OPQN settings varied one at a time (first value: the default)")
    # ---- semantic granularity (notebook 07)
    sgml_ladder: dict = _f(lambda: dict(SGML_LADDER), "notebook",
                           "notebook 07: rung name -> the settings of its specialists")
    sgml_seeds: str | int | tuple | list = _f("0,1,2", "notebook")
    sgml_teachers: str = _f("bd,auto", "notebook", "rungs whose specialists teach a kl student in "
                            "notebook 07 (domains without attributes keep their specialist); "
                            "auto: the graded rung with the best validation nDCG")
    sgml_ks: str = _f("1,5,10", "notebook", "K of Recall@K, coarse Recall@K and nDCG@K")
    # ---- object embeddings (notebook 08; ue_lib.objects, ue_lib.data.scenes)
    objects_domains: str = _f("", "notebook", "domains whose items are pasted into scenes (those "
                              "of them the run has; empty: all the run's domains)")
    objects_scenes: str = _f("800,200,300", "notebook", "scenes in the train, val and test splits")
    objects_scene_params: dict = _f(dict, "notebook", "changes to ue_lib.data.scenes.make_scenes' "
                                    "defaults, e.g. {'canvas': 96, 'scale': (24, 48)}")
    objects_seeds: str | int | tuple | list = _f("0,1,2", "notebook")
    objects_roi_stage: int = _f(6, "notebook", "trunk stages run on the whole scene before "
                                "roi_align (6: stride 16 on EfficientNet-Lite0)")
    objects_roi_size: int = _f(4, "notebook", "roi_align output side (4: a 64-px item's map there)")
    objects_pooling: str = _f("avg", "notebook", "pooling after the box: avg, max or gem (ours)")
    objects_gem_p: float = _f(3.0, "notebook", "GeM power (objects_pooling gem)")
    objects_guides: str = _f("embedding_mse,kl", "notebook", "the guided students' losses: the "
                             "paper's MSE of normalised embeddings, the main paper's kl, ...")
    objects_detector: dict = _f(dict, "notebook", "changes to ue_lib.objects.DetectorSettings, "
                                "e.g. {'epochs': 20, 'neck': 64}")
    objects_gallery: int = _f(300, "notebook", "clean test items per domain in the object gallery")
    objects_spliced: int = _f(200, "notebook", "spliced query images per seed")
    objects_ks: str = _f("1,5", "notebook", "K of Recall@K in notebook 08")
    objects_coco_weights: str = _f("coco", "notebook", "paper profile, notebook 08: the COCO Faster "
                                   "R-CNN (fasterrcnn_resnet50_fpn_v2): 'coco' downloads its "
                                   "weights (online), or a local .pth file")
    objects_coco_size: int = _f(800, "notebook", "its input's shorter side (torchvision's min_size)")

    def check(self) -> None:
        parse_domains(self.domains)
        choice("Profile", "backbone", self.backbone, BACKBONES)
        choice("Profile", "optimizer", self.optimizer, OPTIMIZERS)
        choice("Profile", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        positive("Profile", embedding_dim=self.embedding_dim, width=self.width, lr=self.lr, p=self.p,
                 epochs_specialist=self.epochs_specialist, epochs_naive=self.epochs_naive,
                 epochs_distill=self.epochs_distill, eval_every=self.eval_every,
                 eval_batch_size=self.eval_batch_size, epochs_quantize=self.epochs_quantize,
                 quantize_dim=self.quantize_dim)
        if self.channels not in (1, 3):
            raise ValueError(f"Profile.channels must be 1 or 3, got {self.channels}")
        if self.workers < 1:
            raise ValueError(f"Profile.workers must be >= 1, got {self.workers}")
        if self.k < 2:
            raise ValueError(f"Profile.k must be >= 2 (positives need two images), got {self.k}")
        for name in ("weight_decay", "metric_weight", "num_workers", "head_hidden", "batches_per_domain",
                     "threads", "attribute_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"Profile.{name} must be >= 0, got {getattr(self, name)}")
        self._check_engine_names()
        from .config import ModelSettings
        from .models import split_stage

        split_stage(ModelSettings.part_of(self))
        # canonical "0,1,2"
        for which in ("seeds", "ablation_seeds", "quantize_seeds", "sgml_seeds", "objects_seeds"):
            setattr(self, which, ",".join(map(str, self.seed_list(which))))
        for knob in [*self.ablation_grid, *self.quantize_ablation]:
            setting_path(knob)
        self.code_shapes()
        self.quantize_experiment_list()
        from .quantize import FAISS_KINDS

        for kind in self.methods("quantize_baselines"):
            choice("Profile", "quantize_baselines", kind, FAISS_KINDS)
        self._check_tuning()
        self._check_sgml()
        self._check_objects()

    def _check_objects(self) -> None:
        """Notebook 08's settings: three scene counts, the Ks, the pooling and the detector's
        settings (its domains are checked where they are used: `object_domains`)."""
        self.scene_counts()
        self.k_list("objects_ks")
        choice("Profile", "objects_pooling", self.objects_pooling, ("avg", "max", "gem"))
        positive("Profile", objects_roi_size=self.objects_roi_size,
                 objects_gallery=self.objects_gallery, objects_spliced=self.objects_spliced,
                 objects_gem_p=self.objects_gem_p, objects_coco_size=self.objects_coco_size)
        from .losses import DISTILLATION_LOSSES

        for guide in self.methods("objects_guides"):
            choice("Profile", "objects_guides", guide, DISTILLATION_LOSSES)
        from .objects import detector_settings

        detector_settings(self.objects_detector)

    def object_domains(self) -> list[str]:
        """Notebook 08's domains: those of `objects_domains` that the profile has (`--domains`
        may narrow them), or all the profile's when it is empty; ValueError when none is left."""
        wanted = self.methods("objects_domains")
        names = [d for d in wanted if d in self.domain_names] if wanted else self.domain_names
        if not names:
            raise ValueError(f"Profile.objects_domains {wanted} has none of the profile's domains "
                             f"{self.domain_names}; e.g. -p objects_domains "
                             f"{','.join(self.domain_names)}")
        return names

    def scene_counts(self) -> dict[str, int]:
        """`objects_scenes` as {"train": n, "val": n, "test": n}."""
        try:
            counts = [int(v) for v in str(self.objects_scenes).split(",")]
        except ValueError:
            counts = []
        if len(counts) != 3 or min(counts) < 1:
            raise ValueError(f"Profile.objects_scenes must be three positive integers (train, val, "
                             f"test scenes) like \"800,200,300\", got {self.objects_scenes!r}")
        return dict(zip(("train", "val", "test"), counts))

    def _check_sgml(self) -> None:
        """Notebook 07's settings: every rung's settings are valid settings, the teacher is a
        rung, and the Ks are positive integers."""
        if not self.sgml_ladder:
            raise ValueError("Profile.sgml_ladder is empty; e.g. {\"ms\": {}, \"bd\": "
                             "{\"metric_loss\": \"binomial_deviance\"}}")
        for rung, settings in self.sgml_ladder.items():
            if not isinstance(settings, dict):
                raise ValueError(f"Profile.sgml_ladder[{rung!r}] must be a dict of settings, "
                                 f"got {settings!r}")
            for knob in settings:
                setting_path(knob)
        for rung in self.methods("sgml_teachers"):
            choice("Profile", "sgml_teachers", rung, [*self.sgml_ladder, "auto"])
        self.sgml_k_list()

    def sgml_k_list(self) -> list[int]:
        """`sgml_ks` as a list of positive integers."""
        return self.k_list("sgml_ks")

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

    def code_shapes(self) -> list[tuple[int, int]]:
        """`quantize_codes` as (M, K) pairs; each must fit `quantize_dim` (M divides it and K is
        a power of two no larger than the subvector size, as orthonormal codewords need)."""
        fix = '; e.g. -p quantize_codes "4x16,8x16"'
        shapes = []
        for part in self.quantize_codes.split(","):
            m, x, k = part.strip().partition("x")
            if not (x and m.isdigit() and k.isdigit()):
                raise ValueError(f"Profile.quantize_codes: {part.strip()!r} is not MxK{fix}")
            m, k = int(m), int(k)
            if m < 1 or self.quantize_dim % m:
                raise ValueError(f"Profile.quantize_codes: {m} subspaces do not divide quantize_dim "
                                 f"{self.quantize_dim}{fix}")
            if k < 2 or k & (k - 1) or k > self.quantize_dim // m:
                raise ValueError(f"Profile.quantize_codes: {k} codewords must be a power of two "
                                 f"<= the subvector size {self.quantize_dim // m}{fix}")
            shapes.append((m, k))
        return shapes

    def quantize_experiment_list(self) -> list[tuple[str, str]]:
        """`quantize_experiments` as (domain, protocol) pairs; ("universal", "") is the merged
        index of all the profile's domains."""
        out = []
        for part in self.quantize_experiments.split(","):
            if part.strip() == "universal":
                out.append(("universal", ""))
                continue
            domain, _, protocol = part.strip().rpartition(":")  # folder:<path>:seen works
            if not domain or protocol not in ("seen", "unseen"):
                raise ValueError(f"Profile.quantize_experiments: {part.strip()!r} must be "
                                 f"DOMAIN:seen, DOMAIN:unseen or universal")
            out.append((domain, protocol))
        return out

    def _check_tuning(self) -> None:
        """`distill_tuning`: settings a student is trained with (not the data, the network or a
        notebook's choices: the teachers and the validation splits stay the run's), each with a
        non-empty list of values this profile accepts. Canonical form: lists."""
        fix = '; e.g. -p distill_tuning "{\'lr\': [1e-3, 3e-4]}", or {} for no tuning'
        tunable = ("optim", "train", "distill")
        groups = {f.name: f.metadata.get("group") for f in dataclasses.fields(self)}
        canonical = {}
        for key, values in self.distill_tuning.items():
            where = f"Profile.distill_tuning[{key!r}]"
            try:
                path = setting_path(key)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}{fix}") from None
            group = groups[path[0]]
            if group not in tunable or key == "distill_tuning":
                raise ValueError(f"{where}: {key} is a {group!r} setting; tuning varies only how a "
                                 f"student is trained from the run's teachers (settings of the "
                                 f"groups {', '.join(tunable)}, or LOSS.PARAM){fix}")
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"{where} must be a non-empty list of values, got {values!r}{fix}")
            checked = []
            for value in values:
                try:  # the type and value checks of the setting itself
                    point = self.with_overrides({"distill_tuning": {}, key: value})
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{where}: {value!r} is not a valid {key} ({exc}){fix}") from None
                checked.append(point.setting(key))  # as the profile holds it: 1 -> 1.0
            canonical[key] = checked
        self.distill_tuning = canonical  # a new dict: the caller's is not changed

    def tuning_points(self) -> list[dict]:
        """The grid of `distill_tuning`, one dict of overrides per point, in grid order (the
        first key varies slowest); [{}] when there is no tuning (the profile itself)."""
        grid = self.distill_tuning
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]

    def _check_engine_names(self) -> None:
        from .device import AMP_MODES
        from .losses import DISTILLATION_LOSSES, METRIC_LOSSES, check_loss_params
        from .samplers import SCHEDULES

        choice("Profile", "amp", self.amp, AMP_MODES)
        choice("Profile", "domain_schedule", self.domain_schedule, SCHEDULES)
        choice("Profile", "metric_loss", self.metric_loss, METRIC_LOSSES)
        for m in self.methods("distill_methods") + self.methods("final_methods"):
            choice("Profile", "distill_methods", m, DISTILLATION_LOSSES)
        check_loss_params(self.loss_params)

    # ---- derived settings
    @property
    def domain_names(self) -> list[str]:
        return parse_domains(self.domains)

    def methods(self, which: str = "distill_methods") -> list[str]:
        return [m.strip() for m in getattr(self, which).split(",") if m.strip()]

    def seed_list(self, which: str = "seeds", offset: int = 0) -> list[int]:
        """The seeds of `which` ("seeds" or "ablation_seeds"), each plus `offset` (a run's base
        seed: `ue run --seed 10` repeats notebook 04 over seeds 10, 11, 12)."""
        value = getattr(self, which)
        # "0,1", 0, (0, 1), or "(0, 1)" as a tuple reaches a notebook through papermill
        items = value if isinstance(value, (tuple, list)) else str(value).strip("()[] ").split(",")
        try:
            return [offset + int(s) for s in items if str(s).strip()]
        except ValueError as exc:
            raise ValueError(f"Profile.{which} must be comma-separated integers, got "
                             f"{value!r}") from exc

    def group(self, name: str) -> dict:
        """The settings of one group ("data", "model", "optim", "train", …), by their names."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("group") == name}

    def setting(self, name: str):
        """The value of a setting: `lr`, or `LOSS.PARAM` for a loss parameter (`kl.temperature`)."""
        path = setting_path(name)
        return getattr(self, name) if len(path) == 1 else self.loss(path[1]).get(path[2])

    def loss(self, name: str) -> dict:
        """The parameters of loss `name` (its defaults with this profile's changes)."""
        return {**_loss_defaults().get(name, {}), **self.loss_params.get(name, {})}

    def data_kwargs(self, seed: int) -> dict:
        """What `ue_lib.data.load_domains` takes under this profile and `seed`."""
        return {"image_size": self.image_size, "channels": self.channels, "seed": seed,
                "test_fraction": self.test_fraction, "val_fraction": self.val_fraction,
                "lazy": self.lazy, "num_workers": self.num_workers, "per_domain": self.per_domain}

    def with_overrides(self, overrides: dict) -> Profile:
        """A copy with `overrides` applied: setting names, or `LOSS.PARAM` for a loss parameter."""
        values = dataclasses.asdict(self)
        for name, value in overrides.items():
            path = setting_path(name)
            if len(path) == 1:
                values[name] = value
            else:
                values["loss_params"] = {**values["loss_params"],
                                         path[1]: {**values["loss_params"].get(path[1], {}),
                                                   path[2]: value}}
        return Profile.from_dict(values)


NAMED: dict[str, dict] = {
    # The mini regime shrunk to seconds per notebook, for CI: the same pretrained, cached path
    # (at 32 px), four domains with tiny subsets (clip-art's first render alone would take
    # half a minute), 3 epochs of 4 batches per domain.
    "smoke": dict(
        domains="omniglot,fashion,glyphs,orl", image_size=32, channels=3,
        per_domain={"omniglot": {"max_classes": 40}, "fashion": {"max_per_class": 40},
                    "glyphs": {"max_classes": 30, "max_per_class": 24}},
        backbone="efficientnet_lite0", weights="imagenet", frozen_bn=True, trainable_stages=0,
        head_hidden=64, embedding_dim=32, p=8, k=4, lr=2e-3, batches_per_domain=4, threads=1,
        workers=1,  # at toy size two workers' start-up (30 s) costs more than they save
        epochs_specialist=3, epochs_naive=3, epochs_distill=3, eval_every=1, seeds="0,1",
        distill_tuning={"lr": [2e-3, 6e-4]},  # mini's shape: its own lr first (reused), one more
        # two knobs keep CI fast; every knob works: `-p ablation_grid "{'kl.neighbors': [None, 4]}"`
        ablation_grid={"kl.temperature": [0.05, 0.5], "domain_schedule": ["round_robin", "dynamic"]},
        # notebook 06 at toy size: two code shapes of a 64-d OPQN head, 3 epochs, small benchmark
        quantize_dim=64, quantize_codes="4x8,8x8", quantize_seeds="0,1", epochs_quantize=3,
        quantize_queries=300, quantize_bench_items=20_000,
        quantize_ablation={"opqn.codebook": ["dct", "random"], "opqn.entropy_weight": [0.1, 0.0],
                           "opqn.x_branch": [True, False]},
        sgml_seeds="0,1",  # notebook 07: the whole ladder, two seeds
        # notebook 08 at toy size: three domains, few scenes, a short detector training
        objects_domains="fashion,glyphs,omniglot", objects_scenes="160,40,80", objects_seeds="0,1",
        objects_detector={"epochs": 4}, objects_gallery=60, objects_spliced=40),
    # The pretrained regime (the default demo): ImageNet EfficientNet-Lite0 features at 64 px,
    # frozen and cached (computed once per run), an MLP head trained on them; five domains of
    # very different size and kind. Every model sees the same 10 batches of each domain per
    # epoch (equal budgets), evaluated every epoch (cheap on cached features) so that an early
    # peak is located. Training steps dominate the time: a 256-unit head instead of 512 keeps
    # the run under 10 minutes. Times: README.
    # Every distillation method gets the same tuning on validation: the lr of its student from
    # {2e-3 (this profile's: that student is reused), 6e-4}, i.e. one more training per method.
    # `rkd_angle` is not among notebook 03's methods: at 37 s per training (three times the
    # others) its tuning does not fit the 10 minutes; `-p distill_methods
    # kl,distance_mse,embedding_mse,rkd_distance,rkd_angle,darkrank` brings it back (tuned too).
    "mini": dict(
        domains="clipart,fashion,glyphs,omniglot,orl", image_size=64, channels=3,
        per_domain={"fashion": {"max_per_class": 300}},
        backbone="efficientnet_lite0", weights="imagenet", frozen_bn=True, trainable_stages=0,
        head_hidden=256, embedding_dim=64, lr=2e-3, batches_per_domain=10, threads=1,
        workers=2,
        epochs_specialist=30, epochs_naive=30, epochs_distill=30, eval_every=1,
        seeds="0,1,2", distill_methods="kl,distance_mse,embedding_mse,rkd_distance,darkrank",
        final_methods="kl,distance_mse", distill_tuning={"lr": [2e-3, 6e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]},
        epochs_quantize=20, quantize_queries=500,
        # notebook 08: faces are not objects; 600 training scenes keep it within 5 minutes
        objects_domains="clipart,fashion,glyphs,omniglot", objects_scenes="600,150,250"),
    # The earlier demo: a small CNN from scratch on the three grayscale domains. Kept for its
    # contrast with `mini`: here the over-fitting of naive fusion does not appear. One naive
    # epoch is ~7 s of training plus ~5 s of evaluating val and test (SPEC §9), so curves are
    # evaluated every 2nd epoch. Its methods are compared after the same tuning as mini's (the
    # default lr 1e-3 and 3e-4: one more student per method, roughly a minute each, estimated
    # from its naive epochs).
    "scratch": dict(
        per_domain={"fashion": {"max_per_class": 300}},
        epochs_specialist=8, epochs_naive=16, epochs_distill=8, eval_every=2, seeds="0,1,2",
        final_methods="kl,distance_mse", distill_tuning={"lr": [1e-3, 3e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]}),
    # The paper's setting, for one modern GPU (times and memory: README). ResNet-50 from
    # ImageNet with frozen BatchNorm: P x K batches hold few images per class and each batch
    # holds one domain, so batch statistics would be both noisy and domain-biased (SPEC §9);
    # freezing them, as most metric-learning papers do, keeps ImageNet's statistics. Each
    # distillation method's student lr is tuned on validation over 3 points around 3e-5 (its own
    # first: a tie keeps it), two more students per method.
    "paper": dict(
        domains="cub,cars,sop,inshop", image_size=224, channels=3, lazy=True,
        num_workers=8, backbone="resnet50", weights="imagenet", frozen_bn=True,
        embedding_dim=512, optimizer="adamw", lr=3e-5, weight_decay=1e-4, lr_schedule="cosine",
        p=32, k=4, epochs_specialist=30, epochs_naive=40, epochs_distill=30, eval_every=5,
        augment=True, final_methods="kl,distance_mse", seeds="0,1,2",
        distill_tuning={"lr": [3e-5, 1e-5, 1e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]},
        # notebook 06 on the benchmarks: a 512-d OPQN embedding (the paper's size) at 16-48
        # bits, IVFPQ among the baselines, 2000 sampled queries rank each whole database; a face
        # set of your own is one more experiment: -p quantize_experiments "folder:/data/faces:seen,…"
        quantize_dim=512, quantize_codes="2x256,4x64,8x16,8x64", epochs_quantize=30,
        quantize_experiments="cub:unseen,cars:unseen,sop:unseen,inshop:unseen,universal",
        quantize_baselines="pq,opq,ivfpq", quantize_queries=2000),
}
PROFILE_NAMES = tuple(NAMED)


def parse_value(text: str):
    """A command-line value: a Python literal when it is one (3, 0.5, None, True, {...}),
    else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def profile_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Profile) if f.name != "name"]


def setting_path(name: str) -> tuple[str, ...]:
    """('lr',) for a setting, ('loss_params', 'kl', 'temperature') for 'kl.temperature';
    an unknown name raises ValueError listing the valid ones."""
    if name in profile_fields():
        return (name,)
    loss, _, param = name.partition(".")
    if param:
        from .losses import loss_defaults

        known = loss_defaults()
        if loss in known and param in known[loss]:
            return ("loss_params", loss, param)
        if loss in known:
            raise ValueError(f"unknown parameter {name}: loss {loss!r} takes "
                             f"{', '.join(known[loss]) or 'no parameters'}")
    raise ValueError(f"unknown parameter(s) {name}; valid: {', '.join(profile_fields())}, "
                     f"or LOSS.PARAM for a loss parameter (e.g. kl.temperature)")


def load_profile(name: str, domains: str | None = None, overrides: dict | None = None) -> Profile:
    """The named profile with `domains` (if given, non-empty) and `overrides` applied."""
    if name not in NAMED:
        raise ValueError(f"unknown profile {name!r}; valid: {', '.join(NAMED)}")
    overrides = dict(overrides or {})
    for key in overrides:
        setting_path(key)  # names are checked before any value
    if domains:
        overrides["domains"] = domains
    return Profile(name=name).with_overrides({**NAMED[name], **overrides})
