"""Retrieval evaluation: Recall@K, MAP@R and MMP@5 with exact, tie-deterministic k-NN.

Every evaluation here is *leave-one-out* retrieval inside one set: each item queries all other
items, ranked by cosine similarity. Metrics (per query, then averaged over queries):

* ``recall@K``: 1 if any of the top ``K`` neighbours shares the query's label, else 0.
  ``K`` larger than ``N - 1`` is clamped to ``N - 1``.
* ``map@r`` (MAP@R, Musgrave et al. 2020): with ``R`` the number of *other* items of the query's
  class, ``AP@R = (1/R) * sum_{i=1..R} precision@i * rel(i)``.
* ``mmp@5``: (#relevant among the top ``m``) / ``m`` with ``m = min(5, R)``.

Queries whose class has no other member (``R == 0``) are left out of every metric, but such items
remain retrieval candidates for the other queries.

Tie rule (see :func:`retrieval_metrics`): similarities within ``TIE_EPS`` are tied, and tied
candidates are ranked by ascending item index.
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
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    return x, y, ks


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32, C-contiguous); zero rows stay zero."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _rank_candidates(
    scores: np.ndarray, rows: np.ndarray, cand: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order candidate rows by the tie rule; the query itself is dropped (or the last candidate
    if the query is absent), leaving ``k - 1`` neighbours per row.

    Returns (neighbour indices, float64 similarities, tie-group ids), each (len(rows), k - 1).
    """
    sims = scores.astype(np.float64)
    sims[cand == rows[:, None]] = -np.inf  # self sorts last and is cut off below
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


def _dense_ranked(x: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """First ``width`` neighbours of ``rows`` by the tie rule, from full similarity rows.

    For rows whose boundary tie group is too large for faiss re-searches (e.g. collapsed or
    duplicate-heavy embeddings): full similarity rows in blocks, one sort of their values to
    find the boundary group's range, then its members are taken in index order by a mask.
    """
    out = np.empty((len(rows), width), dtype=np.int64)
    step = max(1, _CHUNK_ELEMS // len(x))
    for s in range(0, len(rows), step):
        block = rows[s : s + step]
        sims = (x[block] @ x.T).astype(np.float64)  # float32 products, as faiss computes them
        sims[np.arange(len(block)), block] = -np.inf
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
    index: faiss.Index, x: np.ndarray, rows: np.ndarray, need: np.ndarray
) -> np.ndarray:
    """Indices of the first ``need.max()`` neighbours of ``rows`` (tie rule, self excluded).

    Row ``i`` is guaranteed correct on its first ``need[i]`` positions."""
    n = len(x)
    width = int(need.max())
    out = np.empty((len(rows), width), dtype=np.int64)
    todo = np.arange(len(rows))
    k = min(width + 2, n)  # +1 for the query itself, +1 to see past the cut-off
    for _ in range(_SEARCH_ROUNDS):
        retry = []
        step = max(1, _CHUNK_ELEMS // k)
        for part in (todo[s : s + step] for s in range(0, len(todo), step)):
            scores, cand = index.search(x[rows[part]], k)
            nbr, sims, group = _rank_candidates(scores, rows[part], cand, n)
            done = np.full(len(part), k == n) | _boundary_complete(sims, group, need[part])
            out[part[done]] = nbr[done, :width]
            retry.append(part[~done])
        todo = np.concatenate(retry)
        if not len(todo):
            return out
        k = min(2 * k, n)
    out[todo] = _dense_ranked(x, rows[todo], width)
    return out


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

    x = _l2_normalise(x)
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
        nbr = _search_sorted(index, x, rows, need)
        rel = inverse[nbr] == inverse[rows, None]
        r = r_all[rows]
        for k in ks:
            metrics[f"recall@{k}"][rows] = rel[:, : min(k, kmax)].any(axis=1)
        pos = np.arange(1, rel.shape[1] + 1)
        hits = np.cumsum(rel, axis=1)
        within_r = pos <= r[:, None]
        metrics["map@r"][rows] = (rel * within_r * hits / pos).sum(axis=1) / r
        m5 = np.minimum(5, r)
        metrics["mmp@5"][rows] = (rel * (pos <= m5[:, None])).sum(axis=1) / m5
    return metrics, valid


def _mean_metrics(metrics: dict[str, np.ndarray], mask: np.ndarray, what: str) -> dict[str, float]:
    if not mask.any():
        raise ValueError(
            f"no valid query in {what}: every class has a single member, so no query has a "
            "relevant item to retrieve"
        )
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


def query_counts(labels: Any) -> dict[str, int]:
    """Sizes behind :func:`retrieval_metrics`: items, classes and valid (non-singleton) queries."""
    y = _to_numpy(labels).reshape(-1)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return {
        "num_items": len(y),
        "num_classes": len(counts),
        "num_queries": int((counts[inverse.reshape(-1)] > 1).sum()),
    }


def _combined_labels(labels_by_domain: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
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
    labels, domain_ids = _combined_labels({name: labels_by_domain[name] for name in names})
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
) -> np.ndarray:
    """Embed uint8 images (N, C, H, W) with ``model`` in eval mode, without gradients.

    Each batch is moved to ``device`` (default: the model's parameter device, else CPU) and scaled
    to float32 in [0, 1] before the forward pass. Returns a float32 (N, D) array (outputs are
    flattened per item). The model's previous train/eval mode is restored.
    """
    images = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size].to(device).float().div_(255.0)
                out = model(batch)
                outputs.append(out.reshape(len(batch), -1).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


def _split(domain: Any, split: str) -> Any:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return getattr(domain, split)


def evaluate_domains(
    model: torch.nn.Module,
    domains: Mapping[str, Any],
    split: str = "test",
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 512,
) -> dict[str, dict[str, float]]:
    """Per-domain :func:`retrieval_metrics` of ``model`` on ``getattr(domain, split)``.

    ``domains`` maps a name to an object with ``.train``, ``.val`` and ``.test`` sets, each having
    ``.images`` (uint8 N×C×H×W) and ``.labels`` (int array).
    """
    results = {}
    for name, domain in domains.items():
        data = _split(domain, split)
        emb = embed(model, data.images, batch_size=batch_size)
        results[name] = retrieval_metrics(emb, data.labels, ks)
    return results


def evaluate_merged(
    model: torch.nn.Module,
    domains: Mapping[str, Any],
    split: str = "test",
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 512,
) -> dict[str, dict[str, float]]:
    """:func:`merged_retrieval_metrics` of ``model`` over all ``domains`` (see
    :func:`evaluate_domains` for the expected objects)."""
    embeddings, labels = {}, {}
    for name, domain in domains.items():
        data = _split(domain, split)
        embeddings[name] = embed(model, data.images, batch_size=batch_size)
        labels[name] = data.labels
    return merged_retrieval_metrics(embeddings, labels, ks)
