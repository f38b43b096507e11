"""Numba kernels for products of a CSR matrix with low-rank factors.

Everything here works row by row on a CSR matrix (pass the CSR of ``X.T`` to work on columns), in
parallel over rows, and touches only the stored entries, so no dense cells x genes array is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp
from numba import prange
from threadpoolctl import threadpool_limits

from ._numba import njit


def single_threaded_blas(func: Callable) -> Callable:
    """Run ``func`` with BLAS limited to one thread.

    The BLAS calls in the NMF and iNMF loops are small (k x k results); with several BLAS threads their
    idle spinning competes with the compiled kernels' own threads, which made the online loop
    about 2.5x slower on 2 cores.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


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


@njit(parallel=True, cache=True)
def _rows_times(indptr, indices, data, rows, B, out):  # pragma: no cover - compiled
    k = B.shape[1]
    for t in prange(rows.shape[0]):
        c = rows[t]
        for a in range(k):
            out[t, a] = 0.0
        for p in range(indptr[c], indptr[c + 1]):
            value = data[p]
            j = indices[p]
            for a in range(k):
                out[t, a] += value * B[j, a]
    return out


@njit(parallel=True, cache=True)
def _rows_transpose_times(indptr, indices, data, rows, H, m, n_parts):  # pragma: no cover
    n = rows.shape[0]
    k = H.shape[1]
    partial = np.zeros((n_parts, m, k))
    for part in prange(n_parts):
        for t in range(part * n // n_parts, (part + 1) * n // n_parts):
            c = rows[t]
            for p in range(indptr[c], indptr[c + 1]):
                value = data[p]
                j = indices[p]
                for a in range(k):
                    partial[part, j, a] += value * H[t, a]
    out = partial[0].copy()
    for part in range(1, n_parts):
        out += partial[part]
    return out


def rows_times(X: sp.csr_matrix, rows: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``X[rows] @ B`` for a CSR ``X``, in parallel over rows."""
    out = np.empty((len(rows), B.shape[1]))
    return _rows_times(
        X.indptr, X.indices, X.data, np.asarray(rows, np.int64), np.ascontiguousarray(B), out
    )


def rows_transpose_times(X: sp.csr_matrix, rows: np.ndarray, H: np.ndarray) -> np.ndarray:
    """``X[rows].T @ H`` for a CSR ``X`` (genes x k), each thread summing its own share of rows."""
    n_parts = max(1, min(numba.get_num_threads(), len(rows) // 64))
    return _rows_transpose_times(
        X.indptr,
        X.indices,
        X.data,
        np.asarray(rows, np.int64),
        np.ascontiguousarray(H),
        X.shape[1],
        n_parts,
    )
