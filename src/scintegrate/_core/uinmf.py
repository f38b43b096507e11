"""UINMF: integrative NMF with unshared features (Kriebel & Welch, Nat Commun 13, 780, 2022).

Orientation as in :mod:`.inmf`: dataset ``i`` is a cells x shared-features matrix ``X_i``
(n_i x m) and, optionally, a cells x unshared-features matrix ``Y_i`` (n_i x u_i) holding the
features that only dataset ``i`` has. With non-negative ``H_i`` (n_i x k), shared ``W`` (m x k),
dataset-specific ``V_i`` (m x k) and unshared loadings ``U_i`` (u_i x k), UINMF minimises

    sum_i ||[X_i, Y_i] - H_i [W + V_i ; U_i]^T||_F^2 + lambda sum_i ||H_i [V_i ; U_i]^T||_F^2
  = sum_i ||X_i - H_i (W + V_i)^T||^2 + lambda ||H_i V_i^T||^2
        + ||Y_i - H_i U_i^T||^2 + lambda ||H_i U_i^T||^2 ,

equation (1) of the paper (written there with cells in columns) and the objective of rliger's
``runUINMF`` / RcppPlanc's ``uinmf``: ``lambda`` penalises both dataset-specific blocks, ``V_i``
and ``U_i``; ``W`` carries no unshared rows (the paper's ``[W ; 0]``). A dataset without unshared
features has ``u_i = 0`` and its term is the iNMF term.

The solver is alternating non-negative least squares (block coordinate descent), every block
solved exactly by block principal pivoting (:mod:`._nnls`), so the objective cannot increase:

* ``H_i``: each cell solves ``min_h ||x - (W + V_i) h||^2 + lambda ||V_i h||^2 + ||y - U_i h||^2
  + lambda ||U_i h||^2``, i.e. the Gram system ``G = L^T L + lambda V_i^T V_i + (1 + lambda)
  U_i^T U_i`` (``L = W + V_i``) with right-hand side ``x L + y U_i``, solved with the stacked
  data ``[x, y]`` against the stacked loadings ``[L ; U_i]``;
* ``V_i``: ``(1 + lambda) H_i^T H_i`` against ``X_i^T H_i - W H_i^T H_i``;
* ``U_i``: ``(1 + lambda) H_i^T H_i`` against ``Y_i^T H_i``;
* ``W``: ``sum_i H_i^T H_i`` against ``sum_i (X_i^T H_i - V_i H_i^T H_i)``.

Per iteration: for each dataset ``H_i``, ``V_i``, ``U_i``, then ``W``. rliger updates every
``H_i``, then every ``V_i``, every ``U_i`` and ``W``; the two orders give the same iterates,
because ``H_j`` does not depend on ``V_i`` or ``U_i`` for ``j != i``. This is also the order of
:func:`.inmf.fit_inmf` (ANLS), so that without unshared features, and from the same start, the
iterates equal batch iNMF's.

Everything works with ``[X_i, Y_i]^T H_i`` (one pass over the sparse data per iteration) and
k x k Gram matrices: sparse data stays sparse and the objective comes from the trace identity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import scipy.sparse as sp

from ._nnls import nnls_gram, solve_rows
from ._progress import IterationLog
from ._sparse import as_csr
from ._sparse_kernels import single_threaded_blas
from .inmf import _objective_terms
from .nmf import RowColumnData

INITS = ("uniform", "cells")


@dataclass
class UINMFResult:
    """Factors of a UINMF fit (cells x k and features x k orientation)."""

    W: np.ndarray
    V: list[np.ndarray]
    U: list[np.ndarray]
    """Unshared loadings per dataset, ``u_i x k`` (``0 x k`` without unshared features)."""
    H: list[np.ndarray]
    objective: float
    history: dict[str, list] = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = False


def _stack(X, Y) -> sp.csr_matrix:
    """``[X, Y]`` as float64 CSR (``X`` alone when ``Y`` is ``None`` or has no columns)."""
    if Y is None or Y.shape[1] == 0:
        return X
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} cells but its unshared block Y has {Y.shape[0]}; they must be "
            "the same cells in the same order."
        )
    return sp.hstack([as_csr(X, dtype=np.float64), as_csr(Y, dtype=np.float64)], format="csr")


def _n_unshared(Y) -> int:
    return 0 if Y is None else int(Y.shape[1])


def gram_h(W: np.ndarray, V: np.ndarray, U: np.ndarray, lambda_: float) -> np.ndarray:
    """Gram matrix of the H-subproblem: ``L^T L + lambda V^T V + (1 + lambda) U^T U``."""
    L = W + V
    G = L.T @ L + lambda_ * (V.T @ V)
    if U.shape[0]:
        G += (1.0 + lambda_) * (U.T @ U)
    return G


def _unshared_terms(YtH: np.ndarray, HtH: np.ndarray, U: np.ndarray, lam: float) -> float:
    """``||Y - H U^T||^2 + lambda ||H U^T||^2`` less ``||Y||^2``, from ``Y^T H`` and ``H^T H``."""
    if U.shape[0] == 0:
        return 0.0
    return -2.0 * float(np.sum(YtH * U)) + (1.0 + lam) * float(np.sum((U.T @ U) * HtH))


def uinmf_objective(
    Xs: Sequence,
    Ys: Sequence,
    W: np.ndarray,
    Vs: Sequence[np.ndarray],
    Us: Sequence[np.ndarray],
    Hs: Sequence[np.ndarray],
    lambda_: float,
) -> float:
    """The UINMF objective (module docstring), without forming a dense residual."""
    total = 0.0
    for X, Y, V, U, H in zip(Xs, Ys, Vs, Us, Hs, strict=True):
        Z = as_csr(_stack(X, Y), dtype=np.float64)
        m = W.shape[0]
        ZtH = np.asarray(Z.T @ H)
        HtH = H.T @ H
        sq = float(Z.multiply(Z).sum())
        value = _objective_terms(sq, ZtH[:m], HtH, W, V, lambda_)
        value += _unshared_terms(ZtH[m:], HtH, U, lambda_)
        total += max(value, 0.0)
    return total


@single_threaded_blas
def solve_h_uinmf(
    X,
    Y,
    W: np.ndarray,
    V: np.ndarray,
    U: np.ndarray | None,
    lambda_: float,
    *,
    chunk_size: int = 20_000,
) -> tuple[np.ndarray, float]:
    """Cell factors of the cells ``[X, Y]`` of one dataset for fixed ``W``, ``V``, ``U``.

    The H-step of UINMF for cells of that dataset, by exact NNLS, used to embed new cells with a
    trained factorisation. ``Y`` and ``U`` may be ``None`` (no unshared features). Returns ``H``
    and the cells' term of the objective.
    """
    k = W.shape[1]
    U = np.zeros((0, k)) if U is None else U
    if _n_unshared(Y) != U.shape[0]:
        raise ValueError(f"Y has {_n_unshared(Y)} unshared features but U has {U.shape[0]} rows.")
    Z = as_csr(_stack(X, Y), dtype=np.float64, canonical=True)
    G = gram_h(W, V, U, lambda_)
    L = np.vstack([W + V, U])
    n = Z.shape[0]
    H = np.zeros((n, k))
    value = 0.0
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n))
        h = H[start : start + len(rows)]
        sq_norm, cross = solve_rows(Z, rows, L, G, h)
        value += sq_norm - 2.0 * cross + float(np.sum(G * (h.T @ h)))
    return H, max(value, 0.0)


def _initialise(data, m: int, us: list[int], k: int, init: str, rng: np.random.Generator):
    """Starting ``W``, ``V_i``, ``H_i``, ``U_i``.

    ``"uniform"`` (default): every entry uniform on (0, 2), drawn in the order W, every V_i,
    every H_i, then every U_i; the first three are exactly the draws of ``fit_inmf``, so without
    unshared features both start (and stay) at the same point. ``"cells"`` is rliger's UINMF
    start (RcppPlanc ``uinmf``): for each dataset, k cells drawn without replacement give V_i
    (their shared features) and U_i (their unshared features); W and H_i uniform on (0, 2).
    """
    if init == "uniform":
        W = rng.uniform(0.0, 2.0, (m, k))
        Vs = [rng.uniform(0.0, 2.0, (m, k)) for _ in data]
        Hs = [rng.uniform(0.0, 2.0, (d.n, k)) for d in data]
        Us = [rng.uniform(0.0, 2.0, (u, k)) if u else np.zeros((0, k)) for u in us]
        return W, Vs, Us, Hs
    Vs, Us = [], []
    for d in data:
        cells = rng.choice(d.n, size=k, replace=False)
        block = d.X[cells].toarray().T  # features x k
        Vs.append(np.ascontiguousarray(block[:m]))
        Us.append(np.ascontiguousarray(block[m:]))
    W = rng.uniform(0.0, 2.0, (m, k))
    Hs = [rng.uniform(0.0, 2.0, (d.n, k)) for d in data]
    return W, Vs, Us, Hs


@single_threaded_blas
def fit_uinmf(
    Xs: Sequence,
    Ys: Sequence,
    k: int,
    *,
    lambda_: float = 5.0,
    max_iter: int = 30,
    tol: float = 1e-6,
    init: str = "uniform",
    rng: np.random.Generator,
    progress: bool = False,
    callback: Callable[[int, UINMFResult], dict | None] | None = None,
) -> UINMFResult:
    """UINMF by ANLS: per iteration every ``H_i``, ``V_i``, ``U_i``, then ``W`` (exact NNLS).

    ``Xs`` are the datasets' shared-feature matrices (cells x m, dense or sparse), ``Ys`` their
    unshared blocks (cells x u_i, or ``None``). Starts from ``init`` (see :func:`_initialise`),
    stops after ``max_iter`` iterations or when the objective decreases by less than ``tol``
    times its value in one iteration (0 disables). ``history`` holds ``iteration``,
    ``objective`` (row 0 is the start) and ``time`` (s, callback time excluded).
    """
    if init not in INITS:
        raise ValueError(f"init={init!r} is not supported; choose one of {INITS}.")
    Ys = list(Ys) if Ys is not None else [None] * len(Xs)
    if len(Ys) != len(Xs):
        raise ValueError(f"{len(Xs)} shared blocks but {len(Ys)} unshared blocks.")
    start_time = time.perf_counter()
    data = [RowColumnData(_stack(X, Y)) for X, Y in zip(Xs, Ys, strict=True)]
    m = Xs[0].shape[1]
    us = [_n_unshared(Y) for Y in Ys]
    W, Vs, Us, Hs = _initialise(data, m, us, k, init, rng)

    def stats(i: int) -> tuple[np.ndarray, np.ndarray]:
        return data[i].t_times(Hs[i]), Hs[i].T @ Hs[i]

    def objective(ZtHs, HtHs) -> float:
        total = 0.0
        for d, ZtH, HtH, V, U in zip(data, ZtHs, HtHs, Vs, Us, strict=True):
            value = _objective_terms(d.sq_norm, ZtH[:m], HtH, W, V, lambda_)
            value += _unshared_terms(ZtH[m:], HtH, U, lambda_)
            total += max(value, 0.0)
        return total

    ZtHs, HtHs = zip(*(stats(i) for i in range(len(data))), strict=True)
    log = IterationLog(
        objective(ZtHs, HtHs),
        start_time=start_time,
        max_iter=max_iter,
        tol=tol,
        callback=callback,
        desc="UINMF",
        progress=progress,
    )
    iteration = 0
    for iteration in range(1, max_iter + 1):
        ZtHs, HtHs = [], []
        for i, d in enumerate(data):
            V, U = Vs[i], Us[i]
            L = W + V
            G = L.T @ L + lambda_ * (V.T @ V)
            if us[i]:
                G += (1.0 + lambda_) * (U.T @ U)
                L = np.vstack([L, U])
            solve_rows(d.X, np.arange(d.n), L, G, Hs[i], warm_start=True)
            ZtH, HtH = stats(i)
            ZtHs.append(ZtH)
            HtHs.append(HtH)
            nnls_gram((1.0 + lambda_) * HtH, ZtH[:m] - W @ HtH, init=V, out=V)
            if us[i]:
                nnls_gram((1.0 + lambda_) * HtH, ZtH[m:], init=U, out=U)
        rhs = sum(ZtH[:m] - V @ HtH for ZtH, HtH, V in zip(ZtHs, HtHs, Vs, strict=True))
        nnls_gram(sum(HtHs), rhs, init=W, out=W)

        value = objective(ZtHs, HtHs)
        if log.record(iteration, value, partial(UINMFResult, W, Vs, Us, Hs, value)):
            break
    log.close()
    return UINMFResult(
        W=W,
        V=Vs,
        U=Us,
        H=Hs,
        objective=log.history["objective"][-1],
        history=log.history,
        n_iter=iteration,
        converged=log.converged,
    )
