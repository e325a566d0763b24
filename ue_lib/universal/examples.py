"""Worked examples on a handful of hand-placed points: the numbers behind the explanations in the
notebooks, computed with the same functions the experiments use (`evaluate.per_query_metrics`,
`losses.DistributionDistillationLoss`). `ue_lib.universal.figures.kl_example_figure` draws the kl example.

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
from ..losses import DistributionDistillationLoss, loss_defaults, squared_distances

# metric_example: (angle in degrees, class) of each item
METRIC_POINTS = ((0, "A"), (20, "A"), (90, "A"), (110, "B"), (150, "B"), (350, "C"))

# kl_worked_example: angles of the anchor's three candidates (the anchor is at 0°) under each
# domain's teacher, and under the student, which places both domains on one scale
KL_TEACHER_ANGLES = {"domain A": (25, 27, 45), "domain B": (44, 48, 80)}
KL_STUDENT_ANGLES = (35, 38, 62)


def _unit(angles) -> np.ndarray:
    """(N, 2) unit vectors at `angles` (degrees)."""
    a = np.deg2rad(np.asarray(angles, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


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


def kl_worked_example(temperature: float | None = None) -> pd.DataFrame:
    """The argument for distribution distillation on one anchor and its three candidates.

    Two domains' teachers (`KL_TEACHER_ANGLES`) rank the candidates the same way, but teacher B's
    squared distances are about 3x teacher A's. A student that puts both domains on one scale
    in between (`KL_STUDENT_ANGLES`, the same for both domains) has distances about 2x teacher
    A's and about 0.64x teacher B's: distance-MSE, which matches the distances themselves,
    penalises it on both domains and could only be satisfied by reproducing both scales. The kl
    targets p_T = softmax(-d_T / τ) (computed as in training, by
    `DistributionDistillationLoss.distributions`, at the default temperature unless one is
    given) are not scale-free -- at a fixed τ, larger distance gaps give a sharper softmax, so
    p_T of teacher B is more peaked than teacher A's -- but both put most of the mass on the
    same nearest candidate and almost none on the far one, in the same order; the student's
    q_S lies between them (see `kl_example_losses` for how close).

    Returns one row per domain and candidate (nearest first): domain, candidate, teacher_angle,
    teacher_distance, teacher_p, student_angle, student_distance, student_q, temperature.
    """
    tau = loss_defaults()["kl"]["temperature"] if temperature is None else temperature
    loss = DistributionDistillationLoss(temperature=tau)

    def anchor_row(angles) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and softmax distribution of the anchor (at 0°) to `angles`."""
        emb = torch.from_numpy(_unit((0, *angles)))  # float64
        return squared_distances(emb)[0, 1:].numpy(), loss.distributions(emb)[0].numpy()

    d_s, q_s = anchor_row(KL_STUDENT_ANGLES)
    rows = []
    for domain, angles in KL_TEACHER_ANGLES.items():
        d_t, p_t = anchor_row(angles)
        rows += [{"domain": domain, "candidate": j + 1, "teacher_angle": angles[j],
                  "teacher_distance": d_t[j], "teacher_p": p_t[j], "student_angle": KL_STUDENT_ANGLES[j],
                  "student_distance": d_s[j], "student_q": q_s[j], "temperature": tau}
                 for j in range(len(angles))]
    return pd.DataFrame(rows)


def kl_example_losses(table: pd.DataFrame) -> pd.DataFrame:
    """Per domain of a `kl_worked_example` table, how far the student is from the teacher for
    the anchor: `kl` = KL(p_T ‖ q_S) = Σ p_T log(p_T / q_S) in nats (the paper's loss
    for this anchor, 0 when q_S = p_T),
    `total_variation` = ½ Σ |p_T - q_S| (the probability mass q_S puts elsewhere than p_T),
    `distance_mse` = mean (d_S - d_T)² (distance-MSE's target) and `distance_ratio` = mean
    d_S / d_T (1 when the student reproduces the teacher's scale)."""
    p, q = table.teacher_p, table.student_q
    t = table.assign(kl=rel_entr(p, q), total_variation=0.5 * (p - q).abs(),
                     distance_mse=(table.student_distance - table.teacher_distance) ** 2,
                     distance_ratio=table.student_distance / table.teacher_distance)
    g = t.groupby("domain", sort=False)
    return pd.concat([g[["kl", "total_variation"]].sum(), g[["distance_mse", "distance_ratio"]].mean()],
                     axis=1).reset_index()
