"""Distillation and metric-learning losses.

Distillation losses (called as ``loss(student, teacher)`` on embeddings of the same ``B`` images)
transfer the geometry of specialist embeddings (teachers) to a universal student, following
"Unifying Specialist Image Embedding into Universal Image Embedding" (Feng et al., 2020), whose
loss is :class:`DistributionDistillationLoss`. The others are the baselines it compares with:
pairwise-distance and embedding regression ("relative" / "absolute" teacher, Yu et al., 2019,
"Learning Metrics from Teachers"), RKD (Park et al., 2019) and DarkRank (Chen et al., 2018).
The teacher is always detached: it never receives gradient.

Metric losses (called as ``loss(embeddings, labels)``) train the specialists and the naive
universal model: triplet (Schroff et al., 2015; Hermans et al., 2017), multi-similarity
(Wang et al., 2019), binomial deviance (Yi et al., 2014) and proxy-anchor (Kim et al., 2020).
SGML's soft-binomial deviance (Manandhar et al., 2020; *our reconstruction*, the full text could
not be obtained) is binomial deviance with pairs graded by the similarity of their items'
predicted attributes: :class:`SoftBinomialDevianceLoss`, called as ``loss(embeddings, labels,
attribute_probs)`` by the attribute-multitask objective (`ue_lib.objectives.AttributeMultitask`).
OPQN's margin loss with its quantizer (Zhang et al., 2023) is registered here as ``"opqn"`` and
lives with the rest of compressed retrieval in :mod:`ue_lib.quantize`.

Embeddings are L2-normalised inside every loss. NaN detection is left to the training loop.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .quantize import OPQNLoss

__all__ = [
    "DISTILLATION_LOSSES",
    "METRIC_LOSSES",
    "BinomialDevianceLoss",
    "DarkRankLoss",
    "DistanceDistillationLoss",
    "DistributionDistillationLoss",
    "EmbeddingDistillationLoss",
    "MultiSimilarityLoss",
    "ProxyAnchorLoss",
    "RKDAngleLoss",
    "RKDDistanceLoss",
    "SoftBinomialDevianceLoss",
    "TripletLoss",
    "check_loss_params",
    "loss_defaults",
    "make_distillation_loss",
    "make_metric_loss",
    "squared_distances",
]

_EPS = 1e-12


# ----------------------------------------------------------------------------- helpers
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


# ----------------------------------------------------------------------------- distillation
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

    def distributions(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, B-1): row i is ``softmax_j(-d(i, j) / tau)`` over the candidates ``j != i`` in
        their batch order (before any neighbour restriction) -- the ``p`` (teacher) or ``q``
        (student) that this loss compares."""
        return self._log_softmax(_off_diagonal(squared_distances(embeddings))).exp()

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


# ----------------------------------------------------------------------------- metric
def _label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive mask without the diagonal, negative mask), both (B, B) bool."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class TripletLoss(nn.Module):
    """Triplet loss with in-batch mining on Euclidean distances of normalised embeddings.

    * ``"batch_hard"`` (Hermans et al., 2017): per anchor, hardest positive and hardest
      negative, ``relu(d_ap - d_an + margin)``, mean over anchors.
    * ``"semi_hard"`` (Schroff et al., 2015; TF-addons ``triplet_semihard_loss`` convention):
      per anchor-positive pair, the closest negative with ``d_an > d_ap``; if none exists, the
      **largest** negative distance (the easiest negative, as TF-addons does). Mean of
      ``relu(d_ap - d_an + margin)`` over anchor-positive pairs.

    Anchors without a positive or a negative are skipped; with none left the loss is
    ``0 * embeddings.sum()`` (keeps the graph).
    """

    MININGS = ("batch_hard", "semi_hard")

    def __init__(self, margin: float = 0.1, mining: str = "batch_hard") -> None:
        super().__init__()
        self.margin = _check_real("margin", margin)
        if mining not in self.MININGS:
            raise ValueError(f"mining must be one of {list(self.MININGS)}, got {mining!r}")
        self.mining = mining

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_metric(embeddings, labels)
        d = squared_distances(embeddings).clamp_min(_EPS).sqrt()
        pos, neg = _label_masks(labels)
        valid = pos.any(1) & neg.any(1)
        if not valid.any():
            return 0.0 * embeddings.sum()
        if self.mining == "batch_hard":
            d_ap = d.masked_fill(~pos, -math.inf).amax(1)
            d_an = d.masked_fill(~neg, math.inf).amin(1)
            return F.relu(d_ap - d_an + self.margin)[valid].mean()
        # semi-hard: pairs[a, p, n] -- negative n is farther from a than positive p.
        d_ap = d.unsqueeze(2)
        d_an = d.unsqueeze(1)
        farther = neg.unsqueeze(1) & (d_an > d_ap)
        outside = d_an.expand_as(farther).masked_fill(~farther, math.inf).amin(2)
        inside = d.masked_fill(~neg, -math.inf).amax(1, keepdim=True).expand_as(outside)
        chosen = torch.where(farther.any(2), outside, inside)
        pairs = pos & valid.unsqueeze(1)
        return F.relu(d - chosen + self.margin)[pairs].mean()


