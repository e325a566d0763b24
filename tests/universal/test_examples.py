"""Worked examples: the retrieval metrics of six hand-placed points and what the kl loss ignores
(a shift of an anchor's distances) and does not (a scale), checked against values worked out by
hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ue_lib.losses import DistributionDistillationLoss, loss_defaults
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


def _softmax(d: np.ndarray, tau: float) -> np.ndarray:
    """softmax(-d / tau), written out in numpy."""
    e = np.exp(-d / tau)
    return e / e.sum()


def test_distribution_of_is_the_softmax_of_minus_distance_over_tau():
    loss = DistributionDistillationLoss(temperature=0.5)
    d = torch.tensor([[0.0, np.log(2) / 2, np.log(4) / 2]], dtype=torch.float64)  # exp(-d/0.5): 1, 1/2, 1/4
    np.testing.assert_allclose(loss.distribution_of(d).numpy(), [[4 / 7, 2 / 7, 1 / 7]], atol=1e-15)
    np.testing.assert_allclose(loss.distribution_of(d[0] + 3.0).numpy(), [4 / 7, 2 / 7, 1 / 7], atol=1e-15)
    # distributions(embeddings) is distribution_of the off-diagonal squared distances
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)  # d: 2, 4 | 2, 2 | 4, 2
    np.testing.assert_allclose(loss.distributions(emb).numpy(),
                               [_softmax(np.array(r), 0.5) for r in ([2, 4], [2, 2], [4, 2])], atol=1e-15)


def test_kl_shift_scale_example_tables():
    cands, losses = examples.kl_shift_scale_example()
    assert list(cands.columns) == ["case", "candidate", "angle_A", "d_A", "d_B", "p_A", "p_B"]
    assert list(cands.case) == ["shift"] * 4 + ["scale"] * 4 and list(cands.candidate) == [1, 2, 3, 4] * 2
    assert list(losses.columns) == ["case", "change", "kl", "total_variation", "distance_mse", "temperature"]
    assert list(losses.change) == ["d_B = d_A + 0.25", "d_B = 2 × d_A"]
    assert losses.temperature.tolist() == [loss_defaults()["kl"]["temperature"]] * 2 == [0.05] * 2
    d_a = np.array([0.125, 0.1875, 0.25, 0.375])
    assert cands.d_A.tolist() == list(d_a) * 2
    assert cands.d_B.tolist() == list(d_a + 0.25) + list(2 * d_a)
    # teacher A's distances are those of unit vectors: 2 - 2 cos(angle)
    np.testing.assert_allclose(2 - 2 * np.cos(np.deg2rad(cands.angle_A)), cands.d_A, atol=1e-12)
    assert cands.angle_A.round(1).tolist()[:4] == [20.4, 25.0, 29.0, 35.7]
    np.testing.assert_allclose(cands.p_A, np.tile(_softmax(d_a, 0.05), 2), atol=1e-12)


def test_a_shift_of_the_distances_changes_distance_mse_but_not_the_distribution():
    cands, losses = examples.kl_shift_scale_example()
    shift, row = cands[cands.case == "shift"], losses.set_index("case").loc["shift"]
    np.testing.assert_allclose(shift.p_B, shift.p_A, rtol=0, atol=1e-12)
    assert abs(row.kl) < 1e-12 and abs(row.total_variation) < 1e-12
    assert row.distance_mse == 0.25 ** 2  # exact: the distances are binary fractions
    # softmax(-d/0.05) of 1/8, 3/16, 1/4, 3/8: proportional to 1, e^-1.25, e^-2.5, e^-5
    e = np.exp([0, -1.25, -2.5, -5])
    np.testing.assert_allclose(shift.p_A, e / e.sum(), atol=1e-12)
    assert shift.p_A.round(4).tolist() == [0.7271, 0.2083, 0.0597, 0.0049]


def test_a_scale_of_the_distances_changes_both():
    cands, losses = examples.kl_shift_scale_example()
    scale, row = cands[cands.case == "scale"], losses.set_index("case").loc["scale"]
    d_a = np.array([0.125, 0.1875, 0.25, 0.375])
    p, q = _softmax(d_a, 0.05), _softmax(2 * d_a, 0.05)
    np.testing.assert_allclose(scale.p_B, q, atol=1e-12)
    assert row.kl == pytest.approx(np.sum(p * np.log(p / q)), abs=1e-12) and row.kl > 0.2
    assert row.total_variation == pytest.approx(0.5 * np.abs(p - q).sum(), abs=1e-12)
    assert row.distance_mse == pytest.approx(np.mean(d_a ** 2), abs=1e-15) == 0.0634765625
    assert round(row.kl, 4) == 0.2005 and round(row.total_variation, 4) == 0.1913
    assert scale.p_B.iloc[0] > scale.p_A.iloc[0]  # a scale above 1 sharpens the distribution


def test_kl_shift_scale_example_parameters():
    cands, losses = examples.kl_shift_scale_example(temperature=0.1, shift=0.5, scale=0.5)
    assert list(losses.change) == ["d_B = d_A + 0.5", "d_B = 0.5 × d_A"]
    assert losses.temperature.tolist() == [0.1, 0.1]
    assert losses.kl.iloc[0] < 1e-12 and losses.distance_mse.iloc[0] == 0.25
    scale = cands[cands.case == "scale"]
    d_a = scale.d_A.to_numpy()
    np.testing.assert_allclose(scale.p_B, _softmax(d_a / 2, 0.1), atol=1e-12)
    assert scale.p_B.iloc[0] < scale.p_A.iloc[0]  # a scale below 1 flattens it
