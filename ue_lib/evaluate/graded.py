"""Retrieval metrics with graded relevance: ``coarse_recall@K`` (the neighbour shares the
query's coarse group) and graded ``ndcg@K`` (relevance 2 for the same class, 1 for the same
coarse group or attribute set), leave-one-out or query/gallery, with the search's tie rule
(:mod:`.search`) and ``K`` clamped to the number of candidates:

* ``coarse_recall@K``: 1 if any of the top ``K`` neighbours shares the query's coarse group;
  queries whose group has no other candidate are left out.
* ``ndcg@K``: graded relevance 2 (same class), 1 (same coarse group or same attribute set:
  all attributes equal after ``value >= 0.5``), 0 otherwise; gain ``2**rel - 1``, discount
  ``1 / log2(i + 1)``, normalised by the ideal DCG of the query's candidates; queries with
  ``IDCG = 0`` are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from .search import _CHUNK_ELEMS, _MAX_CHUNK, _check_inputs, _search_sorted, _to_numpy, l2_normalise


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


def _graded_inputs(query, query_labels, query_groups, query_attributes, gallery, gallery_labels,
                   gallery_groups, gallery_attributes, ks):
    """The checked arrays of :func:`graded_metrics`' arguments: (q, qy, g, gy, qg, qa, gg, ga,
    loo, ks); groups and attributes None where not given, attributes binarised."""
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
    return q, qy, g, gy, qg, qa, gg, ga, loo, ks


def _relevance_counts(q_cls, g_cls, partial, loo: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per query, its candidates of relevance 2 (same class) and 1 (another class, but the same
    coarse group or attribute set: `partial`, pairs of (query ids, gallery ids)), from per-key
    counts (self removed in leave-one-out: it is a rel-2 item, and the same-class terms cancel
    it out of n1)."""
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
    n1 = near_count([]) - near_count([(q_cls, g_cls)]) if partial else np.zeros(len(q_cls), dtype=np.int64)
    return n2, n1


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
    """Per-query metrics of :func:`graded_metrics` (same arguments): float64 arrays
    of length ``len(query)``, NaN where a query is left out of that metric."""
    q, qy, g, gy, qg, qa, gg, ga, loo, ks = _graded_inputs(
        query, query_labels, query_groups, query_attributes, gallery, gallery_labels,
        gallery_groups, gallery_attributes, ks)
    # Shared integer ids per side: class, coarse group, attribute set.
    q_cls, g_cls = _side_ids(qy, None if loo else gy)
    q_grp, g_grp = (None, None) if qg is None else _side_ids(qg, gg)
    q_att, g_att = (None, None) if qa is None else _side_ids(qa, ga)
    partial = [(a, b) for a, b in ((q_grp, g_grp), (q_att, g_att)) if a is not None]
    n2, n1 = _relevance_counts(q_cls, g_cls, partial, loo)
    size = len(g) - loo
    kmax = min(max(ks), size)
    ndcg_valid = (n2 + n1 > 0) & (kmax > 0)
    coarse_valid = np.zeros(len(q), dtype=bool)
    if q_grp is not None:
        coarse_valid = (_match_counts([q_grp], [g_grp]) - loo > 0) & (kmax > 0)

    keys = ([f"coarse_recall@{k}" for k in ks] if q_grp is not None else []) + [f"ndcg@{k}" for k in ks]
    metrics = {key: np.full(len(q), np.nan) for key in keys}
    queries = np.flatnonzero(ndcg_valid | coarse_valid)
    if len(queries):
        _score_graded(metrics, queries, q, g, loo, ks, kmax, (q_cls, g_cls), (q_grp, g_grp), partial,
                      (n2, n1), (ndcg_valid, coarse_valid))
    return metrics


def _score_graded(metrics, queries, q, g, loo, ks, kmax, cls, grp, partial, counts, valid) -> None:
    """Search each query's top `kmax` and write its coarse Recall@K and nDCG@K into `metrics`."""
    (q_cls, g_cls), (q_grp, g_grp), (n2, n1), (ndcg_valid, coarse_valid) = cls, grp, counts, valid
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
    """Retrieval metrics with graded relevance: ``coarse_recall@K`` (only
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
