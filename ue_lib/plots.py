"""Figures used by the notebooks (seaborn / matplotlib). Each returns the Figure.

Colours are fixed here, once: every model label ('specialist', 'naive', 'teacher',
'distill:<method>') has its colour in `PALETTE` and every known domain in `DOMAIN_COLORS`, and
every figure takes its colours from `model_color` / `domain_color`, so a model or a domain has
the same colour in every notebook. The model colours are the Okabe-Ito colour-blind-safe set
(plus grey for the naive baseline), the domain colours Paul Tol's colour-blind-safe 'muted' set.
"""

from __future__ import annotations

import zlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import MaxNLocator
from scipy.stats import spearmanr

from .data import Domain
from .evaluate import embed, model_inputs
from .losses import squared_distances
from .report import bits_of, compare, label, setting_label

sns.set_theme(style="whitegrid", context="notebook")

# ----------------------------------------------------------------------------- colours

PALETTE: dict[str, str] = {
    "specialist": "#0072B2",             # blue
    "teacher": "#0072B2",                # the teachers are the specialists
    "naive": "#999999",                  # grey: the baseline
    "distill:kl": "#D55E00",             # vermillion: the paper's student
    "distill:distance_mse": "#009E73",   # bluish green
    "distill:embedding_mse": "#CC79A7",  # reddish purple
    "distill:rkd_distance": "#E69F00",   # orange
    "distill:rkd_angle": "#56B4E9",      # sky blue
    "distill:darkrank": "#000000",       # black
    # compressed retrieval (notebook 06): indexes of one float embedding
    "float": "#000000",                  # black: the uncompressed reference
    "pq": "#E69F00",                     # orange
    "opq": "#009E73",                    # bluish green
    "opqn": "#D55E00",                   # vermillion: the paper's method
    "kl float": "#0072B2",               # the distilled student, uncompressed (blue) ...
    "kl pq": "#56B4E9",                  # ... and compressed (sky blue, reddish purple)
    "kl opq": "#CC79A7",
    # semantic granularity (notebook 07): the ladder's rungs and the two students
    "ms": "#0072B2",                     # blue: the project's specialists
    "bd": "#999999",                     # grey: the baseline of the ladder
    "bd+attr": "#56B4E9",                # sky blue
    "sbd-a": "#D55E00",                  # vermillion
    "sbd-b": "#009E73",                  # bluish green
    "kl ← specialists": "#0072B2",
    "kl ← sbd-a": "#D55E00",
    "kl ← sbd-b": "#009E73",
    "kl ← bd+attr": "#56B4E9",
    "kl ← bd": "#999999",
    # object embeddings (notebook 08): the conditions (i)-(vi) and the classification reference
    "global": "#999999",                 # grey: the whole image, the baseline
    "roi_oracle": "#56B4E9",             # sky blue
    "roi_detected": "#0072B2",           # blue
    "teacher_crop": "#000000",           # black: the teacher, one pass per object
    "detector_features": "#E69F00",      # orange
    "trunk_features": "#009E73",         # bluish green
}
# notebook 08's guided students take the colour of the distillation loss that guides them
PALETTE.update({f"student_{k[len('distill:'):]}": c for k, c in list(PALETTE.items())
                if k.startswith("distill:")})
"""The colour of every model label (`ue_lib.report.label`), used by every figure."""

DOMAIN_COLORS: dict[str, str] = {
    "clipart": "#CC6677", "fashion": "#332288", "glyphs": "#DDCC77", "omniglot": "#117733",
    "orl": "#88CCEE", "cub": "#882255", "cars": "#44AA99", "sop": "#999933", "inshop": "#AA4499",
}
"""The colour of every registered domain (`ue_lib.data.LOADERS`)."""

# other domains (e.g. `folder:<path>`) get one of these, chosen by a checksum of the name
_FALLBACK_COLORS = ("#228833", "#66CCEE", "#AA3377", "#009988", "#4477AA", "#EE6677", "#CCBB44",
                    "#BBCC33")

HIT, MISS = "#009E73", "#D55E00"  # retrieval_gallery: neighbour of the query's class or not


