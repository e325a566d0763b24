"""Generic figures (seaborn / matplotlib), each returning its Figure: domain samples, learning
curves (one model's domains, or several models per domain), bars and paired differences of result
tables, retrieval galleries (one split, or one index of several domains for several models, or
one query in two indexes side by side) and 2-D projections of given embeddings (one model, or
several side by side), and a swept setting against a metric. Colours come from `ue_lib.palette`.
Nothing here embeds a model: the systems' figures (``ue_lib/<system>/figures.py``) compute what
they show with `ue_lib.evaluate` and draw it with these. `use_theme` sets the one seaborn theme
(the run folder calls it when a notebook opens it).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .data import Domain, Split
from .evaluate import nearest_neighbours
from .palette import HIT, MISS, colors_of, domain_color, fixed, model_color
from .verdicts import EPS, Rules, compare, model_names, setting_label


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


def _mean_curve(frame: pd.DataFrame) -> pd.Series:
    """Mean `value` per epoch (several rows of one epoch, e.g. seeds, are averaged), by epoch."""
    return frame.groupby("epoch").value.mean().sort_index()


def last_tied_epoch(curve: pd.Series, tolerance: float = Rules.tie_tolerance) -> int:
    """The last epoch (index of `curve`) whose value is within `tolerance` of the curve's
    maximum: the peak epoch of the histories' tie rule (`Rules.tie_tolerance`, default 0.005)."""
    values = curve.to_numpy(float)
    return int(curve.index[np.flatnonzero(values >= np.nanmax(values) - tolerance - EPS)[-1]])


def _split_style(split: str) -> dict:
    """Validation: solid with markers; any other split (test): thinner, dashed, fainter."""
    if split == "val":
        return {"linestyle": "-", "linewidth": 2.0, "alpha": 1.0, "marker": "o", "markersize": 4}
    return {"linestyle": "--", "linewidth": 1.2, "alpha": 0.6, "marker": None}


