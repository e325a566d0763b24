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


def test_the_roi_align_figure_draws_torchvisions_pooling_of_the_box():
    import torch

    from ue_lib.objects import figures as objects_figures
    from ue_lib.objects.trunk import box_features, roi_example

    ex = roi_example(image_side=128, stride=16, box=(22, 38, 98, 94), output_size=4)
    assert ex["map"].shape == (8, 8) and ex["pooled"].shape == (4, 4)
    fmap = torch.from_numpy(ex["map"])[None, None]
    again = box_features(fmap, [torch.tensor([[22.0, 38.0, 98.0, 94.0]])], 128, 4)[0, 0].numpy()
    np.testing.assert_array_equal(ex["pooled"], again)
    # a box of whole map cells, pooled to its own size, is the map's cells themselves
    whole = roi_example(box=(16, 32, 80, 96), output_size=4)
    np.testing.assert_allclose(whole["pooled"], whole["map"][2:6, 1:5], atol=1e-6)
    fig = objects_figures.roi_align_figure(ex)
    box = [p for p in fig.axes[0].patches if p.get_linewidth() == 2][0]
    assert box.get_xy() == (22 / 16, 38 / 16) and box.get_width() == (98 - 22) / 16
    plt.close(fig)


def test_labels_of_nearby_points_are_stacked_apart():
    from ue_lib.objects.figures import label_offsets

    # two points 5 points apart, one label height (11) needed: the higher one's label moves up to
    # 4 + 11 = 15 points, 10 above its point; a point far to the side keeps the plain lift of 4
    assert label_offsets([0, 0, 500], [0, 5, 5]) == [4.0, 10.0, 4.0]
    assert label_offsets([0, 0], [0, 40]) == [4.0, 4.0]  # already apart
