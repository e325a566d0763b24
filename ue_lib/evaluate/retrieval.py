"""Retrieval metrics of one set of embeddings: Recall@K, MAP@R and MMP@5.

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
remain retrieval candidates for the other queries. Search and tie rule: :mod:`.search`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from .search import (
    _CHUNK_ELEMS,
    _MAX_CHUNK,
    _check_inputs,
    _mean_metrics,
    _search_sorted,
    _to_numpy,
    l2_normalise,
)


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


def split_metrics(embeddings: Any, split: Any, ks: Sequence[int] = (1, 2, 4, 8)) -> dict[str, float]:
    """Metrics of a split's ``embeddings`` under its protocol: :func:`query_gallery_metrics` if the
    split has an ``is_query`` mask (query = ``is_query``, gallery = ``~is_query``), else
    leave-one-out :func:`retrieval_metrics`."""
    is_query = getattr(split, "is_query", None)
    if is_query is None:
        return retrieval_metrics(embeddings, split.labels, ks)
    x, y, is_query = _to_numpy(embeddings), _to_numpy(split.labels), np.asarray(is_query, dtype=bool)
    return query_gallery_metrics(x[is_query], y[is_query], x[~is_query], y[~is_query], ks)


def chance_recall_at_1(labels) -> float:
    """Expected leave-one-out Recall@1 of a random ranking: the chance that a random other item
    shares the query's class, sum_c n_c (n_c - 1) / (N (N - 1))."""
    _, n = np.unique(np.asarray(labels), return_counts=True)
    total = int(n.sum())
    return float((n * (n - 1)).sum() / (total * (total - 1))) if total > 1 else np.nan