def learning_curves(history: pd.DataFrame, metric: str = "recall@1", selected_epoch: int | None = None,
                    splits=("val", "test"), title: str = "", peaks: Mapping[str, int] | None = None,
                    tolerance: float = Rules.tie_tolerance):
    """Per-domain curves of `metric` (colour: the domain's `domain_color`; line style: the split,
    validation solid with markers, test dashed, thinner and fainter). A star marks each domain's
    peak on its validation curve: at `peaks[domain]` when given (e.g. the `peak_epoch` column
    of the histories' peak table), else at the last epoch within `tolerance` of the domain's
    validation maximum (`last_tied_epoch`, the same rule). A dashed grey line marks
    `selected_epoch`, the one epoch a universal model must stop at."""
    h = history[(history.metric == metric) & history.split.isin(splits)]
    palette = colors_of(h.domain, domain_color)
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for domain, g in h.groupby("domain", sort=False):
        for split in splits:
            curve = _mean_curve(g[g.split == split])
            if len(curve):
                ax.plot(curve.index, curve.to_numpy(), color=palette[domain], **_split_style(split))
        val = _mean_curve(g[g.split == "val"])
        if len(val):
            epoch = last_tied_epoch(val, tolerance) if peaks is None else peaks[domain]
            if epoch not in val.index:
                raise ValueError(f"peak epoch {epoch} of {domain!r} has no validation {metric}")
            ax.plot(epoch, val[epoch], marker="*", markersize=16, color=palette[domain],
                    markeredgecolor="black", linestyle="none")
    if selected_epoch is not None:
        ax.axvline(selected_epoch, color="grey", linestyle="--", linewidth=1)
    rule = "given" if peaks is not None else f"last epoch within {fixed(tolerance)} of the maximum"
    handles = ([Line2D([], [], color=c, linewidth=2, label=d) for d, c in palette.items()]
               + [Line2D([], [], color="black", label="validation" if s == "val" else s,
                         **_split_style(s)) for s in splits]
               + [Line2D([], [], marker="*", markersize=12, color="white", markeredgecolor="black",
                         label=f"validation peak ({rule})")] * ("val" in splits)
               + [Line2D([], [], color="grey", linestyle="--", label="selected epoch")]
               * (selected_epoch is not None))
    ax.legend(handles=handles, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8,
              title="colour: domain; line: split", title_fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per domain (stars: each domain's validation peak)")
    fig.tight_layout()
    return fig


def curves_by_domain(histories: Mapping[str, pd.DataFrame], metric: str = "recall@1",
                     split: str = "val", selected: Mapping[str, int] | None = None, title: str = ""):
    """One panel per domain (at most five in a row, one y axis shared by all), one curve of
    `metric` on `split` per model ({model label: training history}, coloured by `model_color`),
    and a diamond on each model's curve at its selected epoch (`selected`: {label: epoch}).
    Answers: do the models' curves peak at the same epochs, per domain?"""
    curves = {name: h[(h.metric == metric) & (h.split == split)] for name, h in histories.items()}
    domains = list(dict.fromkeys(d for h in curves.values() for d in h.domain))
    if not domains:
        raise ValueError(f"no {split} {metric} in these histories")
    cols = min(5, len(domains))
    rows = -(-len(domains) // cols)
    fig, axes = plt.subplots(rows, cols, sharey=True, squeeze=False,
                             figsize=(0.6 + 2.7 * cols, 0.9 + 2.4 * rows))
    for ax, domain in zip(axes.flat, domains):
        for name, h in curves.items():
            c = _mean_curve(h[h.domain == domain])
            ax.plot(c.index, c.to_numpy(), color=model_color(name), marker="o", markersize=3,
                    linewidth=1.6)
            if selected and name in selected and selected[name] in c.index:
                ax.plot(selected[name], c[selected[name]], marker="D", markersize=8,
                        color=model_color(name), markeredgecolor="black", linestyle="none")
        ax.set_title(domain, fontsize=10, color=domain_color(domain))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat[len(domains):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{split} {metric}")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    values = pd.concat([h.value for h in curves.values()]).dropna()
    pad = 0.05 * (values.max() - values.min()) or 0.02
    axes[0, 0].set_ylim(max(0.0, values.min() - pad), min(1.02, values.max() + pad))
    handles = [Line2D([], [], color=model_color(n), marker="o", markersize=3, label=n) for n in curves]
    if selected:
        handles.append(Line2D([], [], marker="D", color="white", markeredgecolor="black",
                              linestyle="none", label="selected epoch"))
    fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=len(handles))
    fig.suptitle(title or f"{split} {metric} per domain and epoch, one line per model", fontsize=10,
                 x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
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
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))  # signed ticks are wide: few enough to read
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
    `embeddings` (one row per item of `split`; ranked by `evaluate.nearest_neighbours`, the
    metrics' search); border `HIT` = same class as the query, `MISS` = another class."""
    queries = np.random.default_rng(seed).choice(len(split), n_queries, replace=False)
    ranked = nearest_neighbours(embeddings, top, queries)
    fig, axes = plt.subplots(n_queries, top + 1, figsize=((top + 1) * 1.0, n_queries * 1.05),
                             squeeze=False)
    for row, q, nbr in zip(axes, queries, ranked):
        show_image(row[0], split.images[q], border="black")
        for ax, j in zip(row[1:], nbr.tolist()):
            show_image(ax, split.images[j], border=HIT if split.labels[j] == split.labels[q] else MISS)
    axes[0, 0].set_title("query", fontsize=8)
    fig.suptitle(title or f"top-{top} neighbours", fontsize=10)
    fig.tight_layout()
    return fig


def neighbour_blocks(images: Mapping[int, np.ndarray], labels, domains, queries,
                     neighbours: Mapping[str, np.ndarray], title: str = ""):
    """A gallery of one index holding several domains: for each model ({model label: (queries,
    top) ranked item indices}, e.g. from `evaluate.nearest_neighbours`), a block of rows, one
    per query (the same `queries` in every block): the query (black border), then its
    neighbours, bordered `HIT` when the neighbour has the query's label (`labels`: one per item,
    unique across domains, e.g. `evaluate.combined_labels`) and `MISS` otherwise, each titled
    with its domain (`domains`: one name per item) in the domain's colour. `images`: {item:
    image} for at least the items shown. The model label is written left of its block's rows
    in the model's colour."""
    labels, domains, queries = np.asarray(labels), np.asarray(domains), np.asarray(queries)
    top = max(n.shape[1] for n in neighbours.values())
    n_rows = len(neighbours) * len(queries)
    fig, axes = plt.subplots(n_rows, top + 1, squeeze=False,
                             figsize=(max(7.0, 1.6 + (top + 1) * 1.0), 0.8 + n_rows * 1.15))
    for b, (name, ranked) in enumerate(neighbours.items()):
        for r, (q, nbr) in enumerate(zip(queries.tolist(), ranked)):
            row = axes[b * len(queries) + r]
            show_image(row[0], images[q], border="black")
            row[0].set_title(f"query: {domains[q]}", fontsize=7, color=domain_color(domains[q]))
            row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9,
                              color=model_color(name), fontweight="bold")
            for ax, j in zip(row[1:], nbr.tolist()):
                show_image(ax, images[j], border=HIT if labels[j] == labels[q] else MISS)
                ax.set_title(str(domains[j]), fontsize=7, color=domain_color(domains[j]))
            for ax in row[1 + len(nbr):]:
                ax.axis("off")
    fig.suptitle(title or f"top-{top} neighbours in one index of all domains", fontsize=10)
    fig.text(0.5, 0.005, "border: green = same class and domain as the query, red = not; "
             "above each image: its domain", ha="center", va="bottom", fontsize=8, style="italic")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig


def neighbour_pairs(query: np.ndarray, rows: Mapping[str, Sequence], headers: Sequence[str],
                    title: str = "", caption: str = "", names: Mapping[str, str] | None = None):
    """One query's neighbours in two indexes side by side, one row per model: `rows` maps a
    model label (written left of its row in the model's colour) to its two panels, in the
    order of `headers` (e.g. "per-domain index", "merged index"). A panel is a list of
    neighbours, best first, each (image, hit, text, text colour): bordered `HIT` when `hit`,
    else `MISS`, titled with `text` in its colour; or a string, written in place of a panel a
    model does not have. Each panel starts with the query (black border). `names`: what to write
    for a model label (default: the label)."""
    top = max([len(p) for panels in rows.values() for p in panels if not isinstance(p, str)] + [1])
    fig = plt.figure(figsize=(2 * (top + 1) * 0.95 + 1.6, 0.9 + 1.25 * len(rows)), layout="constrained")
    for side, (sub, header) in enumerate(zip(fig.subfigures(1, len(headers), wspace=0.04), headers)):
        axes = sub.subplots(len(rows), top + 1, squeeze=False)
        sub.suptitle(header, fontsize=10, fontweight="bold")
        for row, (name, panels) in zip(axes, rows.items()):
            panel = panels[side]
            for ax in row:
                ax.axis("off")
            if side == 0:
                row[0].text(-0.12, 0.5, (names or {}).get(name, name), transform=row[0].transAxes,
                            ha="right", va="center",
                            fontsize=9, color=model_color(name), fontweight="bold")
            if isinstance(panel, str):
                for ax in row:  # the same title room as a row of neighbours: the rows line up
                    ax.set_title("\n", fontsize=7)
                row[0].text(0.0, 0.5, panel, transform=row[0].transAxes, ha="left", va="center",
                            fontsize=8, style="italic", in_layout=False)  # not a column's width
                continue
            row[0].axis("on")
            show_image(row[0], query, border="black")
            row[0].set_title("query", fontsize=7)
            for ax, (image, hit, text, color) in zip(row[1:], panel):
                ax.axis("on")
                show_image(ax, image, border=HIT if hit else MISS)
                ax.set_title(text, fontsize=7, color=color)
    if title:
        fig.suptitle(title, fontsize=10)
    if caption:
        fig.supxlabel(caption, fontsize=8, style="italic")
    return fig


PCA_CAVEAT = ("2-D PCA: shows how the domains separate, not retrieval quality\n(a linear "
              "projection: distances within a domain are not preserved)")


def pca_2d(x: np.ndarray, first: int | None = None) -> tuple[np.ndarray, float]:
    """The first two principal components of the rows of `x` (centred) and the share of the
    variance they explain. A component's sign is arbitrary; here each is oriented so that the
    mean of the first `first` rows (default: the first row) is non-negative on it, so panels of
    several models show the same domain on the same side."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    ref = xy[: first or 1].mean(0) if len(xy) else np.zeros(2)
    xy = xy * np.where(ref < 0, -1.0, 1.0)[: xy.shape[1]]
    total = (s ** 2).sum()
    return xy, float((s[:2] ** 2).sum() / total) if total > 0 else 0.0


def _pca_panel(ax, points: Mapping[str, np.ndarray]) -> float:
    """Scatter the 2-D PCA (`pca_2d`, oriented by the first domain) of the L2-normalised rows of
    {domain: (n, D) embeddings} on `ax`, coloured by domain; returns the share of variance
    shown."""
    names = [name for name, x in points.items() for _ in range(len(x))]
    x = np.concatenate([np.asarray(v, np.float64) for v in points.values()])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    xy, explained = pca_2d(x, len(next(iter(points.values()))))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=names, palette=colors_of(names, domain_color), s=10,
                    alpha=0.6, ax=ax, linewidth=0)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return explained


def projection(points: dict[str, np.ndarray], title: str = ""):
    """2-D PCA of the L2-normalised embeddings of several domains ({domain: (n, D)
    embeddings}; normalised, as retrieval compares them by cosine), coloured by domain, with a
    caption saying what such a projection can and cannot show."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    explained = _pca_panel(ax, points)
    ax.set_title(title or f"PCA of the embedding ({100 * explained:.0f} % of variance)")
    fig.text(0.5, 0.01, PCA_CAVEAT, ha="center", va="bottom", fontsize=8, style="italic")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def projections(points: Mapping[str, Mapping[str, np.ndarray]], title: str = ""):
    """`projection` of several models side by side ({model label: {domain: (n, D)
    embeddings}}, the same items for every model): one panel per model, its own PCA, titled with
    the label (in its `model_color`) and the share of variance shown, all panels on the same x
    and y limits (the normalised embeddings make the scales comparable), one legend of the
    domains, and the caption of `projection`."""
    fig, axes = plt.subplots(1, len(points), sharex=True, sharey=True, squeeze=False,
                             figsize=(0.8 + 4.6 * len(points), 5))
    for ax, (name, by_domain) in zip(axes[0], points.items()):
        explained = _pca_panel(ax, by_domain)
        ax.set_title(f"{name}: {100 * explained:.0f} % of variance", color=model_color(name),
                     fontsize=10)
        ax.get_legend().remove()
    handles = [Line2D([], [], marker="o", linestyle="none", color=domain_color(d), label=d)
               for d in next(iter(points.values()))]
    axes[0, -1].legend(handles=handles, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.suptitle(title or "PCA of each model's test embeddings (same items, same axes)", fontsize=11)
    fig.text(0.5, 0.01, PCA_CAVEAT, ha="center", va="bottom", fontsize=8, style="italic")
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
