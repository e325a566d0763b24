"""Whole-ranking metrics over the complete ranked database (compressed retrieval compares indexes
with them), with the search's tie rule (:mod:`.search`):

* ``map@all``: AP over all ``R`` relevant items, ``(1/R) * sum_i precision@i * rel(i)`` over every
  rank ``i``, averaged over queries;
* ``precision@K``: (#relevant among the top ``K``) / ``K``, ``K`` clamped to the database size;
* ``recall@K``: 1 if any of the top ``K`` is relevant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from .search import _check_inputs, _mean_metrics, _rank_candidates, _to_numpy, l2_normalise

_RANKING_ELEMS = 1 << 21  # rows x database entries per chunk of a whole-ranking evaluation


def _complete_candidates(scores: np.ndarray, cand: np.ndarray) -> None:
    """Rows of a k = N search where faiss returned fewer than N items (an IVF index probes only
    some lists): the missing items take the empty slots (id -1), scored below every real score,
    so that they rank last, in index order (in place)."""
    n = cand.shape[1]
    for i in np.flatnonzero((cand < 0).any(axis=1)):
        holes = cand[i] < 0
        cand[i, holes] = np.setdiff1d(np.arange(n), cand[i, ~holes], assume_unique=True)
        scores[i, holes] = -1e30


def index_ranking_metrics(
    index: faiss.Index,
    queries: Any,
    query_labels: Any,
    gallery_labels: Any,
    ks: Sequence[int] = (1, 5, 10),
    self_rows: Any = None,
) -> dict[str, float]:
    """Whole-ranking metrics (module doc: ``map@all``, ``precision@K``, ``recall@K``) of the
    ranking any faiss `index` (exact or compressed; holding the gallery, in the order of
    `gallery_labels`) gives each query row: the scores of a ``k = N`` search, ordered by the tie
    rule, averaged over the queries with ``R > 0``. ``self_rows`` (leave-one-out): each query's
    own position in the index, removed from its ranking."""
    q = np.ascontiguousarray(_to_numpy(queries), dtype=np.float32)
    qy, gy = _to_numpy(query_labels).reshape(-1), _to_numpy(gallery_labels).reshape(-1)
    n = int(index.ntotal)
    if n != len(gy):
        raise ValueError(f"the index holds {n} items but {len(gy)} gallery labels were given")
    if len(q) != len(qy):
        raise ValueError(f"{len(q)} queries but {len(qy)} query labels")
    _, inverse = np.unique(np.concatenate([qy, gy]), return_inverse=True)
    q_cls, g_cls = inverse.reshape(-1)[: len(qy)], inverse.reshape(-1)[len(qy):]
    r_all = np.bincount(g_cls, minlength=int(inverse.max()) + 1)[q_cls]
    if self_rows is not None:
        self_rows = np.asarray(self_rows, dtype=np.int64)
        r_all = r_all - (g_cls[self_rows] == q_cls)
    valid = r_all > 0
    size = n - (self_rows is not None)
    ks = tuple(int(k) for k in ks)
    keys = [f"precision@{k}" for k in ks] + [f"recall@{k}" for k in ks] + ["map@all"]
    metrics = {key: np.full(len(q), np.nan) for key in keys}
    rows_all = np.flatnonzero(valid)
    step = max(1, _RANKING_ELEMS // max(n, 1))
    pos = np.arange(1, size + 1)
    for start in range(0, len(rows_all), step):
        rows = rows_all[start : start + step]
        scores, cand = index.search(q[rows], n)
        _complete_candidates(scores, cand)
        nbr, _, _ = _rank_candidates(scores, cand, n, None if self_rows is None else self_rows[rows])
        rel = g_cls[nbr] == q_cls[rows, None]
        hits = np.cumsum(rel, axis=1)
        metrics["map@all"][rows] = (rel * hits / pos).sum(axis=1) / r_all[rows]
        for k in ks:
            kk = min(k, size)
            metrics[f"precision@{k}"][rows] = hits[:, kk - 1] / kk
            metrics[f"recall@{k}"][rows] = hits[:, kk - 1] > 0
    return _mean_metrics(metrics, valid, "the queries", "no query has a relevant database item")


def ranking_metrics(
    query: Any,
    query_labels: Any,
    gallery: Any = None,
    gallery_labels: Any = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Exact whole-ranking metrics by cosine similarity: ``map@all`` and ``precision@K`` (and
    ``recall@K``) for each ``K`` in `ks` (module doc; same tie rule). With ``gallery=None`` it is
    leave-one-out inside `query`: the item itself is excluded, and queries with no other item of
    their class are left out."""
    q, qy, ks = _check_inputs(query, query_labels, ks)
    if gallery is None:
        g, gy, self_rows = q, qy, np.arange(len(q))
    else:
        g, gy, _ = _check_inputs(gallery, gallery_labels, ks)
        self_rows = None
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"query and gallery dimensions differ: {q.shape[1]} vs {g.shape[1]}")
    g = l2_normalise(g)
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    return index_ranking_metrics(index, l2_normalise(q), qy, gy, ks, self_rows)
