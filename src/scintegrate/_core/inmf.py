"""Integrative NMF (LIGER): batch solvers (ANLS, HALS, multiplicative) and online iNMF.

Orientation: dataset ``i`` is a cells x genes matrix ``X_i`` (n_i x m), factorised as
``X_i ~ H_i (W + V_i)^T`` with ``H_i`` (n_i x k), shared ``W`` (m x k) and dataset-specific ``V_i``
(m x k), all nonnegative. The objective (1) of Gao & Welch is

    sum_i ||X_i - H_i (W + V_i)^T||_F^2 + lambda sum_i ||H_i V_i^T||_F^2.

Every solver works with the small products ``X_i (W + V_i)`` (n_i x k), ``X_i^T H_i`` (m x k) and
k x k Gram matrices, so sparse data stays sparse and no cells x genes residual is ever formed; the
objective is evaluated by the trace identity from the same products.

Subproblems are solved exactly (block principal pivoting for ANLS, exact coordinate minimisation
for HALS), so the objective cannot increase from one iteration to the next. Note that the HALS
updates (5) and (13) printed in the paper approximate the coordinate minimiser of the V_i block
(they drop the off-diagonal part of the lambda term); the exact form used here (as in libplanc) is
``V_j <- [V_j + (B_j - (W + (1 + lambda) V) A_j) / ((1 + lambda) A_jj)]_+``.
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
from ._sparse_kernels import hals_update, single_threaded_blas
from .nmf import RowColumnData

SOLVERS = ("anls", "hals", "mu")
EPS = 1e-16


@dataclass
class INMFResult:
    """Factors of an iNMF fit (cells x k and genes x k orientation)."""

    W: np.ndarray
    V: list[np.ndarray]
    H: list[np.ndarray]
    objective: float
    history: dict[str, list] = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = False
    # online iNMF only: the sufficient statistics, to continue training later
    A: list[np.ndarray] | None = None
    B: list[np.ndarray] | None = None


def gram_h(W: np.ndarray, V: np.ndarray | None, lambda_: float) -> np.ndarray:
    """Gram matrix of the H-subproblem, ``L^T L + lambda V^T V`` with ``L = W + V``."""
    if V is None:
        return W.T @ W
    L = W + V
    return L.T @ L + lambda_ * (V.T @ V)


def _objective_terms(
    sq_norm: float, XtH: np.ndarray, HtH: np.ndarray, W: np.ndarray, V: np.ndarray, lambda_: float
) -> float:
    """One dataset's term of objective (1) from ``X^T H`` and ``H^T H`` (trace identity)."""
    L = W + V
    value = (
        sq_norm
        - 2.0 * float(np.sum(XtH * L))
        + float(np.sum((L.T @ L) * HtH))
        + lambda_ * float(np.sum((V.T @ V) * HtH))
    )
    return max(value, 0.0)


def inmf_objective(
    Xs: Sequence, W: np.ndarray, Vs: Sequence[np.ndarray], Hs: Sequence[np.ndarray], lambda_: float
) -> float:
    """Objective (1) of Gao & Welch, computed without forming a dense residual."""
    total = 0.0
    for X, V, H in zip(Xs, Vs, Hs, strict=True):
        X = as_csr(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, np.float64)
        sq = float(X.multiply(X).sum()) if sp.issparse(X) else float(np.sum(X * X))
        XtH = np.asarray(X.T @ H)
        total += _objective_terms(sq, XtH, H.T @ H, W, V, lambda_)
    return total


@single_threaded_blas
def solve_h(
    X,
    W: np.ndarray,
    V: np.ndarray | None = None,
    lambda_: float = 0.0,
    *,
    chunk_size: int = 20_000,
) -> tuple[np.ndarray, float]:
    """Cell factors of ``X`` (cells x genes) for fixed ``W`` (and ``V``), by exact NNLS.

    With ``V`` this is the H-step of iNMF for a cell of that dataset; without it, the projection
    of new cells onto the shared factors (LIGER's scenario 3). Rows are processed in chunks so the
    memory needed is independent of the number of cells. Returns ``H`` and this data's objective
    term (with ``V``: the dataset's term of (1); without: ``||X - H W^T||^2``).
    """
    X = (
        X
        if isinstance(X, sp.csr_matrix) and X.dtype == np.float64
        else as_csr(X, dtype=np.float64, canonical=True)
    )
    n = X.shape[0]
    G = gram_h(W, V, lambda_)
    L = W if V is None else W + V
    H = np.zeros((n, W.shape[1]))
    value = 0.0
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n))
        h = H[start : start + len(rows)]
        sq_norm, cross = solve_rows(X, rows, L, G, h)
        value += sq_norm - 2.0 * cross + float(np.sum(G * (h.T @ h)))
    return H, max(value, 0.0)


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not supported; choose one of {SOLVERS}.")


