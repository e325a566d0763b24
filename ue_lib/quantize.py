"""Compressed retrieval: product quantization, and the Orthonormal Product Quantization Network.

A universal embedding is only useful at scale when its index fits in memory. *Product
quantization* (PQ) splits a D-dimensional vector into M subvectors of d = D/M dimensions and
stores, for each, the index of one of K codewords: M·log2(K) bits per item instead of 32·D.
A query is not quantised (asymmetric search): its score against an item is the sum over
subspaces of its similarity to the item's codewords, which faiss computes from M small tables.

**OPQN** (Ming Zhang, Xuefei Zhe, Hong Yan, *Orthonormal Product Quantization Network for
Scalable Face Image Retrieval*, Pattern Recognition 2023, arXiv 2107.00327; read in the authors'
code, github.com/mzhang367/opqn) learns the quantization end to end with *fixed* codewords:

* **Codebooks** (:func:`dct_codebooks`): Φ is the d×d orthonormal DCT-II matrix, C_1 = Φ[:, :K]
  and C_m = Φ·C_{m−1}; every C_m has orthonormal columns (C_mᵀC_m = I), so codewords are as far
  apart as they can be and carry no redundancy. For ablation: random orthonormal codewords
  (QR of a Gaussian) and learned ones (initialised with the DCT, then trained freely).
* **Soft assignment** (:class:`OrthonormalQuantizer`): p_m = softmax(x_mᵀV_m), V_m a learned
  d×K matrix (not a distance to the codewords); the soft-quantised subvector is s_m = C_m p_m.
* **Loss** (:class:`OPQNLoss`): a CosFace margin softmax with per-subspace class prototypes W_m,
  shared by x_m and s_m, plus λ × the entropy of p_m, which pushes each assignment towards one
  codeword.
* **Codes and search**: an item's code is k_m = argmax_k p_m[k]; a query's score against it is
  Σ_m p^q_m[k_m] = Σ_m ⟨s^q_m, c_{m,k_m}⟩ (the codewords are orthonormal), an inner product with
  the decoded item, so faiss's ``IndexPQ`` with the codewords as its centroids runs the search
  (:func:`opqn_index`).

Where our reconstruction chooses (each a parameter of :class:`OPQNLoss`, ``-p opqn.NAME``):

* ``normalize_input=True``: p_m is computed from the L2-normalised subvector in training *and* at
  test. The authors' code uses the raw subvector in training but the normalised one at test.
* the entropy term is the mean over items and subspaces, as in the authors' code (the paper's
  overview sums over subspaces; the two differ by the factor M, absorbed by λ);
* ``x_branch=True``: the margin loss on the raw subvectors x_m (½ each with the s_m term);
  ``False`` keeps only the quantised branch (an ablation of notebook 06);
* the model is selected by validation Recall@1 of its *codes* (:class:`CodesEmbedder`: items
  replaced by their codewords), where every other model here is selected on its float
  embedding (the authors' code keeps the lowest training loss);
* the optimiser is the profile's (Adam on the cached-feature heads of ``mini``; the paper's SGD,
  lr 0.1, momentum 0.9, weight decay 5e-4 is ``-p optimizer sgd -p lr 0.1 -p weight_decay 5e-4``).

The faiss baselines (:func:`faiss_index`) quantize the same float embeddings after training:
``PQ`` (``IndexPQ``), ``OPQ`` (a learned rotation, ``OPQMatrix``, then PQ) and, for the large
benchmarks, ``IVFPQ``. All work on L2-normalised vectors with the inner product, so their float
counterpart is the cosine similarity the rest of the library ranks by. They are fitted, without
labels, on the training split *and the database* (:func:`compare_indexes`: faiss's usual
``index.train(xb)``), which favours them over OPQN (labelled training split only). Every search goes
through faiss; metrics of a faiss index: :func:`ue_lib.evaluate.index_ranking_metrics`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Domain, Split
from .evaluate import index_ranking_metrics

CODEBOOKS = ("dct", "random", "learned")
FAISS_KINDS = ("pq", "opq", "ivfpq")


# ----------------------------------------------------------------------------- codebooks

def dct_matrix(d: int) -> torch.Tensor:
    """The d×d orthonormal DCT-II matrix Φ, Φ[j, k] = √(2/d)·cos(π(j+½)k/d), column 0 × 1/√2
    (scipy's ``dct(..., norm="ortho")`` of the identity, transposed so that columns are the
    basis vectors)."""
    from scipy.fft import dct

    if d < 1:
        raise ValueError(f"the subvector size d must be >= 1, got {d}")
    return torch.from_numpy(dct(np.eye(d), type=2, norm="ortho", axis=0).T.copy()).float()


def _check_codebook_shape(d: int, k: int, m: int) -> None:
    if m < 1 or k < 1:
        raise ValueError(f"need at least one codebook and one codeword, got m={m}, k={k}")
    if k > d:
        raise ValueError(f"orthonormal codebooks need k <= d: {k} codewords cannot be orthonormal "
                         f"in {d} dimensions; use fewer codewords or fewer subspaces (d = D / M)")


def dct_codebooks(d: int, k: int, m: int) -> torch.Tensor:
    """OPQN's fixed codebooks, float (m, d, k): slice 0 is the first k columns of the DCT-II
    matrix Φ (:func:`dct_matrix`), slice i is Φ·slice(i−1). Raises ValueError if k > d."""
    _check_codebook_shape(d, k, m)
    phi = dct_matrix(d).double()
    books = [phi[:, :k]]
    for _ in range(1, m):
        books.append(phi @ books[-1])
    return torch.stack(books).float()


def random_codebooks(d: int, k: int, m: int, seed: int | None = None) -> torch.Tensor:
    """Random orthonormal codebooks (m, d, k): the Q of a Gaussian's QR, per codebook (an
    ablation of the DCT's structure); drawn from `seed`, or from torch's global generator (which
    a training seeds) when None."""
    _check_codebook_shape(d, k, m)
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.stack([torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:, :k]
                        for _ in range(m)]).float()


def make_codebooks(kind: str, d: int, k: int, m: int, seed: int | None = None) -> torch.Tensor:
    """Codebooks of `kind` (:data:`CODEBOOKS`); "learned" starts from the DCT's."""
    if kind not in CODEBOOKS:
        raise ValueError(f"unknown codebook {kind!r}; valid: {', '.join(CODEBOOKS)}")
    return random_codebooks(d, k, m, seed) if kind == "random" else dct_codebooks(d, k, m)


