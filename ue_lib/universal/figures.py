"""The main paper's figures: the method in one picture, the worked KL example, the teachers'
distance distributions and teacher-vs-student distances (notebook 03), a retrieval gallery and a
projection of a model's embeddings. Each returns its Figure; the generic figures are in
`ue_lib.figures`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyBboxPatch
from scipy.stats import spearmanr

from .. import figures
from ..data import Domain
from ..evaluate import embed, model_inputs
from ..losses import squared_distances
from ..palette import domain_color, fixed, model_color


def gallery(model: torch.nn.Module, domain: Domain, n_queries: int = 5, top: int = 5, seed: int = 0,
            title: str = ""):
    """`ue_lib.figures.retrieval_gallery` of `model`'s embeddings of `domain`'s test split."""
    split = domain.test
    return figures.retrieval_gallery(split, embed(model, model_inputs(model, split)), n_queries,
                                     top, seed, title or f"{domain.name}: top-{top} neighbours")


def projection(model: torch.nn.Module, domains: dict[str, Domain], per_domain: int = 300,
               seed: int = 0, title: str = ""):
    """`ue_lib.figures.projection` of `model`'s embeddings of a seeded sample of at most
    `per_domain` test images of every domain."""
    rng = np.random.default_rng(seed)
    points = {}
    for name, d in domains.items():
        idx = rng.choice(len(d.test), min(per_domain, len(d.test)), replace=False)
        points[name] = embed(model, model_inputs(model, d.test)[idx])
    return figures.projection(points, title)


# ----------------------------------------------------------------------------- distances (notebook 03)

def _sample(split, max_items: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of at most `max_items` items of `split`."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(split), min(max_items, len(split)), replace=False))


def pairwise_distances(model: torch.nn.Module, split, idx) -> np.ndarray:
    """Squared Euclidean distances between the L2-normalised embeddings by `model` of the items
    `idx` of `split`, one per pair i < j (in `np.triu_indices` order): the distances the
    distillation losses compare (`losses.squared_distances`), in [0, 4]. Embeds what the model
    takes (`evaluate.model_inputs`: cached trunk features or images)."""
    emb = torch.from_numpy(embed(model, model_inputs(model, split)[idx]))
    return squared_distances(emb).numpy()[np.triu_indices(len(idx), k=1)]


def teacher_distance_histograms(teachers: dict[str, torch.nn.Module], domains: dict[str, Domain],
                                split: str = "test", max_items: int = 400, seed: int = 0):
    """Per domain (one panel each, shared x axis), the histogram of its teacher's pairwise
    squared distances between the L2-normalised embeddings of a seeded sample of at most
    `max_items` items of `split`, with the median marked and written: different teachers use
    different parts of the [0, 4] range, which is what absolute-distance distillation asks one
    student to reproduce at once."""
    dist = {}
    for name, d in domains.items():
        s = d.splits[split]
        dist[name] = pairwise_distances(teachers[name], s, _sample(s, max_items, seed))
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
        idx = _sample(s, max_items, seed)
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


def kl_example_figure(table: pd.DataFrame):
    """Two panels of `examples.kl_worked_example`: left, each teacher's (solid, in its domain's
    colour) and the student's (dashed, in the kl colour) distances from the anchor to its
    candidates, nearest first -- what distance-MSE matches; right, the softmax distributions
    p_T and q_S of the same distances -- what the kl loss matches."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    student = model_color("distill:kl")
    for k, (domain, g) in enumerate(table.groupby("domain", sort=False)):
        color, marker = domain_color(domain), "os^D"[k % 4]
        for ax, (t, s) in zip(axes, (("teacher_distance", "student_distance"), ("teacher_p", "student_q"))):
            ax.plot(g.candidate, g[t], marker=marker, color=color, label=f"teacher on {domain}")
            ax.plot(g.candidate, g[s], marker=marker, color=student, linestyle="--",
                    markerfacecolor="none", label=f"student on {domain}")
    tau = fixed(table.temperature.iloc[0], 2)
    axes[0].set(ylabel="squared distance d to the anchor", title="absolute distances (distance-MSE)",
                ylim=(0, None))
    axes[1].set(ylabel=f"softmax(−d / {tau})", ylim=(0, 1.05),
                title="distributions p_T, q_S (kl)")
    for ax in axes:
        ax.set_xticks(sorted(table.candidate.unique()))
        ax.set_xlabel("candidate (nearest first)")
    axes[1].legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig
