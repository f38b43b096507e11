"""Agreement between Leiden clusters of an embedding and known labels.

``ari`` and ``nmi`` build a kNN graph of the embedding (scanpy's UMAP connectivities), cluster it
with Leiden and compare the clusters with the labels. At a single ``resolution`` the number is an
honest, label-free clustering scored afterwards. Given several resolutions they report the *best*
score over them, which peeks at the labels and is optimistic (it is what scETM reports).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._utils._validation import get_obs_labels

_EXACT_KNN_MAX_CELLS = 50_000


def _contingency(labels_true, labels_pred) -> np.ndarray:
    true_codes = pd.factorize(np.asarray(labels_true), use_na_sentinel=False)[0]
    pred_codes = pd.factorize(np.asarray(labels_pred), use_na_sentinel=False)[0]
    if true_codes.shape != pred_codes.shape:
        raise ValueError(
            f"labels_true and labels_pred have different lengths "
            f"({true_codes.size} and {pred_codes.size})."
        )
    table = np.zeros((true_codes.max(initial=-1) + 1, pred_codes.max(initial=-1) + 1))
    np.add.at(table, (true_codes, pred_codes), 1)
    return table


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) of two labellings of the same cells.

    Parameters
    ----------
    labels_true
        Reference labels, one per cell.
    labels_pred
        Predicted labels (e.g. clusters), one per cell.

    Returns
    -------
    The ARI: 1 for identical partitions, about 0 for independent ones, negative below chance.
    """
    table = _contingency(labels_true, labels_pred)
    n = table.sum()

    def pairs(x):
        return float(np.sum(x * (x - 1)) / 2)

    index = pairs(table)
    rows, cols = pairs(table.sum(1)), pairs(table.sum(0))
    total = n * (n - 1) / 2
    if total == 0:
        return 1.0
    expected = rows * cols / total
    maximum = (rows + cols) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))


def normalized_mutual_info(labels_true, labels_pred) -> float:
    """Normalised mutual information of two labellings of the same cells.

    The mutual information divided by the arithmetic mean of the two entropies (the default of
    scikit-learn's ``normalized_mutual_info_score``).

    Parameters
    ----------
    labels_true
        Reference labels, one per cell.
    labels_pred
        Predicted labels (e.g. clusters), one per cell.

    Returns
    -------
    The NMI, between 0 (independent) and 1 (identical partitions).
    """
    table = _contingency(labels_true, labels_pred)
    n = table.sum()
    p_true, p_pred = table.sum(1) / n, table.sum(0) / n

    def entropy(p):
        p = p[p > 0]
        return float(-np.sum(p * np.log(p)))

    h_true, h_pred = entropy(p_true), entropy(p_pred)
    if h_true == 0 and h_pred == 0:
        return 1.0
    nz = table > 0
    joint = table[nz] / n
    mi = float(np.sum(joint * np.log(joint / np.outer(p_true, p_pred)[nz])))
    return max(mi, 0.0) / ((h_true + h_pred) / 2)


def _embedding_and_labels(data, labels, use_rep):
    if isinstance(data, AnnData):
        if use_rep is None:
            raise ValueError("Pass use_rep, the adata.obsm key of the embedding (e.g. 'X_nmf').")
        if use_rep not in data.obsm:
            keys = ", ".join(map(repr, data.obsm.keys())) or "none"
            raise ValueError(f"use_rep={use_rep!r} is not in adata.obsm (keys: {keys}).")
        embedding = np.asarray(data.obsm[use_rep])
        if isinstance(labels, str):
            labels = get_obs_labels(data, labels, param="labels")
    else:
        embedding = np.asarray(data)
    labels = np.asarray(labels)
    if embedding.ndim != 2:
        raise ValueError(
            f"The embedding must be a cells x dimensions array, got shape {embedding.shape}."
        )
    if labels.shape[0] != embedding.shape[0]:
        raise ValueError(
            f"labels has {labels.shape[0]} entries but the embedding has {embedding.shape[0]} cells."
        )
    if not np.isfinite(embedding).all():
        raise ValueError("The embedding contains NaN or infinite values.")
    return embedding, labels


def leiden_clusters(
    embedding: np.ndarray,
    *,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int = 0,
) -> np.ndarray:
    """Leiden clusters (igraph implementation) of the kNN graph of an embedding.

    The graph is scanpy's UMAP-weighted kNN graph (:func:`scanpy.pp.neighbors`), with exact
    neighbours up to 50,000 cells and approximate ones (pynndescent) beyond.

    Parameters
    ----------
    embedding
        Cells x dimensions array.
    resolution
        Leiden resolution; higher gives more clusters.
    n_neighbors
        Neighbours per cell in the kNN graph.
    metric
        Distance of the kNN search, e.g. ``"euclidean"`` or ``"cosine"`` (which ignores the
        overall scale of each cell's row, as suits NMF loadings that grow with sequencing depth).
    random_state
        Seed of the neighbour search and of Leiden.

    Returns
    -------
    Cluster labels as strings, one per cell.
    """
    return _cluster(np.asarray(embedding), [resolution], n_neighbors, metric, random_state)[0]


