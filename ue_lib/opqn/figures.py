"""OPQN's figures (notebook 06): the fixed DCT codebooks, and each metric against bits per item."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..palette import model_color
from .verdicts import bits_of


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
    mean ± std over seeds per index (`ue_lib.opqn.experiments.experiment` rows); the float
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
