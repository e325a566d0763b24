"""How much of a teacher's geometry a student keeps (`ue_lib.universal.neighbours`): the nearest
neighbours and their overlap on hand-made distance matrices, Spearman's ρ of all pairs, the
per-domain table from tiny models, and the computed sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ue_lib.data import Domain, Split
from ue_lib.universal import neighbours


def _line(positions) -> np.ndarray:
    """The distance matrix |x_i - x_j| of points on a line (any square matrix will do)."""
    x = np.asarray(positions, dtype=float)
    return np.abs(x[:, None] - x[None, :])


TEACHER = _line([0, 1, 3, 7])
STUDENT = _line([0, 2, 3, 4])


def test_nearest_leaves_the_item_out_and_breaks_ties_by_index():
    # 0 and 1 are duplicates (distance 0): each is the other's nearest, never its own
    d = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert neighbours.nearest(d, 1).tolist() == [[1], [0], [0]]  # 2: 0 and 1 tie, 0 first
    assert neighbours.nearest(d, 2).tolist() == [[1, 2], [0, 2], [0, 1]]
    assert neighbours.nearest(STUDENT, 2).tolist() == [[1, 2], [2, 0], [1, 3], [2, 1]]
    for k in (0, 3):
        with pytest.raises(ValueError, match="between 1 and 2"):
            neighbours.nearest(d, k)


def test_topk_overlap_by_hand():
    # k = 1: teacher 1 0 1 2, student 1 2 1 2 -> 1, 0, 1, 1
    assert neighbours.topk_overlap(TEACHER, STUDENT, 1) == 0.75
    # k = 2: teacher {1,2} {0,2} {1,0} {2,1}, student {1,2} {2,0} {1,3} {2,1} -> 1, 1, 1/2, 1
    assert neighbours.topk_overlap(TEACHER, STUDENT, 2) == 0.875
    assert neighbours.topk_overlap(TEACHER, STUDENT, 3) == 1.0  # all the others
    assert neighbours.topk_overlap(TEACHER, TEACHER, 1) == 1.0
    assert neighbours.topk_overlap(TEACHER, 5 * TEACHER + 1, 2) == 1.0  # neither scale nor shift matter
    with pytest.raises(ValueError, match="different shapes"):
        neighbours.topk_overlap(TEACHER, STUDENT[:3, :3], 1)


def test_order_correlation_is_spearman_of_the_pairs_by_hand():
    # pairs 01 02 03 12 13 23: teacher 1 3 7 2 6 4 (ranks 1 3 6 2 5 4), student 2 3 4 1 2 1
    # (ranks 3.5 5 6 1.5 3.5 1.5); Pearson correlation of the ranks = 7.5 / sqrt(17.5 * 16.5)
    assert neighbours.order_correlation(TEACHER, STUDENT) == pytest.approx(7.5 / np.sqrt(17.5 * 16.5),
                                                                           abs=1e-12)
    assert neighbours.order_correlation(TEACHER, TEACHER ** 2) == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(neighbours.order_correlation(TEACHER[:2, :2], STUDENT[:2, :2]))


# ----------------------------------------------------------------------------- from models

def _domain(name: str, vectors) -> Domain:
    """A domain whose every split holds the uint8 `vectors` (N, D) as (N, 1, 1, D) images."""
    images = np.asarray(vectors, dtype=np.uint8)[:, None, None, :]
    split = Split(images, np.arange(len(images)))
    return Domain(name, split, split, split, class_names=[str(c) for c in range(len(images))],
                  split_rule="test", provenance="test", license="none")


# at 0°, 90°, 38.1° and 13.2°; stretched 3x along y: 0°, 90°, 67.0° and 35.2°
POINTS = [[255, 0], [0, 255], [255, 200], [255, 60]]


def _stretch() -> torch.nn.Module:
    linear = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    return torch.nn.Sequential(torch.nn.Flatten(), linear)


def test_distance_matrix_and_pairwise_distances_of_normalised_embeddings():
    split = _domain("x", POINTS).test
    d = neighbours.distance_matrix(torch.nn.Flatten(), split, np.array([0, 1, 3]))
    cos = np.cos(np.arctan2([0, 255, 60], [255, 0, 255])[:, None] - np.arctan2([0, 255, 60], [255, 0, 255]))
    np.testing.assert_allclose(d, 2 - 2 * cos, atol=1e-6)
    assert np.all(np.diag(d) == 0)
    np.testing.assert_allclose(neighbours.pairwise_distances(torch.nn.Flatten(), split, np.array([0, 1, 3])),
                               d[np.triu_indices(3, k=1)])
    sample = neighbours.sample_items(split, 3, seed=0).tolist()
    assert len(set(sample)) == 3 and sample == sorted(sample)
    assert neighbours.sample_items(split, 10, seed=0).tolist() == [0, 1, 2, 3]


def test_neighbour_agreement_per_domain_and_student():
    doms = {"x": _domain("x", POINTS), "y": _domain("y", POINTS[::-1])}
    table = neighbours.neighbour_agreement({"x": torch.nn.Flatten(), "y": torch.nn.Flatten()},
                                           {"kl": torch.nn.Flatten(), "distance_mse": _stretch()},
                                           doms, ks=(1, 2))
    assert list(table.columns) == ["domain", "method", "items", "spearman", "top1", "top2"]
    assert list(zip(table.domain, table.method)) == [("x", "kl"), ("x", "distance_mse"),
                                                      ("y", "kl"), ("y", "distance_mse")]
    assert table["items"].tolist() == [4] * 4
    # the teacher itself keeps everything
    assert table[table.method == "kl"][["spearman", "top1", "top2"]].to_numpy().tolist() == [[1, 1, 1]] * 2
    # stretched: nearest teacher 3 2 3 0, student 3 2 1 2 -> top-1 1/2; 2-nearest: teacher {3,2}
    # {2,3} {3,0} {0,2}, student {3,2} {2,3} {1,3} {2,0} -> 1, 1, 1/2, 1; pairs' angles: teacher
    # ranks 6 3 1 4 5 2, student 6 5 3 1 4 2, ρ = 1 - 6 * 18 / (6 * 35) = 17 / 35
    stretched = table[table.method == "distance_mse"]
    assert stretched.top1.tolist() == [0.5, 0.5] and stretched.top2.tolist() == [0.875, 0.875]
    np.testing.assert_allclose(stretched.spearman, [17 / 35] * 2, atol=1e-12)


def test_neighbour_agreement_uses_one_seeded_sample():
    doms = {"x": _domain("x", POINTS * 3)}  # 12 items
    args = ({"x": torch.nn.Flatten()}, {"s": _stretch()}, doms)
    a = neighbours.neighbour_agreement(*args, ks=(1,), max_items=6, seed=4)
    assert a["items"].tolist() == [6]
    pd.testing.assert_frame_equal(a, neighbours.neighbour_agreement(*args, ks=(1,), max_items=6, seed=4))


# ----------------------------------------------------------------------------- the sentence

def _table(spearman, top1, top10) -> pd.DataFrame:
    """Two domains a, b; students kl and distance_mse, in that order per domain."""
    return pd.DataFrame({"domain": ["a", "a", "b", "b"], "method": ["kl", "distance_mse"] * 2,
                         "items": 4, "spearman": spearman, "top1": top1, "top10": top10})


def test_agreement_sentence_when_kl_keeps_more_neighbours_but_less_order():
    text = neighbours.agreement_sentence(_table([0.6, 0.8, 0.7, 0.87], [0.5, 0.3, 0.3, 0.36],
                                                [0.5, 0.4, 0.5, 0.5]))
    assert text.startswith("Mean over 2 domains of the agreement with the teacher")
    assert "* `kl`: ρ 0.650, top-1 0.400, top-10 0.500" in text
    assert "* `distance_mse`: ρ 0.835, top-1 0.330, top-10 0.450" in text
    assert text.endswith("`kl` keeps less of the teacher's order over all pairs than `distance_mse` "
                         "(mean ρ 0.650 vs 0.835), but more of its nearest neighbours "
                         "(top-1 overlap 0.400 vs 0.330, top-10 0.500 vs 0.450).")


def test_agreement_sentence_says_what_the_numbers_show():
    both = neighbours.agreement_sentence(_table([0.9, 0.8, 0.9, 0.8], [0.5, 0.3, 0.5, 0.3],
                                                [0.6, 0.4, 0.6, 0.4]))
    assert both.endswith("`kl` keeps more of the teacher's order over all pairs than `distance_mse` "
                         "(mean ρ 0.900 vs 0.800) and more of its nearest neighbours "
                         "(top-1 overlap 0.500 vs 0.300, top-10 0.600 vs 0.400).")
    mixed = neighbours.agreement_sentence(_table([0.6, 0.8, 0.7, 0.87], [0.5, 0.3, 0.3, 0.36],
                                                 [0.5, 0.6, 0.5, 0.6]))
    assert mixed.endswith("(mean ρ 0.650 vs 0.835). Of the teacher's nearest neighbours it keeps "
                          "more at top-1 (overlap 0.400 vs 0.330) and fewer at top-10 "
                          "(overlap 0.500 vs 0.600).")
    same = neighbours.agreement_sentence(_table([0.8, 0.8, 0.8, 0.8], [0.5, 0.5, 0.5, 0.5],
                                                [0.6, 0.6, 0.6, 0.6]))
    assert same.endswith("`kl` keeps as much of the teacher's order over all pairs as `distance_mse` "
                         "(mean ρ 0.800 vs 0.800) and as many of its nearest neighbours "
                         "(top-1 overlap 0.500 vs 0.500, top-10 0.600 vs 0.600).")


def test_agreement_sentence_compares_the_first_student_without_kl_and_no_pair_for_one():
    t = _table([0.6, 0.8, 0.7, 0.87], [0.5, 0.3, 0.3, 0.36], [0.5, 0.4, 0.5, 0.5])
    t["method"] = t.method.replace({"kl": "rkd_angle"})
    assert "`rkd_angle` keeps less of the teacher's order over all pairs than `distance_mse`" in \
        neighbours.agreement_sentence(t)
    alone = neighbours.agreement_sentence(t[t.method == "distance_mse"])
    assert alone.splitlines()[-1] == "* `distance_mse`: ρ 0.835, top-1 0.330, top-10 0.450"
    assert "keeps" not in alone
