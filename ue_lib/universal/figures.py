"""The main paper's figures: the method in one picture, the worked KL example, the teachers'
distance distributions and teacher-vs-student distances (notebook 03), a retrieval gallery and a
projection of a model's embeddings; at the end, what compares models on the same items (the
projections side by side, a gallery of one index holding every domain) and the kl softmax of one
anchor at several temperatures. Each returns its Figure; the generic figures are in
`ue_lib.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import MaxNLocator
from scipy.stats import spearmanr

from .. import figures
from ..data import Domain
from ..evaluate import combined_labels, embed, model_inputs, nearest_neighbours
from ..palette import OKABE_ITO, domain_color, fixed, model_color
from . import temperature
from .neighbours import pairwise_distances, sample_items


def gallery(model: torch.nn.Module, domain: Domain, n_queries: int = 5, top: int = 5, seed: int = 0,
            title: str = ""):
    """`ue_lib.figures.retrieval_gallery` of `model`'s embeddings of `domain`'s test split."""
    split = domain.test
    return figures.retrieval_gallery(split, embed(model, model_inputs(model, split)), n_queries,
                                     top, seed, title or f"{domain.name}: top-{top} neighbours")


def projection(model: torch.nn.Module, domains: dict[str, Domain], per_domain: int = 300,
               seed: int = 0, title: str = ""):
    """`ue_lib.figures.projection` of `model`'s embeddings of a seeded sample of at most
    `per_domain` test images of every domain (`_test_sample`; for several models side by side,
    `projections`)."""
    idx = _test_sample(domains, per_domain, seed)
    return figures.projection({name: embed(model, model_inputs(model, d.test)[idx[name]])
                               for name, d in domains.items()}, title)


# ----------------------------------------------------------------------------- distances (notebook 03)

def teacher_distance_histograms(dist: dict[str, np.ndarray]):
    """Per domain (one panel each, shared x axis), the histogram of its teacher's pairwise
    squared distances between L2-normalised embeddings (`neighbours.teacher_distances`), with
    the median marked and written: different teachers use different parts of the [0, 4]
    range, which is what absolute-distance distillation asks one student to reproduce at once."""
    bins = np.linspace(0, max(max(v.max(initial=0) for v in dist.values()), 1e-6), 61)
    fig, axes = plt.subplots(len(dist), 1, sharex=True, squeeze=False,
                             figsize=(7, 0.6 + 1.3 * len(dist)))
    for ax, (name, v) in zip(axes[:, 0], dist.items()):
        color, median = domain_color(name), float(np.median(v))
        ax.hist(v, bins=bins, density=True, color=color, alpha=0.85)
        ax.axvline(median, color="black", linestyle="--", linewidth=1)
        ax.set_ylabel("density", fontsize=8)
        ax.set_title(f"{name}: median {fixed(median, 2)} ({len(v)} pairs)", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("teacher's squared distance between L2-normalised embeddings\n"
                           "(0 = same direction, 2 = orthogonal, 4 = opposite)", fontsize=9)
    fig.tight_layout()
    return fig


def distance_scatter(teachers: dict[str, torch.nn.Module], students: dict[str, torch.nn.Module],
                     domains: dict[str, Domain], split: str = "test", max_items: int = 200,
                     seed: int = 0):
    """Rows: students (keyed by distillation method, coloured as 'distill:<method>'); columns:
    domains. Each panel: for every pair of a seeded sample of at most `max_items` items of
    `split`, the teacher's squared distance (x) against the student's (y), the line y = x, and
    Spearman's rank correlation ρ. A student that keeps the teacher's order of distances but
    not their scale has ρ near 1 with points away from y = x (as the kl loss allows)."""
    fig, axes = plt.subplots(len(students), len(domains), squeeze=False,
                             figsize=(0.5 + 2.8 * len(domains), 0.4 + 2.6 * len(students)))
    for col, (name, d) in enumerate(domains.items()):
        s = d.splits[split]
        idx = sample_items(s, max_items, seed)
        d_t = pairwise_distances(teachers[name], s, idx)
        for row, (method, student) in enumerate(students.items()):
            ax, d_s = axes[row, col], pairwise_distances(student, s, idx)
            ax.scatter(d_t, d_s, s=3, alpha=0.3, linewidths=0, rasterized=True,
                       color=model_color(f"distill:{method}"))
            top = max(d_t.max(initial=0), d_s.max(initial=0))
            ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1)
            rho = spearmanr(d_t, d_s).statistic if len(d_t) > 1 else np.nan
            ax.text(0.04, 0.96, f"ρ = {fixed(rho, 2)}", transform=ax.transAxes, va="top", fontsize=9)
            ax.set_title(name if row == 0 else "", fontsize=9)
            ax.set_ylabel(f"{method}: student" if col == 0 else "", fontsize=8)
            ax.set_xlabel("teacher" if row == len(students) - 1 else "", fontsize=8)
    fig.suptitle(f"Squared distances of the same {split} pairs, teacher (x) vs student (y)\n"
                 "ρ: Spearman rank correlation; dotted: y = x", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the method

def _box(ax, x: float, y: float, w: float, h: float, text: str, color: str) -> None:
    """A rounded box centred at (x, y), edged in `color` and lightly filled with it."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04,rounding_size=0.12",
                                facecolor=to_rgba(color, 0.15), edgecolor=color, linewidth=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def _arrow(ax, start, end, color: str = "black", **style) -> None:
    """An arrow from `start` to `end`."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1.3, "shrinkA": 0,
                            "shrinkB": 0, **style})


def method_diagram():
    """The method in one picture. Left: each domain's batch goes to its own frozen specialist
    (teacher) and to the one universal student; the loss compares, for each anchor, the
    teacher's and the student's softmax distributions over distances, KL(p_T ‖ q_S), and only
    the student is updated. Right, for contrast: naive fusion, one network trained on all
    domains with a metric loss on the class labels."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 1]})
    for a in (ax, ax2):
        a.set_xlim(0, 10 if a is ax else 3.4)
        a.set_ylim(0, 6)
        a.axis("off")
    teacher, student, loss_at = model_color("teacher"), model_color("distill:kl"), (8.2, 2.4)
    for i, (name, y) in enumerate(zip("ABC", (5.0, 3.6, 2.2))):
        _box(ax, 1.1, y, 1.7, 0.9, f"domain {name}\nbatch", domain_color(f"domain {name}"))
        _box(ax, 4.3, y, 2.1, 0.9, f"teacher {name}\n(frozen specialist)", teacher)
        _arrow(ax, (1.95, y), (3.25, y))
        _arrow(ax, (5.35, y), (6.6, loss_at[1] + 0.3 - 0.3 * i), teacher)
    ax.plot([2.5, 2.5], [5.0, 0.7], color="grey", linewidth=1.3)
    ax.text(2.42, 1.45, "every batch", rotation=90, ha="right", va="center", fontsize=8, color="grey")
    _arrow(ax, (2.5, 0.7), (3.25, 0.7), "grey")
    _box(ax, 4.3, 0.7, 2.1, 0.9, "universal student\n(one network)", student)
    _arrow(ax, (5.35, 0.7), (6.6, loss_at[1] - 0.6), student)
    ax.text(6.05, 4.2, "p_T", color=teacher, fontsize=9)
    ax.text(5.8, 1.4, "q_S", color=student, fontsize=9, ha="right")
    _box(ax, *loss_at, 3.2, 1.7, "KL(p_T ‖ q_S)\nover each anchor's\ndistance distribution", student)
    _arrow(ax, (loss_at[0], loss_at[1] - 0.9), (5.4, 0.35), student, linestyle="--",
           connectionstyle="arc3,rad=-0.3")
    ax.text(8.4, 1.0, "gradient:\nstudent only", ha="left", va="center", fontsize=8, color=student)
    ax.set_title("Distillation: each teacher sees only its domain's batch", fontsize=10)
    naive = model_color("naive")
    _box(ax2, 1.7, 5.0, 2.6, 0.9, "all domains\n(A + B + C mixed)", "grey")
    _box(ax2, 1.7, 3.3, 2.6, 0.9, "one network\n(naive fusion)", naive)
    _box(ax2, 1.7, 1.6, 2.6, 0.9, "metric loss\n(class labels)", naive)
    _arrow(ax2, (1.7, 4.5), (1.7, 3.8))
    _arrow(ax2, (1.7, 2.8), (1.7, 2.1))
    ax2.set_title("Naive fusion (baseline)", fontsize=10)
    fig.tight_layout()
    return fig


