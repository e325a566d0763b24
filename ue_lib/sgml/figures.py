"""SGML's figures (notebook 07): each rung's learned similarity against the attributes'
granularity similarity."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..palette import model_color


def pairs_figure(pairs: pd.DataFrame, bins: int = 5):
    """Notebook 07: each rung's learned cosine similarity against the pair's granularity
    similarity g (`ue_lib.sgml.experiments.pairs`), mean ± standard error per g bin (bins
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