class MultiSimilarityLoss(nn.Module):
    """Multi-similarity loss with its pair mining (Wang et al., 2019).

    On cosine similarities ``S``, per anchor: keep negatives with ``S > min_pos S - margin`` and
    positives with ``S < max_neg S + margin`` (mined against the unmined sets); the loss is
    ``1/alpha log(1 + sum_pos exp(-alpha (S - base))) + 1/beta log(1 + sum_neg exp(beta (S -
    base)))``. Anchors with an empty mined set contribute 0; the sum is divided by the batch
    size (as in the authors' code). Self-pairs are excluded by index.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 margin: float = 0.1) -> None:
        super().__init__()
        self.alpha = _check_positive("alpha", alpha)
        self.beta = _check_positive("beta", beta)
        self.base, self.margin = _check_real("base", base), _check_real("margin", margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_metric(embeddings, labels)
        x = F.normalize(embeddings, dim=1)
        sim = x @ x.t()
        pos, neg = _label_masks(labels)
        with torch.no_grad():
            min_pos = sim.masked_fill(~pos, math.inf).amin(1, keepdim=True)
            max_neg = sim.masked_fill(~neg, -math.inf).amax(1, keepdim=True)
        pos_m = pos & (sim < max_neg + self.margin)
        neg_m = neg & (sim > min_pos - self.margin)
        keep = pos_m.any(1) & neg_m.any(1)
        pos_loss = _log1p_sum_exp(-self.alpha * (sim - self.base), pos_m, 1) / self.alpha
        neg_loss = _log1p_sum_exp(self.beta * (sim - self.base), neg_m, 1) / self.beta
        return torch.where(keep, pos_loss + neg_loss, torch.zeros_like(pos_loss)).mean()


class BinomialDevianceLoss(nn.Module):
    """Binomial deviance loss (Yi et al., 2014, as a baseline in Wang et al., 2019).

    On cosine similarities ``S`` (self-pairs excluded), Yi et al.'s form with ``M = 1`` for
    positives and ``M = -cost`` for negatives: ``log(1 + exp(-alpha M (S - beta)))``, i.e.
    positives ``softplus(-alpha (S - beta))`` and negatives ``softplus(cost * alpha (S -
    beta))``. Each pair type is averaged over all its pairs in the batch and the two means are
    summed (Yi et al.'s weights ``1/n_pos`` and ``1/n_neg``); an absent type contributes 0.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 0.5, cost: float = 25.0) -> None:
        super().__init__()
        self.alpha = _check_positive("alpha", alpha)
        self.beta = _check_real("beta", beta)
        self.cost = _check_positive("cost", cost)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_metric(embeddings, labels)
        x = F.normalize(embeddings, dim=1)
        sim = x @ x.t()
        pos, neg = _label_masks(labels)
        loss = 0.0 * embeddings.sum()
        if pos.any():
            loss = loss + F.softplus(-self.alpha * (sim[pos] - self.beta)).mean()
        if neg.any():
            loss = loss + F.softplus(self.cost * self.alpha * (sim[neg] - self.beta)).mean()
        return loss


SBD_FORMS = ("weights", "targets")


class SoftBinomialDevianceLoss(BinomialDevianceLoss):
    """SGML's soft-binomial deviance (Manandhar et al., 2020) -- **our reconstruction**: the
    paper's full text could not be obtained, so the formula below is built from its abstract and
    every choice is a parameter.

    ``g_ij = cos(a_i, a_j)`` is the granularity similarity of two items' attribute probabilities
    (``attribute_probs`` (B, A) in [0, 1], so ``g`` is in [0, 1]; an all-zero row has ``g = 0``
    with everything). It is computed with the gradient stopped: the attributes grade the pairs,
    they are not trained through this loss. On binomial deviance's terms (see the base class)
    ``P_ij = softplus(-alpha (S_ij - beta))`` for positive and ``N_ij = softplus(cost alpha
    (S_ij - beta_ij))`` for negative pairs:

    * ``form="weights"`` (form A): positives weighted ``1 + weight (1 - g_ij)``, negatives
      ``1 + weight g_ij``, each pair type normalised by its weight sum; ``beta_ij = beta``.
      Informative pairs (positives that look different, negatives that share attributes)
      count more. ``weight=0`` is binomial deviance exactly.
    * ``form="targets"`` (form B): every pair weighted 1; a negative pair's target similarity
      rises with its attributes' similarity, ``beta_ij = beta + gamma g_ij``, so negatives
      that share attributes sit at an intermediate distance instead of being pushed away like
      unrelated ones (``weight`` is not used). ``gamma=0`` is binomial deviance.
    """

    takes_attributes = True  # the objective passes the batch's attribute probabilities

    def __init__(self, alpha: float = 2.0, beta: float = 0.5, cost: float = 25.0,
                 weight: float = 1.0, form: str = "weights", gamma: float = 0.0) -> None:
        super().__init__(alpha, beta, cost)
        if form not in SBD_FORMS:
            raise ValueError(f"form must be one of {', '.join(SBD_FORMS)}, got {form!r}")
        self.weight = _check_real("weight", weight)
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.gamma = _check_real("gamma", gamma)
        self.form = form

    @staticmethod
    def granularity(attribute_probs: torch.Tensor) -> torch.Tensor:
        """(B, B) ``g_ij = cos(a_i, a_j)`` of detached attribute probabilities."""
        a = F.normalize(attribute_probs.detach().float(), dim=1)
        return (a @ a.t()).clamp(0.0, 1.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                attribute_probs: torch.Tensor | None = None) -> torch.Tensor:
        _check_metric(embeddings, labels)
        if attribute_probs is None:
            raise ValueError("soft_binomial_deviance needs the batch's attribute probabilities "
                             "(loss(embeddings, labels, attribute_probs)); train it with the "
                             "attribute-multitask objective (ue_lib.objectives.AttributeMultitask)")
        if attribute_probs.ndim != 2 or len(attribute_probs) != len(embeddings):
            raise ValueError(f"attribute_probs must be (B, A) with B = {len(embeddings)}, got "
                             f"{tuple(attribute_probs.shape)}")
        x = F.normalize(embeddings, dim=1)
        sim = x @ x.t()
        g = self.granularity(attribute_probs)
        pos, neg = _label_masks(labels)
        if self.form == "weights":
            w_pos, w_neg = 1 + self.weight * (1 - g), 1 + self.weight * g
            beta_neg = self.beta
        else:
            w_pos = w_neg = torch.ones_like(g)
            beta_neg = self.beta + self.gamma * g[neg]
        loss = 0.0 * embeddings.sum()
        if pos.any():
            terms = F.softplus(-self.alpha * (sim[pos] - self.beta))
            loss = loss + (w_pos[pos] * terms).sum() / w_pos[pos].sum()
        if neg.any():
            terms = F.softplus(self.cost * self.alpha * (sim[neg] - beta_neg))
            loss = loss + (w_neg[neg] * terms).sum() / w_neg[neg].sum()
        return loss


class ProxyAnchorLoss(nn.Module):
    """Proxy-anchor loss (Kim et al., 2020) with learnable class proxies.

    With cosine similarities ``s(x, p)`` between normalised embeddings and proxies:
    ``1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s - margin)))
    + 1/|P| sum_p log(1 + sum_{x in X_p-} exp(alpha (s + margin)))``, where ``P+`` are the
    proxies with a positive in the batch. Proxies (``num_classes x embedding_dim``) are
    initialised with Kaiming-normal (``mode="fan_out"``, as the authors) from a generator
    seeded by ``seed``; they are parameters of this loss and must go into the optimiser.
    """

    def __init__(self, num_classes: int, embedding_dim: int, margin: float = 0.1,
                 alpha: float = 32.0, seed: int = 0) -> None:
        super().__init__()
        for name, v in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        self.margin, self.alpha = _check_real("margin", margin), _check_positive("alpha", alpha)
        g = torch.Generator().manual_seed(seed)
        proxies = torch.empty(num_classes, embedding_dim)
        nn.init.kaiming_normal_(proxies, mode="fan_out", generator=g)
        self.proxies = nn.Parameter(proxies)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_metric(embeddings, labels)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"expected embedding dim {self.embedding_dim}, "
                             f"got {embeddings.shape[1]}")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise ValueError(f"label {int(bad[0])} out of range [0, {self.num_classes})")
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.proxies, dim=1).t()  # (B, C)
        pos = F.one_hot(labels.long(), self.num_classes).bool()
        pos_term = _log1p_sum_exp(-self.alpha * (cos - self.margin), pos, 0)  # (C,)
        neg_term = _log1p_sum_exp(self.alpha * (cos + self.margin), ~pos, 0)
        with_pos = pos.any(0)
        return pos_term[with_pos].sum() / with_pos.sum() + neg_term.sum() / self.num_classes


