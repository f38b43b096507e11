"""Clusters of an embedding and agreement of two labellings, shared by every layer above.

``metrics`` (``ari``, ``nmi``, ``cluster_agreement``, ``leiden_clusters``), the training-time
tracking of ``tl`` tools (:mod:`._tracking`) and ``pl.umap`` use these. The kNN graph is
scanpy's (:func:`scanpy.pp.neighbors`, UMAP connectivities; computed here without importing
umap-learn up to 50,000 cells) and the clusters are its igraph Leiden, both of which work on an
AnnData; that is why this module is plumbing (``_utils``) rather than numerics (``_core``,
which never imports AnnData). ARI, NMI and contingency tables
are scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._validation import check_number, check_positive_int

# exact kNN search up to this many cells, approximate (pynndescent) beyond
EXACT_KNN_MAX_CELLS = 50_000


def check_embedding(embedding: Any, *, what: str = "The embedding") -> np.ndarray:
    """Refuse anything but a cells x dimensions array of finite real numbers; returns it."""
    embedding = np.asarray(embedding)
    if embedding.ndim != 2:
        raise ValueError(f"{what} must be a cells x dimensions array, got shape {embedding.shape}.")
    if not np.issubdtype(embedding.dtype, np.number) or np.issubdtype(
        embedding.dtype, np.complexfloating
    ):
        raise ValueError(f"{what} has dtype {embedding.dtype}; expected real numbers.")
    if not np.isfinite(embedding).all():
        raise ValueError(f"{what} contains NaN or infinite values.")
    return embedding


def check_resolutions(resolution: Any) -> list[float]:
    """One Leiden resolution or a non-empty sequence of them, each a finite number > 0."""
    many = isinstance(resolution, Sequence | np.ndarray) and not isinstance(resolution, str)
    values = list(np.ravel(resolution)) if many else [resolution]
    if not values:
        raise ValueError("resolution is empty; pass one Leiden resolution or several.")
    return [check_number(r, param="resolution", minimum=0, exclusive_minimum=True) for r in values]


def check_seed(random_state: Any) -> int | None:
    """The seed scanpy gets: an int in [0, 2**32), None, or one drawn from a numpy Generator."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31))
    if random_state is None:
        return None
    seed = check_positive_int(random_state, param="random_state", minimum=0)
    if seed >= 2**32:
        raise ValueError(f"random_state must be below 2**32, got {random_state!r}.")
    return seed


def neighbors_graph(
    embedding: np.ndarray,
    *,
    n_neighbors: int,
    metric: str,
    random_state: int | None,
    use_rep: str = "X_emb",
    key_added: str | None = None,
    scanpy_graph: bool = False,
) -> AnnData:
    """A new AnnData holding ``embedding`` as ``obsm[use_rep]`` and scanpy's kNN graph of it.

    Up to :data:`EXACT_KNN_MAX_CELLS` cells the graph is what :func:`scanpy.pp.neighbors`
    computes with exact neighbours (``transformer="sklearn"``), built by
    :mod:`scintegrate._core.knn_graph` so that umap-learn, whose import compiles pynndescent for
    20-40 s in every new process, is not imported; the slots are scanpy's, so ``sc.tl.leiden``
    and ``sc.tl.umap`` read them. Larger embeddings go to :func:`scanpy.pp.neighbors` itself
    (approximate neighbours). ``key_added`` names the graph as in scanpy. ``scanpy_graph=True``
    always calls scanpy (``pl.umap``, which imports umap-learn for its layout anyway, and whose
    layout is only reproducible from the bit-identical graph).
    """
    n_cells = embedding.shape[0]
    graph = AnnData(
        obsm={use_rep: embedding}, obs=pd.DataFrame(index=np.arange(n_cells).astype(str))
    )
    if scanpy_graph or n_cells > EXACT_KNN_MAX_CELLS:
        import scanpy as sc

        exact = {"transformer": "sklearn"} if n_cells <= EXACT_KNN_MAX_CELLS else {}
        sc.pp.neighbors(
            graph,
            n_neighbors=n_neighbors,
            use_rep=use_rep,
            metric=metric,
            random_state=random_state,
            key_added=key_added,
            **exact,
        )
        return graph
    from .._core.knn_graph import exact_knn, fuzzy_connectivities, knn_distances_matrix

    if n_neighbors > n_cells:  # as scanpy does for very small data
        n_neighbors = 1 + int(0.5 * n_cells)
    indices, distances = exact_knn(embedding, n_neighbors, metric=metric)
    prefix = "" if key_added is None else f"{key_added}_"
    graph.obsp[f"{prefix}distances"] = knn_distances_matrix(indices, distances)
    graph.obsp[f"{prefix}connectivities"] = fuzzy_connectivities(indices, distances)
    graph.uns[key_added or "neighbors"] = {
        "connectivities_key": f"{prefix}connectivities",
        "distances_key": f"{prefix}distances",
        "params": {
            "n_neighbors": n_neighbors,
            "method": "umap",
            "random_state": 0 if random_state is None else random_state,
            "metric": metric,
            "use_rep": use_rep,
        },
    }
    return graph


def leiden_clusters(
    embedding: np.ndarray,
    resolutions: Sequence[float],
    *,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int | None = 0,
) -> list[np.ndarray]:
    """Leiden clusters (igraph, 2 iterations) of the kNN graph of ``embedding``, per resolution.

    One graph serves every resolution: ``n_neighbors`` neighbours (at most the number of cells
    minus one) in the float32 embedding. Returns string labels, one array per resolution.
    """
    import scanpy as sc

    n_cells = embedding.shape[0]
    if n_cells < 3:
        raise ValueError(f"Clustering needs at least 3 cells, got {n_cells}.")
    graph = neighbors_graph(
        np.ascontiguousarray(embedding, dtype=np.float32),
        n_neighbors=min(n_neighbors, n_cells - 1),
        metric=metric,
        random_state=random_state,
    )
    out = []
    for resolution in resolutions:
        sc.tl.leiden(
            graph,
            resolution=resolution,
            random_state=random_state,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            key_added="clusters",
        )
        out.append(graph.obs["clusters"].to_numpy().astype(str))
    return out


def _label_codes(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of two labellings of the same cells (a missing label is a label too)."""
    codes = []
    for name, labels in (("labels_true", labels_true), ("labels_pred", labels_pred)):
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"{name} must be one label per cell, got shape {labels.shape}.")
        codes.append(pd.factorize(labels, use_na_sentinel=False)[0])
    true_codes, pred_codes = codes
    if true_codes.shape != pred_codes.shape:
        raise ValueError(
            f"labels_true and labels_pred have different lengths "
            f"({true_codes.size} and {pred_codes.size})."
        )
    if true_codes.size == 0:
        raise ValueError("labels_true and labels_pred are empty; pass one label per cell.")
    return true_codes, pred_codes


def contingency_table(labels_true, labels_pred) -> np.ndarray:
    """Cells per (true label, predicted label): int64, labels in order of first appearance."""
    from sklearn.metrics.cluster import contingency_matrix

    return contingency_matrix(*_label_codes(labels_true, labels_pred)).astype(np.int64)


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """:func:`sklearn.metrics.adjusted_rand_score` of two labellings; empty input is refused."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(*_label_codes(labels_true, labels_pred)))


def normalized_mutual_info(labels_true, labels_pred) -> float:
    """:func:`sklearn.metrics.normalized_mutual_info_score` (arithmetic mean) of two labellings."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(*_label_codes(labels_true, labels_pred)))