def kl_example_figure(candidates: pd.DataFrame, losses: pd.DataFrame):
    """Two panels of `examples.kl_shift_scale_example` (its two tables): left, teacher A's
    distances from the anchor to each candidate (solid, in the teacher's colour) and the two
    other sets B, A + a shift and A × a scale (dashed) -- what distance-MSE compares; right,
    their softmax distributions as bars -- what the kl loss compares: the shift's bars are A's,
    the scale's are not. Each B is labelled with its change and both losses."""
    fig, (ax_d, ax_p) = plt.subplots(1, 2, figsize=(11, 3.9))
    a = candidates[candidates.case == candidates.case.iloc[0]]
    x, width = a.candidate.to_numpy(), 0.8 / (1 + len(losses))
    teacher = model_color("teacher")
    ax_d.plot(x, a.d_A, marker="o", color=teacher, label="d_A (teacher A)")
    ax_p.bar(x - 0.4 + width / 2, a.p_A, width, color=teacher, label="p_A (teacher A)")
    colors, markers = (OKABE_ITO["orange"], OKABE_ITO["reddish purple"], OKABE_ITO["sky blue"]), "s^D"
    for k, row in enumerate(losses.itertuples()):
        g = candidates[candidates.case == row.case]
        color, marker = colors[k % len(colors)], markers[k % len(markers)]
        ax_d.plot(g.candidate, g.d_B, marker=marker, color=color, linestyle="--", label=row.change)
        losses_text = f"KL {fixed(row.kl, 3)}, distance-MSE {fixed(row.distance_mse, 4)}"
        ax_p.bar(x - 0.4 + (k + 1.5) * width, g.p_B, width, color=color,
                 label=f"p_B, {row.change}:\n{losses_text}")
    tau = fixed(losses.temperature.iloc[0], 2)
    ax_d.set(ylabel="squared distance d to the anchor", ylim=(0, None),
             title="distances (distance-MSE compares these)")
    ax_p.set(ylabel=f"softmax(−d / {tau})", ylim=(0, 1.05),
             title="distributions (kl compares these)")
    for ax, corner in ((ax_d, "upper left"), (ax_p, "upper right")):
        ax.set_xticks(x)
        ax.set_xlabel("candidate (nearest first)")
        ax.legend(fontsize=8, loc=corner)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ models side by side, temperatures

