"""Metric losses on class labels, called as ``loss(embeddings, labels)``: triplet (Schroff et al.,
2015; Hermans et al., 2017), multi-similarity (Wang et al., 2019) and proxy-anchor (Kim et al.,
2020). Embeddings are L2-normalised inside every loss. The binomial-deviance family is in
:mod:`ue_lib.losses.deviance`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    _EPS,
    _check_metric,
    _check_positive,
    _check_real,
    _label_masks,
    _log1p_sum_exp,
    squared_distances,
)


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
