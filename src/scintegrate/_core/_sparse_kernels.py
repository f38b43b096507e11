"""Numba kernels for products of a CSR matrix with low-rank factors.

Everything here works row by row on a CSR matrix (pass the CSR of ``X.T`` to work on columns), in
parallel over rows, and touches only the stored entries, so no dense cells x genes array is built.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True)
def kl_multiplicative_update(
    indptr, indices, data, H, W, w_colsum, eps, with_loglik
):  # pragma: no cover - compiled
    """One multiplicative KL update of the rows of ``H`` for ``X ~ H @ W.T``, in place.

    ``H[i] *= (sum_j x_ij / (H W^T)_ij * W[j]) / W.sum(0)``, evaluating the model only at the
    stored entries of row ``i``. With ``with_loglik``, also returns ``sum x_ij log (H W^T)_ij`` of
    the factors *before* the update (the data term of the Poisson log-likelihood).
    """
    n, k = H.shape
    loglik_rows = np.zeros(n)
    numer = np.empty((n, k))
    for i in prange(n):
        for r in range(k):
            numer[i, r] = 0.0
        loglik = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            model = 0.0
            for r in range(k):
                model += H[i, r] * W[j, r]
            if model < eps:
                model = eps
            if with_loglik:
                loglik += data[p] * np.log(model)
            ratio = data[p] / model
            for r in range(k):
                numer[i, r] += ratio * W[j, r]
        loglik_rows[i] = loglik
        for r in range(k):
            H[i, r] *= numer[i, r] / w_colsum[r]
    return loglik_rows.sum()


@njit(parallel=True, fastmath=True, cache=True)
def kl_loglik_data_term(indptr, indices, data, H, W, eps):  # pragma: no cover - compiled
    """``sum x_ij log (H W^T)_ij`` over the stored entries of CSR ``X``."""
    n, k = H.shape
    rows = np.zeros(n)
    for i in prange(n):
        acc = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            model = 0.0
            for r in range(k):
                model += H[i, r] * W[j, r]
            if model < eps:
                model = eps
            acc += data[p] * np.log(model)
        rows[i] = acc
    return rows.sum()


@njit(parallel=True, fastmath=True, cache=True)
def hals_update(H, XW, WtW):  # pragma: no cover - compiled
    """One HALS sweep over the columns of ``H`` for ``min ||X - H W^T||^2``, in place.

    With ``XW = X @ W`` and ``WtW = W.T @ W`` fixed, the rows of ``H`` are independent problems,
    so each row sweeps its k coordinates in order (exact coordinate minimisation, projected on
    ``>= 0``) and rows run in parallel. Columns whose curvature ``WtW[r, r]`` is zero are left as is.
    """
    n, k = H.shape
    for i in prange(n):
        for r in range(k):
            curvature = WtW[r, r]
            if curvature <= 0.0:
                continue
            grad = XW[i, r]
            for s in range(k):
                grad -= H[i, s] * WtW[s, r]
            value = H[i, r] + grad / curvature
            H[i, r] = value if value > 0.0 else 0.0
    return H
