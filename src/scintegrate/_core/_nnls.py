"""Nonnegative least squares by block principal pivoting (Kim & Park, SIAM J Sci Comput 2011).

Every row ``i`` of the result solves ``min_{x >= 0} 0.5 x^T G x - R[i] x``, the normal-equation
form of ``min_{x >= 0} ||A x - b||^2`` with ``G = A^T A`` and ``R[i] = A^T b``. All rows share the
k x k Gram matrix ``G``, so the data never has to be formed as an augmented least-squares system.

Rows are independent problems, solved in parallel by compiled code: a few passive-set exchanges
per row, each a Cholesky solve of at most k unknowns. Warm starts (the passive set of the previous
solution, as in alternating NNLS) usually finish in one or two exchanges.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import prange

from ._numba import njit

# Exchanges before the backup rule takes over (Kim & Park's p-bar).
_FULL_EXCHANGE_BUDGET = 3


@njit(cache=True, fastmath=False)
def _solve_passive(G, r, passive, x, y, chol, index, work):  # pragma: no cover - compiled
    """Solve the unconstrained problem on the passive set; fill x (zero outside) and y = Gx - r."""
    k = G.shape[0]
    p = 0
    for j in range(k):
        if passive[j]:
            index[p] = j
            p += 1
    # Cholesky factor of G[P, P]; a pivot that vanishes (a factor unused by every row of the
    # data) is floored so the solve stays finite and that coordinate stays near zero.
    for a in range(p):
        for b in range(a + 1):
            s = G[index[a], index[b]]
            for c in range(b):
                s -= chol[a, c] * chol[b, c]
            if a == b:
                floor = 1e-12 * abs(G[index[a], index[a]]) + 1e-300
                chol[a, a] = np.sqrt(s if s > floor else floor)
            else:
                chol[a, b] = s / chol[b, b]
    for a in range(p):  # forward substitution: chol z = r[P]
        s = r[index[a]]
        for c in range(a):
            s -= chol[a, c] * work[c]
        work[a] = s / chol[a, a]
    for a in range(p - 1, -1, -1):  # back substitution: chol^T x[P] = z
        s = work[a]
        for c in range(a + 1, p):
            s -= chol[c, a] * work[c]
        work[a] = s / chol[a, a]
    for j in range(k):
        x[j] = 0.0
    for a in range(p):
        x[index[a]] = work[a]
    for j in range(k):
        if passive[j]:
            y[j] = 0.0
        else:
            s = -r[j]
            for a in range(p):
                s += G[j, index[a]] * work[a]
            y[j] = s


@njit(cache=True)
def bpp_row(G, r, x, warm_start, max_iter):  # pragma: no cover - compiled
    """Solve one row in place (``x`` holds the warm start when ``warm_start``); True if converged."""
    k = G.shape[0]
    y = np.empty(k)
    passive = np.zeros(k, dtype=np.bool_)
    chol = np.empty((k, k))
    index = np.empty(k, dtype=np.int64)
    work = np.empty(k)
    if warm_start:
        for j in range(k):
            passive[j] = x[j] > 0.0
    r_scale = 0.0
    for j in range(k):
        r_scale = max(r_scale, abs(r[j]))
    y_tol = 1e-12 * r_scale + 1e-300
    _solve_passive(G, r, passive, x, y, chol, index, work)

    budget = _FULL_EXCHANGE_BUDGET
    best = k + 1
    converged = False
    for _ in range(max_iter):
        x_scale = 0.0
        for j in range(k):
            x_scale = max(x_scale, abs(x[j]))
        x_tol = 1e-12 * x_scale
        n_bad = 0
        last_bad = -1
        for j in range(k):
            if (passive[j] and x[j] < -x_tol) or (not passive[j] and y[j] < -y_tol):
                n_bad += 1
                last_bad = j
        if n_bad == 0:
            converged = True
            break
        if n_bad < best:
            best = n_bad
            budget = _FULL_EXCHANGE_BUDGET
            full = True
        elif budget > 0:
            budget -= 1
            full = True
        else:
            full = False  # backup rule: move only the last infeasible variable
        if full:
            for j in range(k):
                if (passive[j] and x[j] < -x_tol) or (not passive[j] and y[j] < -y_tol):
                    passive[j] = not passive[j]
        else:
            passive[last_bad] = not passive[last_bad]
        _solve_passive(G, r, passive, x, y, chol, index, work)
    for j in range(k):
        if x[j] < 0.0:
            x[j] = 0.0
    return converged


@njit(parallel=True, cache=True)
def _bpp_rows(G, R, X, warm_start, max_iter):  # pragma: no cover - compiled
    n = R.shape[0]
    unconverged = 0
    for i in prange(n):
        if not warm_start:
            X[i, :] = 0.0
        if not bpp_row(G, R[i], X[i], warm_start, max_iter):
            unconverged += 1
    return unconverged


def nnls_gram(
    G: np.ndarray,
    R: np.ndarray,
    *,
    init: np.ndarray | None = None,
    out: np.ndarray | None = None,
    max_iter: int | None = None,
) -> np.ndarray:
    """Solve ``min_{x >= 0} 0.5 x^T G x - R[i] x`` for every row ``i`` of ``R``.

    Parameters
    ----------
    G
        Symmetric positive (semi)definite k x k Gram matrix, shared by all rows.
    R
        Right-hand sides, n x k (one problem per row).
    init
        Previous solution (n x k); its positive entries are the starting passive sets. By
        default the positive entries of the unconstrained solution ``R G^-1``.
    out
        Array to write the solution into (may be ``init``); a new one when ``None``.
    max_iter
        Exchange steps per row; default ``5 * k`` (as Kim & Park). Rows that hit it keep their
        last iterate clipped at zero.

    Returns
    -------
    The n x k nonnegative solution.
    """
    G = np.ascontiguousarray(G, dtype=np.float64)
    R = np.ascontiguousarray(R, dtype=np.float64)
    k = R.shape[1]
    if G.shape != (k, k):
        raise ValueError(f"Gram matrix of shape {G.shape} does not match {k} unknowns.")
    if init is None:
        # start from the sign pattern of the unconstrained solution (few exchanges remain)
        init = R @ np.linalg.pinv(G, hermitian=True)
    if out is None:
        out = np.array(init, dtype=np.float64, order="C")
    elif init is not out:
        out[...] = init
    _bpp_rows(G, R, out, True, 5 * k if max_iter is None else int(max_iter))
    return out


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
