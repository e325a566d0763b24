"""The indexes OPQN is compared with, all searched by faiss: the exact float index, the post-hoc
faiss quantizers of the same float embeddings (``PQ``, ``OPQ``, ``IVFPQ``), OPQN's own codes as a
faiss ``IndexPQ``, and their comparison on one experiment (:func:`compare_indexes`); the
synthetic search-time benchmark.

The faiss baselines (:func:`faiss_index`) quantize the same float embeddings after training.
All work on L2-normalised vectors with the inner product, so their float counterpart is the
cosine similarity the rest of the library ranks by. They are fitted, without labels, on the
training split *and the database* (faiss's usual ``index.train(xb)``), which favours them over
OPQN (labelled training split only). Metrics of a faiss index:
`ue_lib.evaluate.index_ranking_metrics`.
"""

from __future__ import annotations

import math
import time

import faiss
import numpy as np

from ..evaluate import faiss_threads, index_ranking_metrics
from .loss import OrthonormalQuantizer
from .settings import FAISS_KINDS


def normalized(x: np.ndarray) -> np.ndarray:
    """A float32 copy of `x` with unit rows, by faiss's own ``normalize_L2`` (the float32 rounding
    the post-hoc quantizers were fitted with; `ue_lib.evaluate.l2_normalise` rounds in float64,
    and OPQ's k-means amplifies that last-bit difference into different codes)."""
    x = np.ascontiguousarray(x, dtype=np.float32).copy()
    faiss.normalize_L2(x)
    return x


def _nbits(codewords: int) -> int:
    nbits = int(math.log2(codewords))
    if 2 ** nbits != codewords:
        raise ValueError(f"codewords must be a power of two, got {codewords}")
    return nbits


def opqn_index(quantizer: OrthonormalQuantizer, items: np.ndarray) -> faiss.IndexPQ:
    """A faiss ``IndexPQ`` (inner product) holding `items`' OPQN codes, with the codebooks'
    columns as its centroids: searching it with :meth:`OrthonormalQuantizer.query_vectors`
    scores Σ_m ⟨s^q_m, c_{m,k_m}⟩ = Σ_m p^q_m[k_m] (asymmetric search). The codes are written by
    faiss's own encoder from the decoded items (each one exactly a centroid)."""
    index = faiss.IndexPQ(quantizer.dim, quantizer.subspaces, _nbits(quantizer.codewords),
                          faiss.METRIC_INNER_PRODUCT)
    words = quantizer.codebooks.detach().permute(0, 2, 1).contiguous().numpy()  # (M, K, d)
    faiss.copy_array_to_vector(words.ravel().astype(np.float32), index.pq.centroids)
    index.is_trained = True
    index.add(quantizer.decode(quantizer.encode(items)))
    return index


def _quiet_pq(pq: faiss.ProductQuantizer, seed: int) -> None:
    """k-means settings of a PQ trained on a small set (ORL has 240 training faces): no "please
    provide at least N training points" warning, and a seeded start."""
    pq.cp.min_points_per_centroid = 1
    pq.cp.seed = seed


FIT_VECTORS = 4096  # at most this many vectors (a seeded sample) fit a post-hoc quantizer

# Quantizers are fitted on one thread: OPQ's rotation depends on faiss's thread count (entries
# differ by ~6e-7 between 1 and 2 threads, enough to move codes), so that the same seed gives
# the same index on any machine and in any worker process (`ue_lib.runfolder.RunFolder.map`).
FIT_THREADS = 1


def fit_threads(n: int = FIT_THREADS):
    """faiss's OpenMP threads set to `n` inside the block (restored after)."""
    return faiss_threads(n)

OPQ_ITERATIONS = 20  # alternations of rotation and PQ in OPQ's training (faiss's default: 50)