def model_color(name: str) -> str:
    """The colour of a model label ('specialist', 'naive', 'teacher', 'distill:<method>');
    KeyError naming the label and the known labels for any other name."""
    if name not in PALETTE:
        raise KeyError(f"no colour for model label {name!r}; known labels: {', '.join(PALETTE)}")
    return PALETTE[name]


def domain_color(name: str) -> str:
    """The colour of a domain: its `DOMAIN_COLORS` entry, else one of a fixed fallback list
    chosen by a CRC-32 checksum of the name (the same in every process and notebook)."""
    if name in DOMAIN_COLORS:
        return DOMAIN_COLORS[name]
    return _FALLBACK_COLORS[zlib.crc32(str(name).encode()) % len(_FALLBACK_COLORS)]


def _colors(values, color) -> dict[str, str]:
    """{value: color(value)} for the distinct values, in order of appearance."""
    return {v: color(v) for v in dict.fromkeys(values)}


def fixed(x: float, digits: int = 3, sign: bool = False) -> str:
    """`x` with `digits` decimals, rounded first so it is never '-0.000'; negative values get a
    minus sign '−', and with `sign` positive ones a '+' (zero has none): '+0.012', '−0.004',
    '0.000'. 'n/a' for NaN."""
    if not np.isfinite(x):
        return "n/a"
    r = round(float(x), digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = f"{abs(r):.{digits}f}"
    return ("+" if sign else "") + text if r > 0 else "−" + text if r < 0 else text


def _mean_sd(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, sample std (NaN for one value) and count of `value` per group, in recorded order."""
    return frame.groupby(by, sort=False).value.agg(mean="mean", std="std", n="count").reset_index()


def _with_labels(frame: pd.DataFrame, hue: str) -> pd.DataFrame:
    """`frame` with a `model_name` column (`report.label`) when `hue` asks for one it lacks."""
    return frame.assign(model_name=label(frame)) if hue == "model_name" and hue not in frame else frame


def _intervals(ax, pos, mean, std, color, horizontal: bool = False) -> None:
    """± `std` bars around `mean` at positions `pos`; none where std is NaN (a single value)."""
    pos, mean, std = (np.asarray(v, dtype=float) for v in (pos, mean, std))
    ok = ~np.isnan(std)
    draw = ax.hlines if horizontal else ax.vlines
    if ok.any():
        draw(pos[ok], mean[ok] - std[ok], mean[ok] + std[ok], color=color, linewidth=1.6)


# ----------------------------------------------------------------------------- data and training

def domain_samples(domains: dict[str, Domain], per_domain: int = 10, seed: int = 0):
    """A row of training images per domain (one image per class where possible)."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(domains), per_domain, figsize=(per_domain * 0.9, len(domains) * 1.1),
                             squeeze=False)
    for row, (name, d) in zip(axes, domains.items()):
        classes = rng.permutation(d.train.classes)[:per_domain]
        for ax, c in zip(row, np.resize(classes, per_domain)):
            i = rng.choice(np.flatnonzero(d.train.labels == c))
            _show(ax, d.train.images[i])
            ax.set_title(str(d.class_names[c])[:12], fontsize=7)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    fig.tight_layout()
    return fig


def _show(ax, image: np.ndarray, border: str | None = None) -> None:
    img = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    ax.imshow(img, cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])
    if border:
        for spine in ax.spines.values():
            spine.set_edgecolor(border)
            spine.set_linewidth(3)


def learning_curves(history: pd.DataFrame, metric: str = "recall@1", selected_epoch: int | None = None,
                    splits=("val", "test"), title: str = ""):
    """Per-domain curves of `metric` (colours: `domain_color`); each domain's best validation
    epoch is marked with a star, the single epoch a universal model must stop at with a dashed
    line."""
    h = history[(history.metric == metric) & history.split.isin(splits)]
    palette = _colors(h.domain, domain_color)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(h, x="epoch", y="value", hue="domain", style="split", marker="o", markersize=4,
                 palette=palette, ax=ax)
    val = h[h.split == "val"]
    for domain, g in val.groupby("domain", sort=False):
        best = g.loc[g.value.idxmax()]
        ax.plot(best.epoch, best.value, marker="*", markersize=16, color=palette[domain],
                markeredgecolor="black", linestyle="none")
    if selected_epoch is not None:
        ax.axvline(selected_epoch, color="grey", linestyle="--", label="selected epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per domain (stars: each domain's best validation epoch)")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- comparisons

