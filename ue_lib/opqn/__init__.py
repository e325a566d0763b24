"""OPQN's system: compressed retrieval by product quantization (notebook 06).

A universal embedding is only useful at scale when its index fits in memory. *Product
quantization* (PQ) splits a D-dimensional vector into M subvectors of d = D/M dimensions and
stores, for each, the index of one of K codewords: M·log2(K) bits per item instead of 32·D.
A query is not quantised (asymmetric search): its score against an item is the sum over
subspaces of its similarity to the item's codewords, which faiss computes from M small tables.

**OPQN** (Ming Zhang, Xuefei Zhe, Hong Yan, *Orthonormal Product Quantization Network for
Scalable Face Image Retrieval*, Pattern Recognition 2023, arXiv 2107.00327; read in the authors'
code, github.com/mzhang367/opqn) learns the quantization end to end with *fixed* codewords:

* **Codebooks** (`loss.dct_codebooks`): Φ is the d×d orthonormal DCT-II matrix, C_1 = Φ[:, :K]
  and C_m = Φ·C_{m−1}; every C_m has orthonormal columns (C_mᵀC_m = I), so codewords are as far
  apart as they can be and carry no redundancy. For ablation: random orthonormal codewords
  (QR of a Gaussian) and learned ones (initialised with the DCT, then trained freely).
* **Soft assignment** (`loss.OrthonormalQuantizer`): p_m = softmax(x_mᵀV_m), V_m a learned
  d×K matrix (not a distance to the codewords); the soft-quantised subvector is s_m = C_m p_m.
* **Loss** (`loss.OPQNLoss`): a CosFace margin softmax with per-subspace class prototypes W_m,
  shared by x_m and s_m, plus λ × the entropy of p_m, which pushes each assignment towards one
  codeword.
* **Codes and search**: an item's code is k_m = argmax_k p_m[k]; a query's score against it is
  Σ_m p^q_m[k_m] = Σ_m ⟨s^q_m, c_{m,k_m}⟩ (the codewords are orthonormal), an inner product with
  the decoded item, so faiss's ``IndexPQ`` with the codewords as its centroids runs the search
  (`indexes.opqn_index`).

Where our reconstruction chooses (each a parameter of `loss.OPQNLoss`, ``-p opqn.NAME``):

* ``normalize_input=True``: p_m is computed from the L2-normalised subvector in training *and* at
  test. The authors' code uses the raw subvector in training but the normalised one at test.
* the entropy term is the mean over items and subspaces, as in the authors' code (the paper's
  overview sums over subspaces; the two differ by the factor M, absorbed by λ);
* ``x_branch=True``: the margin loss on the raw subvectors x_m (½ each with the s_m term);
  ``False`` keeps only the quantised branch (an ablation of notebook 06);
* the model is selected by validation Recall@1 of its *codes* (`objectives.CodesEmbedder`: items
  replaced by their codewords), where every other model here is selected on its float
  embedding (the authors' code keeps the lowest training loss);
* the optimiser is the profile's (Adam on the cached-feature heads of ``mini``; the paper's SGD,
  lr 0.1, momentum 0.9, weight decay 5e-4 is ``-p optimizer sgd -p lr 0.1 -p weight_decay 5e-4``).

The faiss baselines (`indexes.faiss_index`) quantize the same float embeddings after training:
``PQ`` (``IndexPQ``), ``OPQ`` (a learned rotation, ``OPQMatrix``, then PQ) and, for the large
benchmarks, ``IVFPQ``. All work on L2-normalised vectors with the inner product, so their float
counterpart is the cosine similarity the rest of the library ranks by. They are fitted, without
labels, on the training split *and the database* (`indexes.compare_indexes`: faiss's usual
``index.train(xb)``), which favours them over OPQN (labelled training split only). Every search goes
through faiss; metrics of a faiss index: :func:`ue_lib.evaluate.index_ranking_metrics`.

The role files, as in every system folder: `settings`, `objectives`, `models`, `experiments`,
`verdicts`, `figures`; here also `loss` (the quantizer and its loss), `indexes` (the faiss
indexes and their comparison) and `protocols` (seen and unseen identities).
"""

from ..palette import OKABE_ITO, register_colors

# the colours of this system's models in every figure (`ue_lib.palette`)
COLORS = {
    "float": OKABE_ITO["black"],          # the uncompressed reference
    "pq": OKABE_ITO["orange"],
    "opq": OKABE_ITO["bluish green"],
    "ivfpq": OKABE_ITO["yellow"],
    "opqn": OKABE_ITO["vermillion"],      # the paper's method
    "kl float": OKABE_ITO["blue"],        # the distilled student, uncompressed (blue) ...
    "kl pq": OKABE_ITO["sky blue"],       # ... and compressed
    "kl opq": OKABE_ITO["reddish purple"],
    "kl ivfpq": OKABE_ITO["grey"],
}
register_colors(COLORS)
