"""LIGER's quantile normalisation of iNMF cell factors (rliger ``quantileNorm``), arrays only.

Steps, for cell factors ``H`` (cells x k) and batch codes ``0..B-1``:

1. **Max-factor clusters:** per batch, every factor column is divided by its root-mean-square
   ``sqrt(Σ h² / (n - 1))`` over the batch (or centred and divided by its standard deviation with
   ``center=True``), and every cell is assigned to the factor (among ``use_dims``) with the largest
   scaled loading; a cell whose largest scaled loading is <= 0 gets cluster -1 (rliger
   ``max_factor_rcpp``).
2. **kNN refinement:** per batch, an exact kNN search on the *raw* ``H`` of that batch (the cell
   itself included, as ``RANN::nn2``) and a majority vote of the neighbours' clusters, ties going to
   the smaller label (rliger ``cluster_vote_rcpp``). Unlike rliger, which overwrites labels while
   it scans the cells (later cells see earlier cells' new labels), the vote here is simultaneous:
   every cell votes with the labels from step 1, which makes it vectorised and independent of
   the cell order.
3. **Quantile alignment:** for every batch (the reference too), cluster and factor, when both the
   batch and the reference have at least ``min_cells`` cells in the cluster, the ``quantiles + 1``
   type-7 quantiles of a random subsample (at most ``max_sample`` cells, without replacement) of
   the batch's loadings are mapped onto those of the reference by the piecewise-linear function
   through the quantile pairs (``approxfun(q_batch, q_ref, rule=2)``: clamped outside, duplicated
   batch quantiles averaged). If either set of quantiles sums to 0 or has fewer than 2 distinct
   values, the loadings become 0. One subsample of cells per (batch, cluster) serves all factors
   (rliger draws one per factor); the reference's raw loadings are the target for every batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QuantileNormResult:
    """Aligned factors and clusters of :func:`quantile_norm`."""

    H_norm: np.ndarray
    """Aligned cell factors (cells x k), float64."""
    clusters: np.ndarray
    """Cluster of every cell after refinement: a factor index, or -1 (no positive loading)."""
    aligned: np.ndarray
    """Boolean per cell: whether its cluster was quantile-aligned (else its row is unchanged)."""


def max_factor_clusters(
    H: np.ndarray, use_dims: np.ndarray | None = None, *, center: bool = False
) -> np.ndarray:
    """Index of the factor with the largest scaled loading of every cell (one batch).

    Columns are divided by their root-mean-square (``center=False``) or centred and divided by
    their standard deviation (``center=True``), both with ``n - 1``; constant zero columns give
    0. Cells whose largest scaled loading is <= 0 get -1.
    """
    use_dims = np.arange(H.shape[1]) if use_dims is None else np.asarray(use_dims)
    sub = np.asarray(H[:, use_dims], dtype=np.float64)
    n = sub.shape[0]
    denom = max(n - 1, 1)
    if center:
        sub = sub - sub.mean(axis=0)
    scale = np.sqrt(np.sum(sub * sub, axis=0) / denom)
    scaled = np.divide(sub, scale, out=np.zeros_like(sub), where=scale > 0)
    best = np.argmax(scaled, axis=1)
    labels = use_dims[best].astype(np.int64)
    labels[scaled[np.arange(n), best] <= 0] = -1
    return labels


def knn_vote(H: np.ndarray, labels: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Majority vote of each cell's ``n_neighbors`` nearest neighbours (itself included).

    Exact Euclidean kNN (scikit-learn). All cells vote at once with the given labels; ties go to
    the smallest label. Labels are integers >= -1.
    """
    n = H.shape[0]
    k = min(n_neighbors, n)
    if k <= 1:
        return labels.copy()
    from sklearn.neighbors import NearestNeighbors  # imported late: heavy

    index = NearestNeighbors(n_neighbors=k).fit(H).kneighbors(H, return_distance=False)
    shifted = labels + 1  # -1 -> 0
    n_labels = int(shifted.max()) + 1
    votes = np.bincount(
        (np.arange(n)[:, None] * n_labels + shifted[index]).ravel(), minlength=n * n_labels
    ).reshape(n, n_labels)
    return np.argmax(votes, axis=1) - 1  # argmax takes the first (smallest) label on ties