def bars(results: pd.DataFrame, metric: str = "recall@1", x: str = "domain", hue: str = "model_name",
         title: str = ""):
    """Bar chart of `metric` per domain and model label (`report.label`, added when `hue` is
    'model_name' and the table lacks it; colours: `model_color`); error bars = standard
    deviation over seeds (none for one seed)."""
    r = _with_labels(results[results.metric == metric], hue)
    palette = _colors(r[hue], model_color)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * r[x].nunique() + 2), 4))
    sns.barplot(r, x=x, y="value", hue=hue, hue_order=list(palette), palette=palette, saturation=1,
                errorbar="sd", ax=ax)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def paired_differences(results: pd.DataFrame, reference: str = "naive", metric: str = "recall@1"
                       ) -> pd.DataFrame:
    """Per domain and model label (`report.label`): the differences `value - reference's value`
    paired on domain and seed, by `report.compare` (rows of one model, domain and seed are
    averaged first; unpaired seeds are left out), as `mean`, `std` (sample std, NaN for one
    seed) and `n` seeds. Columns domain, label, mean, std, n; domains and labels in recorded
    order. KeyError when `reference` has no `metric` rows."""
    r = results[results.metric == metric].assign(model_name=lambda d: label(d))
    if reference not in set(r.model_name):
        raise KeyError(f"no {metric} rows for {reference!r}; present: {sorted(set(r.model_name))}")
    domains = list(dict.fromkeys(r.domain))
    parts = [compare(r, name, reference, metric, domains).reset_index().assign(label=name)
             for name in dict.fromkeys(r.model_name) if name != reference]
    d = pd.concat(parts, ignore_index=True).rename(columns={"diff": "mean"})
    d = d.assign(order=d.domain.map(domains.index)).sort_values("order", kind="stable")
    return d[["domain", "label", "mean", "std", "n"]].reset_index(drop=True)


def differences(results: pd.DataFrame, reference: str = "naive", metric: str = "recall@1",
                title: str | None = None):
    """Every other model minus `reference`, per domain (`paired_differences`): a dot at the mean
    paired difference, a bar of ±1 std over seeds (none for one seed), the value beside the dot,
    and a zero line (= `reference`, in its colour); the axis is zoomed to the data."""
    d = paired_differences(results, reference, metric)
    domains, labels = list(dict.fromkeys(d.domain)), list(dict.fromkeys(d.label))
    step = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(7.5, 1 + 0.35 * len(domains) * max(2, len(labels))))
    ax.axvline(0, color=model_color(reference), linewidth=1.5, label=f"{reference} (zero)")
    for j, name in enumerate(labels):
        g = d[d.label == name]
        y = g.domain.map(domains.index).to_numpy() + (j - (len(labels) - 1) / 2) * step
        _intervals(ax, y, g["mean"], g["std"], model_color(name), horizontal=True)
        ax.plot(g["mean"], y, "o", color=model_color(name), label=name)
        for m, yy in zip(g["mean"], y):
            ax.annotate(fixed(m, sign=True), (m, yy), xytext=(0, 4), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8)
    ends = np.concatenate([[0.0], d["mean"] - d["std"].fillna(0), d["mean"] + d["std"].fillna(0)])
    pad = 0.15 * (ends.max() - ends.min()) or 0.01
    ax.set_xlim(ends.min() - pad, ends.max() + pad)
    ax.set_yticks(range(len(domains)), domains)
    ax.set_ylim(len(domains) - 0.5, -0.5)
    ax.set_xlabel(f"{metric} minus {reference} (paired by seed; dot: mean, bar: ±1 std)")
    ax.set_title(title if title is not None else f"{metric}: difference to {reference} per domain")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- embeddings

