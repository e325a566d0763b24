"""Distillation losses, called as ``loss(student, teacher)`` on the embeddings of the same ``B``
images by a universal student and by a frozen specialist (the teacher; it never receives
gradient). Embeddings are L2-normalised inside every loss; student and teacher dimensions may
differ (except for the embedding regression without a projection).

* :class:`DistributionDistillationLoss` (``"kl"``): the distribution of each anchor's distances,
  softmax over the candidates, matched with a KL divergence (Feng et al., 2020, the paper this
  project reproduces);
* :class:`DistanceDistillationLoss` (``"distance_mse"``) and :class:`EmbeddingDistillationLoss`
  (``"embedding_mse"``): absolute distances or the embeddings themselves regressed ("relative"
  and "absolute" teacher, Yu et al., 2019, "Learning Metrics from Teachers");
* :class:`RKDDistanceLoss`, :class:`RKDAngleLoss` (Park et al., 2019, Relational Knowledge
  Distillation) and :class:`DarkRankLoss` (Chen, Wang & Zhang, 2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    _EPS,
    _check_pair,
    _check_positive,
    _euclidean_off_diagonal,
    _off_diagonal,
    squared_distances,
)


class DistributionDistillationLoss(nn.Module):
    """Distribution (KL) distillation of Feng et al. (2020), the paper's loss.

    For anchor ``i`` and candidates ``j != i`` (all of them, or with ``neighbors=k`` the
    teacher's ``k`` nearest neighbours of ``i``; ties broken by lower index, ``k`` clamped to
    ``B - 1``): ``p_ij = softmax_j(-d_T(i, j) / tau)``, ``q_ij = softmax_j(-d_S(i, j) / tau)``,
    where ``d`` is the squared Euclidean distance of L2-normalised embeddings. The loss is
    ``mean_i KL(p_i || q_i)`` (``direction="teacher_student"``, the paper's), ``KL(q_i || p_i)``
    (``"student_teacher"``) or their average (``"symmetric"``). Student and teacher dims may
    differ.
    """

    DIRECTIONS = ("teacher_student", "student_teacher", "symmetric")

    def __init__(self, temperature: float = 0.05, neighbors: int | None = None,
                 direction: str = "teacher_student") -> None:
        super().__init__()
        self.temperature = _check_positive("temperature", temperature)
        if neighbors is not None and (isinstance(neighbors, bool) or
                                      not isinstance(neighbors, int) or neighbors < 1):
            raise ValueError(f"neighbors must be None or an integer >= 1, got {neighbors!r}")
        if direction not in self.DIRECTIONS:
            raise ValueError(f"direction must be one of {list(self.DIRECTIONS)}, "
                             f"got {direction!r}")
        self.neighbors, self.direction = neighbors, direction

    def _log_softmax(self, d: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(-d / self.temperature, dim=1)

    def distribution_of(self, distances: torch.Tensor) -> torch.Tensor:
        """``softmax(-d / tau)`` along the last dimension of ``distances``: one anchor's
        distances to its candidates (a row), or one row per anchor, each row summing to 1.
        Adding a constant to a row leaves its distribution unchanged; multiplying the row by a
        constant changes it (as dividing ``tau`` by that constant would)."""
        return F.softmax(-distances / self.temperature, dim=-1)

    def distributions(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, B-1): row i is ``softmax_j(-d(i, j) / tau)`` over the candidates ``j != i`` in
        their batch order (before any neighbour restriction) -- the ``p`` (teacher) or ``q``
        (student) that this loss compares (`distribution_of` the off-diagonal distances)."""
        return self.distribution_of(_off_diagonal(squared_distances(embeddings)))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher)
        d_t = _off_diagonal(squared_distances(teacher.detach()))
        d_s = _off_diagonal(squared_distances(student))
        if self.neighbors is not None:
            k = min(self.neighbors, d_t.shape[1])
            idx = torch.sort(d_t, dim=1, stable=True).indices[:, :k]
            d_t, d_s = d_t.gather(1, idx), d_s.gather(1, idx)
        log_p, log_q = self._log_softmax(d_t), self._log_softmax(d_s)

        def kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
            return (log_a.exp() * (log_a - log_b)).sum(dim=1).mean()

        if self.direction == "teacher_student":
            return kl(log_p, log_q)
        if self.direction == "student_teacher":
            return kl(log_q, log_p)
        return 0.5 * (kl(log_p, log_q) + kl(log_q, log_p))