def _warp(values: np.ndarray, q_from: np.ndarray, q_to: np.ndarray) -> np.ndarray:
    """``approxfun(q_from, q_to, rule=2)`` of R: piecewise linear, clamped, ties averaged."""
    x, inverse = np.unique(q_from, return_inverse=True)
    y = np.bincount(inverse, weights=q_to) / np.bincount(inverse)
    return np.interp(values, x, y)


def _subsample(rows: np.ndarray, max_sample: int, rng: np.random.Generator) -> np.ndarray:
    if rows.size <= max_sample:
        return rows  # a full permutation has the same quantiles: no draw needed
    return rng.choice(rows, size=max_sample, replace=False)


def quantile_norm(
    H: np.ndarray,
    codes: np.ndarray,
    reference: int,
    *,
    quantiles: int = 50,
    min_cells: int = 20,
    n_neighbors: int = 20,
    use_dims: np.ndarray | None = None,
    center: bool = False,
    max_sample: int = 1000,
    refine_knn: bool = True,
    random_state: int | np.random.Generator | None = 0,
) -> QuantileNormResult:
    """Quantile-align the cell factors ``H`` of every batch to those of ``reference``.

    Parameters
    ----------
    H
        Non-negative cell factors, cells x k (all batches, any cell order).
    codes
        Batch of every cell as integers ``0..B-1``.
    reference
        Code of the reference batch.
    quantiles, min_cells, n_neighbors, use_dims, center, max_sample, refine_knn
        As in :func:`scintegrate.pp.quantile_norm`; ``use_dims`` are column indices.
    random_state
        Seed or Generator of the subsampling.

    Returns
    -------
    :class:`QuantileNormResult` with the aligned factors, the clusters and the aligned mask.
    """
    rng = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )
    H = np.asarray(H, dtype=np.float64)
    codes = np.asarray(codes)
    k = H.shape[1]
    n_batches = int(codes.max()) + 1
    members = [np.flatnonzero(codes == b) for b in range(n_batches)]

    clusters = np.empty(H.shape[0], dtype=np.int64)
    for rows in members:
        labels = max_factor_clusters(H[rows], use_dims, center=center)
        if refine_knn:
            labels = knn_vote(H[rows], labels, n_neighbors)
        clusters[rows] = labels

    probs = np.linspace(0.0, 1.0, quantiles + 1)
    H_norm = H.copy()
    aligned = np.zeros(H.shape[0], dtype=bool)
    ref_rows = members[reference]
    ref_by_cluster = _group(ref_rows, clusters[ref_rows], k)
    for rows in members:
        by_cluster = _group(rows, clusters[rows], k)
        for c in range(k):
            cells, ref_cells = by_cluster[c], ref_by_cluster[c]
            if cells.size < min_cells or ref_cells.size < min_cells or cells.size == 0:
                continue
            aligned[cells] = True
            if cells.size == 1:
                H_norm[cells] = H[ref_cells].mean(axis=0)
                continue
            q_batch = np.quantile(H[_subsample(cells, max_sample, rng)], probs, axis=0)
            q_ref = np.quantile(H[_subsample(ref_cells, max_sample, rng)], probs, axis=0)
            for f in range(k):
                qb, qr = q_batch[:, f], q_ref[:, f]
                if qb.sum() == 0 or qr.sum() == 0 or qb[-1] == qb[0] or qr[-1] == qr[0]:
                    H_norm[cells, f] = 0.0
                else:
                    H_norm[cells, f] = _warp(H[cells, f], qb, qr)
    return QuantileNormResult(H_norm=H_norm, clusters=clusters, aligned=aligned)


def _group(rows: np.ndarray, labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Rows of each cluster ``0..k-1`` (cluster -1 is left out), keeping the row order."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [rows[order[bounds[c] : bounds[c + 1]]] for c in range(k)]