# ----------------------------------------------------------------------------- the quantizer

class OrthonormalQuantizer(nn.Module):
    """OPQN's soft assignment and codes for D-dimensional embeddings: M subspaces of d = D/M
    dimensions, K codewords each (see the module doc). What a trained OPQN model keeps beside
    its network (`TrainResult.kept`)."""

    def __init__(self, dim: int, subspaces: int = 4, codewords: int = 16, codebook: str = "dct",
                 normalize_input: bool = True, seed: int | None = None):
        super().__init__()
        if subspaces < 1 or dim % subspaces:
            raise ValueError(f"the embedding dimension {dim} must split into {subspaces} equal "
                             f"subvectors; choose a number of subspaces that divides it")
        if codewords < 2 or codewords & (codewords - 1):
            raise ValueError(f"codewords must be a power of two >= 2 (a code is log2(K) bits), "
                             f"got {codewords}")
        self.dim, self.subspaces, self.codewords = dim, subspaces, codewords
        self.sub_dim, self.codebook, self.normalize_input = dim // subspaces, codebook, normalize_input
        books = make_codebooks(codebook, self.sub_dim, codewords, subspaces, seed)
        if codebook == "learned":
            self.codebooks = nn.Parameter(books)
        else:
            self.register_buffer("codebooks", books)
        self.assign = nn.Parameter(torch.empty(subspaces, self.sub_dim, codewords))
        nn.init.xavier_uniform_(self.assign)

    @property
    def bits(self) -> int:
        return self.subspaces * int(math.log2(self.codewords))

    def subvectors(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, M, d)."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim}-d embeddings, got {x.shape[-1]}-d")
        return x.reshape(len(x), self.subspaces, self.sub_dim)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """p_m = softmax(x_mᵀV_m): (B, D) -> (B, M, K)."""
        sub = self.subvectors(x)
        if self.normalize_input:
            sub = F.normalize(sub, dim=-1)
        return torch.softmax(torch.einsum("bmd,mdk->bmk", sub, self.assign), dim=-1)

    def soft_quantize(self, p: torch.Tensor) -> torch.Tensor:
        """s_m = C_m p_m: (B, M, K) -> (B, M, d)."""
        return torch.einsum("mdk,bmk->bmd", self.codebooks, p)

    @torch.no_grad()
    def encode(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Codes k_m = argmax_k p_m[k] of items: uint8 (N, M) (K <= 256) or int64."""
        p = self.probabilities(torch.as_tensor(np.asarray(x, np.float32)))
        codes = p.argmax(-1).numpy()
        return codes.astype(np.uint8) if self.codewords <= 256 else codes

    @torch.no_grad()
    def query_vectors(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Asymmetric search's query side: the soft-quantised query, concat_m C_m p^q_m (N, D);
        its inner product with a decoded item is Σ_m p^q_m[k_m] (orthonormal codewords)."""
        p = self.probabilities(torch.as_tensor(np.asarray(x, np.float32)))
        return self.soft_quantize(p).reshape(len(p), self.dim).numpy()

    def codewords_of(self, codes: torch.Tensor) -> torch.Tensor:
        """Items' codewords, concatenated: (N, M) codes -> (N, D) = concat_m c_{m,k_m}."""
        words = self.codebooks.permute(0, 2, 1)  # (M, K, d)
        return words[torch.arange(self.subspaces, device=codes.device)[None, :], codes].reshape(
            len(codes), self.dim)

    def hard_quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Each item replaced by its codewords (B, D): what an index of its codes holds (a torch
        op, for evaluating the codes during training)."""
        return self.codewords_of(self.probabilities(x).argmax(-1))

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Items' codewords, concatenated: (N, M) codes -> (N, D) array."""
        return self.codewords_of(torch.as_tensor(np.asarray(codes, np.int64))).numpy()

    def direct_scores(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Σ_m p^q_m[k_m] for every query and item (Q, N): the formula :func:`opqn_index` must
        reproduce (tests only; search goes through faiss)."""
        with torch.no_grad():
            p = self.probabilities(torch.as_tensor(np.asarray(queries, np.float32))).numpy()
        return sum(p[:, m, codes[:, m]] for m in range(self.subspaces))


class OPQNLoss(nn.Module):
    """OPQN's loss (module doc): L = ½[mean_m ℓ(x_m) + mean_m ℓ(s_m)] + λ·mean_{items, m} H(p_m),
    ℓ the CosFace margin softmax (margin μ, scale σ) against per-subspace class prototypes W_m
    shared by both branches. Called as ``loss(embeddings, labels)`` like any metric loss; holds
    the :class:`OrthonormalQuantizer` (``self.quantizer``)."""

    def __init__(self, num_classes: int, embedding_dim: int, subspaces: int = 4,
                 codewords: int = 16, margin: float = 0.5, scale: float = 20.0,
                 entropy_weight: float = 0.1, codebook: str = "dct", x_branch: bool = True,
                 normalize_input: bool = True) -> None:
        super().__init__()
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be > 0, got {scale}")
        if not (math.isfinite(entropy_weight) and entropy_weight >= 0):
            raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight}")
        if not math.isfinite(margin):
            raise ValueError(f"margin must be a finite number, got {margin}")
        self.quantizer = OrthonormalQuantizer(embedding_dim, subspaces, codewords, codebook,
                                              normalize_input)
        self.prototypes = nn.Parameter(torch.empty(subspaces, num_classes, embedding_dim // subspaces))
        nn.init.xavier_uniform_(self.prototypes)
        self.margin, self.scale, self.entropy_weight = margin, scale, entropy_weight
        self.x_branch = x_branch

    @staticmethod
    def valid_dim(subspaces: int = 4, codewords: int = 16, **_) -> int:
        """An embedding dimension these settings fit (to validate a profile's parameters)."""
        return max(int(subspaces), 1) * max(int(codewords), 1)

    def _margin_loss(self, sub: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """mean over subspaces of the CosFace cross-entropy of (B, M, d) subvectors (all
        subspaces in one batched product: (B, M, C) logits)."""
        cos = torch.einsum("bmd,mcd->bmc", F.normalize(sub, dim=-1),
                           F.normalize(self.prototypes, dim=-1)).clamp(-1, 1)
        target = F.one_hot(labels, cos.shape[-1]).to(cos.dtype)[:, None, :]
        logits = self.scale * (cos - self.margin * target)
        m = sub.shape[1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.repeat_interleave(m))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        q = self.quantizer
        p = q.probabilities(embeddings)
        loss_s = self._margin_loss(q.soft_quantize(p), labels)
        if self.x_branch:
            loss = 0.5 * (self._margin_loss(q.subvectors(embeddings), labels) + loss_s)
        else:
            loss = loss_s
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
        return loss + self.entropy_weight * entropy


def quantizer_of(result) -> OrthonormalQuantizer:
    """The quantizer a trained OPQN model keeps (a `ue_lib.train.TrainResult` of the
    `ue_lib.objectives.OPQN` objective), at its selected epoch, in eval mode."""
    objective = result.config["objective"]
    if objective.get("kind") != "opqn" or result.kept is None:
        raise ValueError(f"not an OPQN model (objective {objective.get('kind')!r}): only models "
                         f"trained with ue_lib.objectives.OPQN keep a quantizer")
    params = objective["loss_params"]
    quantizer = OrthonormalQuantizer(result.config["model"]["embedding_dim"], params["subspaces"],
                                     params["codewords"], params["codebook"],
                                     params["normalize_input"])
    quantizer.load_state_dict(result.kept)
    return quantizer.eval()


class CodesEmbedder(nn.Module):
    """A network followed by its quantizer's hard codes (:meth:`OrthonormalQuantizer.hard_quantize`):
    how an OPQN model is scored while it trains, so that its epoch is selected on the retrieval
    of its *codes* (item against item, both quantised), not of its float embedding, which on
    pretrained features peaks before the quantizer has learned. Our choice (the authors' code
    keeps the lowest training loss)."""

    def __init__(self, model: nn.Module, quantizer: OrthonormalQuantizer):
        super().__init__()
        self.model, self.quantizer = model, quantizer
        self.takes_features = getattr(model, "takes_features", False)
        self.embedding_dim = quantizer.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer.hard_quantize(self.model(x))


# ----------------------------------------------------------------------------- faiss indexes

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


@contextlib.contextmanager
def fit_threads(n: int = FIT_THREADS):
    """faiss's OpenMP threads set to `n` inside the block (restored after)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
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
                             repeats: int = 3) -> float:
    """Best of `repeats` wall-clock times of ``index.search(queries, k)``, per query."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(queries, k)
        best = min(best, time.perf_counter() - t0)
    return best / len(queries)


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
    `ue_lib.evaluate.index_ranking_metrics` plus ``bits``, ``bytes`` per item and ``search_us``
    (microseconds per query, k = 10); index names get `prefix`. With `max_queries`, a seeded
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
        metrics.update(bits=float(bits), bytes=float(code_bytes(index)),
                       search_us=1e6 * search_seconds_per_query(index, q[:1000]))
        rows += [{"index": prefix + name, "metric": key, "value": v} for key, v in metrics.items()]
    return rows


def search_benchmark(items: int, dim: int, shapes: list[tuple[int, int]], queries: int = 100,
                     seed: int = 0) -> list[dict]:
    """Search time on a synthetic database of `items` random unit vectors (`dim`-d): the exact
    float index against a PQ index per code shape, which is what an OPQN index is at search time
    (the same ``IndexPQ`` scan; only its centroids differ). Rows {index, bits, bytes,
    memory_mb, ms_per_query} (best of 3, k = 10)."""
    rng = np.random.default_rng(seed)
    base = normalized(rng.standard_normal((items, dim), dtype=np.float32))
    q = normalized(rng.standard_normal((queries, dim), dtype=np.float32))
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    rows = [{"index": "float (IndexFlatIP)", "bits": 32 * dim, "bytes": 4 * dim,
             "memory_mb": 4 * dim * items / 2**20,
             "ms_per_query": 1e3 * search_seconds_per_query(flat, q)}]
    del flat
    for m, k in shapes:
        index = faiss_index("pq", base[: min(items, FIT_VECTORS)], base, m, k, seed)
        rows.append({"index": f"PQ / OPQN {m}x{k}", "bits": m * _nbits(k),
                     "bytes": code_bytes(index), "memory_mb": code_bytes(index) * items / 2**20,
                     "ms_per_query": 1e3 * search_seconds_per_query(index, q)})
    return rows


# ----------------------------------------------------------------------------- protocols

def _subset(split: Split, idx: np.ndarray, is_query: np.ndarray | None = None) -> Split:
    def take(a):
        return None if a is None else a[idx]

    return Split(split.images[idx], split.labels[idx], take(split.boxes), take(split.paths),
                 is_query, take(split.features), take(split.attributes), take(split.groups))


def _concat(parts: list[Split], is_query: np.ndarray | None = None) -> Split:
    def cat(name):
        values = [getattr(s, name) for s in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Split(cat("images"), cat("labels"), cat("boxes"), cat("paths"), is_query, cat("features"),
                 cat("attributes"), cat("groups"))


@dataclass(frozen=True)
class Protocol:
    """How a face-retrieval experiment splits identities: ``seen`` (OPQN's main protocol: every
    identity in training; the database is the training images, queries are held-out images of
    the same people) or ``unseen`` (the library's class-disjoint split: database and queries are
    the test identities, leave-one-out)."""

    name: str
    queries_per_class: int = 3
    val_per_class: int = 1

    def apply(self, domain: Domain, seed: int = 0) -> Domain:
        if self.name == "unseen":
            return domain
        if self.name != "seen":
            raise ValueError(f"unknown protocol {self.name!r}; valid: seen, unseen")
        return seen_identities(domain, self.queries_per_class, self.val_per_class, seed)


def seen_identities(domain: Domain, queries_per_class: int = 3, val_per_class: int = 1,
                    seed: int = 0) -> Domain:
    """The *seen identities* protocol over all of `domain`'s images: per class,
    `queries_per_class` test queries and `val_per_class` validation queries are held out (seeded)
    and the rest train. The val and test splits are query/gallery sets (``is_query``) whose
    gallery is the training images: the database a deployed index would hold."""
    pool = _concat(list(domain.splits.values()))
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(pool.labels):
        idx = rng.permutation(np.flatnonzero(pool.labels == c))
        if len(idx) <= queries_per_class + val_per_class:
            raise ValueError(f"{domain.name}: class {c} has {len(idx)} images; the seen protocol "
                             f"holds out {queries_per_class} + {val_per_class} per class and needs "
                             f"at least one more to train on")
        test += list(idx[:queries_per_class])
        val += list(idx[queries_per_class : queries_per_class + val_per_class])
        train += list(idx[queries_per_class + val_per_class :])
    train_split = _subset(pool, np.array(sorted(train)))

    def with_gallery(queries: list[int]) -> Split:
        q = _subset(pool, np.array(sorted(queries)))
        mask = np.concatenate([np.ones(len(q), bool), np.zeros(len(train_split), bool)])
        return _concat([q, train_split], is_query=mask)

    return Domain(domain.name, train_split, with_gallery(val), with_gallery(test),
                  domain.class_names, f"seen identities: per class {queries_per_class} test and "
                  f"{val_per_class} validation queries held out; the gallery is the training images",
                  domain.provenance, domain.license, {**domain.notes, "protocol": "seen"},
                  domain.attribute_names, domain.group_names)


__all__ = ["CODEBOOKS", "FAISS_KINDS", "OPQNLoss", "OrthonormalQuantizer", "Protocol",
           "CodesEmbedder", "code_bytes", "compare_indexes", "pq_shape", "query_sample",
           "search_benchmark", "dct_codebooks", "dct_matrix", "faiss_index",
           "make_codebooks", "normalized", "opqn_index", "quantizer_of", "random_codebooks",
           "search_seconds_per_query", "seen_identities"]
