"""Validated settings dataclasses.

Every field is type-checked against its annotation on construction, so a typo or an ill-typed
value in a notebook's parameters stops with a message that names the field, instead of
surfacing as a strange result an hour later. The settings themselves (and their defaults) live
in one place, a profile composed of settings groups (`ue_lib.settings`); `ModelSettings` is the
part of a profile that builds a network, kept with a trained model so that it can be rebuilt
from its file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass


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


def choice(owner: str, name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"{owner}.{name}: unknown value {value!r}; valid: {', '.join(valid)}")


def positive(owner, **values) -> None:
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


@functools.cache
def _hints(cls: type) -> dict:
    """The resolved annotations of a settings class, read once (`typing.get_type_hints` evaluates
    every string annotation anew: 2 ms per profile made, and a notebook makes thousands)."""
    return typing.get_type_hints(cls)


class Validated:
    """Mixin: type-check every field on construction; `from_dict` rejects unknown keys."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and hints[f.name] is float:
                object.__setattr__(self, f.name, float(value))
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

    @classmethod
    def part_of(cls, source, **values):
        """This part of a larger settings object (a Profile): the fields of the same names."""
        return cls(**{f.name: values.get(f.name, getattr(source, f.name, None))
                      for f in dataclasses.fields(cls)})

    def replace(self, **changes):
        return type(self).from_dict({**dataclasses.asdict(self), **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelSettings(Validated):
    """What builds a network (`ue_lib.models.build_model`): the profile's fields of these names."""

    backbone: str
    width: int
    embedding_dim: int
    weights: str | None
    frozen_bn: bool
    channels: int
    head_hidden: int
    trainable_stages: int
    cache_features: bool
