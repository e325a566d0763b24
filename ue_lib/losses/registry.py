"""The one registry of losses: every loss by the name a profile uses for it (`metric_loss`,
`distill_methods`, `-p LOSS.PARAM`), how it is built, and its settable parameters with their
defaults, read from its constructor.

The losses of this package are registered below. A paper's system whose loss lives with it
(a loss that carries its own modules, say) registers it here when its module is imported,
with :func:`register_metric_loss`; a settings class names such modules in ``LOSS_MODULES``
(`ue_lib.settings`), so that a profile knows every loss before it checks its parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from . import deviance, distillation, metric

DISTILLATION_LOSSES: dict[str, type[nn.Module]] = {
    "kl": distillation.DistributionDistillationLoss,
    "distance_mse": distillation.DistanceDistillationLoss,
    "embedding_mse": distillation.EmbeddingDistillationLoss,
    "rkd_distance": distillation.RKDDistanceLoss,
    "rkd_angle": distillation.RKDAngleLoss,
    "darkrank": distillation.DarkRankLoss,
}

METRIC_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "triplet_batch_hard": functools.partial(metric.TripletLoss, mining="batch_hard"),
    "triplet_semi_hard": functools.partial(metric.TripletLoss, mining="semi_hard"),
    "multi_similarity": metric.MultiSimilarityLoss,
    "binomial_deviance": deviance.BinomialDevianceLoss,
    "soft_binomial_deviance": deviance.SoftBinomialDevianceLoss,  # needs attribute probabilities
    "proxy_anchor": metric.ProxyAnchorLoss,
}

# losses with learnable class prototypes: they are built with num_classes and embedding_dim
_PROXY_LOSSES = {"proxy_anchor"}


def register_metric_loss(name: str, factory: Callable[..., nn.Module], proxy: bool = False) -> None:
    """Add a metric loss under `name` (called as ``loss(embeddings, labels)``); `proxy`: it is
    built with ``num_classes`` and ``embedding_dim``. Registering a name twice with another
    factory raises ValueError."""
    if METRIC_LOSSES.get(name, factory) is not factory or name in DISTILLATION_LOSSES:
        raise ValueError(f"a loss named {name!r} is registered already")
    METRIC_LOSSES[name] = factory
    if proxy:
        _PROXY_LOSSES.add(name)


def needs_negatives(name: str) -> bool:
    """Whether metric loss `name` learns only from pairs within a batch, so that a batch of one
    class (no negative pair) gives it nothing: every registered loss but the proxy losses,
    whose class prototypes are negatives of their own."""
    return name in METRIC_LOSSES and name not in _PROXY_LOSSES


def make_metric_loss(name: str, num_classes: int | None = None,
                     embedding_dim: int | None = None, **kwargs: Any) -> nn.Module:
    """Build ``METRIC_LOSSES[name](**kwargs)``; ``num_classes``/``embedding_dim`` go only to
    proxy losses, which require them."""
    if name not in METRIC_LOSSES:
        raise ValueError(f"unknown metric loss {name!r}; valid names: {sorted(METRIC_LOSSES)}")
    if name in _PROXY_LOSSES:
        if num_classes is None or embedding_dim is None:
            raise ValueError(f"metric loss {name!r} needs num_classes and embedding_dim")
        return METRIC_LOSSES[name](num_classes=num_classes, embedding_dim=embedding_dim, **kwargs)
    return METRIC_LOSSES[name](**kwargs)


def make_distillation_loss(name: str, student_dim: int | None = None,
                           teacher_dim: int | None = None, **kwargs: Any) -> nn.Module:
    """Build ``DISTILLATION_LOSSES[name](**kwargs)``; ``student_dim``/``teacher_dim`` go only
    to ``"embedding_mse"`` (which learns a projection when they differ)."""
    if name not in DISTILLATION_LOSSES:
        raise ValueError(f"unknown distillation loss {name!r}; "
                         f"valid names: {sorted(DISTILLATION_LOSSES)}")
    if name == "embedding_mse":
        return distillation.EmbeddingDistillationLoss(student_dim=student_dim,
                                                      teacher_dim=teacher_dim, **kwargs)
    return DISTILLATION_LOSSES[name](**kwargs)


# Arguments the training loop supplies itself (from the model and the data), not settings.
SUPPLIED = frozenset({"student_dim", "teacher_dim", "num_classes", "embedding_dim", "seed"})


def loss_defaults() -> dict[str, dict[str, Any]]:
    """Every loss's settable parameters and their defaults, read from the constructors:
    ``{"kl": {"temperature": 0.05, "neighbors": None, "direction": "teacher_student"}, …}``.
    This is where a profile's `loss_params` get their defaults. A fresh copy each call of what
    `_loss_defaults` read once (every profile made checks its parameters: reading the
    signatures each time was 15 % of a worker's time)."""
    return {name: dict(params) for name, params in _loss_defaults().items()}


@functools.cache
def _loss_defaults() -> dict[str, dict[str, Any]]:
    out = {}
    for name, cls in {**METRIC_LOSSES, **DISTILLATION_LOSSES}.items():
        bound = cls.keywords if isinstance(cls, functools.partial) else {}
        out[name] = {p.name: p.default for p in inspect.signature(cls).parameters.values()
                     if p.name not in SUPPLIED and p.name not in bound
                     and p.default is not inspect.Parameter.empty}
    return out


def check_loss_params(params: dict[str, dict[str, Any]]) -> None:
    """Raise ValueError naming the loss and parameter when `params` (a profile's `loss_params`)
    names an unknown loss or parameter, or a value the loss refuses."""
    known = loss_defaults()
    for name, values in params.items():
        if name not in known:
            raise ValueError(f"loss_params: unknown loss {name!r}; valid: {', '.join(known)}")
        if not isinstance(values, dict):
            raise ValueError(f"loss_params[{name!r}] must be a dict of parameters, got {values!r}")
        unknown = sorted(set(values) - set(known[name]))
        if unknown:
            raise ValueError(f"loss {name!r} has no parameter(s) {', '.join(unknown)}; it takes "
                             f"{', '.join(known[name]) or 'none'}")
        try:
            if name in METRIC_LOSSES:
                # a loss whose parameters constrain the embedding's size says which size fits
                dim = getattr(METRIC_LOSSES[name], "valid_dim", lambda **_: 2)(**values)
                make_metric_loss(name, num_classes=2, embedding_dim=dim, **values)
            else:
                make_distillation_loss(name, **values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"settings of loss {name!r}: {exc}") from exc
