"""Worked examples: the retrieval metrics of six hand-placed points and the kl argument on one
anchor, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ue_lib.losses import loss_defaults
from ue_lib.universal import examples


def test_metric_example_items_are_the_hand_placed_unit_vectors():
    items, _ = examples.metric_example()
    assert list(items.label) == ["A", "A", "A", "B", "B", "C"]
    assert list(items.angle) == [0, 20, 90, 110, 150, 350]
    np.testing.assert_allclose(items.x ** 2 + items.y ** 2, 1, atol=1e-3)


def test_metric_example_per_query_metrics_match_the_hand_computation():
    _, q = examples.metric_example()
    # angles 0 20 90 (A), 110 150 (B), 350 (C); e.g. query 0 (0°): 350° C, 20° A, 90° A, 110° B,
    # 150° B; R = 2: recall@1 0, recall@2 1, MAP@R = (0 + 1/2) / 2, MMP@5 = 1 of the first 2
    assert list(q.neighbours) == ["C A A B B", "A C A B B", "B B A A C", "A B A A C", "B A A A C",
                                  "A A A B B"]
    assert list(q.R) == [2, 2, 2, 1, 1, 0]
    expected = pd.DataFrame({"recall@1": [0, 1, 0, 0, 1, np.nan], "recall@2": [1, 1, 0, 1, 1, np.nan],
                             "map@r": [0.25, 0.5, 0, 0, 1, np.nan], "mmp@5": [0.5, 0.5, 0, 0, 1, np.nan]},
                            dtype=float)
    pd.testing.assert_frame_equal(q[expected.columns], expected)


def test_kl_worked_example_distances_and_distributions():
    t = examples.kl_worked_example()
    assert t.temperature.unique().tolist() == [loss_defaults()["kl"]["temperature"]] == [0.05]
    assert list(t.domain) == ["domain A"] * 3 + ["domain B"] * 3
    r = t.round(4)
    assert r.teacher_distance.tolist() == [0.1874, 0.2180, 0.5858, 0.5613, 0.6617, 1.6527]
    assert r.teacher_p.tolist() == [0.6483, 0.3515, 0.0002, 0.8817, 0.1183, 0.0]
    assert r.student_distance.tolist() == [0.3617, 0.4240, 1.0611] * 2
    assert r.student_q.tolist() == [0.7765, 0.2235, 0.0] * 2
    # by hand: d = 2 - 2 cos(angle), p = softmax(-d / 0.05)
    d = 2 - 2 * np.cos(np.deg2rad(t.teacher_angle.to_numpy(float)))
    np.testing.assert_allclose(t.teacher_distance, d, atol=1e-12)
    e = np.exp(-d.reshape(2, 3) / 0.05)
    np.testing.assert_allclose(t.teacher_p, (e / e.sum(1, keepdims=True)).ravel(), atol=1e-12)


def test_kl_worked_example_makes_the_stated_point():
    t = examples.kl_worked_example()
    a, b = (t[t.domain == name] for name in ("domain A", "domain B"))
    ratio = b.teacher_distance.to_numpy() / a.teacher_distance.to_numpy()
    assert ratio.min() > 2.8 and ratio.max() < 3.1  # teacher B's scale is about 3x A's
    for g in (a, b):  # the same order of candidates, in distances and in the distributions
        assert np.all(np.diff(g.teacher_distance) > 0) and np.all(np.diff(g.teacher_p) < 0)
    assert b.teacher_p.iloc[0] > a.teacher_p.iloc[0]  # at a fixed τ, B's softmax is sharper
    sharper = examples.kl_worked_example(temperature=0.1).round(4)
    assert sharper.teacher_p.tolist()[:3] == [0.5698, 0.4196, 0.0106]


def test_kl_example_losses_per_domain():
    losses = examples.kl_example_losses(examples.kl_worked_example()).round(4)
    assert list(losses.columns) == ["domain", "kl", "total_variation", "distance_mse", "distance_ratio"]
    assert losses.kl.tolist() == [0.0435, 0.0367]
    assert losses.total_variation.tolist() == [0.1283, 0.1051]
    assert losses.distance_mse.tolist() == [0.0996, 0.1488]
    assert losses.distance_ratio.tolist() == [1.8955, 0.6424]
