"""Centroid alignment of iNMF cell factors (rliger 2.1 ``centroidAlign``), arrays only.

The factor loadings ``H`` (cells x k) are read twice:

- as an **embedding** ``Z``: every column centred and divided by its standard deviation over all
  cells (``center_emb``, ``scale_emb``);
- as a **soft clustering** ``R``: each cell's loadings (optionally centred, scaled and shifted
  to be non-negative) divided by their sum, so that ``R[i, c]`` is the probability that cell
  ``i`` belongs to cluster ``c``, one cluster per factor.

For every cluster ``c`` a weighted ridge regression of the embedding on the dataset, with cell
weights ``R[:, c]``, estimates the centroid of the cluster in each dataset as an intercept (the
common centroid) plus one offset per dataset; the offsets are penalised by ``lambda_b``:

    minimise  Σ_i R[i, c] ‖Z_i - a_c - β_{c, b(i)}‖²  +  Σ_b λ_b ‖β_{c, b}‖².

Every cell then moves by its soft share of the offsets of its own dataset:
``Z_i ← Z_i - Σ_c R[i, c] β_{c, b(i)}``, which brings the dataset centroids of each cluster
together while keeping the cells' positions around them. This is the mixture-of-experts ridge
correction of Harmony (Korsunsky et al. 2019), run once with the factor loadings as the soft
clusters, as rliger's ``moe_correct_ridge_cpp`` does.

With a ``reference`` dataset, that dataset gets no offset (its indicator is left out of the
design), so the intercept is its centroid and only the other datasets move, onto it. Without
one (rliger's behaviour) every dataset moves towards the common centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._sparse_kernels import single_threaded_blas


@dataclass
class CentroidAlignResult:
    """Aligned embedding and soft-cluster assignments of :func:`centroid_align`."""

    Z: np.ndarray
    """Aligned embedding (cells x len(use_dims)), float64."""
    clusters: np.ndarray
    """Cluster of every cell: the largest entry of its row of ``R`` (a factor index), or -1 for
    a cell with no positive weight."""
    offsets: np.ndarray
    """Fitted offsets ``β`` (batches x clusters x dims); rows of the reference are zero."""


def safe_scale(X: np.ndarray, *, center: bool, scale: bool) -> np.ndarray:
    """Column-wise centring (by the mean) and scaling (by ``sqrt(Σ x² / (n - 1))`` after the
    centring, i.e. the standard deviation when centred); constant-zero columns become 0."""
    X = np.array(X, dtype=np.float64, copy=True)
    if center:
        X -= X.mean(axis=0)
    if scale:
        n = X.shape[0]
        norm = np.sqrt(np.sum(X * X, axis=0) / max(n - 1, 1))
        X = np.divide(X, norm, out=np.zeros_like(X), where=norm > 0)
    return X


def soft_clusters(
    H: np.ndarray, *, center: bool = False, scale: bool = False, shift: bool = False
) -> np.ndarray:
    """Cluster probabilities ``R`` (cells x k) from the loadings: each row divided by its sum.

    Rows summing to 0 stay 0. Raises ``ValueError`` on negative values (after centring, pass
    ``shift=True``, which subtracts the overall minimum).
    """
    R = safe_scale(H, center=center, scale=scale)
    if shift:
        R -= R.min()
    if (R < 0).any():
        raise ValueError(
            "The soft cluster weights are negative; centring them needs shift=True, or leave "
            "them uncentred."
        )
    sums = R.sum(axis=1, keepdims=True)
    return np.divide(R, sums, out=np.zeros_like(R), where=sums > 0)


@single_threaded_blas  # small products (k x k results): threads only spin on a busy machine
def centroid_align(
    H: np.ndarray,
    codes: np.ndarray,
    *,
    lambda_: float | np.ndarray = 1.0,
    reference: int | None = None,
    use_dims: np.ndarray | None = None,
    center_emb: bool = True,
    scale_emb: bool = True,
    center_cluster: bool = False,
    scale_cluster: bool = False,
    shift: bool = False,
) -> CentroidAlignResult:
    """Move the cells of every batch so that each soft cluster's batch centroids coincide.

    Parameters
    ----------
    H
        Cell factors, cells x k (all batches, any cell order).
    codes
        Batch of every cell as integers ``0..B-1``.
    lambda_
        Ridge penalty of the batch offsets: one number, or one per batch (``>= 0``).
    reference
        Code of a batch that stays where it is, or ``None`` (rliger: all batches move).
    use_dims
        Columns of ``H`` used (embedding and clusters); all by default.
    center_emb, scale_emb, center_cluster, scale_cluster, shift
        As in :func:`scintegrate.pp.centroid_align`.

    Returns
    -------
    :class:`CentroidAlignResult`.
    """
    H = np.asarray(H, dtype=np.float64)
    if use_dims is not None:
        H = H[:, np.asarray(use_dims)]
    codes = np.asarray(codes)
    n_batches = int(codes.max()) + 1
    lambdas = np.broadcast_to(np.asarray(lambda_, dtype=np.float64), (n_batches,))

    Z = safe_scale(H, center=center_emb, scale=scale_emb)
    R = soft_clusters(H, center=center_cluster, scale=scale_cluster, shift=shift)
    members = [np.flatnonzero(codes == b) for b in range(n_batches)]
    # per batch: the soft cluster sizes and the R-weighted sums of the embedding (a matmul each)
    weights = np.stack([R[rows].sum(axis=0) for rows in members])  # B x K
    sums = np.stack([R[rows].T @ Z[rows] for rows in members])  # B x K x D

    free = np.array([b for b in range(n_batches) if b != reference], dtype=np.int64)
    n_clusters, n_dims = R.shape[1], Z.shape[1]
    offsets = np.zeros((n_batches, n_clusters, n_dims))
    for c in range(n_clusters):
        total = weights[:, c].sum()
        if total <= 0:
            continue  # no cell belongs to this cluster: nothing to move
        # normal equations of the ridge regression on [intercept, one indicator per free batch]
        gram = np.diag(np.concatenate([[total], weights[free, c] + lambdas[free]]))
        gram[0, 1:] = gram[1:, 0] = weights[free, c]
        rhs = np.vstack([sums[:, c].sum(axis=0), sums[free, c]])
        beta = np.linalg.lstsq(gram, rhs, rcond=None)[0]
        offsets[free, c] = beta[1:]

    Z_aligned = Z.copy()
    for b, rows in enumerate(members):
        Z_aligned[rows] -= R[rows] @ offsets[b]

    best = np.argmax(R, axis=1)
    clusters = best.astype(np.int64)
    clusters[R[np.arange(R.shape[0]), best] <= 0] = -1
    if use_dims is not None:
        clusters = np.where(clusters >= 0, np.asarray(use_dims)[np.maximum(clusters, 0)], -1)
    return CentroidAlignResult(Z=Z_aligned, clusters=clusters, offsets=offsets)
