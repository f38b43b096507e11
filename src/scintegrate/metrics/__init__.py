"""Metrics of embedding quality: clustering agreement with labels (ARI, NMI), and LIGER's
integration metrics (alignment, agreement, purity), FOSCTTM, neighbourhood overlap and label
transfer accuracy across modalities."""

from ._clustering import (
    adjusted_rand_index,
    ari,
    cluster_agreement,
    leiden_clusters,
    nmi,
    normalized_mutual_info,
)
from ._integration import agreement, alignment_score, purity
from ._pairing import foscttm, label_transfer_accuracy, neighborhood_overlap

__all__ = [
    "adjusted_rand_index",
    "agreement",
    "alignment_score",
    "ari",
    "cluster_agreement",
    "foscttm",
    "label_transfer_accuracy",
    "leiden_clusters",
    "neighborhood_overlap",
    "nmi",
    "normalized_mutual_info",
    "purity",
]