def retrieval_gallery(model: torch.nn.Module, domain: Domain, n_queries: int = 5, top: int = 5,
                      seed: int = 0, title: str = ""):
    """Queries from the test split (left) and their top-`top` neighbours; border `HIT` = same
    class as the query, `MISS` = another class."""
    split = domain.test
    emb = torch.from_numpy(embed(model, model_inputs(model, split)))
    sims = emb @ emb.T
    sims.fill_diagonal_(-float("inf"))
    queries = np.random.default_rng(seed).choice(len(split), n_queries, replace=False)
    fig, axes = plt.subplots(n_queries, top + 1, figsize=((top + 1) * 1.0, n_queries * 1.05),
                             squeeze=False)
    for row, q in zip(axes, queries):
        _show(row[0], split.images[q], border="black")
        for ax, j in zip(row[1:], sims[q].topk(top).indices.tolist()):
            _show(ax, split.images[j], border=HIT if split.labels[j] == split.labels[q] else MISS)
    axes[0, 0].set_title("query", fontsize=8)
    fig.suptitle(title or f"{domain.name}: top-{top} neighbours", fontsize=10)
    fig.tight_layout()
    return fig


def projection(model: torch.nn.Module, domains: dict[str, Domain], per_domain: int = 300,
               seed: int = 0, title: str = ""):
    """2-D PCA of the embedding of test images from every domain, coloured by domain, with a
    caption saying what such a projection can and cannot show."""
    rng = np.random.default_rng(seed)
    points, names = [], []
    for name, d in domains.items():
        idx = rng.choice(len(d.test), min(per_domain, len(d.test)), replace=False)
        points.append(embed(model, model_inputs(model, d.test)[idx]))
        names += [name] * len(idx)
    x = np.concatenate(points)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    explained = (s[:2] ** 2).sum() / (s ** 2).sum()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=names, palette=_colors(names, domain_color), s=10,
                    alpha=0.6, ax=ax, linewidth=0)
    ax.set_title(title or f"PCA of the embedding ({100 * explained:.0f} % of variance)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.text(0.5, 0.01, "2-D PCA: shows how the domains separate, not retrieval quality\n(a linear "
             "projection: distances within a domain are not preserved)", ha="center", va="bottom",
             fontsize=8, style="italic")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


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


# ----------------------------------------------------------------------------- sweeps

def knob_plot(table: pd.DataFrame, knob: str, metric: str = "recall@1", order: list | None = None,
              references: dict[str, float] | None = None):
    """`metric` against one swept parameter, per domain (dot: mean over seeds and other knobs;
    bar: ±1 std, none for a single value; colours: `domain_color`). `order`: the parameter's
    values in the order to show (default: as they appear). `references`: levels such as
    {"naive": 0.61, "specialist": 0.64} (`RunFolder.references`), drawn as dashed lines in the
    models' colours."""
    t = table[(table.metric == metric)].assign(model_name=lambda d: label(d))
    t = t[t.model_name.str.startswith("distill")] if (t.model == "distill").any() else t
    t = t.assign(**{knob: t[knob].map(setting_label)})
    order = [setting_label(v) for v in order] if order is not None else list(dict.fromkeys(t[knob]))
    stats = _mean_sd(t, ["domain", knob])
    domains = list(dict.fromkeys(stats.domain))
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (domain, g) in enumerate(stats.groupby("domain", sort=False)):
        g = g.set_index(knob).reindex(order).dropna(subset=["mean"])
        x = np.array([order.index(v) for v in g.index]) + 0.2 * (k - (len(domains) - 1) / 2) / len(domains)
        _intervals(ax, x, g["mean"], g["std"], domain_color(domain))
        ax.plot(x, g["mean"], marker="o", color=domain_color(domain), label=domain)
    for name, value in (references or {}).items():
        ax.axhline(value, color=model_color(name), linestyle="--", linewidth=1.3,
                   label=f"{name} ({fixed(value)})")
    ax.set_xticks(range(len(order)), order)
    ax.set_xlabel(knob)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {knob}")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def sweep_summary_html(table: pd.DataFrame, knobs: list[str], notebook: str,
                 failures: pd.DataFrame | None = None) -> str:
    """A self-contained page: one plot per swept parameter and the mean table."""
    import base64
    import io

    parts = [f"<h1>Sweep of {notebook}</h1>"]
    if failures is not None and not failures.empty:
        parts.append(f"<h2>Failed points</h2>{failures.to_html(index=False)}")
    final = table[~table.metric.str.endswith("_curve")]
    for knob in knobs:
        for metric in ("recall@1", "map@r"):
            fig = knob_plot(final, knob, metric, order=list(dict.fromkeys(final[knob])))
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            parts.append(f'<h2>{metric} vs {knob}</h2><img src="data:image/png;base64,'
                         f'{base64.b64encode(buf.getvalue()).decode()}">')
    means = (final[final.metric.isin(["recall@1", "map@r"])]
             .groupby(knobs + ["model", "method", "domain", "metric"]).value.agg(["mean", "std", "count"])
             .reset_index())
    parts.append(f"<h2>Mean over seeds</h2>{means.to_html(index=False, float_format='%.4f')}")
    return "<html><head><meta charset='utf-8'><title>sweep</title></head><body>" + "".join(parts) + \
        "</body></html>"


