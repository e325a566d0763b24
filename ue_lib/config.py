"""Settings as plain dataclasses, validated on construction.

Every field is type-checked against its annotation and every name (backbone,
loss, optimiser, schedule) against the names the library knows, so a typo in a
notebook's parameters stops with a message that names the field, instead of
surfacing as a strange result an hour later.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field

BACKBONES = ("small_cnn", "resnet18", "resnet50", "googlenet")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
MODES = ("specialist", "naive", "distill")


def _type_ok(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, annotation)


def _choice(owner: str, name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"{owner}.{name}: unknown value {value!r}; valid: {', '.join(valid)}")


class Validated:
    """Mixin: type-check every field on construction; `from_dict` rejects unknown keys."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and hints[f.name] is float:
                setattr(self, f.name, float(value))
            elif not _type_ok(value, hints[f.name]):
                raise TypeError(f"{type(self).__name__}.{f.name} must be {hints[f.name]}, "
                                f"got {value!r} ({type(value).__name__})")
        self.check()

    def check(self) -> None:
        """Value checks beyond types (overridden by subclasses)."""

    @classmethod
    def from_dict(cls, values: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(names))}")
        return cls(**values)

    def replace(self, **changes):
        return type(self).from_dict({**dataclasses.asdict(self), **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(owner, **values) -> None:
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


@dataclass
class ModelConfig(Validated):
    """Embedding network = backbone + linear head + L2 normalisation.

    `pretrained`: None (random init), "imagenet" (torchvision weights API; needs
    internet or a filled torch hub cache) or a path to a local state-dict file.
    """

    backbone: str = "small_cnn"
    embedding_dim: int = 64
    in_channels: int = 1
    pretrained: str | None = None
    width: int = 32
    frozen_bn: bool = False

    def check(self) -> None:
        _choice("ModelConfig", "backbone", self.backbone, BACKBONES)
        _positive("ModelConfig", embedding_dim=self.embedding_dim, width=self.width)
        if self.in_channels not in (1, 3):
            raise ValueError(f"ModelConfig.in_channels must be 1 or 3, got {self.in_channels}")


@dataclass
class OptimConfig(Validated):
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    momentum: float = 0.9

    def check(self) -> None:
        _choice("OptimConfig", "name", self.name, OPTIMIZERS)
        _choice("OptimConfig", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _positive("OptimConfig", lr=self.lr)
        if self.weight_decay < 0:
            raise ValueError(f"OptimConfig.weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class TrainConfig(Validated):
    """One training run.

    mode: `specialist` (one domain), `naive` (all domains, one metric loss) or
    `distill` (all domains, each batch matched to its domain's frozen specialist;
    plus `metric_weight` × the metric loss on the labels).

    augment: random jitter of the training images (in-memory arrays: a small affine; file-backed
    images: random resized crop + flip). amp: mixed precision, see `ue_lib.device`.
    """

    mode: str = "specialist"
    epochs: int = 20
    p: int = 16
    k: int = 4
    metric_loss: str = "multi_similarity"
    metric_loss_params: dict = field(default_factory=dict)
    distill_loss: str = "kl"
    distill_loss_params: dict = field(default_factory=dict)
    metric_weight: float = 0.0
    domain_schedule: str = "round_robin"
    eval_every: int = 1
    eval_splits: tuple = ("val", "test")
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 512
    amp: str = "auto"

    def check(self) -> None:
        from .device import AMP_MODES
        from .losses import DISTILLATION_LOSSES, METRIC_LOSSES
        from .samplers import SCHEDULES

        _choice("TrainConfig", "mode", self.mode, MODES)
        _choice("TrainConfig", "metric_loss", self.metric_loss, METRIC_LOSSES)
        _choice("TrainConfig", "distill_loss", self.distill_loss, DISTILLATION_LOSSES)
        _choice("TrainConfig", "domain_schedule", self.domain_schedule, SCHEDULES)
        _choice("TrainConfig", "amp", self.amp, AMP_MODES)
        _positive("TrainConfig", epochs=self.epochs, p=self.p, eval_every=self.eval_every,
                  eval_batch_size=self.eval_batch_size)
        if self.k < 2:
            raise ValueError(f"TrainConfig.k must be >= 2 (positives need two images), got {self.k}")
        if self.metric_weight < 0:
            raise ValueError(f"TrainConfig.metric_weight must be >= 0, got {self.metric_weight}")
        self.eval_splits = tuple(self.eval_splits)
        for s in self.eval_splits:
            _choice("TrainConfig", "eval_splits", s, ("train", "val", "test"))
        if "val" not in self.eval_splits:
            raise ValueError("TrainConfig.eval_splits must include 'val': model selection uses it")
