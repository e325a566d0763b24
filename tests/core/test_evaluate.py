"""Tests for ue_lib.evaluate: exact hand-computed values on tiny sets, plus a brute-force oracle.

Most hand-made sets are unit vectors at given angles (degrees) in 2-D: the cosine similarity is
cos(angle difference), so neighbours rank by increasing angle difference (all below 180°).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import assert_metrics, at_angles, patch_search

import ue_lib.evaluate.search as search_module
from ue_lib.evaluate import (
    TIE_EPS,
    embed,
    evaluate_domains,
    evaluate_merged,
    merged_retrieval_metrics,
    nearest_neighbours,
    per_query_metrics,
    query_counts,
    retrieval_metrics,
    tie_ordered,
)

# Angles 0, 10, 25, 45, 70, 100 for items 0..5; labels A={0,1,2,4}, B={3,5}.
# Neighbour order (angle differences) and relevance:
#   q0 (A, R=3): 1(10) 2(25) 3(45) 4(70) 5(100)   rel 1 1 0 1 0
#   q1 (A, R=3): 0(10) 2(15) 3(35) 4(60) 5(90)    rel 1 1 0 1 0
#   q2 (A, R=3): 1(15) 3(20) 0(25) 4(45) 5(75)    rel 1 0 1 1 0
#   q3 (B, R=1): 2(20) 4(25) 1(35) 0(45) 5(55)    rel 0 0 0 0 1
#   q4 (A, R=3): 3(25) 5(30) 2(45) 1(60) 0(70)    rel 0 0 1 1 1
#   q5 (B, R=1): 4(30) 3(55) 2(75) 1(90) 0(100)   rel 0 1 0 0 0
# recall@1 = (1+1+1+0+0+0)/6 = 1/2;  recall@2 = (1+1+1+0+0+1)/6 = 2/3
# recall@4 = (1+1+1+0+1+1)/6 = 5/6;  recall@8 -> clamped to N-1 = 5: every row has a hit = 1
# AP@R: q0 = (1 + 1 + 0)/3 = 2/3, q1 = 2/3, q2 = (1 + 0 + 2/3)/3 = 5/9, q3 = 0,
#       q4 = (0 + 0 + 1/3)/3 = 1/9, q5 = 0  ->  map@r = (6/9 + 6/9 + 5/9 + 1/9)/6 = 1/3
# mmp@5 (m = min(5, R)): q0 2/3, q1 2/3, q2 2/3, q3 0/1, q4 1/3, q5 0/1 -> (7/3)/6 = 7/18
SIMPLE_X = at_angles(0, 10, 25, 45, 70, 100)
SIMPLE_Y = np.array([0, 0, 0, 1, 0, 1])
SIMPLE_EXPECTED = {
    "recall@1": 1 / 2,
    "recall@2": 2 / 3,
    "recall@4": 5 / 6,
    "recall@8": 1.0,
    "map@r": 1 / 3,
    "mmp@5": 7 / 18,
}


def test_simple_two_class_exact_values():
    got = retrieval_metrics(SIMPLE_X, SIMPLE_Y)
    assert_metrics(got, SIMPLE_EXPECTED)
    assert all(type(v) is float for v in got.values())


def test_per_query_values():
    metrics, valid = per_query_metrics(SIMPLE_X, SIMPLE_Y, ks=(1, 2))
    assert valid.all()
    np.testing.assert_allclose(metrics["recall@1"], [1, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(metrics["map@r"], [2 / 3, 2 / 3, 5 / 9, 0, 1 / 9, 0])
    np.testing.assert_allclose(metrics["mmp@5"], [2 / 3, 2 / 3, 2 / 3, 0, 1 / 3, 0])


def test_singleton_class_excluded_but_still_a_candidate():
    # Angles 0, 10, 30, 70; item 1 is the only member of class 1 (not a query).
    #   q0 (R=2): 1(10) 2(30) 3(70)  rel 0 1 1  AP = (0 + 1/2)/2 = 1/4, mmp = 1/2
    #   q2 (R=2): 1(20) 0(30) 3(40)  rel 0 1 1  AP = 1/4, mmp = 1/2
    #   q3 (R=2): 2(40) 1(60) 0(70)  rel 1 0 1  AP = (1 + 0)/2 = 1/2, mmp = 1/2
    # recall@1 = 1/3, recall@2 = 1, map@r = (1/4 + 1/4 + 1/2)/3 = 1/3, mmp@5 = 1/2
    x, y = at_angles(0, 10, 30, 70), np.array([0, 1, 0, 0])
    got = retrieval_metrics(x, y, ks=(1, 2))
    assert_metrics(got, {"recall@1": 1 / 3, "recall@2": 1.0, "map@r": 1 / 3, "mmp@5": 1 / 2})
    metrics, valid = per_query_metrics(x, y, ks=(1,))
    assert valid.tolist() == [True, False, True, True]
    assert np.isnan(metrics["recall@1"][1])
    assert query_counts(y) == {"num_items": 4, "num_classes": 2, "num_queries": 3}


def test_ties_follow_ascending_index_rule():
    # e0 = e1 = (1, 0); e2 = (0, 1); e3 = (0, 2) (same direction as e2); e4 = (1, 1).
    # Labels [0, 1, 1, 0, 0]. Tied candidates are ordered by ascending index:
    #   q0 (R=2): 1 (sim 1; self 0 ties with it and is removed), 4 (.707), {2, 3} (0) -> 2, 3
    #             rel 0 1 0 1: r@1 0, r@2 1, r@3 1, AP = (0 + 1/2)/2 = 1/4, mmp = 1/2
    #   q1 (R=1): 0, 4, {2, 3}: rel 0 0 1 0: r@1 0, r@2 0, r@3 1, AP 0, mmp 0
    #   q2 (R=1): 3, 4, {0, 1}: rel 0 0 0 1: r@3 0 (item 1 comes after the tied item 0), AP 0
    #   q3 (R=2): 2, 4, {0, 1}: rel 0 1 1 0: r@1 0, r@2 1, AP = 1/4, mmp = 1/2
    #   q4 (R=2): {0, 1, 2, 3} all at .707: rel 1 0 0 1: r@1 1, AP = (1 + 0)/2 = 1/2, mmp 1/2
    x = np.array([[1, 0], [1, 0], [0, 1], [0, 2], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0, 0])
    metrics, _ = per_query_metrics(x, y, ks=(1, 2, 3))
    np.testing.assert_array_equal(metrics["recall@1"], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(metrics["recall@2"], [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(metrics["recall@3"], [1, 1, 0, 1, 1])
    np.testing.assert_allclose(metrics["map@r"], [1 / 4, 0, 0, 1 / 4, 1 / 2])
    np.testing.assert_allclose(metrics["mmp@5"], [1 / 2, 0, 0, 1 / 2, 1 / 2])


def test_nearest_neighbours_rank_other_items_by_the_tie_rule():
    # the simple set's neighbour orders (module header): q0 1 2 3 4 5, q3 2 4 1 0 5, q5 4 3 2 1 0
    np.testing.assert_array_equal(nearest_neighbours(SIMPLE_X, 3, [0, 3, 5]),
                                  [[1, 2, 3], [2, 4, 1], [4, 3, 2]])
    # the ties of the test above: q0 -> 1, 4, then {2, 3} by index; q4 -> {0, 1, 2, 3} by index
    x = np.array([[1, 0], [1, 0], [0, 1], [0, 2], [1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(nearest_neighbours(x, 4, [0, 4]), [[1, 4, 2, 3], [0, 1, 2, 3]])
    assert nearest_neighbours(x, 9).shape == (5, 4)  # k clamped to N - 1, every item a query
    assert nearest_neighbours(x[:1], 3).shape == (1, 0)
    with pytest.raises(ValueError, match="queries must be indices"):
        nearest_neighbours(x, 1, [5])


def test_tie_ordered_ranks_any_scores_by_the_tie_rule():
    # 7 and 2 tie exactly, 5 is within TIE_EPS of 2 and so chains into their group: by index
    scores = [0.5, 0.9, 0.9, 0.9 - TIE_EPS / 2, 0.1]
    assert tie_ordered(scores, [4, 7, 2, 5, 9]).tolist() == [2, 5, 7, 4, 9]
    assert tie_ordered([0.3, 0.2 + 3 * TIE_EPS, 0.2], [0, 3, 1]).tolist() == [0, 3, 1]  # no tie
    assert tie_ordered([], []).tolist() == []
    with pytest.raises(ValueError, match="differ in length"):
        tie_ordered([0.1, 0.2], [1])


@pytest.mark.parametrize("relevant_first", [True, False])
def test_tie_group_larger_than_initial_search(relevant_first):
    # q = item 0 at 0°; items 1..50 near 30°, each ~3e-7 MORE similar to q than the previous one
    # (consecutive gaps < TIE_EPS, so all 50 chain into one tie group, but faiss ranks item 50
    # first). Only one of them shares q's label (R=1); the others are singletons (not queries),
    # so only k = 3 neighbours are searched at first and the tie at the cut-off forces
    # re-searches. By the rule the lowest index wins: recall@1 of q is 1 iff the relevant item
    # is item 1. The relevant item queries too; its nearest are near-duplicates with other
    # labels, so its recall@1 is 0.
    radians = np.deg2rad(30) - 6e-7 * np.arange(1, 51)
    x = at_angles(0, *np.rad2deg(radians))
    y = np.arange(100, 151)
    y[0] = y[1 if relevant_first else 50] = 0
    metrics, valid = per_query_metrics(x, y, ks=(1,))
    assert valid.sum() == 2
    assert metrics["recall@1"][0] == float(relevant_first)
    assert np.nansum(metrics["recall@1"][1:]) == 0
    assert retrieval_metrics(x, y, ks=(1,))["recall@1"] == (0.5 if relevant_first else 0.0)


def test_near_ties_within_eps_use_index_order():
    # Item 1 is 0.4 * TIE_EPS less similar to q0 than item 2: tied, so item 1 still ranks first.
    sim = 0.5
    x = np.array(
        [[1, 0, 0], [sim - 0.4 * TIE_EPS, np.sqrt(1 - sim**2), 0], [sim, 0, np.sqrt(1 - sim**2)]]
    )
    metrics, _ = per_query_metrics(x, np.array([0, 0, 1]), ks=(1,))
    assert metrics["recall@1"][0] == 1.0
    # Beyond TIE_EPS the similarity order wins.
    x[1, 0] = sim - 5 * TIE_EPS
    metrics, _ = per_query_metrics(x, np.array([0, 0, 1]), ks=(1,))
    assert metrics["recall@1"][0] == 0.0


def random_set(n: int = 300, dim: int = 16, classes: int = 25, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((classes, dim))[y] + 1.5 * rng.standard_normal((n, dim))
    return x.astype(np.float32), y


def test_permutation_invariance_without_ties():
    x, y = random_set()
    perm = np.random.default_rng(1).permutation(len(x))
    m1, _ = per_query_metrics(x, y)
    m2, _ = per_query_metrics(x[perm], y[perm])
    for key in m1:
        np.testing.assert_array_equal(m1[key][perm], m2[key])


def test_numpy_torch_and_scale_invariance():
    x, y = random_set()
    expected = retrieval_metrics(x, y)
    xt = torch.from_numpy(x).double().requires_grad_()
    assert retrieval_metrics(xt, torch.from_numpy(y)) == expected
    assert retrieval_metrics(torch.from_numpy(x), y) == expected
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    scales = np.random.default_rng(2).uniform(0.01, 100, (len(x), 1))
    assert retrieval_metrics(unit, y) == expected
    assert retrieval_metrics((unit * scales).astype(np.float32), y) == expected


def test_zero_vector_is_guarded():
    # A zero embedding has similarity 0 to everything; nothing is NaN.
    x = np.array([[0, 0], [1, 0], [1, 0.1], [0, 1]], dtype=np.float32)
    got = retrieval_metrics(x, np.array([0, 0, 1, 1]))
    assert all(0 <= v <= 1 for v in got.values())


def test_large_ks_are_clamped():
    x, y = at_angles(0, 10, 50), np.array([0, 1, 0])
    # q0: 1, 2 -> rel 0 1; q2: 1, 0 -> rel 0 1. Any K >= N - 1 = 2 finds the hit.
    assert retrieval_metrics(x, y, ks=(1, 100)) == {
        "recall@1": 0.0,
        "recall@100": 1.0,
        "map@r": 0.0,
        "mmp@5": 0.0,
    }


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no valid query"):
        retrieval_metrics(at_angles(0, 10, 20), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="no valid query"):
        retrieval_metrics(at_angles(0), np.array([0]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError):
        retrieval_metrics(at_angles(0, 1), np.zeros(2), ks=(0,))


def brute_force_metrics(x: np.ndarray, y: np.ndarray, ks) -> dict[str, float]:
    """Independent oracle: full N x N float64 cosine matrix, same tie rule, per-query loops."""
    x = x.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x.astype(np.float32).astype(np.float64)
    sims, n = x @ x.T, len(x)
    out = {f"recall@{k}": [] for k in ks} | {"map@r": [], "mmp@5": []}
    for i in range(n):
        others = np.delete(np.arange(n), i)
        r = int((y[others] == y[i]).sum())
        if r == 0:
            continue
        s = sims[i, others]
        order = np.argsort(-s, kind="stable")
        s, cand = s[order], others[order]
        ranked = []  # walk tie groups (consecutive gaps <= eps), each sorted by index
        start = 0
        for j in range(1, n):
            if j == n - 1 or s[j - 1] - s[j] > TIE_EPS:
                ranked.extend(sorted(cand[start:j]))
                start = j
        rel = (y[ranked] == y[i]).astype(float)
        for k in ks:
            out[f"recall@{k}"].append(rel[: min(k, n - 1)].max())
        precision = np.cumsum(rel) / np.arange(1, n)
        out["map@r"].append((precision * rel)[:r].sum() / r)
        out["mmp@5"].append(rel[: min(5, r)].mean())
    return {key: float(np.mean(v)) for key, v in out.items()}


@pytest.mark.parametrize("search_rounds, chunk_elems", [(3, 1 << 22), (1, 500)])
def test_matches_brute_force_with_ties(monkeypatch, search_rounds, chunk_elems):
    # (1, 500): a single faiss round and tiny chunks, so open rows take the dense path.
    patch_search(monkeypatch, "_SEARCH_ROUNDS", search_rounds)
    patch_search(monkeypatch, "_CHUNK_ELEMS", chunk_elems)
    x, y = random_set(n=300, dim=8, classes=30, seed=3)
    x[10:14] = x[5]  # duplicates, including of other classes
    x[20] = 3 * x[21]  # same direction
    x[30] = 0.0  # zero vector
    x[40:60] = np.round(x[40:60])  # coarse values: exact ties among them
    x[60:120] = np.round(x[60:120] / 4)  # many more, and large tie groups
    ks = (1, 2, 4, 8, 16)
    got = retrieval_metrics(x, y, ks)
    expected = brute_force_metrics(x, y, ks)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_collapsed_embeddings_use_dense_path(monkeypatch):
    # 200 identical embeddings, classes {0,1}, {2,3}, ...: everything is tied, so every query's
    # nearest neighbour is the lowest other index: item 0 (item 1 for query 0). Only queries 0
    # and 1 hit: recall@1 = map@r (R = 1) = mmp@5 (m = 1) = 2/200. Searching k = 3, 6, 12
    # never closes the 199-way tie, so the rows are resolved from full similarity rows.
    calls = []

    def spy(*args):
        calls.append(len(args[1]))
        return dense(*args)

    dense = search_module._dense_ranked
    patch_search(monkeypatch, "_dense_ranked", spy)
    got = retrieval_metrics(np.ones((200, 4)), np.arange(200) // 2, ks=(1,))
    assert got == {"recall@1": 0.01, "map@r": 0.01, "mmp@5": 0.01}
    assert sum(calls) == 200


def test_merged_requires_label_and_domain():
    # A: a0 0°, a1 40° (label 0). B: b0 10°, b1 60°, b2 55° (label 0). One index, order
    # [a0, a1, b0, b1, b2]; classes are (domain, label): A0 = {a0, a1}, B0 = {b0, b1, b2}.
    #   a0 (R=1): b0(10) a1(40) b2(55) b1(60)  rel 0 1 0 0  r@1 0 r@2 1  AP 0  mmp 0
    #   a1 (R=1): b2(15) b1(20) b0(30) a0(40)  rel 0 0 0 1  r@2 0 r@4 1  AP 0  mmp 0
    #   b0 (R=2): a0(10) a1(30) b2(45) b1(50)  rel 0 0 1 1  r@2 0 r@4 1  AP 0  mmp 0
    #   b1 (R=2): b2(5) a1(20) b0(50) a0(60)   rel 1 0 1 0  r@1 1  AP (1 + 0)/2 = 1/2  mmp 1/2
    #   b2 (R=2): b1(5) a1(15) b0(45) a0(55)   rel 1 0 1 0  r@1 1  AP 1/2  mmp 1/2
    # (By label alone a0's nearest b0 would be a hit.)
    emb = {"A": at_angles(0, 40), "B": at_angles(10, 60, 55)}
    labels = {"A": np.array([0, 0]), "B": np.array([0, 0, 0])}
    got = merged_retrieval_metrics(emb, labels, ks=(1, 2, 4))
    assert list(got) == ["all", "A", "B"]
    assert_metrics(
        got["all"],
        {"recall@1": 2 / 5, "recall@2": 3 / 5, "recall@4": 1.0, "map@r": 1 / 5, "mmp@5": 1 / 5},
    )
    assert_metrics(
        got["A"], {"recall@1": 0.0, "recall@2": 1 / 2, "recall@4": 1.0, "map@r": 0.0, "mmp@5": 0.0}
    )
    assert_metrics(
        got["B"],
        {"recall@1": 2 / 3, "recall@2": 2 / 3, "recall@4": 1.0, "map@r": 1 / 3, "mmp@5": 1 / 3},
    )
    with pytest.raises(ValueError, match="all"):
        merged_retrieval_metrics({"all": emb["A"]}, {"all": labels["A"]})


class ModeRecorder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        assert x.dtype == torch.float32 and not torch.is_grad_enabled()
        return x


def tiny_split(seed: int, n: int = 7) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, 2, 3), dtype=np.uint8)
    return SimpleNamespace(images=images, labels=np.arange(n) % 3)


def test_embed_batches_scales_and_restores_mode():
    recorder = ModeRecorder()
    model = torch.nn.Sequential(recorder, torch.nn.Flatten())
    images = tiny_split(0).images
    out = embed(model, images, batch_size=3)
    assert out.dtype == np.float32 and out.shape == (7, 6)
    np.testing.assert_allclose(out, images.reshape(7, -1) / 255.0, rtol=1e-6)
    assert recorder.modes == [False, False, False] and model.training
    model.eval()
    embed(model, torch.from_numpy(images))
    assert not model.training
    with pytest.raises(TypeError, match="must be uint8 \\(or float features\\)"):
        embed(model, images.astype(np.int64))
    # float inputs (cached trunk features) are passed through unscaled
    assert embed(torch.nn.Flatten(), np.full((2, 1, 1, 1), 3.0, np.float32)).tolist() == [[3.0], [3.0]]


def test_evaluate_domains_and_merged():
    model = torch.nn.Flatten()
    domains = {
        name: SimpleNamespace(train=tiny_split(s), val=tiny_split(s + 1), test=tiny_split(s + 2))
        for name, s in (("d1", 0), ("d2", 10))
    }
    features = {n: d.val.images.reshape(7, -1) / np.float32(255) for n, d in domains.items()}
    labels = {n: d.val.labels for n, d in domains.items()}
    got = evaluate_domains(model, domains, split="val", ks=(1, 2))
    assert got == {n: retrieval_metrics(features[n], labels[n], ks=(1, 2)) for n in domains}
    merged = evaluate_merged(model, domains, split="val", ks=(1, 2))
    assert merged == merged_retrieval_metrics(features, labels, ks=(1, 2))
    with pytest.raises(ValueError):
        evaluate_domains(model, domains, split="bogus")
