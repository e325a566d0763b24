"""Figures used by the notebooks (seaborn / matplotlib). Each returns the Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.ticker import MaxNLocator

from .data import Domain
from .evaluate import embed, model_inputs
from .losses import squared_distances

sns.set_theme(style="whitegrid", context="notebook")


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
    """Per-domain curves of `metric`; each domain's best validation epoch is marked with a star,
    the single epoch a universal model must stop at with a dashed line."""
    h = history[(history.metric == metric) & history.split.isin(splits)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(h, x="epoch", y="value", hue="domain", style="split", marker="o", markersize=4,
                 ax=ax)
    palette = dict(zip(h.domain.unique(), sns.color_palette()))
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


def bars(results: pd.DataFrame, metric: str = "recall@1", x: str = "domain", hue: str = "model",
         title: str = ""):
    """Bar chart of `metric` per domain and model; error bars = standard deviation over seeds."""
    r = results[results.metric == metric]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * r[x].nunique() + 2), 4))
    sns.barplot(r, x=x, y="value", hue=hue, errorbar="sd", ax=ax)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def retrieval_gallery(model: torch.nn.Module, domain: Domain, n_queries: int = 5, top: int = 5,
                      seed: int = 0, title: str = ""):
    """Queries from the test split (left) and their top-`top` neighbours; green = same class."""
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
            ok = split.labels[j] == split.labels[q]
            _show(ax, split.images[j], border="tab:green" if ok else "tab:red")
    axes[0, 0].set_title("query", fontsize=8)
    fig.suptitle(title or f"{domain.name}: top-{top} neighbours", fontsize=10)
    fig.tight_layout()
    return fig


def distance_distributions(teacher: torch.nn.Module, students: dict[str, torch.nn.Module],
                           split, loss, anchors: int = 3, batch: int = 64,
                           seed: int = 0, title: str = ""):
    """For a few anchors of one batch of `split`: the teacher's distribution over its candidates
    (p) and each student's (q), candidates sorted by teacher distance — what the distribution
    loss `loss` (a `DistributionDistillationLoss`, which computes them) matches."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(split), min(batch, len(split)), replace=False)
    emb = {n: torch.from_numpy(embed(m, model_inputs(m, split)[idx]))
           for n, m in {"teacher": teacher, **students}.items()}
    fig, axes = plt.subplots(1, anchors, figsize=(4.2 * anchors, 3.4), squeeze=False, sharey=True)
    with torch.no_grad():
        p = loss.distributions(emb["teacher"]).numpy()
        q = {n: loss.distributions(emb[n]).numpy() for n in students}
        d_t = squared_distances(emb["teacher"]).numpy()
    for a, ax in enumerate(axes[0]):
        others = np.delete(np.arange(len(idx)), a)  # column j of row a is candidate others[j]
        order = np.argsort(d_t[a, others], kind="stable")
        ax.plot(p[a, order], color="black", linewidth=2.5, label="teacher (p)")
        for name, dist in q.items():
            ax.plot(dist[a, order], label=f"{name} (q)")
        ax.set_xlabel("candidates, nearest (teacher) first")
        ax.set_title(f"anchor {a + 1}", fontsize=9)
        ax.set_xlim(0, min(20, len(order) - 1))
    axes[0, 0].set_ylabel(f"softmax(-d / {loss.temperature})")
    axes[0, -1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def projection(model: torch.nn.Module, domains: dict[str, Domain], per_domain: int = 300,
               seed: int = 0, title: str = ""):
    """2-D PCA of the embedding of test images from every domain, coloured by domain."""
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
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=names, s=10, alpha=0.6, ax=ax, linewidth=0)
    ax.set_title(title or f"PCA of the embedding ({100 * explained:.0f} % of variance)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- sweeps

def knob_plot(table: pd.DataFrame, knob: str, metric: str = "recall@1", order: list | None = None):
    """`metric` against one swept parameter, per domain (mean and std over seeds and other knobs);
    `order`: the parameter's values in the order to show (default: as they appear)."""
    from .report import label
    from .sweep import setting_labels

    t = table[(table.metric == metric)].assign(model_name=lambda d: label(d))
    t = t[t.model_name.str.startswith("distill")] if (t.model == "distill").any() else t
    t = t.assign(**{knob: setting_labels(t[knob])})
    order = [str(v) for v in order] if order is not None else list(dict.fromkeys(t[knob]))
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.pointplot(t, x=knob, y="value", hue="domain", errorbar="sd", dodge=0.2, ax=ax,
                  order=[setting_labels(pd.Series([v], dtype=object))[0] for v in order])
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
