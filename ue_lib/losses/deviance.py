"""The binomial-deviance family: binomial deviance (Yi et al., 2014) and SGML's soft-binomial
deviance (Manandhar, Bastan & Yap, 2020; *our reconstruction*, the full text could not be
obtained), which grades pairs by the similarity of their items' predicted attributes. Called as
``loss(embeddings, labels)``, the soft form as ``loss(embeddings, labels, attribute_probs)``
(by the attribute-multitask objective, `ue_lib.sgml.objectives.AttributeMultitask`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import _check_metric, _check_positive, _check_real, _label_masks


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
                             "attribute-multitask objective (ue_lib.sgml.objectives.AttributeMultitask)")
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