def _test_sample(domains: Mapping[str, Domain], per_domain: int, seed: int) -> dict[str, np.ndarray]:
    """Per domain, a seeded sample of at most `per_domain` test items (one generator drawing
    the domains in order)."""
    rng = np.random.default_rng(seed)
    return {name: rng.choice(len(d.test), min(per_domain, len(d.test)), replace=False)
            for name, d in domains.items()}


def projections(models: Mapping[str, torch.nn.Module], domains: Mapping[str, Domain],
                per_domain: int = 300, seed: int = 0, title: str = ""):
    """`ue_lib.figures.projections`: one PCA panel per model ({model label, e.g. 'naive' or
    'distill:kl': model}) of the L2-normalised embeddings of the same seeded sample of at most
    `per_domain` test images of every domain, on shared axes."""
    idx = _test_sample(domains, per_domain, seed)
    return figures.projections({label: {name: embed(model, model_inputs(model, d.test)[idx[name]])
                                        for name, d in domains.items()}
                                for label, model in models.items()}, title)


def _spread_queries(labels: np.ndarray, domain_ids: np.ndarray, n_queries: int, seed: int
                    ) -> np.ndarray:
    """`n_queries` items taken from the domains in turn (first, second, ..., first again), each
    a seeded random item whose class has another item in the index (so a hit is possible)."""
    rng = np.random.default_rng(seed)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    valid = counts[inverse.reshape(-1)] > 1
    turns = [rng.permutation(np.flatnonzero(valid & (domain_ids == d))) for d in np.unique(domain_ids)]
    order = [t[i] for i in range(max(map(len, turns), default=0)) for t in turns if i < len(t)]
    return np.asarray(order[:n_queries], dtype=np.int64)


def merged_gallery(models: Mapping[str, torch.nn.Module], domains: Mapping[str, Domain],
                   n_queries: int = 5, top: int = 5, seed: int = 0, title: str = ""):
    """Retrieval in ONE index of every domain's test images, as the merged evaluation does
    (`evaluate.merged_retrieval_metrics`): for each model ({model label: model}) a block of
    rows (`ue_lib.figures.neighbour_blocks`) with the same queries (seeded, taken from the
    domains in turn) and their top-`top` neighbours (`evaluate.nearest_neighbours`), a hit only
    when the neighbour has the query's class AND domain; each neighbour is titled with its
    domain, so a model that confuses domains shows other domains' names in its rows."""
    names, tests = list(domains), [d.test for d in domains.values()]
    labels, domain_ids = combined_labels({n: s.labels for n, s in zip(names, tests)})
    queries = _spread_queries(labels, domain_ids, n_queries, seed)
    ranked = {label: nearest_neighbours(np.concatenate([embed(m, model_inputs(m, s)) for s in tests]),
                                        top, queries)
              for label, m in models.items()}
    starts = np.cumsum([0] + [len(s) for s in tests])
    shown = np.unique(np.concatenate([queries, *(r.ravel() for r in ranked.values())]))
    images = {int(i): tests[domain_ids[i]].images[i - starts[domain_ids[i]]] for i in shown}
    return figures.neighbour_blocks(
        images, labels, np.asarray(names)[domain_ids], queries, ranked,
        title or f"The same {len(queries)} queries in one index of all {len(names)} domains' "
                 f"test images ({len(labels)}):\ntop-{top} neighbours per model")


