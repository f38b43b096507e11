"""Compiled kernels of iNMF: fused sparse products and per-cell NNLS, parallel over rows.

They read a CSR matrix through its arrays and a list of row numbers, so a mini-batch is used in
place (no copy of its rows) and its cells x genes block is never densified.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange
from threadpoolctl import threadpool_limits

from ._nnls import bpp_row


def single_threaded_blas(func: Callable) -> Callable:
    """Run ``func`` with BLAS limited to one thread.

    The BLAS calls in the iNMF loops are small (k x k results); with several BLAS threads their
    idle spinning competes with the compiled kernels' own threads, which made the online loop
    about 2.5x slower on 2 cores.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


@njit(parallel=True, cache=True)
def _solve_rows(
    indptr, indices, data, rows, L, G, G_inv, H, warm_start, max_iter
):  # pragma: no cover
    n = rows.shape[0]
    k = L.shape[1]
    sq_norm = np.zeros(n)
    cross = np.zeros(n)
    for t in prange(n):
        c = rows[t]
        r = np.zeros(k)
        sq = 0.0
        for p in range(indptr[c], indptr[c + 1]):
            value = data[p]
            j = indices[p]
            sq += value * value
            for a in range(k):
                r[a] += value * L[j, a]
        if not warm_start:
            # start from the sign pattern of the unconstrained solution: it already agrees with
            # the final passive set on most coordinates, so few exchanges remain
            for a in range(k):
                s = 0.0
                for b in range(k):
                    s += G_inv[a, b] * r[b]
                H[t, a] = s
        bpp_row(G, r, H[t], True, max_iter)
        s = 0.0
        for a in range(k):
            s += H[t, a] * r[a]
        sq_norm[t] = sq
        cross[t] = s
    return sq_norm.sum(), cross.sum()


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


def solve_rows(
    X: sp.csr_matrix,
    rows: np.ndarray,
    L: np.ndarray,
    G: np.ndarray,
    H: np.ndarray,
    *,
    warm_start: bool = False,
    max_iter: int | None = None,
) -> tuple[float, float]:
    """``H[t] = argmin_{h >= 0} 0.5 h^T G h - (x L) h`` for each cell ``x = X[rows[t]]``.

    Returns ``sum ||x||^2`` and ``sum h . (x L)`` over the rows, from which the objective of
    these cells follows without another pass over the data. Without ``warm_start`` each row
    starts from the passive set of its unconstrained least-squares solution.
    """
    k = L.shape[1]
    G = np.ascontiguousarray(G)
    return _solve_rows(
        X.indptr,
        X.indices,
        X.data,
        np.asarray(rows, dtype=np.int64),
        np.ascontiguousarray(L),
        G,
        np.linalg.pinv(G, hermitian=True),
        H,
        warm_start,
        5 * k if max_iter is None else max_iter,
    )


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