def codebook_figure(codebooks: torch.Tensor, show: int = 3):
    """OPQN's fixed codebooks as heatmaps: the first `show` of the (M, d, K) codewords matrices
    (rows: the d coordinates; columns: the K codewords), and the Gram matrix C_1ᵀC_1, which is
    the identity (orthonormal codewords)."""
    books = codebooks.detach().cpu().numpy()
    show = min(show, len(books))
    fig, axes = plt.subplots(1, show + 1, figsize=(2.6 * (show + 1), 2.8))
    lim = float(np.abs(books[:show]).max())
    for m, ax in enumerate(axes[:show]):
        ax.imshow(books[m], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set(title=f"C_{m + 1} ({books.shape[1]} x {books.shape[2]})", xlabel="codeword k",
               ylabel="coordinate" if m == 0 else "")
        ax.grid(False)
    gram = books[0].T @ books[0]
    axes[-1].imshow(gram, cmap="RdBu_r", vmin=-1, vmax=1)
    axes[-1].set(title="C_1ᵀ C_1 (identity)", xlabel="codeword", ylabel="codeword")
    axes[-1].grid(False)
    fig.tight_layout()
    return fig


def bits_plot(rows: pd.DataFrame, metrics=("map@all", "recall@1")):
    """Notebook 06: each metric against bits per item, one panel per experiment and metric,
    mean ± std over seeds per index (`ue_lib.runfolder.compressed_rows` rows); the float
    embedding is a horizontal band (it has no bits)."""
    r = rows[rows.metric.isin(metrics)].assign(bits=bits_of)
    domains = list(dict.fromkeys(r.domain))
    fig, axes = plt.subplots(len(metrics), len(domains), figsize=(3.6 * len(domains), 3.0 * len(metrics)),
                             squeeze=False, sharex=True)
    for j, domain in enumerate(domains):
        for i, metric in enumerate(metrics):
            ax, part = axes[i, j], r[(r.domain == domain) & (r.metric == metric)]
            stats_ = part.groupby(["model", "bits"]).value.agg(["mean", "std"]).reset_index()
            for model in dict.fromkeys(part.model):
                s = stats_[stats_.model == model].sort_values("bits")
                color = model_color(model)
                if model.endswith("float"):  # independent of the bit budget: one band
                    m, sd = part[part.model == model].value.mean(), part[part.model == model].value.std()
                    ax.axhline(m, color=color, lw=1.2, ls="--", label=model)
                    if np.isfinite(sd):
                        ax.axhspan(m - sd, m + sd, color=color, alpha=0.08)
                    continue
                ax.errorbar(s.bits, s["mean"], yerr=s["std"].fillna(0), color=color, marker="o",
                            ms=4, capsize=3, label=model)
            ax.set(title=domain if i == 0 else "", xlabel="bits per item" if i == len(metrics) - 1 else "",
                   ylabel=metric if j == 0 else "")
            ax.set_xticks(sorted(r.bits.unique()))
    seen = {}  # one legend entry per index, in the order the panels draw them
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=min(len(seen), 7),
               bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def granularity_figure(pairs: pd.DataFrame, bins: int = 5):
    """Notebook 07: each rung's learned cosine similarity against the pair's granularity
    similarity g (`ue_lib.runfolder.granularity_pairs`), mean ± standard error per g bin (bins
    of fewer than 5 pairs are left out); negative pairs (different classes) left, positive
    pairs right."""
    edges = np.linspace(0, 1, bins + 1)
    p = pairs.assign(bin=np.clip(np.digitize(pairs.g, edges[1:-1]), 0, bins - 1))
    centres = (edges[:-1] + edges[1:]) / 2
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, same, title in ((axes[0], False, "negative pairs (different classes)"),
                            (axes[1], True, "positive pairs (same class)")):
        part = p[p.same_class == same]
        for rung in dict.fromkeys(part.rung):
            s = part[part.rung == rung].groupby("bin").similarity.agg(["mean", "sem", "count"])
            s = s[s["count"] >= 5]
            ax.errorbar(centres[s.index], s["mean"], yerr=s["sem"].fillna(0), marker="o", ms=4,
                        capsize=3, color=model_color(rung), label=rung)
        ax.set(title=title, xlabel="granularity similarity g (attributes)", xlim=(0, 1))
    axes[0].set_ylabel("learned cosine similarity (mean ± s.e.)")
    axes[1].legend(fontsize=8, loc="lower right")
    if "domain" in pairs:
        fig.suptitle(f"{', '.join(dict.fromkeys(pairs.domain))}: test pairs")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- object embeddings

def scenes_figure(images: np.ndarray, boxes, detections=None, columns: int = 6, title: str = ""):
    """Scenes with their objects' boxes (green, solid) and, if given, the detector's boxes
    (vermillion, dashed)."""
    n = len(images)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.1 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        _show(ax, images[i])
        for kind, style in (("truth", dict(edgecolor=HIT, linestyle="-")),
                            ("detected", dict(edgecolor=MISS, linestyle="--"))):
            for x1, y1, x2, y2 in (boxes[i] if kind == "truth" else
                                   (detections[i] if detections is not None else [])):
                ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                           linewidth=1.5, **style))
    fig.suptitle(title or ("objects (green) and detections (vermillion, dashed)"
                           if detections is not None else "scenes and their objects' boxes"),
                 fontsize=10)
    fig.tight_layout()
    return fig


