"""Tracking clustering quality during training: ARI and NMI of Leiden clusters against labels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from anndata import AnnData

from ._clustering import adjusted_rand_index, leiden_clusters, normalized_mutual_info
from ._validation import check_number, get_obs_labels


def label_tracker(
    adata: AnnData, labels_key: str | None, *, resolution: float, metric: str
) -> Callable[[np.ndarray], dict[str, float]] | None:
    """A function embedding -> ``{"ari", "nmi"}`` of its Leiden clusters; None without labels.

    The labels and the resolution are validated here (before training), so a bad
    ``labels_key`` or ``resolution`` fails early.
    """
    if labels_key is None:
        return None
    labels = get_obs_labels(adata, labels_key)
    check_number(resolution, param="resolution", minimum=0, exclusive_minimum=True)
    if pd.isna(labels).any():
        raise ValueError(
            f"adata.obs[{labels_key!r}] has missing values; fill them (e.g. 'unknown') or "
            "subset the cells before tracking the ARI."
        )

    def track(embedding: np.ndarray) -> dict[str, float]:
        clusters = leiden_clusters(embedding, [resolution], metric=metric, random_state=0)[0]
        return {
            "ari": adjusted_rand_index(labels, clusters),
            "nmi": normalized_mutual_info(labels, clusters),
        }

    return track
