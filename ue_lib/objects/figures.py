"""The object-embedding system's figures (notebook 08): scenes with their boxes and detections,
the retrieval gallery of each condition, and time against accuracy."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..figures import show_image
from ..palette import HIT, MISS, model_color
from .settings import condition_name


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
        show_image(ax, images[i])
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
    """Notebook 08's retrieval gallery (`ue_lib.objects.experiments.ObjectSeed.examples["gallery"]`): per
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
            show_image(row[0], query, border="black")
            row[0].set_ylabel(f"{example['domains'][q]}\n{condition_name(name)}", fontsize=7, rotation=0,
                              ha="right", va="center")
            images = example["conditions"][name]["images"][q]
            correct = example["conditions"][name]["correct"][q]
            for j, ax in enumerate(row[1:]):
                if j < len(images):
                    show_image(ax, images[j], border=HIT if correct[j] else MISS)
                else:
                    ax.axis("off")
    fig.suptitle(title or "query objects (left) and their nearest gallery items", fontsize=10)
    fig.tight_layout()
    return fig


def label_offsets(x, y, gap: float = 11.0, width: float = 120.0, lift: float = 4.0) -> list[float]:
    """Vertical offsets (points) for labels written right of points at (`x`, `y`), in points on
    the figure: each label starts `lift` above its point, and a label whose point lies within
    `width` to the side of an already placed one stands at least `gap` above it (placed in order
    of y, so they stack upwards)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    placed: list[tuple[float, float]] = []  # (x, label height) of the labels so far
    out = [0.0] * len(x)
    for i in np.argsort(y, kind="stable"):
        height = y[i] + lift
        for px, ph in sorted(placed, key=lambda p: p[1]):
            if abs(px - x[i]) <= width and height < ph + gap and height > ph - gap:
                height = ph + gap
        placed.append((x[i], height))
        out[i] = height - y[i]
    return out


def tradeoff_plot(points: pd.DataFrame, metric: str = "recall@1"):
    """Time against accuracy: one point per condition (columns ``condition``, its name, ``ms``
    and ``value`` (means) and ``ms_std``/``value_std``), coloured by `model_color`, labelled."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, r in points.iterrows():
        ax.errorbar(r.ms, r.value, xerr=r.get("ms_std", 0) or 0, yerr=r.get("value_std", 0) or 0,
                    fmt="o", color=model_color(r.condition), capsize=3)
    ax.set_xlim(left=0)
    ax.autoscale_view()
    at = ax.transData.transform(np.column_stack([points.ms, points.value])) * 72.0 / fig.dpi
    for r, offset in zip(points.itertuples(), label_offsets(at[:, 0], at[:, 1])):
        ax.annotate(r.condition, (r.ms, r.value), textcoords="offset points", xytext=(6, offset),
                    fontsize=8, color=model_color(r.condition))
    ax.set_xlabel("ms per scene (shared scene pass and detector included)")
    ax.set_ylabel(f"object retrieval {metric}")
    ax.set_title("teacher vs guided students: time and accuracy")
    fig.tight_layout()
    return fig


def roi_align_figure(example: dict):
    """RoIAlign in one picture (`ue_lib.objects.trunk.roi_example`): the stride-s feature map of a
    scene with one box drawn on it (in map cells: the box's pixels / s, not rounded) and the box
    cut into output × output bins, each the average of bilinear samples of the map; right, the
    pooled output that the last stages of the trunk then read."""
    fmap, pooled, s = example["map"], example["pooled"], example["stride"]
    x1, y1, x2, y2 = (v / s for v in example["box"])
    n = pooled.shape[0]
    lim = float(max(np.abs(fmap).max(), np.abs(pooled).max()))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4), gridspec_kw={"width_ratios": [1.4, 1]})
    ax = axes[0]
    ax.imshow(fmap, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=(0, fmap.shape[1], fmap.shape[0], 0))
    for i in range(fmap.shape[0] + 1):
        ax.axhline(i, color="white", linewidth=0.6)
        ax.axvline(i, color="white", linewidth=0.6)
    for i in range(1, n):
        ax.plot([x1 + i * (x2 - x1) / n] * 2, [y1, y2], color="black", linewidth=0.8, linestyle="--")
        ax.plot([x1, x2], [y1 + i * (y2 - y1) / n] * 2, color="black", linewidth=0.8, linestyle="--")
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="black", linewidth=2))
    ax.set(title=f"feature map, stride {s}: one cell = {s}×{s} pixels", xlabel="map column",
           ylabel="map row")
    ax.grid(False)
    axes[1].imshow(pooled, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[1].set(title=f"the box pooled to {n}×{n} cells", xticks=range(n), yticks=range(n))
    axes[1].grid(False)
    fig.tight_layout()
    return fig
