"""What every loss here shares: the distance of L2-normalised embeddings, the argument checks and
a stable log-sum-exp. Package-internal (the helpers keep their leading underscore)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

_EPS = 1e-12


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, B) squared Euclidean distances of the L2-normalised rows of ``x``.

    Computed as ``(2 - 2 x x^T).clamp_min(0)`` with the diagonal set exactly to 0.
    """
    x = F.normalize(x, dim=1)
    d = (2.0 - 2.0 * x @ x.t()).clamp_min(0.0)
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return d.masked_fill(eye, 0.0)


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """Gather the off-diagonal entries of a (B, B) matrix into (B, B-1), keeping column order."""
    b = m.shape[0]
    return m.flatten()[1:].view(b - 1, b + 1)[:, :-1].reshape(b, b - 1)


def _euclidean_off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """(B, B-1) Euclidean distances of normalised rows, j != i (clamped for a finite gradient)."""
    return _off_diagonal(squared_distances(x)).clamp_min(_EPS).sqrt()


def _check_pair(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.dim() != 2 or teacher.dim() != 2:
        raise ValueError(f"student and teacher must be 2-D (B, D), got shapes "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student and teacher batch sizes differ: {student.shape[0]} vs "
                         f"{teacher.shape[0]} (they must embed the same images)")
    if student.shape[0] < 2:
        raise ValueError(f"distillation needs a batch of at least 2 images, got {student.shape[0]}")


def _check_metric(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be 2-D (B, D), got shape {tuple(embeddings.shape)}")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must have shape ({embeddings.shape[0]},), "
                         f"got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return float(value)


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite float, got {value!r}")
    return float(value)


def _log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Stable ``log(1 + sum_{mask} exp(x))`` along ``dim``; 0 where the mask is empty."""
    x = x.masked_fill(~mask, -math.inf)
    zeros = torch.zeros_like(x.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([zeros, x], dim=dim), dim=dim)


def _label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive mask without the diagonal, negative mask), both (B, B) bool."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same
