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
    (rows: the d coordinates; columns: the K codewords), each titled with how it is made (C_1
    the DCT matrix Φ's first K columns, C_m = Φ C_(m-1)), and the Gram matrix C_1ᵀC_1, which is
    the identity (orthonormal codewords)."""
    books = codebooks.detach().cpu().numpy()
    show = min(show, len(books))
    fig, axes = plt.subplots(1, show + 1, figsize=(2.6 * (show + 1), 2.8))
    lim = float(np.abs(books[:show]).max())
    for m, ax in enumerate(axes[:show]):
        ax.imshow(books[m], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        how = "Φ's first K columns" if m == 0 else f"Φ C_{m}"  # the recursion of the text
        ax.set(title=f"C_{m + 1} = {how}\n({books.shape[1]} × {books.shape[2]})", xlabel="codeword k",
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
    embeddings dashed with hollow markers, at each budget: each budget trains its own OPQN
    network, whose float embedding is the reference of that budget's indexes."""
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
                # a float embedding has no bits, but each budget's OPQN network is a network of
                # its own: its float is drawn at each budget (dashed, hollow), like the text says
                is_float = model.endswith("float")
                ax.errorbar(s.bits, s["mean"], yerr=s["std"].fillna(0), color=color, marker="o",
                            ms=4, capsize=3, label=model, ls="--" if is_float else "-",
                            mfc="white" if is_float else color)
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


def pq_schematic(example: dict):
    """Product quantization of one vector (`ue_lib.opqn.indexes.pq_example`): the vector cut
    into its M sub-vectors (top), each sub-space's K codewords with the nearest one framed
    (middle), and the code: M codeword indices of log2 K bits each (bottom)."""
    books, codes, x = example["codebooks"], example["codes"], example["vector"]
    m, k, d = books.shape
    bits_each = example["bits"] // m
    fig = plt.figure(figsize=(2.2 * m + 1, 5.2))
    grid = fig.add_gridspec(3, m, height_ratios=[0.5, 3, 0.7], hspace=0.55, wspace=0.35)
    lim = float(max(np.abs(books).max(), np.abs(x).max()))
    top = fig.add_subplot(grid[0, :])
    top.imshow(x[None, :], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for j in range(1, m):
        top.axvline(j * d - 0.5, color="black", linewidth=2)
    top.set(yticks=[], xticks=[(j + 0.5) * d - 0.5 for j in range(m)],
            xticklabels=[f"sub-vector {j + 1}" for j in range(m)],
            title=f"one {m * d}-d embedding, cut into M = {m} sub-vectors of {d} dimensions")
    top.grid(False)
    for j in range(m):
        ax = fig.add_subplot(grid[1, j])
        ax.imshow(books[j], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.add_patch(plt.Rectangle((-0.5, codes[j] - 0.5), d, 1, fill=False, edgecolor="black",
                                   linewidth=2.5))
        ax.set(title=f"codebook {j + 1}: K = {k}", xticks=[], ylabel="codeword" if j == 0 else "",
               yticks=sorted({int(codes[j])} | {e for e in (0, k - 1) if abs(e - int(codes[j])) > 1}))
        ax.grid(False)
        code = fig.add_subplot(grid[2, j])
        code.axis("off")
        code.text(0.5, 0.5, f"{codes[j]} = {int(codes[j]):0{bits_each}b}", ha="center", va="center",
                  fontsize=11, family="monospace")
    fig.suptitle(f"stored code: M log2 K = {m} × {bits_each} = {example['bits']} bits "
                 f"({example['code_bytes']} bytes) instead of {32 * m * d} bits of floats",
                 y=0.02, fontsize=10)
    return fig
