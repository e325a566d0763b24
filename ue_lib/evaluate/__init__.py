"""Evaluation, in two parts kept apart.

* The metrics of embeddings, computed with an exact, tie-deterministic faiss search
  (:mod:`.search`): leave-one-out and query/gallery Recall@K, MAP@R and MMP@5
  (:mod:`.retrieval`), whole-ranking mAP@all and precision@K (:mod:`.ranking`), coarse
  Recall@K and graded nDCG@K (:mod:`.graded`); the ranked neighbours themselves, for figures,
  by :func:`~.search.nearest_neighbours`, and any index's scores in its tie order
  (:func:`~.search.tie_ordered`); a compressed OPQ+PQ index fitted on one thread
  (:func:`~.search.opq_pq_index`).
* Inference: a model's embeddings of a split (images or cached trunk features) and its
  per-domain and merged scores (:mod:`.inference`).
"""

from .graded import graded_metrics, per_query_graded_metrics
from .inference import embed, evaluate_domains, evaluate_merged, model_inputs
from .ranking import index_ranking_metrics, ranking_metrics
from .retrieval import (
    chance_recall_at_1,
    combined_labels,
    merged_retrieval_metrics,
    per_query_gallery_metrics,
    per_query_metrics,
    query_counts,
    query_gallery_metrics,
    retrieval_metrics,
    split_metrics,
)
from .search import TIE_EPS, faiss_threads, l2_normalise, nearest_neighbours, opq_pq_index, tie_ordered

__all__ = [
    "TIE_EPS",
    "chance_recall_at_1",
    "combined_labels",
    "embed",
    "evaluate_domains",
    "evaluate_merged",
    "faiss_threads",
    "graded_metrics",
    "index_ranking_metrics",
    "l2_normalise",
    "merged_retrieval_metrics",
    "model_inputs",
    "nearest_neighbours",
    "opq_pq_index",
    "per_query_gallery_metrics",
    "per_query_graded_metrics",
    "per_query_metrics",
    "query_counts",
    "query_gallery_metrics",
    "ranking_metrics",
    "retrieval_metrics",
    "split_metrics",
    "tie_ordered",
]
