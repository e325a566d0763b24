"""Exact, tie-deterministic nearest-neighbour search (faiss), shared by every metric here.

Similarity is the cosine of L2-normalised float32 rows, searched with faiss's exact
``IndexFlatIP``. Tie rule: sorted by decreasing similarity, consecutive candidates whose
similarities differ by at most ``TIE_EPS`` (absolute) are tied, ties chain into groups, and
inside a group candidates are ranked by ascending item index. A search returns one candidate
beyond those needed; a row whose boundary tie group may continue past the returned list is
searched again with a doubled ``k`` (twice), then resolved from its full similarity row. So
results depend neither on faiss's internal order and thread count nor on BLAS summation noise or
query chunking. Package-internal helpers keep their leading underscore.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import faiss
import numpy as np
import torch

from .. import timing

TIE_EPS = 1e-6
# Guard band for the float32 scores faiss ranks with: a row is complete only if its last retrieved
# candidate lies more than TIE_EPS + _SCORE_SLACK below the boundary tie group.
_SCORE_SLACK = 1e-6
# Query chunks for faiss: at most _MAX_CHUNK rows and _CHUNK_ELEMS neighbour entries (rows * k).
_CHUNK_ELEMS = 1 << 22
_MAX_CHUNK = 2048
# faiss searches per row (k, 2k, 4k) before a still-open boundary tie group is resolved densely.
_SEARCH_ROUNDS = 3


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
            timing.add_flops("evaluation", 2.0 * len(part) * n * base.shape[1])
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


def _mean_metrics(
    metrics: dict[str, np.ndarray],
    mask: np.ndarray,
    what: str,
    why: str = "every class has a single member, so no query has a relevant item to retrieve",
) -> dict[str, float]:
    if not mask.any():
        raise ValueError(f"no valid query in {what}: {why}")
    return {key: float(values[mask].mean()) for key, values in metrics.items()}


def nearest_neighbours(embeddings: Any, k: int, queries: Any = None) -> np.ndarray:
    """Leave-one-out neighbours by the search every metric here uses: for each item of
    ``queries`` (indices into ``embeddings``; default: every item), the indices of its ``k``
    most cosine-similar *other* items, best first, by the module's tie rule. ``k`` is clamped
    to ``N - 1``. Returns an int64 array (len(queries), k)."""
    x = _to_numpy(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must have shape (N, D), got {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    rows = np.arange(len(x)) if queries is None else np.asarray(queries, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(x)):
        raise ValueError(f"queries must be indices in [0, {len(x)}), got {rows.tolist()}")
    k = min(int(k), len(x) - 1)
    if k < 1 or not len(rows):
        return np.zeros((len(rows), max(k, 0)), dtype=np.int64)
    x = l2_normalise(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return _search_sorted(index, x, x[rows], np.full(len(rows), k), self_rows=rows)


def tie_ordered(scores: Any, items: Any) -> np.ndarray:
    """One query's candidates ``items`` (e.g. every item of a faiss index, with the scores its
    ``search`` returned, higher = nearer) in the order of this module's tie rule: by
    decreasing score, candidates within ``TIE_EPS`` of each other tied (ties chain), and a tie
    group in ascending item index. For a search that is not the exact cosine one (a compressed
    index's approximate scores) ranked as the metrics rank theirs. Returns an int64 array."""
    s = np.asarray(scores, dtype=np.float64).reshape(1, -1)
    c = np.asarray(items, dtype=np.int64).reshape(1, -1)
    if s.shape != c.shape:
        raise ValueError(f"scores and items differ in length: {s.shape[1]} vs {c.shape[1]}")
    if not c.size:
        return np.zeros(0, dtype=np.int64)
    return _rank_candidates(s, c, int(c.max()) + 1, None)[0][0]


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """faiss's OpenMP threads set to `n` inside the block (restored after). Fitting an OPQ
    rotation depends on the thread count, so fits run on one thread: the same rows give the same
    index on any machine and in any worker process."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def opq_pq_index(train: np.ndarray, subspaces: int, bits: int, seed: int | None = None,
                 iterations: int | None = None) -> faiss.Index:
    """An empty inner-product faiss index of an OPQ rotation and PQ codes (`subspaces` codes of
    `bits` bits an item; `faiss.index_factory`, without the polysemous training it would add
    and which nothing here uses), fitted on one thread on the rows `train` (L2-normalise them
    first, and the items and queries): the rotation alternates `iterations` times (None:
    faiss's default) with the index's own codes, which are then fitted again on the rotated
    rows. `seed` seeds the codes' k-means (None: faiss's default); small `train` sets are
    fitted without faiss's "please provide at least N training points" warning. Add the items
    with `add` (after `faiss.clone_index` for several sets)."""
    index = faiss.index_factory(train.shape[1], f"OPQ{subspaces},PQ{subspaces}x{bits}np",
                                faiss.METRIC_INNER_PRODUCT)
    rotation = faiss.downcast_VectorTransform(index.chain.at(0))
    codes = faiss.downcast_index(index.index).pq
    codes.cp.min_points_per_centroid = 1
    if seed is not None:
        codes.cp.seed = seed
    if iterations is not None:
        rotation.niter = iterations
    rotation.pq = codes
    with faiss_threads(1):
        try:
            rotation.train(train)
        finally:
            rotation.pq = None  # the codes are the index's
        index.train(train)
    return index
