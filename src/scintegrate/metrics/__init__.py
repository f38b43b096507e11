"""Metrics of embedding quality: clustering agreement with labels (ARI, NMI)."""

from ._clustering import (
    adjusted_rand_index,
    ari,
    cluster_agreement,
    leiden_clusters,
    nmi,
    normalized_mutual_info,
)

__all__ = [
    "adjusted_rand_index",
    "ari",
    "cluster_agreement",
    "leiden_clusters",
    "nmi",
    "normalized_mutual_info",
]
