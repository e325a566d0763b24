"""Retrieval evaluation: Recall@K, MAP@R and MMP@5 with exact, tie-deterministic k-NN.

The standard evaluation here is *leave-one-out* retrieval inside one set: each item queries all
other items, ranked by cosine similarity (:func:`retrieval_metrics`). Benchmarks with a query /
gallery protocol (DeepFashion In-Shop) use :func:`query_gallery_metrics` instead: each query
searches the gallery only, ``R`` counts the gallery items of its class, ``K`` is clamped to the
gallery size and ties are ordered by gallery index. Metrics (per query, then averaged over
queries):

* ``recall@K``: 1 if any of the top ``K`` neighbours shares the query's label, else 0.
  ``K`` larger than ``N - 1`` is clamped to ``N - 1``.
* ``map@r`` (MAP@R, Musgrave et al. 2020): with ``R`` the number of *other* items of the query's
  class, ``AP@R = (1/R) * sum_{i=1..R} precision@i * rel(i)``.
* ``mmp@5``: (#relevant among the top ``m``) / ``m`` with ``m = min(5, R)``.

Queries whose class has no other member (``R == 0``) are left out of every metric, but such items
remain retrieval candidates for the other queries.

Tie rule (see :func:`retrieval_metrics`): similarities within ``TIE_EPS`` are tied, and tied
candidates are ranked by ascending item index.

Whole-ranking metrics (compressed retrieval, :func:`ranking_metrics` and
:func:`index_ranking_metrics`), over the complete ranked database with the same tie rule:

* ``map@all``: AP over all ``R`` relevant items, ``(1/R) * sum_i precision@i * rel(i)`` over every
  rank ``i``, averaged over queries;
* ``precision@K``: (#relevant among the top ``K``) / ``K``, ``K`` clamped to the database size;
* ``recall@K`` as above.

Granularity metrics (SGML, issue 14; :func:`graded_metrics`, leave-one-out or query/gallery, same
search and tie rule, ``K`` clamped to the number of candidates):

* ``coarse_recall@K``: 1 if any of the top ``K`` neighbours shares the query's coarse group;
  queries whose group has no other candidate are left out.
* ``ndcg@K``: graded relevance 2 (same class), 1 (same coarse group or same attribute set:
  all attributes equal after ``value >= 0.5``), 0 otherwise; gain ``2**rel - 1``, discount
  ``1 / log2(i + 1)``, normalised by the ideal DCG of the query's candidates; queries with
  ``IDCG = 0`` are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import faiss
import numpy as np
import torch

TIE_EPS = 1e-6
# Guard band for the float32 scores faiss ranks with: a row is complete only if its last retrieved
# candidate lies more than TIE_EPS + _SCORE_SLACK below the boundary tie group.
_SCORE_SLACK = 1e-6
# Query chunks for faiss: at most _MAX_CHUNK rows and _CHUNK_ELEMS neighbour entries (rows * k).
_CHUNK_ELEMS = 1 << 22
_MAX_CHUNK = 2048
# faiss searches per row (k, 2k, 4k) before a still-open boundary tie group is resolved densely.
_SEARCH_ROUNDS = 3
_SPLITS = ("train", "val", "test")


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_inputs(
    embeddings: Any, labels: Any, ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    x = _to_numpy(embeddings)
    y = _to_numpy(labels)
    if x.ndim != 2:
        raise ValueError(f"embeddings must have shape (N, D), got {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must have shape ({len(x)},), got {y.shape}")
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks}")
    x = x.astype(np.float32, copy=False)  # never modified in place below
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    return x, y, ks


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32, C-contiguous); zero rows stay zero. Computed in
    float64 row blocks, so the temporary memory stays small for large sets."""
    out = np.empty(x.shape, dtype=np.float32)
    step = max(1, _CHUNK_ELEMS // max(1, x.shape[1]))
    for s in range(0, len(x), step):
        block = x[s : s + step].astype(np.float64)
        out[s : s + step] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    return out


def _rank_candidates(
    scores: np.ndarray, cand: np.ndarray, n: int, self_rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order faiss's (rows, k) candidates by the tie rule (``n``: index size).

    Leave-one-out (``self_rows`` = each row's own index): the query itself is dropped (or the
    last candidate if the query is absent), leaving ``k - 1`` neighbours per row. Query/gallery
    (``self_rows`` None): all ``k`` candidates are kept.

    Returns (neighbour indices, float64 similarities, tie-group ids), each (rows, k or k - 1).
    """
    sims = scores.astype(np.float64)
    if self_rows is None:
        order = np.argsort(-sims, axis=1)
    else:
        sims[cand == self_rows[:, None]] = -np.inf  # self sorts last and is cut off below
        order = np.argsort(-sims, axis=1)[:, :-1]
    sims = np.take_along_axis(sims, order, 1)
    cand = np.take_along_axis(cand, order, 1)
    group = np.zeros(sims.shape, dtype=np.int64)
    group[:, 1:] = np.cumsum(sims[:, :-1] - sims[:, 1:] > TIE_EPS, axis=1)
    order = np.argsort(group * n + cand, axis=1)  # by group, then by item index
    return tuple(np.take_along_axis(a, order, 1) for a in (cand, sims, group))


def _boundary_complete(sims: np.ndarray, group: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Rows whose tie group at position ``need - 1`` is provably complete: the lowest retrieved
    candidate, and so every candidate faiss did not return, is more than TIE_EPS below it."""
    boundary = group[np.arange(len(group)), need - 1]
    group_min = np.where(group == boundary[:, None], sims, np.inf).min(axis=1)
    return group_min - sims.min(axis=1) > TIE_EPS + _SCORE_SLACK


def _dense_ranked(
    base: np.ndarray, queries: np.ndarray, width: int, self_rows: np.ndarray | None
) -> np.ndarray:
    """First ``width`` neighbours in ``base`` of ``queries`` by the tie rule, from full
    similarity rows (``self_rows``: each query's own index in ``base``, excluded; or None).

    For rows whose boundary tie group is too large for faiss re-searches (e.g. collapsed or
    duplicate-heavy embeddings): full similarity rows in blocks, one sort of their values to
    find the boundary group's range, then its members are taken in index order by a mask.
    """
    out = np.empty((len(queries), width), dtype=np.int64)
    step = max(1, _CHUNK_ELEMS // len(base))
    for s in range(0, len(queries), step):
        sims = (queries[s : s + step] @ base.T).astype(np.float64)  # float32, as faiss computes
        if self_rows is not None:
            sims[np.arange(len(sims)), self_rows[s : s + step]] = -np.inf
        vals = -np.sort(-sims, axis=1)
        group = np.zeros(vals.shape, dtype=np.int64)
        group[:, 1:] = np.cumsum(vals[:, :-1] - vals[:, 1:] > TIE_EPS, axis=1)
        for i, row in enumerate(sims):
            first = np.searchsorted(group[i], group[i, width - 1], side="left")
            last = np.searchsorted(group[i], group[i, width - 1], side="right")
            hi, lo = vals[i, first], vals[i, last - 1]
            above = np.flatnonzero(row > hi)  # the complete groups before the boundary group
            above = above[np.argsort(-row[above], kind="stable")]
            above = above[np.lexsort((above, group[i, :first]))]
            members = np.flatnonzero((row >= lo) & (row <= hi))[: width - first]
            out[s + i] = np.concatenate([above, members])
    return out


def _search_sorted(
    index: faiss.Index,
    base: np.ndarray,
    queries: np.ndarray,
    need: np.ndarray,
    self_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Indices into ``base`` (the vectors of ``index``) of the first ``need.max()`` neighbours
    of each query row, by the tie rule; ``self_rows`` (leave-one-out) gives each query's own
    index in ``base``, which is excluded, or None (query/gallery).

    Row ``i`` is guaranteed correct on its first ``need[i]`` positions."""
    n = len(base)
    width = int(need.max())
    out = np.empty((len(queries), width), dtype=np.int64)
    todo = np.arange(len(queries))
    # +1 to see past the cut-off, +1 for the query itself when it is in the index
    k = min(width + 1 + (self_rows is not None), n)
    for _ in range(_SEARCH_ROUNDS):
        retry = []
        step = max(1, _CHUNK_ELEMS // k)
        for part in (todo[s : s + step] for s in range(0, len(todo), step)):
            scores, cand = index.search(queries[part], k)
            nbr, sims, group = _rank_candidates(
                scores, cand, n, None if self_rows is None else self_rows[part]
            )
            done = np.full(len(part), k == n) | _boundary_complete(sims, group, need[part])
            out[part[done]] = nbr[done, :width]
            retry.append(part[~done])
        todo = np.concatenate(retry)
        if not len(todo):
            return out
        k = min(2 * k, n)
    out[todo] = _dense_ranked(base, queries[todo], width, None if self_rows is None else self_rows[todo])
    return out


def _fill_metrics(
    metrics: dict[str, np.ndarray],
    rows: np.ndarray,
    rel: np.ndarray,
    r: np.ndarray,
    ks: tuple[int, ...],
    kmax: int,
) -> None:
    """Write the metrics of query ``rows`` from their ranked relevance ``rel`` (rows, >= max(kmax,
    R)) and their numbers ``r`` of relevant candidates."""
    for k in ks:
        metrics[f"recall@{k}"][rows] = rel[:, : min(k, kmax)].any(axis=1)
    pos = np.arange(1, rel.shape[1] + 1)
    hits = np.cumsum(rel, axis=1)
    within_r = pos <= r[:, None]
    metrics["map@r"][rows] = (rel * within_r * hits / pos).sum(axis=1) / r
    m5 = np.minimum(5, r)
    metrics["mmp@5"][rows] = (rel * (pos <= m5[:, None])).sum(axis=1) / m5


def per_query_metrics(
    embeddings: Any, labels: Any, ks: Sequence[int] = (1, 2, 4, 8)
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-query leave-one-out retrieval metrics (see the module docstring for definitions).

    Args:
        embeddings: (N, D) numpy array or torch tensor (any device / float dtype).
        labels: (N,) class labels.
        ks: cut-offs for ``recall@K`` (clamped to ``N - 1``).

    Returns:
        ``(metrics, valid)``: ``metrics`` maps ``"recall@K"``, ``"map@r"``, ``"mmp@5"`` to float64
        arrays of length N (NaN for invalid queries); ``valid`` is the boolean mask of queries
        whose class has at least one other member.
    """
    x, y, ks = _check_inputs(embeddings, labels, ks)
    n = len(x)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    r_all = counts[inverse] - 1
    valid = r_all > 0
    keys = [f"recall@{k}" for k in ks] + ["map@r", "mmp@5"]
    metrics = {key: np.full(n, np.nan) for key in keys}
    if not valid.any():
        return metrics, valid

    x = l2_normalise(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    kmax = min(max(ks), n - 1)
    queries = np.flatnonzero(valid)
    need_all = np.minimum(np.maximum(kmax, r_all), n - 1)
    width = int(need_all[queries].max())
    chunk = int(np.clip(_CHUNK_ELEMS // (width + 2), 1, _MAX_CHUNK))
    for start in range(0, len(queries), chunk):
        rows = queries[start : start + chunk]
        need = need_all[rows]
        nbr = _search_sorted(index, x, x[rows], need, self_rows=rows)
        _fill_metrics(metrics, rows, inverse[nbr] == inverse[rows, None], r_all[rows], ks, kmax)
    return metrics, valid


def per_query_gallery_metrics(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    ks: Sequence[int] = (1, 2, 4, 8),
    exclude: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-query metrics of query/gallery retrieval (e.g. DeepFashion In-Shop): each query
    searches the gallery only, with the definitions and tie rule of :func:`retrieval_metrics`
    except that ``R`` is the number of gallery items of the query's class, ``K`` is clamped to
    the gallery size, and ties are ordered by ascending gallery index. No item is excluded
    unless ``exclude`` (bool (Q, G)) says so: ``exclude[i, j]`` removes gallery item j from
    query i's ranking (not counted in its ``R`` either; e.g. the query itself, or the other
    objects of its own image); ``K`` is then clamped to the query's remaining gallery.

    Returns ``(metrics, valid)`` as :func:`per_query_metrics`, over the queries; ``valid`` marks
    queries with ``R > 0``. Queries are processed in chunks: memory is O(chunk x k), never
    queries x gallery.
    """
    q, qy, ks = _check_inputs(query_emb, query_labels, ks)
    g, gy, _ = _check_inputs(gallery_emb, gallery_labels, ks)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery dimensions differ: {q.shape[1]} vs {g.shape[1]}")
    if not len(g):
        raise ValueError("the gallery is empty")
    _, inverse = np.unique(np.concatenate([qy, gy]), return_inverse=True)
    q_cls, g_cls = inverse.reshape(-1)[: len(qy)], inverse.reshape(-1)[len(qy) :]
    n = len(g)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != (len(q), n):
            raise ValueError(f"exclude must be a bool array of shape ({len(q)}, {n}) (queries x "
                             f"gallery), got {exclude.shape}")
        dropped = exclude.sum(axis=1)
        r_all = ((g_cls[None, :] == q_cls[:, None]) & ~exclude).sum(axis=1)
    else:
        dropped = np.zeros(len(q), dtype=np.int64)
        r_all = np.bincount(g_cls, minlength=int(inverse.max()) + 1)[q_cls]
    valid = r_all > 0
    keys = [f"recall@{k}" for k in ks] + ["map@r", "mmp@5"]
    metrics = {key: np.full(len(q), np.nan) for key in keys}
    if not valid.any():
        return metrics, valid

    q, g = l2_normalise(q), l2_normalise(g)
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    kmax = np.minimum(max(ks), n - dropped)  # per query: its remaining gallery
    queries = np.flatnonzero(valid)
    need_all = np.minimum(np.maximum(kmax, r_all), n - dropped)
    width = int(need_all[queries].max())
    chunk = int(np.clip(_CHUNK_ELEMS // (width + 1), 1, _MAX_CHUNK))
    for start in range(0, len(queries), chunk):
        rows = queries[start : start + chunk]
        # the first need + dropped of the ranking are exact; dropping the excluded items (at
        # most `dropped` of them) leaves the first `need` of the remaining ranking
        nbr = _search_sorted(index, g, q[rows], np.minimum(need_all[rows] + dropped[rows], n))
        if exclude is not None:
            keep = ~exclude[rows[:, None], nbr]
            nbr = np.take_along_axis(nbr, np.argsort(~keep, axis=1, kind="stable"), 1)[:, :width]
        for km in np.unique(kmax[rows]):  # _fill_metrics clamps K to one value per call
            part = kmax[rows] == km
            _fill_metrics(metrics, rows[part], g_cls[nbr[part]] == q_cls[rows[part], None],
                          r_all[rows[part]], ks, int(km))
    return metrics, valid


def query_gallery_metrics(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    ks: Sequence[int] = (1, 2, 4, 8),
    exclude: np.ndarray | None = None,
) -> dict[str, float]:
    """Query/gallery retrieval metrics averaged over valid queries: the keys and definitions of
    :func:`retrieval_metrics` (its leave-one-out form is unchanged), with ``R`` the number of
    gallery items of the query's class (queries with ``R = 0`` are left out) and ties ordered by
    ascending gallery index; ``exclude`` (bool (Q, G)) removes gallery items per query; see
    :func:`per_query_gallery_metrics`. Raises ValueError if no query has a gallery item of its
    class."""
    metrics, valid = per_query_gallery_metrics(query_emb, query_labels, gallery_emb, gallery_labels,
                                               ks, exclude)
    return _mean_metrics(metrics, valid, "the queries", "no query's class has a gallery item")


def _mean_metrics(
    metrics: dict[str, np.ndarray],
    mask: np.ndarray,
    what: str,
    why: str = "every class has a single member, so no query has a relevant item to retrieve",
) -> dict[str, float]:
    if not mask.any():
        raise ValueError(f"no valid query in {what}: {why}")
    return {key: float(values[mask].mean()) for key, values in metrics.items()}


def retrieval_metrics(
    embeddings: Any, labels: Any, ks: Sequence[int] = (1, 2, 4, 8)
) -> dict[str, float]:
    """Leave-one-out retrieval metrics averaged over valid queries.

    Returns ``{"recall@K" for K in ks, "map@r", "mmp@5"}`` as python floats in [0, 1] (definitions
    in the module docstring). Raises ValueError if no query has another item of its class.
    Counts are given by :func:`query_counts`.

    Tie rule: candidates and their cosine similarities come from faiss (exact ``IndexFlatIP``
    on the L2-normalised float32 embeddings). Sorted in decreasing
    order, consecutive candidates whose similarities differ by at most ``TIE_EPS`` = 1e-6
    (absolute) are tied, and ties chain: a tie group is a maximal such run. Groups keep their
    similarity order; inside a group candidates are ranked by ascending item index. The query
    itself is removed wherever it appears. One neighbour beyond the last needed one is retrieved,
    and rows whose boundary tie group may continue past the retrieved list (the last retrieved
    candidate is not more than ``TIE_EPS`` plus a 1e-6 float32 guard band below the group) are
    searched again with a doubled ``k``, so the whole group is seen before it is ordered. Rows
    still open after two doublings (huge tie groups, e.g. collapsed embeddings) take the
    ``k = N`` step directly: their full similarity rows are computed in blocks and the boundary
    group's members are taken in index order. Results thus depend neither on faiss's internal
    order and thread count nor on BLAS summation noise or query chunking.
    """
    metrics, valid = per_query_metrics(embeddings, labels, ks)
    return _mean_metrics(metrics, valid, "this set")


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
    ranking any faiss `index` (flat, PQ, OPQ, OPQN's …; holding the gallery, in the order of
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


def _side_ids(query_values: np.ndarray, gallery_values: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids of the values (rows, for 2-D arrays) of the query and gallery items, shared by
    both sides: equal ids <=> equal values. ``gallery_values`` None: the gallery is the query set."""
    both = query_values if gallery_values is None else np.concatenate([query_values, gallery_values])
    _, inverse = np.unique(both, return_inverse=True, axis=0 if both.ndim == 2 else None)
    inverse = inverse.reshape(-1)
    if gallery_values is None:
        return inverse, inverse
    return inverse[: len(query_values)], inverse[len(query_values) :]


def _match_counts(q_ids: Sequence[np.ndarray], g_ids: Sequence[np.ndarray]) -> np.ndarray:
    """For each query, the number of gallery items equal to it on every id column (a join of
    per-key counts: O(N log N), no query x gallery matrix)."""
    q_key, g_key = _side_ids(np.stack(q_ids, axis=1), np.stack(g_ids, axis=1))
    return np.bincount(g_key, minlength=len(q_key) + len(g_key))[q_key]


def _optional_side(values: Any, n: int, name: str, attributes: bool = False) -> np.ndarray | None:
    if values is None:
        return None
    v = _to_numpy(values)
    if attributes:
        if v.ndim != 2 or len(v) != n or v.shape[1] == 0:
            raise ValueError(f"{name} must have shape ({n}, A), A >= 1 (one attribute vector per item), "
                             f"got {v.shape}")
        v = v.astype(np.float64)
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contain NaN or inf")
        return v >= 0.5  # binary attribute set
    if v.ndim != 1 or len(v) != n:
        raise ValueError(f"{name} must have shape ({n},) (one coarse group per item), got {v.shape}")
    return v


def per_query_graded_metrics(
    query: Any,
    query_labels: Any,
    *,
    query_groups: Any = None,
    query_attributes: Any = None,
    gallery: Any = None,
    gallery_labels: Any = None,
    gallery_groups: Any = None,
    gallery_attributes: Any = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, np.ndarray]:
    """Per-query granularity metrics of :func:`graded_metrics` (same arguments): float64 arrays
    of length ``len(query)``, NaN where a query is left out of that metric."""
    q, qy, ks = _check_inputs(query, query_labels, ks)
    loo = gallery is None
    if loo:
        extra = [name for name, value in (("gallery_labels", gallery_labels),
                                          ("gallery_groups", gallery_groups),
                                          ("gallery_attributes", gallery_attributes)) if value is not None]
        if extra:
            raise ValueError(f"{', '.join(extra)} given without a gallery: with gallery=None the "
                             f"evaluation is leave-one-out inside the query set")
        g, gy = q, None
    else:
        if gallery_labels is None:
            raise ValueError("gallery given without gallery_labels")
        g, gy, _ = _check_inputs(gallery, gallery_labels, ks)
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"query and gallery dimensions differ: {q.shape[1]} vs {g.shape[1]}")
        if not len(g):
            raise ValueError("the gallery is empty")
        for what, q_side, g_side in (("groups", query_groups, gallery_groups),
                                     ("attributes", query_attributes, gallery_attributes)):
            if (q_side is None) != (g_side is None):
                given = "query" if g_side is None else "gallery"
                raise ValueError(f"{what} given only for the {given} side: pass both query_{what} "
                                 f"and gallery_{what}, or neither")
    qg = _optional_side(query_groups, len(q), "query_groups")
    qa = _optional_side(query_attributes, len(q), "query_attributes", attributes=True)
    gg = None if loo else _optional_side(gallery_groups, len(g), "gallery_groups")
    ga = None if loo else _optional_side(gallery_attributes, len(g), "gallery_attributes", attributes=True)
    if not loo:
        if qa is not None and qa.shape[1] != ga.shape[1]:
            raise ValueError(f"query and gallery attribute counts differ: {qa.shape[1]} vs {ga.shape[1]}")

    # Shared integer ids per side: class, coarse group, attribute set.
    q_cls, g_cls = _side_ids(qy, None if loo else gy)
    q_grp, g_grp = (None, None) if qg is None else _side_ids(qg, gg)
    q_att, g_att = (None, None) if qa is None else _side_ids(qa, ga)
    partial = [(a, b) for a, b in ((q_grp, g_grp), (q_att, g_att)) if a is not None]

    # Items per relevance level, from per-key counts (self removed in leave-one-out: it is a
    # rel-2 item, and the same-class terms cancel it out of n1).
    def near_count(keys: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Candidates matching the query on `keys` and on at least one partial key (group or
        attribute set): inclusion-exclusion over the partial keys."""
        def count(extra: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
            both = keys + extra
            return _match_counts([a for a, _ in both], [b for _, b in both])
        if len(partial) == 1:
            return count(partial)
        return count(partial[:1]) + count(partial[1:]) - count(partial)

    n2 = _match_counts([q_cls], [g_cls]) - loo
    n1 = near_count([]) - near_count([(q_cls, g_cls)]) if partial else np.zeros(len(q), dtype=np.int64)
    size = len(g) - loo
    kmax = min(max(ks), size)
    ndcg_valid = (n2 + n1 > 0) & (kmax > 0)
    coarse_valid = np.zeros(len(q), dtype=bool)
    if q_grp is not None:
        coarse_valid = (_match_counts([q_grp], [g_grp]) - loo > 0) & (kmax > 0)

    keys = ([f"coarse_recall@{k}" for k in ks] if q_grp is not None else []) + [f"ndcg@{k}" for k in ks]
    metrics = {key: np.full(len(q), np.nan) for key in keys}
    queries = np.flatnonzero(ndcg_valid | coarse_valid)
    if not len(queries):
        return metrics

    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    cum_disc = np.concatenate([[0.0], np.cumsum(discount)])  # cum_disc[m]: sum of the first m

    g_norm = l2_normalise(g)
    q_norm = g_norm if loo else l2_normalise(q)
    index = faiss.IndexFlatIP(g_norm.shape[1])
    index.add(g_norm)
    chunk = int(np.clip(_CHUNK_ELEMS // (kmax + 2), 1, _MAX_CHUNK))
    for start in range(0, len(queries), chunk):
        rows = queries[start : start + chunk]
        nbr = _search_sorted(index, g_norm, q_norm[rows], np.full(len(rows), kmax),
                             self_rows=rows if loo else None)[:, :kmax]
        same_cls = g_cls[nbr] == q_cls[rows, None]
        near = np.zeros(nbr.shape, dtype=bool)
        for a, b in partial:
            near |= b[nbr] == a[rows, None]
        gain = np.where(same_cls, 3.0, near.astype(np.float64))  # 2^rel - 1 for rel 2, 1, 0
        dcg = np.cumsum(gain * discount, axis=1)
        if q_grp is not None:
            hit = g_grp[nbr] == q_grp[rows, None]
            ok = coarse_valid[rows]
            for k in ks:
                metrics[f"coarse_recall@{k}"][rows[ok]] = hit[ok, : min(k, kmax)].any(axis=1)
        ok = ndcg_valid[rows]
        r2, r12 = n2[rows[ok]], n2[rows[ok]] + n1[rows[ok]]
        for k in ks:
            kk = min(k, kmax)
            m2, m12 = np.minimum(r2, kk), np.minimum(r12, kk)
            ideal = 3.0 * cum_disc[m2] + (cum_disc[m12] - cum_disc[m2])
            metrics[f"ndcg@{k}"][rows[ok]] = dcg[ok, kk - 1] / ideal
    return metrics


def graded_metrics(
    query: Any,
    query_labels: Any,
    *,
    query_groups: Any = None,
    query_attributes: Any = None,
    gallery: Any = None,
    gallery_labels: Any = None,
    gallery_groups: Any = None,
    gallery_attributes: Any = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Retrieval metrics that see semantic granularity (SGML, issue 14): ``coarse_recall@K`` (only
    when groups are given) and graded ``ndcg@K``, each averaged over its own valid queries.

    Exact cosine k-NN with the evaluator's tie rule (:func:`retrieval_metrics`: faiss
    ``IndexFlatIP`` on L2-normalised float32 rows, similarities within ``TIE_EPS`` tied, tied
    neighbours by ascending gallery index). With ``gallery=None`` it is leave-one-out inside
    `query` (the item itself is excluded; no ``gallery_*`` argument may be given); otherwise each
    query searches the gallery only, and a query that is also in the gallery finds itself. ``K``
    is clamped to the number of candidates (``N - 1``, or the gallery size).

    Args:
        query, gallery: (N, D) embeddings (numpy or torch).
        query_labels, gallery_labels: (N,) class labels.
        query_groups, gallery_groups: (N,) coarse group of each item (any comparable values),
            or None; give both or neither in the query/gallery form.
        query_attributes, gallery_attributes: (N, A) attribute values, or None; binarised as
            ``value >= 0.5``; two items share an attribute set iff all A binary attributes are
            equal (so two all-zero vectors also share one). Both or neither, as for groups.
        ks: cut-offs.

    Definitions, per query:

    * ``coarse_recall@K``: 1 if any of the top ``K`` neighbours has the query's coarse group,
      else 0; queries with no other item of their group among the candidates are left out (as
      ``recall@K`` leaves out queries with ``R = 0``).
    * ``ndcg@K``: relevance ``rel = 2`` for the same class; 1 for a different class but the same
      coarse group or the same attribute set; 0 otherwise. Exponential gain:
      ``DCG@K = sum_{i=1..K} (2**rel_i - 1) / log2(i + 1)`` over the ranked neighbours;
      ``IDCG@K`` is the DCG of the ideal order of all that query's candidates (its ``n2`` rel-2
      items, then its ``n1`` rel-1 items); ``ndcg@K = DCG@K / IDCG@K``. Queries with
      ``IDCG = 0`` (no candidate of relevance > 0) are left out.

    Only the top ``max(ks)`` neighbours are searched (memory O(chunk x K)); ``n2`` and ``n1`` come
    from per-key counts of (class, group, attribute set) combinations by inclusion-exclusion,
    never from a query x gallery matrix. Raises ValueError, naming the cause, for inconsistent
    inputs or when a metric has no valid query.
    """
    metrics = per_query_graded_metrics(
        query, query_labels, query_groups=query_groups, query_attributes=query_attributes,
        gallery=gallery, gallery_labels=gallery_labels, gallery_groups=gallery_groups,
        gallery_attributes=gallery_attributes, ks=ks)
    out = {}
    for key, values in metrics.items():
        valid = ~np.isnan(values)
        if not valid.any():
            why = ("no query's coarse group has another candidate item" if key.startswith("coarse")
                   else "no query has a candidate of positive relevance (same class, group or "
                        "attribute set)")
            raise ValueError(f"no valid query for {key}: {why}")
        out[key] = float(values[valid].mean())
    return out


def query_counts(labels: Any) -> dict[str, int]:
    """Sizes behind :func:`retrieval_metrics`: items, classes and valid (non-singleton) queries."""
    y = _to_numpy(labels).reshape(-1)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return {
        "num_items": len(y),
        "num_classes": len(counts),
        "num_queries": int((counts[inverse.reshape(-1)] > 1).sum()),
    }


def combined_labels(labels_by_domain: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One integer label per (domain, label) pair and the domain id of every item."""
    combined, domain_ids, offset = [], [], 0
    for d, labels in enumerate(labels_by_domain.values()):
        _, inverse = np.unique(_to_numpy(labels).reshape(-1), return_inverse=True)
        inverse = inverse.reshape(-1)
        combined.append(inverse + offset)
        domain_ids.append(np.full(len(inverse), d))
        offset += int(inverse.max()) + 1 if len(inverse) else 0
    return np.concatenate(combined), np.concatenate(domain_ids)


def merged_retrieval_metrics(
    embeddings_by_domain: Mapping[str, Any],
    labels_by_domain: Mapping[str, Any],
    ks: Sequence[int] = (1, 2, 4, 8),
) -> dict[str, dict[str, float]]:
    """Retrieval with all domains in ONE index (UnED-style universal evaluation).

    A neighbour is relevant only if it has the query's label *and* domain, so equal label values
    in different domains are different classes, while other domains' items still compete as
    candidates. Returns ``{"all": metrics over all valid queries, "<domain>": metrics over that
    domain's queries}``, each as in :func:`retrieval_metrics`.
    """
    names = list(embeddings_by_domain)
    if not names or set(names) != set(labels_by_domain):
        raise ValueError("embeddings_by_domain and labels_by_domain need the same, non-empty keys")
    if "all" in names:
        raise ValueError('a domain may not be named "all" (reserved for the merged result)')
    labels, domain_ids = combined_labels({name: labels_by_domain[name] for name in names})
    x = np.concatenate([_to_numpy(embeddings_by_domain[name]) for name in names])
    metrics, valid = per_query_metrics(x, labels, ks)
    out = {"all": _mean_metrics(metrics, valid, "the merged set")}
    for d, name in enumerate(names):
        out[name] = _mean_metrics(metrics, valid & (domain_ids == d), f"domain {name!r}")
    return out


def embed(
    model: torch.nn.Module,
    images: Any,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    amp: str = "auto",
    flatten: bool = True,
) -> np.ndarray:
    """Embed uint8 images (N, C, H, W) -- or float inputs such as cached trunk features -- with
    ``model`` in eval mode, without gradients.

    ``images`` is an array or tensor, or file-backed :class:`~ue_lib.data.files.ImageFiles`
    (decoded with the evaluation transform by its ``num_workers`` DataLoader workers, in pinned
    memory when the device is a GPU). Each batch is moved to ``device`` (default: the model's
    parameter device, else CPU) and scaled to float32 in [0, 1] before the forward pass, under
    autocast when ``amp`` asks for it (``ue_lib.device``: bfloat16 on CUDA by default). Returns
    a float32 (N, D) array (outputs are flattened per item unless ``flatten=False``). The
    model's previous train/eval mode is restored.
    """
    from torch.utils.data import DataLoader

    from .data.files import is_file_backed
    from .device import autocast, to_input

    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if is_file_backed(images):  # decode in DataLoader workers
        batches = DataLoader(images.dataset(train=False), batch_size=batch_size,
                             num_workers=images.num_workers, pin_memory=device.type == "cuda")
    else:
        images = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"images must be uint8 (or float features), got {images.dtype}")
        batches = (images[start : start + batch_size] for start in range(0, len(images), batch_size))
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad(), autocast(amp, device):
            for batch in batches:
                out = model(to_input(batch, device))
                out = out.reshape(len(batch), -1) if flatten else out
                outputs.append(out.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


def model_inputs(model: torch.nn.Module, split: Any) -> Any:
    """What ``model`` embeds of ``split``: its cached trunk features (``split.features``, see
    ``ue_lib.features``) if the model takes features (``model.takes_features``), else its images."""
    if not getattr(model, "takes_features", False):
        return split.images
    if getattr(split, "features", None) is None:
        raise ValueError("this model embeds cached trunk features, but the split has none: load "
                         "the domains through RunFolder.domains() (which attaches them) or call "
                         "ue_lib.features.attach_features first")
    return split.features


def _split(domain: Any, split: str) -> Any:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return getattr(domain, split)


def split_metrics(embeddings: Any, split: Any, ks: Sequence[int] = (1, 2, 4, 8)) -> dict[str, float]:
    """Metrics of a split's ``embeddings`` under its protocol: :func:`query_gallery_metrics` if the
    split has an ``is_query`` mask (query = ``is_query``, gallery = ``~is_query``), else
    leave-one-out :func:`retrieval_metrics`."""
    is_query = getattr(split, "is_query", None)
    if is_query is None:
        return retrieval_metrics(embeddings, split.labels, ks)
    x, y, is_query = _to_numpy(embeddings), _to_numpy(split.labels), np.asarray(is_query, dtype=bool)
    return query_gallery_metrics(x[is_query], y[is_query], x[~is_query], y[~is_query], ks)


def evaluate_domains(
    model: torch.nn.Module,
    domains: Mapping[str, Any],
    split: str = "test",
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 512,
    amp: str = "auto",
) -> dict[str, dict[str, float]]:
    """Per-domain metrics of ``model`` on ``getattr(domain, split)`` (:func:`split_metrics`:
    query/gallery for a set with an ``is_query`` mask, else leave-one-out). The one place where
    a model is embedded and scored per domain (training curves, final numbers, notebooks).

    ``domains`` maps a name to an object with ``.train``, ``.val`` and ``.test`` sets, each having
    ``.images`` (uint8 N×C×H×W), ``.labels`` (int array) and optionally ``.is_query``.
    """
    return {name: split_metrics(embed(model, model_inputs(model, _split(d, split)), batch_size,
                                      amp=amp), _split(d, split), ks)
            for name, d in domains.items()}


def evaluate_merged(
    model: torch.nn.Module,
    domains: Mapping[str, Any],
    split: str = "test",
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 512,
    amp: str = "auto",
) -> dict[str, dict[str, float]]:
    """:func:`merged_retrieval_metrics` of ``model`` over all ``domains`` (see
    :func:`evaluate_domains` for the expected objects). The merged evaluation is leave-one-out
    over all items: a set's ``is_query`` mask is not used here."""
    embeddings = {n: embed(model, model_inputs(model, _split(d, split)), batch_size, amp=amp)
                  for n, d in domains.items()}
    return merged_retrieval_metrics(embeddings, {n: _split(d, split).labels
                                                 for n, d in domains.items()}, ks)
