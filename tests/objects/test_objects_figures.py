"""The object-embedding system's figures (`ue_lib.objects.figures`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ue_lib import palette  # noqa: E402
from ue_lib.objects import figures as objects_figures  # noqa: E402


def test_object_figures():
    images = np.zeros((3, 3, 32, 32), np.uint8)
    boxes = [np.array([[1, 1, 10, 10]]), np.array([[0, 0, 5, 5], [6, 6, 20, 20]]), np.zeros((0, 4))]
    fig = objects_figures.scenes_figure(images, boxes, [np.array([[2, 2, 9, 9]]), np.zeros((0, 4)),
                                               np.zeros((0, 4))], columns=2)
    rects = [len(ax.patches) for ax in fig.axes]
    assert rects == [2, 2, 0, 0]  # truth and detection boxes per scene; the spare axis is off
    plt.close(fig)
    crop = np.zeros((3, 8, 8), np.uint8)
    example = {"queries": [crop], "domains": ["glyphs"],
               "conditions": {"global": {"images": [[crop, crop]], "correct": [[True, False]]},
                              "student_kl": {"images": [[crop]], "correct": [[False]]}}}
    fig = objects_figures.object_gallery(example)
    assert len(fig.axes) == 2 * 3
    borders = [ax.spines["top"].get_edgecolor() for ax in fig.axes[1:3]]
    assert matplotlib.colors.to_hex(borders[0]) == palette.HIT.lower()
    plt.close(fig)
    points = pd.DataFrame({"condition": ["(iv) teacher on crops", "(v) student, kl guide"],
                           "ms": [30.0, 16.0], "ms_std": [1.0, 0.5], "value": [0.27, 0.21],
                           "value_std": [0.01, 0.02]})
    fig = objects_figures.tradeoff_plot(points)
    assert [t.get_text() for t in fig.axes[0].texts] == ["(iv) teacher on crops", "(v) student, kl guide"]
    plt.close(fig)
