"""Worked examples on a handful of hand-placed points: the numbers behind the explanations in the
notebooks, computed with the same functions the experiments use (`evaluate.per_query_metrics`,
`losses.DistributionDistillationLoss`). `ue_lib.universal.figures.kl_example_figure` draws the kl
example.

Points are unit vectors in 2-D given by their angle in degrees: the evaluation and the losses
L2-normalise embeddings, so only directions matter, and the squared distance of two unit vectors
at an angle θ is 2 - 2 cos θ (0 for the same direction, 4 for opposite ones).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.special import rel_entr

from ..evaluate import per_query_metrics
from ..losses import DistributionDistillationLoss, loss_defaults

# metric_example: (angle in degrees, class) of each item
METRIC_POINTS = ((0, "A"), (20, "A"), (90, "A"), (110, "B"), (150, "B"), (350, "C"))

# kl_shift_scale_example: teacher A's squared distances from one anchor to its four candidates,
# nearest first. Round binary fractions, so that adding the shift is exact in floating point; they
# are the squared distances 2 - 2 cos θ of unit vectors at about 20°, 25°, 29° and 36° from the anchor.
KL_DISTANCES = (0.125, 0.1875, 0.25, 0.375)
KL_SHIFT = 0.25  # case "shift": d_B = d_A + KL_SHIFT
KL_SCALE = 2.0   # case "scale": d_B = KL_SCALE × d_A


def _unit(angles) -> np.ndarray:
    """(N, 2) unit vectors at `angles` (degrees)."""
    a = np.deg2rad(np.asarray(angles, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _plain(x: float) -> str:
    """`x` as written by hand, never in scientific notation: 0.25, 2, 0.0001."""
    return np.format_float_positional(float(x), trim="-")


def metric_example() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Six items on the unit circle (`METRIC_POINTS`: three of class A, two of B, one of C) and
    their leave-one-out retrieval metrics, computed by `evaluate.per_query_metrics`. Each query
    ranks the other five items by cosine similarity (nearest angle first); with ``R`` the number
    of other items of its class:

    * recall@K: 1 if any of the first K neighbours has the query's class, else 0;
    * MAP@R: the mean, over the first R positions holding a same-class item, of the precision
      up to that position, divided by R (1 only when the R same-class items come first);
    * MMP@5: the share of same-class items among the first min(5, R) neighbours;
    * a query whose class has no other item (R = 0, here the C item) is left out (NaN).

    Returns (items: item, label, angle, x, y; queries: query, label, neighbours (the ranked
    neighbours' classes, e.g. 'C A A B B'), R, recall@1, recall@2, map@r, mmp@5).
    """
    angles = np.array([a for a, _ in METRIC_POINTS])
    labels = np.array([c for _, c in METRIC_POINTS])
    xy = _unit(angles)
    metrics, _ = per_query_metrics(xy, labels, ks=(1, 2))
    sims = xy @ xy.T
    np.fill_diagonal(sims, -np.inf)  # the query itself sorts last and is dropped
    ranked = np.argsort(-sims, axis=1, kind="stable")[:, :-1]
    items = pd.DataFrame({"item": range(len(xy)), "label": labels, "angle": angles,
                          "x": xy[:, 0].round(4), "y": xy[:, 1].round(4)})
    queries = pd.DataFrame({"query": range(len(xy)), "label": labels,
                            "neighbours": [" ".join(labels[r]) for r in ranked],
                            "R": (labels[:, None] == labels[None, :]).sum(1) - 1, **metrics})
    return items, queries


def kl_shift_scale_example(temperature: float | None = None, shift: float = KL_SHIFT,
                           scale: float = KL_SCALE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the kl loss ignores and what it does not, on one anchor's distances.

    Teacher A's squared distances from an anchor to its candidates are `KL_DISTANCES` (d_A).
    Two other sets of distances B keep A's order of candidates and are treated as a student's:

    * case "shift", d_B = d_A + `shift`: every candidate moved the same amount farther away.
      softmax(-d / τ) does not change when a constant is added to every d (the constant
      multiplies every exp(-d / τ) by the same factor, which the normalisation cancels), so
      p_B = p_A and KL(p_A ‖ p_B) = 0, while distance-MSE = mean (d_B - d_A)² = shift² > 0;
    * case "scale", d_B = `scale` × d_A: the gaps between the distances grow too, so (for a
      scale above 1) p_B is sharper than p_A -- a scale acts like dividing τ by it -- and both
      losses are above 0.

    With the defaults, the two cases have almost the same distance-MSE (0.0625 and 0.0635) but
    only the scale changes the distribution. The distributions are `distribution_of` of
    `DistributionDistillationLoss`, as in training, at `temperature` (default: the library's kl
    default). The example works on one anchor's row of distances: that row, shifted, is still
    the distances of unit vectors to the anchor (candidates at larger angles) while it stays
    within [0, 4]; a whole batch's distance matrix shifted by a constant in general is not
    (the candidates' distances among themselves constrain one another).

    Returns (candidates: one row per case and candidate, nearest first: case, candidate,
    angle_A (degrees between the anchor and the candidate under A), d_A, d_B, p_A, p_B;
    losses: one row per case: case, change (how d_B is made), kl = KL(p_A ‖ p_B) = Σ p_A log(p_A / p_B) in
    nats, total_variation = ½ Σ |p_A - p_B|, distance_mse = mean (d_B - d_A)², temperature).
    """
    tau = loss_defaults()["kl"]["temperature"] if temperature is None else temperature
    loss = DistributionDistillationLoss(temperature=tau)

    def softmax(d: np.ndarray) -> np.ndarray:
        return loss.distribution_of(torch.from_numpy(d)).numpy()

    d_a = np.array(KL_DISTANCES, dtype=float)
    p_a = softmax(d_a)
    cases = {"shift": (f"d_B = d_A + {_plain(shift)}", d_a + shift),
             "scale": (f"d_B = {_plain(scale)} × d_A", scale * d_a)}
    candidates, losses = [], []
    for case, (rule, d_b) in cases.items():
        p_b = softmax(d_b)
        candidates.append(pd.DataFrame({
            "case": case, "candidate": np.arange(1, len(d_a) + 1),
            "angle_A": np.degrees(np.arccos(1 - d_a / 2)), "d_A": d_a, "d_B": d_b, "p_A": p_a, "p_B": p_b}))
        losses.append({"case": case, "change": rule, "kl": rel_entr(p_a, p_b).sum(),
                       "total_variation": 0.5 * np.abs(p_a - p_b).sum(),
                       "distance_mse": np.mean((d_b - d_a) ** 2), "temperature": tau})
    return pd.concat(candidates, ignore_index=True), pd.DataFrame(losses)
