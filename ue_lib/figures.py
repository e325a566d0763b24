"""Generic figures (seaborn / matplotlib), each returning its Figure: domain samples, learning
curves, bars and paired differences of result tables, a retrieval gallery and a 2-D projection of
given embeddings, and a swept setting against a metric. Colours come from `ue_lib.palette`.
Nothing here embeds a model: the systems' figures (``ue_lib/<system>/figures.py``) compute what
they show with `ue_lib.evaluate` and draw it with these. `use_theme` sets the one seaborn theme
(the run folder calls it when a notebook opens it).
"""

from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .data import Domain, Split
from .palette import HIT, MISS, colors_of, domain_color, fixed, model_color
from .verdicts import compare, model_names, setting_label


def use_theme() -> None:
    """The project's seaborn theme (white grid, notebook context)."""
    sns.set_theme(style="whitegrid", context="notebook")


def _mean_sd(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, sample std (NaN for one value) and count of `value` per group, in recorded order."""
    return frame.groupby(by, sort=False).value.agg(mean="mean", std="std", n="count").reset_index()


def _with_labels(frame: pd.DataFrame, hue: str) -> pd.DataFrame:
    """`frame` with a `model_name` column (`verdicts.model_names`) when `hue` asks for one it lacks."""
    return frame.assign(model_name=model_names(frame)) if hue == "model_name" and hue not in frame else frame


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
            show_image(ax, d.train.images[i])
            ax.set_title(str(d.class_names[c])[:12], fontsize=7)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    fig.tight_layout()
    return fig


def show_image(ax, image: np.ndarray, border: str | None = None) -> None:
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
    palette = colors_of(h.domain, domain_color)
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
    """Bar chart of `metric` per domain and model name (`verdicts.model_names`, added when `hue` is
    'model_name' and the table lacks it; colours: `model_color`); error bars = standard
    deviation over seeds (none for one seed)."""
    r = _with_labels(results[results.metric == metric], hue)
    palette = colors_of(r[hue], model_color)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * r[x].nunique() + 2), 4))
    sns.barplot(r, x=x, y="value", hue=hue, hue_order=list(palette), palette=palette, saturation=1,
                errorbar="sd", ax=ax)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def paired_differences(results: pd.DataFrame, reference: str, metric: str = "recall@1"
                       ) -> pd.DataFrame:
    """Per domain and model name (`verdicts.model_names`): the differences `value - reference's
    value` paired on domain and seed, by `verdicts.compare` (rows of one model, domain and seed are
    averaged first; unpaired seeds are left out), as `mean`, `std` (sample std, NaN for one
    seed) and `n` seeds. Columns domain, label, mean, std, n; domains and labels in recorded
    order. KeyError when `reference` has no `metric` rows."""
    r = results[results.metric == metric].assign(model_name=lambda d: model_names(d))
    if reference not in set(r.model_name):
        raise KeyError(f"no {metric} rows for {reference!r}; present: {sorted(set(r.model_name))}")
    domains = list(dict.fromkeys(r.domain))
    parts = [compare(r, name, reference, metric, domains).reset_index().assign(label=name)
             for name in dict.fromkeys(r.model_name) if name != reference]
    d = pd.concat(parts, ignore_index=True).rename(columns={"diff": "mean"})
    d = d.assign(order=d.domain.map(domains.index)).sort_values("order", kind="stable")
    return d[["domain", "label", "mean", "std", "n"]].reset_index(drop=True)


def differences(results: pd.DataFrame, reference: str, metric: str = "recall@1",
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

def retrieval_gallery(split: Split, embeddings: np.ndarray, n_queries: int = 5, top: int = 5,
                      seed: int = 0, title: str = ""):
    """Queries from `split` (left) and their top-`top` neighbours by the cosine of
    `embeddings` (one row per item of `split`); border `HIT` = same class as the query, `MISS`
    = another class."""
    emb = np.asarray(embeddings, np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    queries = np.random.default_rng(seed).choice(len(split), n_queries, replace=False)
    fig, axes = plt.subplots(n_queries, top + 1, figsize=((top + 1) * 1.0, n_queries * 1.05),
                             squeeze=False)
    for row, q in zip(axes, queries):
        show_image(row[0], split.images[q], border="black")
        for ax, j in zip(row[1:], np.argsort(-sims[q], kind="stable")[:top].tolist()):
            show_image(ax, split.images[j], border=HIT if split.labels[j] == split.labels[q] else MISS)
    axes[0, 0].set_title("query", fontsize=8)
    fig.suptitle(title or f"top-{top} neighbours", fontsize=10)
    fig.tight_layout()
    return fig


def projection(points: dict[str, np.ndarray], title: str = ""):
    """2-D PCA of embeddings of several domains ({domain: (n, D) embeddings}), coloured by
    domain, with a caption saying what such a projection can and cannot show."""
    names = [name for name, x in points.items() for _ in range(len(x))]
    x = np.concatenate(list(points.values()))
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    explained = (s[:2] ** 2).sum() / (s ** 2).sum()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=names, palette=colors_of(names, domain_color), s=10,
                    alpha=0.6, ax=ax, linewidth=0)
    ax.set_title(title or f"PCA of the embedding ({100 * explained:.0f} % of variance)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.text(0.5, 0.01, "2-D PCA: shows how the domains separate, not retrieval quality\n(a linear "
             "projection: distances within a domain are not preserved)", ha="center", va="bottom",
             fontsize=8, style="italic")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


# ----------------------------------------------------------------------------- sweeps

def knob_plot(table: pd.DataFrame, knob: str, metric: str = "recall@1", order: list | None = None,
              references: dict[str, float] | None = None):
    """`metric` against one swept parameter, per domain (dot: mean over seeds and other knobs;
    bar: ±1 std, none for a single value; colours: `domain_color`). `order`: the parameter's
    values in the order to show (default: as they appear). `references`: levels such as
    {"naive": 0.61, "specialist": 0.64} (`ue_lib.universal.models.references`), drawn as dashed lines in the
    models' colours."""
    t = table[(table.metric == metric)].assign(model_name=lambda d: model_names(d))
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
