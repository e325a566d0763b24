"""One anchor's kl softmax at several temperatures (`ue_lib.universal.temperature`): exact masses
on hand-made distances, and the same numbers from the loss itself on a real batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import at_angles

from ue_lib.data import Split
from ue_lib.losses import DistributionDistillationLoss
from ue_lib.universal import temperature

LN2 = np.log(2.0)


def test_softmax_mass_is_exact_on_hand_made_distances():
    # nearest first 0, ln 2, ln 4, ln 4: at τ = 1 the weights are 1, 1/2, 1/4, 1/4 (sum 2), at
    # τ = 0.5 they are 1, 1/4, 1/16, 1/16 (sum 11/8); given in any order
    mass = temperature.softmax_mass([2 * LN2, 0.0, LN2, 2 * LN2], (1.0, 0.5), ks=(1, 2, 9))
    expected = pd.DataFrame({"temperature": [1.0, 1.0, 1.0, 0.5, 0.5, 0.5], "k": [1, 2, 4] * 2,
                             "mass": [0.5, 0.75, 1.0, 8 / 11, 10 / 11, 1.0],
                             "uniform": [0.25, 0.5, 1.0] * 2})
    pd.testing.assert_frame_equal(mass, expected, atol=1e-12)


def test_mass_sentence_reads_the_table():
    mass = temperature.softmax_mass([2 * LN2, 0.0, LN2, 2 * LN2], (0.5, 1.0), ks=(1, 2))
    assert temperature.mass_sentence(mass) == (
        "Of one anchor's softmax over its 4 candidates, at τ = 0.5 the nearest candidate carries "
        "0.73, the nearest 2 carry 0.91; at τ = 1 the nearest candidate carries 0.50, the nearest 2 "
        "carry 0.75 (an even spread would give 0.25 for the nearest 1, 0.50 for the nearest 2).")


def test_anchor_distributions_are_the_losses_sorted_nearest_first():
    emb = torch.from_numpy(at_angles(0, 60, 10, 30, 180))  # anchor at 0°
    table = temperature.anchor_distributions(emb, np.array([1, 2, 1, 3, 1]), (0.05, 1.0))
    assert list(table.columns) == ["temperature", "rank", "candidate", "distance", "same_class", "p"]
    g = table[table.temperature == 1.0]
    assert list(g.candidate) == [2, 3, 1, 4] and list(g["rank"]) == [1, 2, 3, 4]
    assert list(g.same_class) == [True, False, False, True]
    np.testing.assert_allclose(g.distance, 2 - 2 * np.cos(np.deg2rad([10, 30, 60, 180])), atol=1e-6)
    loss_p = DistributionDistillationLoss(temperature=1.0).distributions(emb)[0].numpy()
    np.testing.assert_allclose(g.p, loss_p[[1, 2, 0, 3]], atol=1e-7)
    for tau, t in table.groupby("temperature"):
        mass = temperature.softmax_mass(t.distance, (tau,), ks=(1, 2))
        np.testing.assert_allclose(mass.mass, [t.p.iloc[0], t.p.iloc[:2].sum()], atol=1e-6)


def test_anchor_batch_is_a_training_batch_whose_anchor_has_k_minus_one_partners():
    x = np.repeat(np.arange(6) * 40, 3)[:, None, None, None] + np.tile([0, 5, 9], 6)[:, None, None, None]
    split = Split(np.concatenate([x, 255 - x], axis=3).astype(np.uint8), np.repeat(np.arange(6), 3))
    emb, labels = temperature.anchor_batch(torch.nn.Flatten(), split, p=3, k=3, seed=0)
    assert emb.shape == (9, 2) and len(set(labels)) == 3
    assert (labels[:3] == labels[0]).all() and (labels[3:] != labels[0]).all()
    again = temperature.anchor_mass(torch.nn.Flatten(), split, (0.05,), ks=(1,), p=3, k=3, seed=0)
    d = torch.cdist(torch.nn.functional.normalize(emb[:1]), torch.nn.functional.normalize(emb[1:]))[0] ** 2
    w = torch.softmax(-d.sort().values / 0.05, 0)
    assert again.mass.iloc[0] == pytest.approx(float(w[0]), abs=1e-5)
