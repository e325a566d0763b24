"""Tests for the granularity metrics of ue_lib.evaluate (issue 14): coarse Recall@K and graded nDCG@K.

Hand-made sets are unit vectors at given angles (degrees) in 2-D, as in test_evaluate.py: the
cosine similarity is cos(angle difference), so neighbours rank by increasing angle difference, and
items at the same angle are exact duplicates (tied; ties go by ascending gallery index).
Gains are 2**rel - 1: 3 for rel 2 (same class), 1 for rel 1 (same group / attribute set), 0 else.
L below is log2(3), the discount denominator at rank 2; rank 3 divides by log2(4) = 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_metrics, at_angles

from ue_lib.evaluate import TIE_EPS, graded_metrics, per_query_graded_metrics, retrieval_metrics

L = math.log2(3)


def test_leave_one_out_groups_by_hand():
    # Angles 0, 10, 25, 45, 70, 100 for items 0..5; labels y = 0 0 1 1 2 3; groups G = 0 0 1 1 1 2.
    # Ranked neighbours (self excluded) and relevance (2 same class, 1 same group, else 0):
    #   q0: 1 2 3 4 5 -> rel 2 0 0 0 0; n2 = 1, n1 = 0. ndcg@1 = 1, ndcg@2 = 1. coarse@1,@2 = 1, 1
    #   q1: 0 2 3 4 5 -> rel 2 0 0 0 0; same as q0.
    #   q2: 1 3 0 4 5 -> rel 0 2 0 1 0; n2 = 1, n1 = 1 (item 4).
    #       ndcg@1 = 0; ndcg@2 = (3/L) / (3 + 1/L). coarse@1 = 0 (item 1 in G0), coarse@2 = 1.
    #   q3: 2 4 1 0 5 -> rel 2 1 0 0 0; ideal order: ndcg@1 = ndcg@2 = 1. coarse 1, 1.
    #   q4: 3 5 2 1 0 -> rel 1 0 1 0 0; n2 = 0, n1 = 2. ndcg@1 = 1/1, ndcg@2 = 1 / (1 + 1/L).
    #       coarse 1, 1.
    #   q5: singleton class and group -> IDCG = 0 and no group partner: left out of both.
    x = at_angles(0, 10, 25, 45, 70, 100)
    y = np.array([0, 0, 1, 1, 2, 3])
    groups = np.array([0, 0, 1, 1, 1, 2])
    got = graded_metrics(x, y, query_groups=groups, ks=(1, 2))
    assert_metrics(got, {
        "coarse_recall@1": 4 / 5,
        "coarse_recall@2": 1.0,
        "ndcg@1": 4 / 5,
        "ndcg@2": (1 + 1 + (3 / L) / (3 + 1 / L) + 1 + 1 / (1 + 1 / L)) / 5,
    })
    per_query = per_query_graded_metrics(x, y, query_groups=groups, ks=(1, 2))
    assert np.isnan(per_query["ndcg@1"][5]) and np.isnan(per_query["coarse_recall@1"][5])
    assert per_query["ndcg@2"][2] == pytest.approx((3 / L) / (3 + 1 / L), abs=1e-12)


def test_leave_one_out_ties_by_index():
    # Angles 0, 20, 20, 20, 60: items 1, 2, 3 are duplicates. y = 0 1 2 0 3; G = 0 1 0 2 0.
    #   q0: 1 2 3 tied (by index), then 4 -> rel 0 1 2 1; n2 = 1, n1 = 2 (items 2, 4).
    #       ndcg@1 = 0; ndcg@2 = (1/L) / (3 + 1/L). coarse (G0: 2, 4) @1 = 0, @2 = 1.
    #       (Tied in the other order, item 3 would come first and ndcg@1 would be 1.)
    #   q1: 2 3 (sim 1, tied), 0 (20), 4 (40) -> all rel 0, IDCG = 0; group G1 singleton: left out.
    #   q2: 1 3 (tied), 0, 4 -> rel 0 0 1 1; ndcg@1 = ndcg@2 = 0. coarse @1 = @2 = 0.
    #   q3: 1 2 (tied), 0, 4 -> rel 0 0 2 0; ndcg@1 = ndcg@2 = 0. Group G2 singleton: no coarse.
    #   q4: 1 2 3 tied at 40, then 0 -> rel 0 1 0 1; n1 = 2. ndcg@1 = 0, ndcg@2 = (1/L) / (1 + 1/L).
    #       coarse @1 = 0, @2 = 1.
    x = at_angles(0, 20, 20, 20, 60)
    y = np.array([0, 1, 2, 0, 3])
    groups = np.array([0, 1, 0, 2, 0])
    got = graded_metrics(x, y, query_groups=groups, ks=(1, 2))
    assert_metrics(got, {
        "coarse_recall@1": 0.0,
        "coarse_recall@2": 2 / 3,
        "ndcg@1": 0.0,
        "ndcg@2": ((1 / L) / (3 + 1 / L) + 0 + 0 + (1 / L) / (1 + 1 / L)) / 4,
    })


def test_query_gallery_attributes_by_hand():
    # Gallery at angles 0, 30, 30, 90 (g1, g2 duplicates), labels 0 1 2 3, attributes rounded at
    # 0.5: g0 (0.9, 0.1) -> 10; g1 (0.2, 0.7) -> 01; g2 (0.5, 0.0) -> 10; g3 (0.49, 0.51) -> 01.
    # Queries at 10 and 80, labels 1 and 3, attributes 10 and 01. No groups: no coarse keys.
    #   q0: g0 (10), g1 g2 (20, tied), g3 (70) -> rel 1 2 1 0 (g0, g2 share set 10);
    #       n2 = 1, n1 = 2. ndcg@1 = 1/3; ndcg@2 = (1 + 3/L) / (3 + 1/L);
    #       ndcg@3 = (1 + 3/L + 1/2) / (3 + 1/L + 1/2); @10 clamps to @4 = @3 (rank 4 has rel 0).
    #   q1: g3 (10), g1 g2 (50, tied), g0 (80) -> rel 2 1 0 0: ideal, every ndcg = 1.
    q = at_angles(10, 80)
    g = at_angles(0, 30, 30, 90)
    qa = np.array([[1.0, 0.0], [0.0, 1.0]])
    ga = np.array([[0.9, 0.1], [0.2, 0.7], [0.5, 0.0], [0.49, 0.51]])
    got = graded_metrics(q, [1, 3], query_attributes=qa, gallery=g, gallery_labels=[0, 1, 2, 3],
                         gallery_attributes=ga, ks=(1, 2, 3, 10))
    at3 = (1 + 3 / L + 1 / 2) / (3 + 1 / L + 1 / 2)
    assert_metrics(got, {
        "ndcg@1": (1 / 3 + 1) / 2,
        "ndcg@2": ((1 + 3 / L) / (3 + 1 / L) + 1) / 2,
        "ndcg@3": (at3 + 1) / 2,
        "ndcg@10": (at3 + 1) / 2,
    })


def test_groups_equal_to_labels_match_recall():
    # coarse_recall@K with groups = labels is the evaluator's recall@K (same search, same ties).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    x[40:60] = x[:20]
    y = rng.integers(0, 15, size=80)
    got = graded_metrics(x, y, query_groups=y, ks=(1, 2, 4, 8))
    ref = retrieval_metrics(x, y, ks=(1, 2, 4, 8))
    for k in (1, 2, 4, 8):
        assert got[f"coarse_recall@{k}"] == pytest.approx(ref[f"recall@{k}"], abs=1e-12)


# --- brute force: dense cosine similarities, chained TIE_EPS groups, ties by ascending index ---


def brute_order(sims: np.ndarray) -> np.ndarray:
    """Candidate order of one similarity row (excluded candidates at -inf are dropped)."""
    keep = np.flatnonzero(np.isfinite(sims))
    order = keep[np.lexsort((keep, -sims[keep]))]  # stable: (-sim, index)
    s = sims[order]
    group = np.concatenate([[0], np.cumsum(s[:-1] - s[1:] > TIE_EPS)])
    return order[np.lexsort((order, group))]


def brute_force(q, qy, qg, qa, g, gy, gg, ga, ks, loo):
    def unit(v):
        v = np.asarray(v, dtype=np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    sims = unit(q) @ unit(g).T
    if loo:
        np.fill_diagonal(sims, -np.inf)
    qa_b = None if qa is None else np.asarray(qa) >= 0.5
    ga_b = None if ga is None else np.asarray(ga) >= 0.5
    size = g.shape[0] - loo
    out = {}
    if qg is not None:
        out.update({f"coarse_recall@{k}": np.full(len(q), np.nan) for k in ks})
    out.update({f"ndcg@{k}": np.full(len(q), np.nan) for k in ks})
    for i in range(len(q)):
        cand = np.flatnonzero(np.isfinite(sims[i]))
        rel = np.where(gy == qy[i], 2, 0)
        near = np.zeros(len(gy), dtype=bool)
        if qg is not None:
            near |= gg == qg[i]
        if qa_b is not None:
            near |= (ga_b == qa_b[i]).all(axis=1)
        rel = np.where(rel == 2, 2, near.astype(int))
        order = brute_order(sims[i])
        ideal = np.sort(rel[cand])[::-1]
        for k in ks:
            kk = min(k, size)
            disc = 1 / np.log2(np.arange(2, kk + 2))
            idcg = ((2.0 ** ideal[:kk] - 1) * disc).sum()
            if idcg > 0:
                out[f"ndcg@{k}"][i] = ((2.0 ** rel[order[:kk]] - 1) * disc).sum() / idcg
            if qg is not None and (gg[cand] == qg[i]).any():
                out[f"coarse_recall@{k}"][i] = float((gg[order[:kk]] == qg[i]).any())
    return out


def pick(values, idx):
    return None if values is None else values[idx]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("loo", [True, False])
@pytest.mark.parametrize("use_groups", [True, False])
@pytest.mark.parametrize("use_attributes", [True, False])
def test_against_brute_force(seed, loo, use_groups, use_attributes):
    rng = np.random.default_rng(seed)
    n, dim = 90, 6 if seed % 2 else 3
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[30:45] = x[:15]  # duplicated embeddings force ties (some with other labels)
    x[50:53] = x[5]
    y = rng.integers(0, 20, size=n)
    groups = y // 4
    flip = rng.random(n) < 0.2
    groups[flip] = rng.integers(0, 6, size=flip.sum())  # classes not nested in groups
    attrs = rng.random((n, 3))  # 8 attribute sets: rel-1 via attributes is common
    attrs[::7] = 0.5  # the rounding boundary: counts as 1
    ks = (1, 3, 5, 10, 200)  # 200 clamps to the number of candidates
    grp = groups if use_groups else None
    att = attrs if use_attributes else None
    if loo:
        got = per_query_graded_metrics(x, y, query_groups=grp, query_attributes=att, ks=ks)
        ref = brute_force(x, y, grp, att, x, y, grp, att, ks, loo=True)
    else:
        qi = rng.permutation(n)[:35]
        gi = np.setdiff1d(np.arange(n), qi)
        gi = np.concatenate([gi, qi[:5]])  # some queries also in the gallery (they find themselves)
        got = per_query_graded_metrics(
            x[qi], y[qi], query_groups=pick(grp, qi), query_attributes=pick(att, qi),
            gallery=x[gi], gallery_labels=y[gi], gallery_groups=pick(grp, gi),
            gallery_attributes=pick(att, gi), ks=ks)
        ref = brute_force(x[qi], y[qi], pick(grp, qi), pick(att, qi), x[gi], y[gi], pick(grp, gi),
                          pick(att, gi), ks, loo=False)
    assert list(got) == list(ref)
    for key in ref:
        np.testing.assert_array_equal(np.isnan(got[key]), np.isnan(ref[key]), err_msg=key)
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-12, err_msg=key)
    means = (graded_metrics(x, y, query_groups=grp, query_attributes=att, ks=ks) if loo else None)
    if means is not None:
        for key in ref:
            assert means[key] == pytest.approx(np.nanmean(ref[key]), abs=1e-12), key


def test_collapsed_embeddings_and_torch_inputs():
    # All embeddings equal: every candidate is tied, so the ranking is the index order. The tie
    # group outgrows the faiss re-searches (k = 12, 24, 48), so the dense fallback ranks it.
    n = 120
    x = torch.ones(n, 8)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=n)
    groups = y % 2
    attrs = rng.random((n, 2))
    got = per_query_graded_metrics(x, torch.as_tensor(y), query_groups=torch.as_tensor(groups),
                                   query_attributes=torch.as_tensor(attrs), ks=(1, 4, 10))
    ref = brute_force(x.numpy(), y, groups, attrs, x.numpy(), y, groups, attrs, (1, 4, 10), loo=True)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-12, err_msg=key)


# --- errors name their cause ---

X = at_angles(0, 10, 25, 45)
Y = np.array([0, 0, 1, 1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(query_groups=[0, 1, 0]), r"query_groups must have shape \(4,\)"),
    (dict(query_groups=np.zeros((4, 1))), r"query_groups must have shape \(4,\)"),
    (dict(query_attributes=np.zeros(4)), r"query_attributes must have shape \(4, A\)"),
    (dict(query_attributes=np.zeros((3, 2))), r"query_attributes must have shape \(4, A\)"),
    (dict(query_attributes=np.full((4, 2), np.nan)), "query_attributes contain NaN"),
    (dict(gallery_labels=Y), "gallery_labels given without a gallery"),
    (dict(gallery_groups=[0, 0, 1, 1]), "gallery_groups given without a gallery"),
    (dict(gallery_attributes=np.zeros((4, 2))), "gallery_attributes given without a gallery"),
    (dict(gallery=X), "gallery given without gallery_labels"),
    (dict(gallery=X, gallery_labels=Y, query_groups=[0, 0, 1, 1]),
     "groups given only for the query side"),
    (dict(gallery=X, gallery_labels=Y, gallery_attributes=np.zeros((4, 2))),
     "attributes given only for the gallery side"),
    (dict(gallery=X, gallery_labels=Y, query_attributes=np.zeros((4, 2)),
          gallery_attributes=np.zeros((4, 3))), "attribute counts differ: 2 vs 3"),
    (dict(gallery=X, gallery_labels=Y, gallery_groups=[0, 1], query_groups=[0, 0, 1, 1]),
     r"gallery_groups must have shape \(4,\)"),
    (dict(gallery=X, gallery_labels=Y[:3]), r"labels must have shape \(4,\)"),
    (dict(gallery=np.zeros((4, 3)), gallery_labels=Y), "dimensions differ"),
    (dict(ks=(0, 1)), "ks must be a non-empty sequence of positive ints"),
])
def test_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        graded_metrics(X, Y, **kwargs)


def test_bad_labels_and_no_valid_query():
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        graded_metrics(X, Y[:3])
    with pytest.raises(ValueError, match="no valid query for ndcg@1: no query has a candidate"):
        graded_metrics(X, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="no valid query for coarse_recall@1: no query's coarse group"):
        graded_metrics(X, Y, query_groups=[0, 1, 2, 3])
    with pytest.raises(TypeError):  # everything after the labels is keyword-only
        graded_metrics(X, Y, X, Y)