# ----------------------------------------------------------------------------- registries
DISTILLATION_LOSSES: dict[str, type[nn.Module]] = {
    "kl": DistributionDistillationLoss,
    "distance_mse": DistanceDistillationLoss,
    "embedding_mse": EmbeddingDistillationLoss,
    "rkd_distance": RKDDistanceLoss,
    "rkd_angle": RKDAngleLoss,
    "darkrank": DarkRankLoss,
}

METRIC_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "triplet_batch_hard": functools.partial(TripletLoss, mining="batch_hard"),
    "triplet_semi_hard": functools.partial(TripletLoss, mining="semi_hard"),
    "multi_similarity": MultiSimilarityLoss,
    "binomial_deviance": BinomialDevianceLoss,
    "soft_binomial_deviance": SoftBinomialDevianceLoss,  # SGML; needs attribute probabilities
    "proxy_anchor": ProxyAnchorLoss,
    "opqn": OPQNLoss,  # class prototypes per subspace + a quantizer: ue_lib.quantize
}

_PROXY_LOSSES = frozenset({"proxy_anchor", "opqn"})


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
        return EmbeddingDistillationLoss(student_dim=student_dim, teacher_dim=teacher_dim,
                                         **kwargs)
    return DISTILLATION_LOSSES[name](**kwargs)


# Arguments the training loop supplies itself (from the model and the data), not settings.
SUPPLIED = frozenset({"student_dim", "teacher_dim", "num_classes", "embedding_dim", "seed"})


def loss_defaults() -> dict[str, dict[str, Any]]:
    """Every loss's settable parameters and their defaults, read from the constructors:
    ``{"kl": {"temperature": 0.05, "neighbors": None, "direction": "teacher_student"}, …}``.
    This is where a profile's `loss_params` get their defaults."""
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
                # a loss whose parameters constrain the embedding (OPQN's subspaces) says which fits
                dim = getattr(METRIC_LOSSES[name], "valid_dim", lambda **_: 2)(**values)
                make_metric_loss(name, num_classes=2, embedding_dim=dim, **values)
            else:
                make_distillation_loss(name, **values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"settings of loss {name!r}: {exc}") from exc