def softmax_panel(model: torch.nn.Module, domain: Domain, temperatures=(0.02, 0.05, 0.2, 1.0),
                  p: int = 8, k: int = 4, seed: int = 0, split: str = "test", title: str = ""):
    """The kl loss's softmax(-d / τ) of one anchor at several temperatures, on a real batch
    (`temperature.anchor_batch`: P classes x K images of `domain`'s `split`, embedded by
    `model`). Left: the anchor's squared distances to the candidates, nearest first, those of
    the anchor's class in `HIT`. Right: each τ's distribution over the same candidates (the
    loss's own, `temperature.anchor_distributions`), labelled with the mass on the nearest 1
    and 5 (`temperature.softmax_mass`; `temperature.anchor_mass` gives the table), the
    anchor's class marked on the x axis."""
    emb, labels = temperature.anchor_batch(model, domain.splits[split], p, k, seed)
    table = temperature.anchor_distributions(emb, labels, temperatures)
    first = table[table.temperature == table.temperature.iloc[0]]
    five = min(5, len(first))
    mass = temperature.softmax_mass(first.distance, temperatures, (1, five)).set_index(["temperature", "k"])
    same = first.same_class.to_numpy()
    fig, (ax_d, ax_p) = plt.subplots(1, 2, figsize=(11, 3.9), gridspec_kw={"width_ratios": [1, 1.5]})
    colors = np.where(same, figures.HIT, OKABE_ITO["grey"])
    ax_d.scatter(first["rank"], first.distance, c=list(colors), s=22, zorder=3)
    ax_d.set(xlabel="candidate (nearest first)", ylabel="squared distance d to the anchor",
             ylim=(0, None), title=f"{domain.name}: one anchor, {len(first)} candidates")
    # temperatures in order of a sequential map (no green: that is HIT's)
    for tau, color in zip(temperatures, plt.get_cmap("plasma")(np.linspace(0.1, 0.75, len(temperatures)))):
        g = table[table.temperature == float(tau)]
        m1, m5 = (mass.loc[(float(tau), n), "mass"] for n in (1, five))
        ax_p.plot(g["rank"], g.p, color=color, marker="o", markersize=3, linewidth=1.5,
                  label=f"τ = {tau:g}: nearest 1 carries {fixed(m1, 2)}, nearest {five} {fixed(m5, 2)}")
    ax_p.plot(first["rank"][same], np.zeros(same.sum()), linestyle="none", marker="^", markersize=8,
              color=figures.HIT, transform=ax_p.get_xaxis_transform(), clip_on=False,
              label="candidate of the anchor's class")
    ax_p.set(xlabel="candidate (nearest first)", ylabel="softmax(−d / τ)", ylim=(0, None),
             title="what the kl loss matches, per temperature τ")
    ax_p.legend(fontsize=8, loc="upper right")
    for ax in (ax_d, ax_p):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title or "Temperature: how much of one anchor's distribution its nearest "
                          "candidates carry", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- when does kl help (05)

def conditions_figure(table: pd.DataFrame, metric: str = "recall@1"):
    """Notebook 05's controlled experiment (`verdicts.conditions_table`): one panel per factor,
    its levels along x, and for each competitor the gap kl - competitor (mean over domains,
    mean over seeds) with its t interval as a bar; above the zero line kl is ahead. The
    reference level (the run's own students) is marked on the axis."""
    factors = list(dict.fromkeys(table.factor))
    competitors = list(dict.fromkeys(table.competitor))
    fig, axes = plt.subplots(1, len(factors), figsize=(4.2 * len(factors), 3.6), sharey=True,
                             squeeze=False)
    width = 0.6 / max(len(competitors), 1)
    for ax, factor in zip(axes[0], factors):
        t = table[table.factor == factor]
        levels = list(dict.fromkeys(t.level))
        for j, comp in enumerate(competitors):
            c = t[t.competitor == comp].set_index("level").reindex(levels)
            x = np.arange(len(levels)) + (j - (len(competitors) - 1) / 2) * width
            color = model_color(f"distill:{comp}")
            ax.errorbar(x, c.gap, yerr=[c.gap - c.low, c.high - c.gap], fmt="o", color=color,
                        capsize=4, label=f"kl − {comp}")
        ax.axhline(0, color="black", linewidth=0.8)
        ref = t[t.reference].level.iloc[0] if t.reference.any() else None
        ax.set_xticks(range(len(levels)), [f"{lv}\n(the run's)" if lv == ref else lv for lv in levels])
        ax.set_title(factor)
    axes[0][0].set_ylabel(f"kl − competitor, test {metric}")
    axes[0][-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.suptitle("When does distribution distillation help? (bars: 95% t intervals over seeds)")
    fig.tight_layout()
    return fig
