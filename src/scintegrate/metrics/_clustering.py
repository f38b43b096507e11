"""Agreement between labellings, and between Leiden clusters of an embedding and known labels.

Two kinds: ``adjusted_rand_index`` and ``normalized_mutual_info`` compare two labellings you
already have (scikit-learn's scores); ``ari``, ``nmi`` and ``cluster_agreement`` first cluster an
embedding and then compare. ``ari`` and ``nmi`` build a kNN graph of the embedding (scanpy's UMAP connectivities), cluster it
with Leiden and compare the clusters with the labels. At a single ``resolution`` the number is an
honest, label-free clustering scored afterwards. Given several resolutions they report the *best*
score over them, which peeks at the labels and is optimistic (it is what scETM reports).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._utils import _clustering
from .._utils._clustering import check_embedding, check_resolutions, check_seed
from .._utils._validation import check_positive_int
from ._common import get_embedding, get_labels


def adjusted_rand_index(labels_true: Sequence, labels_pred: Sequence) -> float:
    """Adjusted Rand index of two given labellings of the same cells (no clustering here).

    To cluster an embedding first and score those clusters, use :func:`ari`. This is
    scikit-learn's :func:`~sklearn.metrics.adjusted_rand_score` (Hubert & Arabie 1985); labels
    may be of any type, and a missing label (NaN) counts as a label of its own.

    Parameters
    ----------
    labels_true
        Reference labels, one per cell.
    labels_pred
        Predicted labels (e.g. clusters), one per cell.

    Returns
    -------
    The ARI: 1 for identical partitions, about 0 for independent ones, negative below chance.
    Empty input is refused.
    """
    return _clustering.adjusted_rand_index(labels_true, labels_pred)


def normalized_mutual_info(labels_true: Sequence, labels_pred: Sequence) -> float:
    """Normalised mutual information of two given labellings of the same cells (no clustering).

    To cluster an embedding first and score those clusters, use :func:`nmi`. This is
    scikit-learn's :func:`~sklearn.metrics.normalized_mutual_info_score`: the mutual information
    divided by the arithmetic mean of the two entropies. A missing label (NaN) counts as a label
    of its own.

    Parameters
    ----------
    labels_true
        Reference labels, one per cell.
    labels_pred
        Predicted labels (e.g. clusters), one per cell.

    Returns
    -------
    The NMI, between 0 (independent) and 1 (identical partitions). Empty input is refused.
    """
    return _clustering.normalized_mutual_info(labels_true, labels_pred)


def _check_options(n_neighbors, metric, random_state) -> tuple[int, str, int | None]:
    n_neighbors = check_positive_int(n_neighbors, param="n_neighbors", minimum=2)
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a distance name such as 'euclidean', got {metric!r}.")
    return n_neighbors, metric, check_seed(random_state)


def leiden_clusters(
    embedding: np.ndarray,
    *,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Leiden clusters (igraph implementation) of the kNN graph of an embedding.

    The graph is scanpy's UMAP-weighted kNN graph (:func:`scanpy.pp.neighbors`), with exact
    neighbours up to 50,000 cells and approximate ones (pynndescent) beyond.

    Parameters
    ----------
    embedding
        Cells x dimensions array (at least 3 cells).
    resolution
        Leiden resolution, a number > 0; higher gives more clusters.
    n_neighbors
        Neighbours per cell in the kNN graph (at least 2; at most the number of cells minus 1
        are used).
    metric
        Distance of the kNN search, e.g. ``"euclidean"`` or ``"cosine"`` (which ignores the
        overall scale of each cell's row, as suits NMF loadings that grow with sequencing depth).
    random_state
        Seed of the neighbour search and of Leiden (a numpy Generator gives one seed).

    Returns
    -------
    Cluster labels as strings, one per cell.
    """
    embedding = check_embedding(embedding)
    resolutions = check_resolutions(resolution)
    if len(resolutions) != 1:
        raise ValueError(
            f"leiden_clusters takes one resolution, got {resolution!r}; use "
            "cluster_agreement for several."
        )
    n_neighbors, metric, seed = _check_options(n_neighbors, metric, random_state)
    return _clustering.leiden_clusters(
        embedding, resolutions, n_neighbors=n_neighbors, metric=metric, random_state=seed
    )[0]


@doc_params
def cluster_agreement(
    data: AnnData | np.ndarray,
    labels: str | Sequence,
    *,
    use_rep: str | None = None,
    resolution: float | Sequence[float] = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Cluster an embedding (Leiden) and score the clusters against labels: ARI, NMI per resolution.

    The clustering of :func:`ari` and :func:`nmi`, with one row per resolution.

    Parameters
    ----------
    {embedding_clustering}

    Returns
    -------
    DataFrame with columns ``resolution``, ``n_clusters``, ``ari``, ``nmi``.
    """
    embedding = get_embedding(data, use_rep)
    labels = np.asarray(get_labels(data, labels, embedding.shape[0], param="labels"))
    resolutions = check_resolutions(resolution)
    n_neighbors, metric, seed = _check_options(n_neighbors, metric, random_state)
    found = _clustering.leiden_clusters(
        embedding, resolutions, n_neighbors=n_neighbors, metric=metric, random_state=seed
    )
    rows = [
        {
            "resolution": res,
            "n_clusters": len(np.unique(clusters)),
            "ari": _clustering.adjusted_rand_index(labels, clusters),
            "nmi": _clustering.normalized_mutual_info(labels, clusters),
        }
        for res, clusters in zip(resolutions, found, strict=True)
    ]
    return pd.DataFrame(rows)


@doc_params
def ari(
    data: AnnData | np.ndarray,
    labels: str | Sequence,
    *,
    use_rep: str | None = None,
    resolution: float | Sequence[float] = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int | np.random.Generator | None = 0,
) -> float:
    """Cluster an embedding (Leiden) and score the clusters against labels by the ARI.

    To compare two labellings you already have, use :func:`adjusted_rand_index`. With one
    ``resolution`` (default 1.0) the clustering never sees the labels. With a sequence of
    resolutions this returns the **best** ARI over them, an optimistic, label-peeking number (the
    convention of scETM's evaluation); say so when you report it. Use
    :func:`cluster_agreement` for the per-resolution table.

    Parameters
    ----------
    {embedding_clustering}

    Returns
    -------
    The ARI, between about 0 (chance) and 1 (identical partitions).
    """
    table = cluster_agreement(
        data,
        labels,
        use_rep=use_rep,
        resolution=resolution,
        n_neighbors=n_neighbors,
        metric=metric,
        random_state=random_state,
    )
    return float(table["ari"].max())


@doc_params
def nmi(
    data: AnnData | np.ndarray,
    labels: str | Sequence,
    *,
    use_rep: str | None = None,
    resolution: float | Sequence[float] = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int | np.random.Generator | None = 0,
) -> float:
    """Cluster an embedding (Leiden) and score the clusters against labels by the NMI.

    To compare two labellings you already have, use :func:`normalized_mutual_info`. Same clustering and the same caveat about several resolutions as :func:`ari`.

    Parameters
    ----------
    {embedding_clustering}

    Returns
    -------
    The NMI, between 0 and 1.
    """
    table = cluster_agreement(
        data,
        labels,
        use_rep=use_rep,
        resolution=resolution,
        n_neighbors=n_neighbors,
        metric=metric,
        random_state=random_state,
    )
    return float(table["nmi"].max())