def object_gallery(example: dict, title: str = ""):
    """Notebook 08's retrieval gallery (`ue_lib.objects.ObjectSeed.examples["gallery"]`): per
    query object (a crop, left) and condition, its top neighbours; border `HIT` = the query's
    class, `MISS` = another class."""
    conditions = list(example["conditions"])
    queries = example["queries"]
    top = max((len(r) for c in conditions for r in example["conditions"][c]["images"]), default=1)
    n_rows = len(queries) * len(conditions)
    fig, axes = plt.subplots(n_rows, top + 1, figsize=((top + 1) * 1.0 + 1.8, n_rows * 1.0),
                             squeeze=False)
    for q, query in enumerate(queries):
        for c, name in enumerate(conditions):
            row = axes[q * len(conditions) + c]
            _show(row[0], query, border="black")
            row[0].set_ylabel(f"{example['domains'][q]}\n{name}", fontsize=7, rotation=0,
                              ha="right", va="center")
            images = example["conditions"][name]["images"][q]
            correct = example["conditions"][name]["correct"][q]
            for j, ax in enumerate(row[1:]):
                if j < len(images):
                    _show(ax, images[j], border=HIT if correct[j] else MISS)
                else:
                    ax.axis("off")
    fig.suptitle(title or "query objects (left) and their nearest gallery items", fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff_plot(points: pd.DataFrame, metric: str = "recall@1"):
    """Time against accuracy: one point per method (columns ``method``, ``ms`` and ``value``
    (means) and ``ms_std``/``value_std``), coloured by `model_color`, labelled."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, r in points.iterrows():
        color = model_color(r.method)
        ax.errorbar(r.ms, r.value, xerr=r.get("ms_std", 0) or 0, yerr=r.get("value_std", 0) or 0,
                    fmt="o", color=color, capsize=3)
        ax.annotate(r.method, (r.ms, r.value), textcoords="offset points", xytext=(6, 4),
                    fontsize=8, color=color)
    ax.set_xlabel("ms per scene (shared scene pass and detector included)")
    ax.set_ylabel(f"object retrieval {metric}")
    ax.set_xlim(left=0)
    ax.set_title("teacher vs guided students: time and accuracy")
    fig.tight_layout()
    return fig
