"""Metrics of embedding quality.

- Agreement of two labellings you have: ``adjusted_rand_index``, ``normalized_mutual_info``.
- Clustering an embedding (Leiden) and scoring the clusters against labels: ``ari``, ``nmi``,
  ``cluster_agreement`` (and the clusters themselves: ``leiden_clusters``).
- LIGER's integration metrics: ``alignment_score``, ``agreement``, ``purity``.
- Factors of an integrative NMF: ``dataset_specificity``.
- Paired modalities: ``foscttm``, ``neighborhood_overlap``, ``label_transfer_accuracy``.
- The scIB metrics of several embeddings, computed by ``scib-metrics``: ``scib`` (optional
  dependency, ``pip install 'scintegrate[scib]'``).
"""

from ._clustering import (
    adjusted_rand_index,
    ari,
    cluster_agreement,
    leiden_clusters,
    nmi,
    normalized_mutual_info,
)
from ._factors import dataset_specificity
from ._integration import agreement, alignment_score, purity
from ._pairing import foscttm, label_transfer_accuracy, neighborhood_overlap
from ._scib import scib

__all__ = [
    "adjusted_rand_index",
    "agreement",
    "alignment_score",
    "ari",
    "cluster_agreement",
    "dataset_specificity",
    "foscttm",
    "label_transfer_accuracy",
    "leiden_clusters",
    "neighborhood_overlap",
    "nmi",
    "normalized_mutual_info",
    "purity",
    "scib",
]
