"""How much of a teacher's geometry a student keeps, measured on the same test images: Spearman's
rank correlation of their distances over all pairs (the whole order) and the overlap of their k
nearest neighbours (the part that retrieval uses). At a small temperature the kl loss's softmax
puts almost all of an anchor's mass on its nearest candidates, so it constrains mainly the
nearest neighbours; these numbers say how much of each a student actually kept.

Distances are the ones the distillation losses compare (`losses.squared_distances`): squared
Euclidean distances of L2-normalised embeddings, in [0, 4]. `ue_lib.universal.figures` draws
them (`teacher_distance_histograms`, `distance_scatter`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from ..data import Domain
from ..evaluate import embed, model_inputs
from ..losses import squared_distances
from ..verdicts import num


def sample_items(split, max_items: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of at most `max_items` items of `split`."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(split), min(max_items, len(split)), replace=False))


def distance_matrix(model: torch.nn.Module, split, idx) -> np.ndarray:
    """(n, n) squared Euclidean distances between the L2-normalised embeddings by `model` of the
    items `idx` of `split` (`losses.squared_distances`: diagonal exactly 0). Embeds what the model
    takes (`evaluate.model_inputs`: cached trunk features or images)."""
    emb = torch.from_numpy(embed(model, model_inputs(model, split)[idx]))
    return squared_distances(emb).numpy()


def pairwise_distances(model: torch.nn.Module, split, idx) -> np.ndarray:
    """The `distance_matrix` entries of the pairs i < j (in `np.triu_indices` order)."""
    return distance_matrix(model, split, idx)[np.triu_indices(len(idx), k=1)]


def teacher_distances(teachers: dict[str, torch.nn.Module], domains: dict[str, Domain],
                      split: str = "test", max_items: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Per domain, its teacher's `pairwise_distances` on a seeded sample of at most `max_items`
    items of `split`: what `figures.teacher_distance_histograms` draws and
    `departures.distance_scales` summarises, from the same sample."""
    return {name: pairwise_distances(teachers[name], d.splits[split],
                                     sample_items(d.splits[split], max_items, seed))
            for name, d in domains.items()}


def nearest(d: np.ndarray, k: int) -> np.ndarray:
    """(n, k): for each item (row of the square distance matrix `d`), its k nearest other items,
    nearest first; the item itself is left out and ties go to the lower index. ValueError unless
    1 <= k <= n - 1."""
    n = len(d)
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and {n - 1} (the other items), got {k}")
    d = np.array(d, dtype=float)
    np.fill_diagonal(d, np.inf)  # the query sorts last, even when a duplicate is at distance 0
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def topk_overlap(d_teacher: np.ndarray, d_student: np.ndarray, k: int) -> float:
    """Mean over the items of |teacher's k nearest ∩ student's k nearest| / k (`nearest`, on the
    two square distance matrices of the same items): 1 when the student keeps every item's k
    nearest neighbours (in any order), 0 when it keeps none."""
    if np.shape(d_teacher) != np.shape(d_student):
        raise ValueError(f"distance matrices of different shapes: {np.shape(d_teacher)} and "
                         f"{np.shape(d_student)}")
    t, s = nearest(d_teacher, k), nearest(d_student, k)
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(t, s)]))


def order_correlation(d_teacher: np.ndarray, d_student: np.ndarray) -> float:
    """Spearman's rank correlation of the two square distance matrices' pairs i < j (NaN for
    fewer than two pairs)."""
    pairs = np.triu_indices(len(d_teacher), k=1)
    if len(pairs[0]) < 2:
        return float("nan")
    return float(spearmanr(d_teacher[pairs], d_student[pairs]).statistic)


def neighbour_agreement(teachers: dict[str, torch.nn.Module], students: dict[str, torch.nn.Module],
                        domains: dict[str, Domain], ks=(1, 5, 10), split: str = "test",
                        max_items: int = 400, seed: int = 0) -> pd.DataFrame:
    """How much of each domain's teacher each student keeps, on a seeded sample of at most
    `max_items` items of the domain's `split` (the same sample for the teacher and every
    student). One row per domain and student: domain, method (the key of `students`), items,
    spearman (`order_correlation`: the order of all pairs' distances) and top{k} for each k of
    `ks` (`topk_overlap`: the share of the teacher's k nearest neighbours of an item that are
    among the student's k nearest, mean over the sampled items)."""
    rows = []
    for name, domain in domains.items():
        s = domain.splits[split]
        idx = sample_items(s, max_items, seed)
        d_t = distance_matrix(teachers[name], s, idx)
        for method, student in students.items():
            d_s = distance_matrix(student, s, idx)
            rows.append({"domain": name, "method": method, "items": len(idx),
                         "spearman": order_correlation(d_t, d_s),
                         **{f"top{k}": topk_overlap(d_t, d_s, k) for k in ks}})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the sentence