@single_threaded_blas
def fit_inmf(
    Xs: Sequence,
    k: int,
    *,
    lambda_: float = 5.0,
    solver: str = "anls",
    max_iter: int = 30,
    tol: float = 1e-6,
    rng: np.random.Generator,
    progress: bool = False,
    callback: Callable[[int, INMFResult], dict | None] | None = None,
) -> INMFResult:
    """Batch iNMF by alternating updates of every ``H_i``, then ``V_i``, then ``W``.

    ``solver="anls"`` solves each block exactly by block principal pivoting (warm-started),
    ``"hals"`` makes one exact coordinate sweep per block, ``"mu"`` applies the multiplicative
    updates. Factors start from uniform(0, 2) (as rliger's batch iNMF). Stops after ``max_iter``
    iterations or when the relative decrease of the objective falls below ``tol`` (0 disables).
    """
    _check_solver(solver)
    data = [RowColumnData(X) for X in Xs]
    m = data[0].m
    start_time = time.perf_counter()
    W = rng.uniform(0.0, 2.0, (m, k))
    Vs = [rng.uniform(0.0, 2.0, (m, k)) for _ in data]
    Hs = [rng.uniform(0.0, 2.0, (d.n, k)) for d in data]

    def stats(i: int) -> tuple[np.ndarray, np.ndarray]:
        return data[i].t_times(Hs[i]), Hs[i].T @ Hs[i]

    def objective(XtHs, HtHs) -> float:
        return sum(
            _objective_terms(d.sq_norm, XtH, HtH, W, V, lambda_)
            for d, XtH, HtH, V in zip(data, XtHs, HtHs, Vs, strict=True)
        )

    XtHs, HtHs = zip(*(stats(i) for i in range(len(data))), strict=True)
    log = IterationLog(
        objective(XtHs, HtHs),
        start_time=start_time,
        max_iter=max_iter,
        tol=tol,
        callback=callback,
        desc=f"iNMF ({solver})",
        progress=progress,
    )
    iteration = 0
    for iteration in range(1, max_iter + 1):
        XtHs, HtHs = [], []
        for i, d in enumerate(data):
            V = Vs[i]
            L = W + V
            G = L.T @ L + lambda_ * (V.T @ V)
            if solver == "anls":
                solve_rows(d.X, np.arange(d.n), L, G, Hs[i], warm_start=True)
            elif solver == "hals":
                hals_update(Hs[i], d.times(L), G)
            else:
                Hs[i] *= d.times(L) / np.maximum(Hs[i] @ G, EPS)
            XtH, HtH = stats(i)
            XtHs.append(XtH)
            HtHs.append(HtH)
            if solver == "anls":  # order of planc's BPPINMF: H_i, V_i per dataset, then W
                nnls_gram((1.0 + lambda_) * HtH, XtH - W @ HtH, init=V, out=V)
        if solver == "anls":
            rhs = sum(XtH - V @ HtH for XtH, HtH, V in zip(XtHs, HtHs, Vs, strict=True))
            nnls_gram(sum(HtHs), rhs, init=W, out=W)
        elif solver == "hals":  # the paper's order: all H_i, then W, then every V_i
            hals_update_w_v(W, Vs, HtHs, XtHs, lambda_)
        else:
            for XtH, HtH, V in zip(XtHs, HtHs, Vs, strict=True):
                V *= XtH / np.maximum((W + (1.0 + lambda_) * V) @ HtH, EPS)
            numerator = sum(XtHs)
            denominator = sum((W + V) @ HtH for HtH, V in zip(HtHs, Vs, strict=True))
            W *= numerator / np.maximum(denominator, EPS)

        value = objective(XtHs, HtHs)
        if log.record(iteration, value, partial(INMFResult, W, Vs, Hs, value)):
            break
    log.close()
    return INMFResult(
        W=W,
        V=Vs,
        H=Hs,
        objective=log.history["objective"][-1],
        history=log.history,
        n_iter=iteration,
        converged=log.converged,
    )


def hals_update_w_v(
    W: np.ndarray,
    Vs: Sequence[np.ndarray],
    As: Sequence[np.ndarray],
    Bs: Sequence[np.ndarray],
    lambda_: float,
    update_v: Sequence[bool] | None = None,
) -> None:
    """Updates (12) and (13): one exact HALS sweep over W, then over every V_i, in place.

    ``A_i = H_i^T H_i`` and ``B_i = X_i^T H_i`` (or their running mini-batch averages) summarise
    the data; ``update_v`` leaves some V_i fixed (datasets that are only kept for W).
    """
    rhs = sum(B - V @ A for A, B, V in zip(As, Bs, Vs, strict=True))
    hals_update(W, rhs, sum(As))
    for i, (A, B, V) in enumerate(zip(As, Bs, Vs, strict=True)):
        if update_v is None or update_v[i]:
            hals_update(V, B - W @ A, (1.0 + lambda_) * A)