def knn_transformer_kwargs(n_cells: int) -> dict:
    """Keyword arguments for :func:`scanpy.pp.neighbors`: exact kNN for small data.

    Exact search is fast enough below the threshold and avoids the numba compile of
    pynndescent (tens of seconds on first use).
    """
    return {"transformer": "sklearn"} if n_cells <= _EXACT_KNN_MAX_CELLS else {}


def _cluster(embedding, resolutions, n_neighbors, metric, random_state) -> list[np.ndarray]:
    import scanpy as sc

    n_cells = embedding.shape[0]
    if n_cells < 3:
        raise ValueError(f"Clustering needs at least 3 cells, got {n_cells}.")
    tmp = AnnData(
        obsm={"X_emb": np.ascontiguousarray(embedding, dtype=np.float32)},
        obs=pd.DataFrame(index=np.arange(n_cells).astype(str)),
    )
    sc.pp.neighbors(
        tmp,
        n_neighbors=min(n_neighbors, n_cells - 1),
        use_rep="X_emb",
        metric=metric,
        random_state=random_state,
        **knn_transformer_kwargs(n_cells),
    )
    out = []
    for resolution in resolutions:
        sc.tl.leiden(
            tmp,
            resolution=resolution,
            random_state=random_state,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            key_added="clusters",
        )
        out.append(tmp.obs["clusters"].to_numpy().astype(str))
    return out


def cluster_agreement(
    data: AnnData | np.ndarray,
    labels: str | Sequence,
    *,
    use_rep: str | None = None,
    resolution: float | Sequence[float] = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int = 0,
) -> pd.DataFrame:
    """ARI and NMI of Leiden clusters against labels, one row per resolution.

    Parameters
    ----------
    data
        An embedding (cells x dimensions), or an AnnData with the embedding in
        ``obsm[use_rep]``.
    labels
        Known labels, one per cell, or the ``obs`` column holding them when ``data`` is an AnnData.
    use_rep
        ``obsm`` key of the embedding when ``data`` is an AnnData.
    resolution
        One Leiden resolution or several.
    n_neighbors
        Neighbours per cell in the kNN graph.
    metric
        Distance of the kNN search (``"euclidean"``, ``"cosine"``, ...).
    random_state
        Seed of the neighbour search and of Leiden.

    Returns
    -------
    DataFrame with columns ``resolution``, ``n_clusters``, ``ari``, ``nmi``.
    """
    embedding, labels = _embedding_and_labels(data, labels, use_rep)
    resolutions = [float(r) for r in np.atleast_1d(resolution)]
    rows = []
    for res, clusters in zip(
        resolutions,
        _cluster(embedding, resolutions, n_neighbors, metric, random_state),
        strict=True,
    ):
        rows.append(
            {
                "resolution": res,
                "n_clusters": len(np.unique(clusters)),
                "ari": adjusted_rand_index(labels, clusters),
                "nmi": normalized_mutual_info(labels, clusters),
            }
        )
    return pd.DataFrame(rows)


def ari(
    data: AnnData | np.ndarray,
    labels: str | Sequence,
    *,
    use_rep: str | None = None,
    resolution: float | Sequence[float] = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int = 0,
) -> float:
    """Adjusted Rand index of Leiden clusters of an embedding against known labels.

    With one ``resolution`` (default 1.0) the clustering never sees the labels. With a sequence of
    resolutions this returns the **best** ARI over them, an optimistic, label-peeking number (the
    convention of scETM's evaluation); say so when you report it. Use
    :func:`cluster_agreement` for the per-resolution table.

    Parameters
    ----------
    data
        An embedding (cells x dimensions), or an AnnData with the embedding in
        ``obsm[use_rep]``.
    labels
        Known labels, one per cell, or the ``obs`` column holding them when ``data`` is an AnnData.
    use_rep
        ``obsm`` key of the embedding when ``data`` is an AnnData (for example ``"X_nmf"``).
    resolution
        A Leiden resolution, or several to report the best of.
    n_neighbors
        Neighbours per cell in the kNN graph.
    metric
        Distance of the kNN search (``"euclidean"``, ``"cosine"``, ...).
    random_state
        Seed of the neighbour search and of Leiden.

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


def nmi(
    data: AnnData | np.ndarray,
    labels: str | Sequence,
    *,
    use_rep: str | None = None,
    resolution: float | Sequence[float] = 1.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int = 0,
) -> float:
    """Normalised mutual information of Leiden clusters of an embedding against known labels.

    Same clustering and the same caveat about several resolutions as :func:`ari`.

    Parameters
    ----------
    data
        An embedding (cells x dimensions), or an AnnData with the embedding in
        ``obsm[use_rep]``.
    labels
        Known labels, one per cell, or the ``obs`` column holding them when ``data`` is an AnnData.
    use_rep
        ``obsm`` key of the embedding when ``data`` is an AnnData.
    resolution
        A Leiden resolution, or several to report the best of.
    n_neighbors
        Neighbours per cell in the kNN graph.
    metric
        Distance of the kNN search (``"euclidean"``, ``"cosine"``, ...).
    random_state
        Seed of the neighbour search and of Leiden.

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
