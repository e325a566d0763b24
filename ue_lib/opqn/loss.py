"""OPQN's learned quantizer and loss (Zhang, Zhe & Yan, 2023): fixed orthonormal codebooks, the
soft assignment of each subvector to them, and the margin loss that trains both with the
network. Importing this module registers the loss as ``"opqn"`` in `ue_lib.losses`
(settings ``-p opqn.NAME``). The method, and where our reconstruction chooses: `ue_lib.opqn`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import register_metric_loss

CODEBOOKS = ("dct", "random", "learned")


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
        """Σ_m p^q_m[k_m] for every query and item (Q, N): the formula `ue_lib.opqn.indexes.opqn_index` must
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


register_metric_loss("opqn", OPQNLoss, proxy=True)  # class prototypes per subspace + a quantizer
