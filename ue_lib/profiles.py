"""Profiles: every setting of a full run, in one place, as data.

* `smoke` — tiny subsets and 2-3 epochs: seconds per notebook, for CI regression.
* `mini` — the default demo: the whole story on the three real mini domains, 3 seeds,
  under 20 minutes on a 2-core CPU.
* `paper` — the real experiment on a GPU: CUB-200-2011, Cars196, Stanford Online Products and
  In-Shop from their official layouts, read lazily at 224 px, an ImageNet-pretrained ResNet-50
  with frozen BatchNorm, bfloat16 mixed precision (README, "Reproduce at paper scale").

A notebook receives `profile`, `seed`, `domains` and `overrides` (a dict of
setting -> value) from papermill; `load_profile` applies and validates them, so a
misspelt or ill-typed override stops with a message naming it.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field

from .config import ModelConfig, OptimConfig, TrainConfig, Validated
from .data import parse_domains


@dataclass
class Profile(Validated):
    name: str = "custom"
    # data
    domains: str = "omniglot,fashion,glyphs"  # comma-separated (SPEC §4 names or folder:<path>)
    image_size: int = 32
    channels: int = 1
    per_domain: dict = field(default_factory=dict)  # e.g. {"fashion": {"max_per_class": 400}}
    test_fraction: float = 0.5
    val_fraction: float = 0.2
    lazy: bool = False  # benchmarks: decode files per batch instead of holding them in RAM
    num_workers: int = 0  # DataLoader workers decoding file-backed images
    # model
    backbone: str = "small_cnn"
    width: int = 32
    embedding_dim: int = 64
    weights: str | None = None  # None (random init), "imagenet" or a local .pth file
    frozen_bn: bool = False
    # training
    metric_loss: str = "multi_similarity"
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    p: int = 16
    k: int = 4
    epochs_specialist: int = 10
    epochs_naive: int = 20
    epochs_distill: int = 10
    eval_every: int = 1
    domain_schedule: str = "round_robin"
    augment: bool = False
    device: str = "auto"
    amp: str = "auto"  # bfloat16 autocast on CUDA (see ue_lib.device)
    # distillation
    distill_methods: str = "kl,distance_mse,embedding_mse,rkd_distance,rkd_angle,darkrank"
    final_methods: str = "kl,distance_mse,embedding_mse"  # the ones notebook 04 repeats per seed
    temperature: float = 0.05
    neighbors: int | None = None
    direction: str = "teacher_student"
    metric_weight: float = 0.0
    # notebook 04
    seeds: str | int | tuple | list = "0,1,2"  # stored as "0,1,2"; -p seeds 0 or 0,1 work too
    # notebook 05: one 1-D sweep of notebook 03's kl student per knob, over these seeds
    ablation_grid: dict = field(default_factory=lambda: {"temperature": [0.02, 0.05, 0.2]})
    ablation_seeds: str | int | tuple | list = "0"

    def check(self) -> None:
        parse_domains(self.domains)
        self.model_config()
        self.optim_config()
        self.train_config("specialist")
        if self.num_workers < 0:
            raise ValueError(f"Profile.num_workers must be >= 0, got {self.num_workers}")
        from .losses import DISTILLATION_LOSSES, make_distillation_loss

        for m in self.methods("distill_methods") + self.methods("final_methods"):
            if m not in DISTILLATION_LOSSES:
                raise ValueError(f"Profile: unknown distillation method {m!r}; valid: "
                                 f"{', '.join(DISTILLATION_LOSSES)}")
            try:  # the loss checks its own parameters (temperature > 0, …)
                make_distillation_loss(m, **self.distill_params(m))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Profile: settings of distillation method {m!r}: {exc}") from exc
        for which in ("seeds", "ablation_seeds"):  # canonical form: "0,1,2"
            setattr(self, which, ",".join(map(str, self.seed_list(which))))
        unknown = sorted(set(self.ablation_grid) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"Profile.ablation_grid: unknown setting(s) {', '.join(unknown)}")

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

    def data_kwargs(self, seed: int) -> dict:
        return {"image_size": self.image_size, "channels": self.channels, "seed": seed,
                "test_fraction": self.test_fraction, "val_fraction": self.val_fraction,
                "lazy": self.lazy, "num_workers": self.num_workers}

    def model_config(self) -> ModelConfig:
        return ModelConfig(backbone=self.backbone, embedding_dim=self.embedding_dim,
                           in_channels=self.channels, pretrained=self.weights,
                           width=self.width, frozen_bn=self.frozen_bn)

    def optim_config(self) -> OptimConfig:
        return OptimConfig(name=self.optimizer, lr=self.lr, weight_decay=self.weight_decay,
                           lr_schedule=self.lr_schedule)

    def distill_params(self, method: str) -> dict:
        """The profile's loss parameters that `method` takes."""
        if method == "kl":
            return {"temperature": self.temperature, "neighbors": self.neighbors,
                    "direction": self.direction}
        return {}

    def schedule_for(self, mode: str) -> str:
        """The domain schedule of a mode: a specialist has one domain (any schedule is the same,
        so round robin keeps its models shared); the dynamic schedule follows the student's lag
        behind its teachers, which naive fusion does not have, so naive uses round robin then."""
        if mode == "specialist" or (mode == "naive" and self.domain_schedule == "dynamic"):
            return "round_robin"
        return self.domain_schedule

    def train_config(self, mode: str, seed: int = 0, method: str = "kl", **changes) -> TrainConfig:
        epochs = {"specialist": self.epochs_specialist, "naive": self.epochs_naive,
                  "distill": self.epochs_distill}[mode]
        values = dict(mode=mode, epochs=epochs, p=self.p, k=self.k, metric_loss=self.metric_loss,
                      domain_schedule=self.schedule_for(mode), eval_every=self.eval_every,
                      augment=self.augment, seed=seed, device=self.device, amp=self.amp,
                      eval_splits=("val", "test") if mode == "naive" else ("val",))
        if mode == "distill":  # only a student's settings (and so its fingerprint) name them
            values.update(distill_loss=method, distill_loss_params=self.distill_params(method),
                          metric_weight=self.metric_weight)
        return TrainConfig.from_dict({**values, **changes})


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        per_domain={"omniglot": {"max_classes": 40}, "fashion": {"max_per_class": 40},
                    "glyphs": {"max_classes": 30, "max_per_class": 24}},
        width=8, embedding_dim=32, p=8, k=4,
        epochs_specialist=2, epochs_naive=3, epochs_distill=2, seeds="0,1",
        # two knobs keep CI fast; every knob works: `-p ablation_grid "{'neighbors': [None, 4]}"`
        ablation_grid={"temperature": [0.05, 0.5], "domain_schedule": ["round_robin", "dynamic"]}),
    # Budget (measured on the 2-core machine): one naive-fusion epoch over the three domains is
    # ~7 s of training plus ~5 s of embedding and scoring val and test (SPEC §9: evaluation costs
    # as much as training), so curves are evaluated every 2nd epoch; the whole profile, five
    # notebooks and 3 seeds, is meant to stay under 20 minutes.
    "mini": Profile(
        name="mini",
        per_domain={"fashion": {"max_per_class": 300}},
        epochs_specialist=8, epochs_naive=16, epochs_distill=8, eval_every=2, seeds="0,1,2",
        final_methods="kl,distance_mse",
        ablation_grid={"temperature": [0.02, 0.05, 0.2]}),
    # The paper's setting, for one modern GPU (times and memory: README). ResNet-50 from
    # ImageNet with frozen BatchNorm: P x K batches hold few images per class and each batch
    # holds one domain, so batch statistics would be both noisy and domain-biased (SPEC §9);
    # freezing them, as most metric-learning papers do, keeps ImageNet's statistics.
    "paper": Profile(
        name="paper", domains="cub,cars,sop,inshop", image_size=224, channels=3, lazy=True,
        num_workers=8, backbone="resnet50", weights="imagenet", frozen_bn=True,
        embedding_dim=512, optimizer="adamw", lr=3e-5, weight_decay=1e-4, lr_schedule="cosine",
        p=32, k=4, epochs_specialist=30, epochs_naive=40, epochs_distill=30, eval_every=5,
        augment=True, final_methods="kl,distance_mse", seeds="0,1,2",
        ablation_grid={"temperature": [0.02, 0.05, 0.2]}),
}

STANDARD_PARAMETERS = ("profile", "out_dir", "seed", "domains", "overrides", "models_dir")


def parse_value(text: str):
    """A command-line value: a Python literal when it is one (3, 0.5, None, True, {...}),
    else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def profile_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Profile) if f.name != "name"]


def load_profile(name: str, domains: str | None = None, overrides: dict | None = None) -> Profile:
    """The named profile with `domains` (if given, non-empty) and `overrides` applied."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(profile_fields()))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(dict.fromkeys(STANDARD_PARAMETERS + tuple(profile_fields())))}")
    if domains:
        overrides["domains"] = domains
    return PROFILES[name].replace(**overrides)
