"""Exact k-nearest-neighbour graphs with UMAP's fuzzy connectivities, without importing umap-learn.

scanpy's :func:`scanpy.pp.neighbors` weighs the kNN graph with umap-learn's
``fuzzy_simplicial_set``, and importing umap-learn imports pynndescent, which compiles its numba
kernels at import time and caches none of them: 21-24 s in every new process on a quiet 2-core
machine, over 40 s under load (``python -c "import pynndescent"``, pynndescent 0.6.0, numba
0.68.1). Leiden clusters and the scores built on them (``metrics``, training-time tracking, the
demo) only need the weights, which are a few lines of vectorised numpy: this module computes
them, and ``tests/_core/test_knn_graph.py`` checks them against umap-learn's.

The weights (McInnes et al. 2018, section 3): for each cell ``i`` with sorted neighbour
distances ``d_ij``, ``rho_i`` is the distance to the nearest neighbour at a positive distance and
``sigma_i`` solves ``sum_j exp(-max(d_ij - rho_i, 0) / sigma_i) = log2(k)`` (binary search, 64
steps at most, in float32 as umap-learn does); the directed weight is
``exp(-max(d_ij - rho_i, 0) / sigma_i)``, 0 from a cell to itself, and the graph is their
fuzzy union ``A + A' - A o A'``.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

# umap-learn's constants: stop the search when this close to log2(k); never let sigma fall below
# this fraction of the mean neighbour distance
_TOLERANCE = 1e-5
_MIN_SCALE = 1e-3
_SEARCH_STEPS = 64


def exact_knn(embedding: np.ndarray, n_neighbors: int, metric: str = "euclidean"):
    """Each cell's ``n_neighbors`` nearest cells, itself first (scikit-learn, exact search).

    Returns ``(indices, distances)``, both cells x ``n_neighbors``, sorted by distance, with
    column 0 the cell itself at distance 0 (also when another cell sits at the same point).
    """
    from sklearn.neighbors import NearestNeighbors

    n_cells = embedding.shape[0]
    search = NearestNeighbors(n_neighbors=n_neighbors, metric=metric).fit(embedding)
    distances, indices = search.kneighbors(embedding)
    distances = distances.astype(np.float32)
    cells = np.arange(n_cells)
    found_self = indices == cells[:, None]
    # a duplicate point can come before the cell itself, or push it out of the list: put the
    # cell first and keep the other n_neighbors - 1 in order
    others = ~found_self
    has_self = found_self.any(axis=1)
    others[~has_self, -1] = False
    neighbor_order = np.argsort(~others, axis=1, kind="stable")[:, : n_neighbors - 1]
    rows = cells[:, None]
    indices = np.column_stack([cells, indices[rows, neighbor_order]])
    distances = np.column_stack(
        [np.zeros(n_cells, dtype=np.float32), distances[rows, neighbor_order]]
    )
    return indices, distances


def _bandwidths(distances: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma, rho)`` per cell, as umap-learn's ``smooth_knn_dist`` (local connectivity 1)."""
    distances = distances.astype(np.float32, copy=False)
    n_cells = distances.shape[0]
    positive = distances > 0
    has_positive = positive.any(axis=1)
    first_positive = np.argmax(positive, axis=1)
    rho = np.where(has_positive, distances[np.arange(n_cells), first_positive], 0).astype(
        np.float32
    )
    target = np.log2(n_neighbors)
    floatmax = np.finfo(np.float32).max
    lo = np.zeros(n_cells, dtype=np.float32)
    hi = np.full(n_cells, floatmax, dtype=np.float32)
    mid = np.ones(n_cells, dtype=np.float32)
    active = np.ones(n_cells, dtype=bool)
    shifted = distances[:, 1:] - rho[:, None]
    for _ in range(_SEARCH_STEPS):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        gaps = shifted[rows]
        scale = mid[rows][:, None]
        with np.errstate(over="ignore", under="ignore"):
            terms = np.where(gaps > 0, np.exp(-(gaps / scale)), np.float32(1.0))
        # summed neighbour by neighbour, in float32, in umap-learn's order
        total = np.zeros(rows.size, dtype=np.float32)
        for column in range(terms.shape[1]):
            total += terms[:, column]
        done = np.abs(total - target) < _TOLERANCE
        too_wide = (total > target) & ~done
        too_narrow = ~too_wide & ~done
        narrow_rows, wide_rows = rows[too_narrow], rows[too_wide]
        hi[wide_rows] = mid[wide_rows]
        mid[wide_rows] = (lo[wide_rows] + hi[wide_rows]) / np.float32(2)
        lo[narrow_rows] = mid[narrow_rows]
        unbounded = hi[narrow_rows] >= floatmax
        mid[narrow_rows] = np.where(
            unbounded,
            mid[narrow_rows] * np.float32(2),
            (lo[narrow_rows] + hi[narrow_rows]) / np.float32(2),
        )
        active[rows[done]] = False
    floor = np.where(
        rho > 0,
        _MIN_SCALE * distances.mean(axis=1, dtype=np.float32),
        _MIN_SCALE * distances.mean(dtype=np.float32),
    ).astype(np.float32)
    return np.maximum(mid, floor), rho


def fuzzy_connectivities(indices: np.ndarray, distances: np.ndarray) -> sparse.csr_matrix:
    """UMAP's symmetric fuzzy graph (float32 CSR) of a kNN list from :func:`exact_knn`.

    ``indices`` and ``distances`` are cells x k, sorted by distance, the cell itself first.
    """
    n_cells, n_neighbors = indices.shape
    sigma, rho = _bandwidths(distances, n_neighbors)
    gaps = distances.astype(np.float32) - rho[:, None]
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        weights = np.exp(-(gaps / sigma[:, None]))
    weights = np.where((gaps <= 0) | (sigma[:, None] == 0), np.float32(1), weights)
    weights[indices == np.arange(n_cells)[:, None]] = 0
    weights = weights.astype(np.float32)
    rows = np.repeat(np.arange(n_cells), n_neighbors)
    directed = sparse.coo_matrix(
        (weights.ravel(), (rows, indices.ravel())), shape=(n_cells, n_cells)
    ).tocsr()
    directed.eliminate_zeros()
    transposed = directed.T.tocsr()
    graph = directed + transposed - directed.multiply(transposed)
    graph = sparse.csr_matrix(graph, dtype=np.float32)
    graph.eliminate_zeros()
    return graph


def knn_distances_matrix(indices: np.ndarray, distances: np.ndarray) -> sparse.csr_matrix:
    """The kNN distances as scanpy stores them: cells x cells CSR without the cell itself."""
    n_cells, n_neighbors = indices.shape
    rows = np.repeat(np.arange(n_cells), n_neighbors - 1)
    matrix = sparse.csr_matrix(
        (distances[:, 1:].ravel(), (rows, indices[:, 1:].ravel())), shape=(n_cells, n_cells)
    )
    matrix.sort_indices()
    return matrix