def faiss_index(kind: str, train: np.ndarray, items: np.ndarray, subspaces: int, codewords: int,
                seed: int = 0, nlist: int = 64, nprobe: int = 8) -> faiss.Index:
    """A post-hoc faiss index of `kind` (:data:`FAISS_KINDS`) over L2-normalised `items`, trained
    on L2-normalised `train`, at M = `subspaces` × log2(`codewords`) bits per item; inner product
    (search it with normalised queries). ``opq`` learns a rotation (``OPQMatrix``) before its PQ;
    ``ivfpq`` adds an inverted file (`nlist` lists, `nprobe` searched) for large databases.
    At most `FIT_VECTORS` of `train` (seeded sample) fit it; OPQ alternates `OPQ_ITERATIONS`
    times (measured on the universal index: 3.4 s per OPQ at faiss's defaults)."""
    if kind not in FAISS_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; valid: {', '.join(FAISS_KINDS)}")
    if len(train) > FIT_VECTORS:
        train = train[np.sort(np.random.default_rng(seed).choice(len(train), FIT_VECTORS, replace=False))]
    train, items = normalized(train), normalized(items)
    dim, nbits = train.shape[1], _nbits(codewords)
    if dim % subspaces:
        raise ValueError(f"the embedding dimension {dim} must split into {subspaces} subvectors")
    if len(train) < codewords:
        raise ValueError(f"{len(train)} training vectors cannot train {codewords} codewords; "
                         f"use fewer codewords or a larger training split")
    if kind == "opq" and len(train) < dim:  # faiss's OPQMatrix corrupts memory below that
        raise ValueError(f"OPQ needs at least as many training vectors as dimensions: {len(train)} "
                         f"< {dim}; train it on more vectors or use a smaller embedding")
    with fit_threads():
        if kind == "ivfpq":
            coarse = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(coarse, dim, min(nlist, len(train)), subspaces, nbits,
                                     faiss.METRIC_INNER_PRODUCT)
            index.cp.min_points_per_centroid, index.cp.seed = 1, seed
            _quiet_pq(index.pq, seed)
            index.nprobe = nprobe
            index.train(train)  # (faiss's Python wrapper keeps `coarse` alive with the index)
        else:
            index = faiss.IndexPQ(dim, subspaces, nbits, faiss.METRIC_INNER_PRODUCT)
            _quiet_pq(index.pq, seed)
            if kind == "opq":
                opq = faiss.OPQMatrix(dim, subspaces)
                opq.niter = OPQ_ITERATIONS
                inner_pq = faiss.ProductQuantizer(dim, subspaces, nbits)
                _quiet_pq(inner_pq, seed)
                opq.pq = inner_pq
                opq.train(train)
                opq.pq = None  # the training PQ is ours, not the matrix's
                index = faiss.IndexPreTransform(opq, index)
            index.train(train)
    index.add(items)
    return index


def code_bytes(index: faiss.Index) -> int:
    """Bytes per item of a faiss index's codes (4·D for a flat float index). An inverted file
    stores each item's PQ code in its list (plus an 8-byte id, not counted here)."""
    if isinstance(index, faiss.IndexIVF):
        return int(index.code_size)
    return int(index.sa_code_size())


def search_seconds_per_query(index: faiss.Index, queries: np.ndarray, k: int = 10,
                             repeats: int = 5) -> float:
    """The median of `repeats` wall-clock times of ``index.search(queries, k)``, per query,
    after one untimed warm-up search (which pages the codes in and starts faiss's threads)."""
    index.search(queries, k)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(queries, k)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / len(queries)


def pq_shape(dim: int, bits: int) -> tuple[int, int]:
    """(M, K) of a faiss PQ of `bits` bits per item on `dim`-d vectors: the fewest subspaces that
    divide `dim` with at most 8 bits each (faiss's usual 8-bit sub-quantizers when they fit)."""
    for m in range(1, dim + 1):
        if dim % m == 0 and bits % m == 0 and bits // m <= 8:
            return m, 2 ** (bits // m)
    raise ValueError(f"no product quantizer of {bits} bits fits {dim}-d vectors (M must divide "
                     f"both); choose another bit budget")


def _query_side(x: np.ndarray, is_query: np.ndarray | None, picked: np.ndarray | None = None):
    """(queries, gallery, query rows' own index positions or None) of an evaluation split;
    `picked` keeps a sample of the queries (positions among them)."""
    if is_query is None:  # leave-one-out: every item queries all the others
        rows = np.arange(len(x)) if picked is None else picked
        return x[rows], x, rows
    q = x[is_query]
    return (q if picked is None else q[picked]), x[~is_query], None


def query_sample(n_queries: int, max_queries: int, seed: int) -> np.ndarray | None:
    """Positions of at most `max_queries` of `n_queries` queries (seeded, sorted); None: all
    (`max_queries` 0 or enough). Whole-ranking metrics cost queries x database."""
    if not max_queries or n_queries <= max_queries:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_queries, max_queries, replace=False))