def _top_columns(table: pd.DataFrame) -> list[str]:
    """The table's top-k columns, smallest k first."""
    return sorted((c for c in table.columns if c.startswith("top") and c[3:].isdigit()),
                  key=lambda c: int(c[3:]))


def _sign(a: float, b: float) -> int:
    """1, -1 or 0 as `a` is above, below or equal to `b` at the 3 decimals shown."""
    a, b = round(float(a), 3), round(float(b), 3)
    return int(a > b) - int(a < b)


def _join(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _overlaps(means: pd.DataFrame, ref: str, other: str, cols: list[str]) -> str:
    """'top-1 overlap 0.410 vs 0.330, top-10 0.500 vs 0.470'."""
    return ", ".join(f"top-{c[3:]}{' overlap' if i == 0 else ''} {num(means.at[ref, c])} vs "
                     f"{num(means.at[other, c])}" for i, c in enumerate(cols))


def _neighbour_clause(means: pd.DataFrame, ref: str, other: str, tops: list[str], order: int) -> str:
    """The end of the sentence comparing `ref` with `other` on the top-k overlaps, after the
    clause on the order (whose direction is `order`): ', but more of its nearest neighbours
    (top-1 overlap 0.410 vs 0.330, …).' when every k goes one way; otherwise a second sentence
    with one clause per direction, '. Of the teacher's nearest neighbours it keeps more at top-1
    (overlap 0.410 vs 0.330) and fewer at top-5 and top-10 (…).'"""
    groups: dict[int, list[str]] = {}
    for c in tops:
        groups.setdefault(_sign(means.at[ref, c], means.at[other, c]), []).append(c)
    word = {1: "more", -1: "fewer", 0: "as many"}
    if len(groups) == 1:
        sign = next(iter(groups))
        conj = " and" if sign == order else ", but"
        return f"{conj} {word[sign]} of its nearest neighbours ({_overlaps(means, ref, other, tops)})."
    parts = [f"{word[sign]} at {_join([f'top-{c[3:]}' for c in cols])} (overlap "
             + ", ".join(f"{num(means.at[ref, c])} vs {num(means.at[other, c])}" for c in cols) + ")"
             for sign, cols in groups.items()]
    return f". Of the teacher's nearest neighbours it keeps {_join(parts)}."


def agreement_sentence(table: pd.DataFrame, reference: str = "kl") -> str:
    """Markdown, computed from a `neighbour_agreement` table: each student's mean over the
    domains of Spearman ρ and of every top-k overlap, then, for `reference` (the paper's kl
    student; the first student when it is absent) against each other student, whether it keeps
    more or less of the teacher's order over all pairs and of its nearest neighbours -- each
    direction as the means (at the 3 decimals shown) have it."""
    tops = _top_columns(table)
    means = table.groupby("method", sort=False)[["spearman", *tops]].mean()
    n = table.domain.nunique()
    lines = [f"Mean over {n} domain{'s' if n != 1 else ''} of the agreement with the teacher "
             f"(Spearman ρ: the order of all pairs' distances; top-k: the share of the teacher's "
             f"k nearest neighbours of an image that the student also puts among its k nearest):", ""]
    for method, m in means.iterrows():
        lines.append(f"* `{method}`: " + ", ".join([f"ρ {num(m.spearman)}",
                                                    *(f"top-{c[3:]} {num(m[c])}" for c in tops)]))
    ref = reference if reference in means.index else means.index[0]
    for other in (m for m in means.index if m != ref):
        order = _sign(means.at[ref, "spearman"], means.at[other, "spearman"])
        word, than = {1: ("more", "than"), -1: ("less", "than"), 0: ("as much", "as")}[order]
        sentence = (f"`{ref}` keeps {word} of the teacher's order over all pairs {than} `{other}` "
                    f"(mean ρ {num(means.at[ref, 'spearman'])} vs {num(means.at[other, 'spearman'])})")
        lines += ["", sentence + (_neighbour_clause(means, ref, other, tops, order) if tops else ".")]
    return "\n".join(lines)
