"""Deterministic, class-balanced batch samplers and multi-domain batch schedules.

Every batch comes from exactly one domain and holds ``P`` distinct classes with ``K`` images
each (the usual "PK" batches of deep metric learning). All randomness comes from a
:class:`numpy.random.Generator` seeded from ``(seed, epoch)`` -- never from global RNG state --
so an epoch's batches depend only on the constructor arguments and the epoch number, which makes
training reproducible and resumable at epoch boundaries.

Public API:

* :class:`PKSampler` -- a ``batch_sampler`` for :class:`torch.utils.data.DataLoader`.
* :func:`domain_schedule` / :data:`SCHEDULES` -- which domain each batch of an epoch comes from.
* :class:`MultiDomainBatchSampler` -- yields ``(domain, indices)`` pairs following a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["SCHEDULES", "MultiDomainBatchSampler", "PKSampler", "domain_schedule", "lag_weights"]


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as ``int`` if it is an integer >= ``minimum``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Cycle:
    """Endless walk over reshuffled permutations of ``items``.

    ``take(n)`` returns ``n`` distinct items (requires ``n <= len(items)``). When the current
    permutation runs out, the remainder is completed from a fresh permutation, skipping items
    already in the batch; those skipped items stay in the new permutation's queue.
    """

    def __init__(self, items: np.ndarray, rng: np.random.Generator) -> None:
        self.items, self.rng = items, rng
        self.order, self.pos = rng.permutation(items), 0

    def take(self, n: int) -> np.ndarray:
        end = self.pos + n
        if end <= len(self.order):
            self.pos = end
            return self.order[end - n : end]
        head = self.order[self.pos :]
        fresh = self.rng.permutation(self.items)
        candidates = np.flatnonzero(~np.isin(fresh, head))[: n - len(head)]
        self.order, self.pos = np.delete(fresh, candidates), 0
        return np.concatenate([head, fresh[candidates]])


class PKSampler(Sampler[list[int]]):
    """Class-balanced batch sampler: each batch is ``P`` distinct classes x ``K`` indices each.

    Use as ``DataLoader(dataset, batch_sampler=PKSampler(labels, p, k, seed))`` and call
    :meth:`set_epoch` before each epoch (like ``DistributedSampler``). An epoch's batches are
    drawn with ``np.random.default_rng([seed, epoch])`` only.

    * Classes with fewer than 2 images cannot form positive pairs and are excluded.
    * Classes are visited by walking a shuffled class list (reshuffled when exhausted), so over
      an epoch all classes are used about equally.
    * Within a class, images are drawn by walking a shuffled per-class list (reshuffled when
      exhausted), i.e. without replacement across batches where possible. A class with fewer
      than ``K`` images contributes each of its images once plus random repeats (with
      replacement) to fill its ``K`` slots.
    * If ``p`` exceeds the number of usable classes, the effective ``P`` becomes the number of
      classes and ``K`` is raised to ``ceil(p * k / P)`` so that ``P * K >= p * k``. The
      effective values are exposed as :attr:`p`, :attr:`k` and :attr:`batch_size`.

    Args:
        labels: 1-D array of class labels, one per dataset item (any hashable, sortable dtype).
        p: Classes per batch (>= 1).
        k: Images per class in a batch (>= 2).
        seed: Non-negative base seed.
        batches_per_epoch: Length of an epoch; default ``max(1, num_samples // batch_size)``
            where ``num_samples`` counts items of usable (non-singleton) classes.
    """

    def __init__(
        self,
        labels: Sequence[Any] | np.ndarray,
        p: int,
        k: int,
        seed: int = 0,
        batches_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
        p, k = _check_int("p", p, 1), _check_int("k", k, 2)
        self.seed = _check_int("seed", seed, 0)
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        usable = np.flatnonzero(counts >= 2)
        if len(usable) < 2:
            raise ValueError(
                f"need at least 2 classes with >= 2 images each to form positive pairs, got "
                f"{len(usable)} (of {len(classes)} classes, {len(labels)} labels)"
            )
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.cumsum(counts)[:-1])
        #: Indices (into ``labels``) of each usable class, keyed by the class label.
        names = classes.tolist()
        self.class_indices: dict[Any, np.ndarray] = {names[c]: groups[c] for c in usable}
        self.num_classes = len(usable)
        self.num_samples = int(counts[usable].sum())
        self.requested_p, self.requested_k = p, k
        if p > self.num_classes:
            p, k = self.num_classes, math.ceil(p * k / self.num_classes)
        self.p, self.k = p, k
        self.batch_size = p * k
        if batches_per_epoch is None:
            batches_per_epoch = max(1, self.num_samples // self.batch_size)
        self.batches_per_epoch = _check_int("batches_per_epoch", batches_per_epoch, 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches :meth:`__iter__` yields."""
        self.epoch = _check_int("epoch", epoch, 0)

    def batches(self, epoch: int, n: int) -> Iterator[list[int]]:
        """Yield ``n`` batches of ``epoch``'s stream (any ``n`` >= 0; prefixes are stable)."""
        epoch, n = _check_int("epoch", epoch, 0), _check_int("n", n, 0)
        rng = np.random.default_rng([self.seed, epoch])
        keys = list(self.class_indices)
        class_cycle = _Cycle(np.arange(len(keys)), rng)
        image_cycles: dict[int, _Cycle] = {}
        for _ in range(n):
            batch: list[int] = []
            for c in class_cycle.take(self.p).tolist():
                idx = self.class_indices[keys[c]]
                if len(idx) < self.k:
                    extra = rng.choice(idx, self.k - len(idx), replace=True)
                    picked = np.concatenate([rng.permutation(idx), extra])
                else:
                    if c not in image_cycles:
                        image_cycles[c] = _Cycle(idx, rng)
                    picked = image_cycles[c].take(self.k)
                batch.extend(picked.tolist())
            yield batch

    def __iter__(self) -> Iterator[list[int]]:
        return self.batches(self.epoch, self.batches_per_epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch


# --------------------------------------------------------------------------- domain schedules

#: A schedule maps each domain's natural batch count and a seeded generator to a batch order.
ScheduleFn = Callable[[dict[str, int], np.random.Generator, dict[str, float]], list[str]]


def _round_robin(counts: dict[str, int], rng: np.random.Generator,
                 weights: dict[str, float]) -> list[str]:
    """Same number of batches per domain (rounded mean, >= 1), cyclic order d1, d2, ..., d1."""
    n = max(1, math.floor(sum(counts.values()) / len(counts) + 0.5))
    return [d for _ in range(n) for d in counts]


def _proportional(counts: dict[str, int], rng: np.random.Generator,
                  weights: dict[str, float]) -> list[str]:
    """Each domain gets its natural batch count (>= 1), in a seeded random order."""
    order = [d for d, c in counts.items() for _ in range(max(1, c))]
    return [order[i] for i in rng.permutation(len(order))]


def _dynamic(counts: dict[str, int], rng: np.random.Generator,
             weights: dict[str, float]) -> list[str]:
    """The epoch's total of natural batches, shared out in proportion to `weights` (largest
    remainder, every domain at least one batch), in a seeded random order. Without weights
    (before the first evaluation) every domain gets an equal share."""
    names = list(counts)
    total = max(len(names), sum(max(1, c) for c in counts.values()))
    w = np.array([max(0.0, float(weights.get(d, 1.0))) for d in names]) if weights else np.ones(len(names))
    w = w / w.sum() if w.sum() > 0 else np.full(len(names), 1 / len(names))
    share = 1 + w * (total - len(names))  # one batch each, the rest by weight
    n = np.floor(share).astype(int)
    for i in np.argsort(-(share - n), kind="stable")[: total - n.sum()]:
        n[i] += 1
    order = [d for d, k in zip(names, n) for _ in range(k)]
    return [order[i] for i in rng.permutation(len(order))]


def lag_weights(teacher: Mapping[str, float], student: Mapping[str, float],
                floor: float = 0.02) -> dict[str, float]:
    """Weights of the dynamic schedule: how far each domain's student lags behind its teacher
    on validation (teacher - student, at least 0) plus `floor`, so no domain is starved."""
    return {d: max(0.0, teacher[d] - student[d]) + floor for d in teacher}


_SCHEDULE_FNS: dict[str, ScheduleFn] = {
    "round_robin": _round_robin,
    "proportional": _proportional,
    "dynamic": _dynamic,
}
#: Valid ``mode`` values for :func:`domain_schedule`.
SCHEDULES: tuple[str, ...] = tuple(_SCHEDULE_FNS)


def domain_schedule(
    batches_per_domain: Mapping[str, int], mode: str, seed: int, epoch: int,
    weights: Mapping[str, float] | None = None,
) -> list[str]:
    """Return the domain of each batch of ``epoch``, in order.

    Args:
        batches_per_domain: Each domain's natural number of batches per epoch
            (``size // batch_size``; may be 0). Dict order fixes the round-robin cycle.
        mode: ``"round_robin"``: every domain gets ``max(1, round(mean(counts)))`` batches
            (halves round up), interleaved d1, d2, d3, d1, d2, d3, ...;
            ``"proportional"``: every domain gets ``max(1, count)`` batches in an order shuffled
            with ``np.random.default_rng([seed, epoch])``;
            ``"dynamic"``: the same total number of batches as ``"proportional"``, shared out in
            proportion to ``weights`` (see :func:`lag_weights`), every domain at least one,
            in a seeded random order.
        seed: Non-negative base seed.
        epoch: Non-negative epoch number.

    A domain with 0 natural batches (fewer items than a batch) still gets at least one batch.
    """
    if mode not in _SCHEDULE_FNS:
        raise ValueError(f"unknown schedule mode {mode!r}; valid modes: {', '.join(SCHEDULES)}")
    if not batches_per_domain:
        raise ValueError("batches_per_domain must contain at least one domain")
    counts = {
        str(d): _check_int(f"batches_per_domain[{d!r}]", c, 0)
        for d, c in batches_per_domain.items()
    }
    seed, epoch = _check_int("seed", seed, 0), _check_int("epoch", epoch, 0)
    return _SCHEDULE_FNS[mode](counts, np.random.default_rng([seed, epoch]), dict(weights or {}))


class MultiDomainBatchSampler(Sampler[tuple[str, list[int]]]):
    """Yield ``(domain, indices)`` batches, each drawn from one domain by its own PKSampler.

    The order of domains follows :func:`domain_schedule` (``schedule`` mode, same ``seed``,
    current epoch). Each domain's :class:`PKSampler` gets a distinct seed derived
    deterministically from ``(seed, domain position)``; its natural batch count is
    ``num_samples // batch_size``. If the schedule asks a domain for more batches than its
    natural count, its per-epoch stream simply continues (reshuffling as needed).
    ``indices`` index into that domain's ``labels`` array.

    Args:
        labels_by_domain: Domain name -> 1-D label array of that domain's dataset.
        p: Classes per batch (may be lowered per domain, see :class:`PKSampler`).
        k: Images per class.
        schedule: One of :data:`SCHEDULES`.
        seed: Non-negative base seed.
        batches_per_domain: When > 0, every domain counts as having this many batches per
            epoch (instead of its natural count), so a specialist, naive fusion and a student
            trained for the same number of epochs see the same number of batches of each domain.
        rank, world_size: Multi-process training (``ue_lib.distributed``): every rank draws the
            same schedule and batches, and yields its own share of each batch, whole classes
            ``rank, rank + world_size, ...`` of its P classes (so every rank still sees K images
            per class; P must be divisible by ``world_size``).
    """

    def __init__(
        self,
        labels_by_domain: Mapping[str, Sequence[Any] | np.ndarray],
        p: int,
        k: int,
        schedule: str = "round_robin",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batches_per_domain: int = 0,
    ) -> None:
        super().__init__()
        if not labels_by_domain:
            raise ValueError("labels_by_domain must contain at least one domain")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; valid modes: {', '.join(SCHEDULES)}")
        self.schedule, self.seed = schedule, _check_int("seed", seed, 0)
        self.samplers: dict[str, PKSampler] = {}
        for i, (name, labels) in enumerate(labels_by_domain.items()):
            domain_seed = int(np.random.SeedSequence([self.seed, i]).generate_state(1)[0])
            try:
                self.samplers[name] = PKSampler(labels, p, k, seed=domain_seed)
            except ValueError as e:
                raise ValueError(f"domain {name!r}: {e}") from e
        self.world_size = _check_int("world_size", world_size, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size ({self.world_size}), got {self.rank}")
        for name, s in self.samplers.items():
            if s.p % self.world_size:
                raise ValueError(
                    f"domain {name!r}: a batch of P={s.p} classes"
                    f"{' (all the classes it has)' if s.p < s.requested_p else ''} cannot be "
                    f"shared evenly by {self.world_size} processes; choose P (the `p` setting) "
                    f"divisible by the number of processes")
        #: Batches per epoch of each domain before the schedule: its natural count
        #: (``num_samples // batch_size``), or ``batches_per_domain`` for every domain when > 0.
        self.batches_per_domain = {
            name: batches_per_domain or s.num_samples // s.batch_size
            for name, s in self.samplers.items()
        }
        self.epoch = 0
        #: Per-domain weights of the ``"dynamic"`` schedule (set by the training loop).
        self.weights: dict[str, float] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches :meth:`__iter__` yields."""
        self.epoch = _check_int("epoch", epoch, 0)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Weights of the ``"dynamic"`` schedule for the following epochs (e.g. :func:`lag_weights`)."""
        unknown = set(weights) - set(self.samplers)
        if unknown:
            raise ValueError(f"weights for unknown domain(s) {sorted(unknown)}")
        self.weights = {d: float(w) for d, w in weights.items()}

    def domain_order(self) -> list[str]:
        """The domain of each batch of the current epoch."""
        return domain_schedule(self.batches_per_domain, self.schedule, self.seed, self.epoch,
                               self.weights)

    def __iter__(self) -> Iterator[tuple[str, list[int]]]:
        order = self.domain_order()
        streams = {
            name: s.batches(self.epoch, order.count(name)) for name, s in self.samplers.items()
        }
        for name in order:
            batch = next(streams[name])
            if self.world_size > 1:  # this rank's classes; each class is K consecutive items
                k = self.samplers[name].k
                batch = [i for c in range(self.rank, len(batch) // k, self.world_size)
                         for i in batch[c * k:(c + 1) * k]]
            yield name, batch

    def __len__(self) -> int:
        return len(self.domain_order())