def compare_indexes(train: np.ndarray, items: np.ndarray, labels: np.ndarray,
                    is_query: np.ndarray | None, shape: tuple[int, int],
                    quantizer: OrthonormalQuantizer | None = None, kinds=("pq", "opq"),
                    ks=(1, 5, 10), seed: int = 0, prefix: str = "", max_queries: int = 0
                    ) -> list[dict]:
    """Float search against compressed indexes of the same float embeddings `items` (an
    evaluation split: queries and gallery by `is_query`, else leave-one-out): the exact float
    index (``IndexFlatIP``, cosine), the faiss `kinds` at the code `shape`
    (M, K), and OPQN's own codes when a `quantizer` is given. Rows {index, metric, value}:
    `ue_lib.evaluate.index_ranking_metrics` plus ``bits`` and ``bytes`` per item (search time is
    measured only where it means something: `search_benchmark`'s large database); index names
    get `prefix`. With `max_queries`, a seeded
    sample of that many queries searches the whole database (`query_sample`)."""
    n_queries = len(items) if is_query is None else int(is_query.sum())
    picked = query_sample(n_queries, max_queries, seed)
    queries, gallery, self_rows = _query_side(items, is_query, picked)
    q_labels, g_labels, _ = _query_side(labels, is_query, picked)
    m, k = shape
    flat = faiss.IndexFlatIP(items.shape[1])
    flat.add(normalized(gallery))
    built = {"float": (flat, normalized(queries), 32 * items.shape[1])}
    # post-hoc quantizers fit, without labels, every vector at hand when the index is built: the
    # training split and the database itself (faiss's usual `index.train(xb)`); OPQN learns from
    # the labelled training split only, so this favours the baselines
    fit = np.concatenate([train, gallery])
    for kind in kinds:
        built[kind] = (faiss_index(kind, fit, gallery, m, k, seed), normalized(queries),
                       m * _nbits(k))
    if quantizer is not None:
        built["opqn"] = (opqn_index(quantizer, gallery),
                         np.ascontiguousarray(quantizer.query_vectors(queries)), quantizer.bits)
    rows = []
    for name, (index, q, bits) in built.items():
        metrics = index_ranking_metrics(index, q, q_labels, g_labels, ks, self_rows)
        metrics.update(bits=float(bits), bytes=float(code_bytes(index)))
        rows += [{"index": prefix + name, "metric": key, "value": v} for key, v in metrics.items()]
    return rows


def search_benchmark(items: int, dim: int, shapes: list[tuple[int, int]], queries: int = 100,
                     seed: int = 0) -> list[dict]:
    """Search time on a synthetic database of `items` random unit vectors (`dim`-d): the exact
    float index against a PQ index per code shape, which is what an OPQN index is at search time
    (the same ``IndexPQ`` scan; only its centroids differ). Rows {index, bits, bytes, items,
    memory_mib, ms_per_query} (`search_seconds_per_query`: warm-up, median of 5, k = 10)."""
    rng = np.random.default_rng(seed)
    base = normalized(rng.standard_normal((items, dim), dtype=np.float32))
    q = normalized(rng.standard_normal((queries, dim), dtype=np.float32))
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    rows = [{"index": "float (IndexFlatIP)", "bits": 32 * dim, "bytes": 4 * dim, "items": items,
             "memory_mib": 4 * dim * items / 2**20,
             "ms_per_query": 1e3 * search_seconds_per_query(flat, q)}]
    del flat
    for m, k in shapes:
        index = faiss_index("pq", base[: min(items, FIT_VECTORS)], base, m, k, seed)
        rows.append({"index": f"PQ / OPQN {m}x{k}", "bits": m * _nbits(k),
                     "bytes": code_bytes(index), "items": items,
                     "memory_mib": code_bytes(index) * items / 2**20,
                     "ms_per_query": 1e3 * search_seconds_per_query(index, q)})
    return rows


def pq_example(dim: int = 16, m: int = 4, k: int = 16, seed: int = 0) -> dict:
    """One vector through faiss's product quantizer, for notebook 06's schematic: a `dim`-d
    vector cut into `m` sub-vectors, each snapped to the nearest of its sub-space's `k`
    codewords (fitted by faiss's k-means on 40 K seeded random vectors, the fewest it accepts
    without a warning). Returns
    {vector, codebooks (m, k, dim/m), codes (m indices), decoded (the codewords joined, as
    faiss decodes the code), bits (m log2 k), code_bytes (faiss's)}."""
    if dim % m:
        raise ValueError(f"m = {m} must divide dim = {dim}")
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((40 * k, dim)).astype(np.float32)
    pq = faiss.ProductQuantizer(dim, m, _nbits(k))
    pq.train(train)
    books = faiss.vector_to_array(pq.centroids).reshape(m, k, dim // m)
    vector = rng.standard_normal((1, dim)).astype(np.float32)
    code = pq.compute_codes(vector)
    decoded = pq.decode(code)[0]
    subs = vector[0].reshape(m, dim // m)
    codes = ((books - subs[:, None, :]) ** 2).sum(-1).argmin(1)  # the nearest codeword per sub-space
    return {"vector": vector[0], "codebooks": books, "codes": codes, "decoded": decoded,
            "bits": m * _nbits(k), "code_bytes": int(pq.code_size)}