class DistanceDistillationLoss(nn.Module):
    """Pairwise-distance regression ("relative teacher", Yu et al., 2019).

    ``mean_{i != j} (d_S(i, j) - d_T(i, j))^2`` with ``d`` the squared Euclidean distance of
    L2-normalised embeddings. Student and teacher dims may differ.
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher)
        d_t = _off_diagonal(squared_distances(teacher.detach()))
        d_s = _off_diagonal(squared_distances(student))
        return (d_s - d_t).pow(2).mean()


class EmbeddingDistillationLoss(nn.Module):
    """Embedding regression ("absolute teacher", Yu et al., 2019).

    ``mean_i ||normalize(P s_i) - normalize(t_i)||^2`` (sum over dims, mean over the batch).
    When ``student_dim`` and ``teacher_dim`` are both given and differ, ``P`` is a learnable
    ``nn.Linear(student_dim, teacher_dim, bias=False)`` owned by this loss (one loss instance,
    hence one projection, per teacher) -- **its parameters must be added to the optimiser**
    (e.g. ``optimizer = Adam([*model.parameters(), *loss.parameters()])``). Otherwise ``P`` is
    the identity and the dims must match. The projection is initialised like ``nn.Linear`` but
    from a generator seeded by ``seed`` (no global RNG).
    """

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        for name, v in (("student_dim", student_dim), ("teacher_dim", teacher_dim)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {v!r}")
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.projection: nn.Linear | None = None
        if student_dim is not None and teacher_dim is not None and student_dim != teacher_dim:
            self.projection = nn.Linear(student_dim, teacher_dim, bias=False)
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                nn.init.kaiming_uniform_(self.projection.weight, a=math.sqrt(5), generator=g)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher)
        if self.projection is not None:
            if student.shape[1] != self.student_dim or teacher.shape[1] != self.teacher_dim:
                raise ValueError(f"expected student dim {self.student_dim} and teacher dim "
                                 f"{self.teacher_dim}, got {student.shape[1]} and "
                                 f"{teacher.shape[1]}")
            student = self.projection(student)
        elif student.shape[1] != teacher.shape[1]:
            raise ValueError(f"student dim {student.shape[1]} != teacher dim {teacher.shape[1]}: "
                             f"pass student_dim and teacher_dim to EmbeddingDistillationLoss to "
                             f"learn a projection")
        diff = F.normalize(student, dim=1) - F.normalize(teacher.detach(), dim=1)
        return diff.pow(2).sum(dim=1).mean()


class RKDDistanceLoss(nn.Module):
    """RKD distance-wise loss (Park et al., 2019, "Relational Knowledge Distillation").

    Euclidean distances of L2-normalised embeddings over pairs ``i != j``, each matrix divided
    by the mean of its off-diagonal distances; smooth-L1 (beta=1) between student and teacher,
    averaged over the ``B(B-1)`` pairs (Park et al.'s code also averages the zero diagonal).
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher)
        d_t = _euclidean_off_diagonal(teacher.detach())
        d_s = _euclidean_off_diagonal(student)
        d_t = d_t / d_t.mean().clamp_min(_EPS)
        d_s = d_s / d_s.mean().clamp_min(_EPS)
        return F.smooth_l1_loss(d_s, d_t, beta=1.0)


def _angles(x: torch.Tensor) -> torch.Tensor:
    """(B, B, B) tensor ``a[j, i, k] = <normalize(e_i - e_j), normalize(e_k - e_j)>``."""
    e = F.normalize(x, dim=1)
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)  # diff[j, i] = e_i - e_j
    return diff @ diff.transpose(1, 2)


class RKDAngleLoss(nn.Module):
    """RKD angle-wise loss (Park et al., 2019).

    For triplets ``(i, j, k)`` of L2-normalised embeddings, the cosine of the angle at ``j``,
    ``<normalize(e_i - e_j), normalize(e_k - e_j)>``; smooth-L1 (beta=1) between student and
    teacher. Degenerate entries (``i == j`` or ``k == j``, where a difference vector is zero) are
    **excluded**, so the mean runs over the ``B (B-1)^2`` remaining triplets (Park et al.'s code
    keeps them as zeros in both tensors, which only rescales the loss by ``(B-1)^2 / B^2``).
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher)
        b = student.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=student.device)
        valid = ~(eye.unsqueeze(2) | eye.unsqueeze(1))  # [j, i, k]: i != j and k != j
        a_t = _angles(teacher.detach())[valid]
        a_s = _angles(student)[valid]
        return F.smooth_l1_loss(a_s, a_t, beta=1.0)


class DarkRankLoss(nn.Module):
    """DarkRank list-wise "hard" transfer (Chen, Wang & Zhang, 2018).

    Scores ``s(i, j) = -alpha * ||x_i - x_j||^beta`` on L2-normalised embeddings. For each
    anchor ``i``, ``pi_i`` ranks the other items by descending teacher score (ties: lower index
    first) and the loss is the Plackett-Luce negative log-likelihood of ``pi_i`` under the
    student scores, ``-sum_r [s_S(i, pi_i(r)) - logsumexp_{r' >= r} s_S(i, pi_i(r'))]``.
    Normalisation: divided by the list length ``B - 1`` (mean over positions) and averaged
    over anchors, so values do not grow with the batch size. Not zero when student == teacher.
    """

    def __init__(self, alpha: float = 3.0, beta: float = 3.0) -> None:
        super().__init__()
        self.alpha = _check_positive("alpha", alpha)
        self.beta = _check_positive("beta", beta)

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        d2 = _off_diagonal(squared_distances(x)).clamp_min(_EPS)
        return -self.alpha * d2.pow(self.beta / 2.0)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher)
        order = torch.sort(self._scores(teacher.detach()), dim=1, descending=True,
                           stable=True).indices
        s = self._scores(student).gather(1, order)
        tail_lse = torch.logcumsumexp(s.flip(1), dim=1).flip(1)  # logsumexp over r' >= r
        return -(s - tail_lse).mean()
