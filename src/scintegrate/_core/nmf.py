"""Non-negative matrix factorisation ``X ~ H @ W.T`` of a cells x features matrix.

Objectives (per matrix entry, with ``M = H @ W.T``):

* ``"frobenius"``: mean squared error ``||X - M||_F^2 / (n m)``; solvers ``"hals"`` (hierarchical
  alternating least squares, one sweep over the k columns per factor and iteration) and ``"mu"``
  (Lee & Seung multiplicative updates).
* ``"kl"``: generalised Kullback-Leibler divergence ``sum(x log(x / M) - x + M) / (n m)``, which
  is, up to a constant, the negative Poisson log-likelihood; solver ``"mu"``.

Both factors are float64. The data matrix is held as CSR (and the CSR of its transpose), so
KL updates evaluate ``M`` only at the stored entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ._progress import progress_bar
from ._sparse import as_csr
from ._sparse_kernels import (
    hals_update,
    kl_loglik_data_term,
    kl_multiplicative_update,
    rows_times,
    single_threaded_blas,
)

OBJECTIVES = ("frobenius", "kl")
SOLVERS = {"frobenius": ("hals", "mu"), "kl": ("mu",)}
INITS = ("nndsvda", "nndsvd", "nndsvdar", "random")
_EPS = 1e-12


@dataclass
class NMFResult:
    """Factors, training history and convergence information of one NMF fit."""

    H: np.ndarray
    """Cell factors, ``n_obs x k``."""
    W: np.ndarray
    """Feature factors, ``n_vars x k``."""
    history: dict[str, list] = field(default_factory=dict)
    """Columns ``iteration``, ``loss``, ``time`` (+ ``poisson_loglik`` for KL, + callback values)."""
    n_iter: int = 0
    converged: bool = False
    empty_obs: int = 0
    """Rows of ``X`` without non-zero values (their rows of ``H`` are zero)."""
    empty_vars: int = 0
    """Columns of ``X`` without non-zero values (their rows of ``W`` are zero)."""


class RowColumnData:
    """The data as float64 CSR plus the CSR of its transpose; never modifies the input."""

    def __init__(self, X) -> None:
        csr = as_csr(X, dtype=np.float64, canonical=True)
        self.X = csr
        self.Xt = csr.T.tocsr()
        self.n, self.m = csr.shape
        self._rows, self._cols = np.arange(self.n), np.arange(self.m)
        self.size = float(self.n) * float(self.m)
        self.empty_rows = int(np.sum(np.diff(csr.indptr) == 0))
        self.empty_cols = int(np.sum(np.diff(self.Xt.indptr) == 0))
        self.sq_norm = float(np.dot(csr.data, csr.data))
        self.total = float(csr.data.sum())
        positive = csr.data[csr.data > 0]
        # sum(x log x - x): the part of the KL divergence that does not depend on the model
        self.kl_const = float(np.sum(positive * np.log(positive)) - self.total)

    def times(self, B: np.ndarray) -> np.ndarray:
        """``X @ B``, in parallel over rows."""
        return rows_times(self.X, self._rows, B)

    def t_times(self, B: np.ndarray) -> np.ndarray:
        """``X.T @ B``, from the CSR of the transpose, in parallel over its rows."""
        return rows_times(self.Xt, self._cols, B)


def _frobenius_loss(data: RowColumnData, W: np.ndarray, XtH: np.ndarray, HtH: np.ndarray) -> float:
    """Mean squared error from ``X.T @ H`` and ``H.T @ H``: no pass over the data needed."""
    sse = data.sq_norm - 2.0 * float(np.sum(W * XtH)) + float(np.sum((W.T @ W) * HtH))
    return max(sse, 0.0) / data.size


def _kl_losses(
    data: RowColumnData, loglik_data_term: float, H_colsum, W_colsum
) -> tuple[float, float]:
    """(mean generalised KL divergence, mean Poisson log-likelihood) from the data term."""
    model_total = float(H_colsum @ W_colsum)
    loglik = loglik_data_term - model_total
    divergence = data.kl_const - loglik
    return divergence / data.size, loglik / data.size


def randomized_svd(X, k: int, rng: np.random.Generator, n_oversamples: int = 10, n_iter: int = 4):
    """Truncated SVD of a (sparse) matrix by randomised subspace iteration (Halko et al. 2011).

    Power iterations are normalised by LU (cheaper than QR, enough for stability); the final
    basis is orthonormalised by QR.
    """
    from scipy.linalg import lu

    n, m = X.shape
    size = min(k + n_oversamples, n, m)
    Q = np.asarray(X @ rng.standard_normal((m, size)))
    for _ in range(n_iter):
        Q = lu(Q, permute_l=True)[0]
        Q = lu(np.asarray(X.T @ Q), permute_l=True)[0]
        Q = np.asarray(X @ Q)
    Q, _ = np.linalg.qr(Q)
    B = np.asarray(X.T @ Q).T  # size x m
    U_small, S, Vt = np.linalg.svd(B, full_matrices=False)
    return (Q @ U_small)[:, :k], S[:k], Vt[:k]


def initialize(
    data: RowColumnData, k: int, init: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``(H, W)``: scaled random, or NNDSVD and its variants (Boutsidis & Gallopoulos)."""
    mean = data.total / data.size
    if init == "random":
        scale = np.sqrt(mean / k)
        H = scale * np.abs(rng.standard_normal((data.n, k)))
        W = scale * np.abs(rng.standard_normal((data.m, k)))
        return H, W
    U, S, Vt = randomized_svd(data.X, k, rng)
    H = np.zeros((data.n, k))
    W = np.zeros((data.m, k))
    H[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    W[:, 0] = np.sqrt(S[0]) * np.abs(Vt[0])
    for j in range(1, k):
        x, y = U[:, j], Vt[j]
        x_pos, x_neg = np.maximum(x, 0), np.maximum(-x, 0)
        y_pos, y_neg = np.maximum(y, 0), np.maximum(-y, 0)
        norms_pos = np.linalg.norm(x_pos) * np.linalg.norm(y_pos)
        norms_neg = np.linalg.norm(x_neg) * np.linalg.norm(y_neg)
        if norms_pos >= norms_neg:
            u, v, sigma = x_pos, y_pos, norms_pos
        else:
            u, v, sigma = x_neg, y_neg, norms_neg
        if sigma > 0:
            lam = np.sqrt(S[j] * sigma)
            H[:, j] = lam * u / np.linalg.norm(u)
            W[:, j] = lam * v / np.linalg.norm(v)
    H[H < 1e-6 * H.max(initial=0)] = 0.0
    W[W < 1e-6 * W.max(initial=0)] = 0.0
    if init == "nndsvda":
        H[H == 0] = mean
        W[W == 0] = mean
    elif init == "nndsvdar":
        H[H == 0] = mean * np.abs(rng.standard_normal(int((H == 0).sum()))) / 100
        W[W == 0] = mean * np.abs(rng.standard_normal(int((W == 0).sum()))) / 100
    return H, W


@single_threaded_blas
def fit_nmf(
    X,
    n_components: int,
    *,
    objective: str = "frobenius",
    solver: str = "hals",
    max_iter: int = 200,
    tol: float = 1e-4,
    init: str | tuple[np.ndarray, np.ndarray] = "nndsvda",
    random_state: int | np.random.Generator | None = 0,
    callback: Callable[[np.ndarray, np.ndarray], Mapping[str, float]] | None = None,
    track_every: int = 1,
    progress: bool = False,
) -> NMFResult:
    """Factorise non-negative ``X`` (n x m, dense or sparse) as ``H @ W.T``.

    Stops after ``max_iter`` iterations or when the loss decreased by less than
    ``tol`` times its previous value in one iteration (``tol=0`` runs all iterations).
    ``callback(H, W)`` is called after iterations ``track_every, 2 * track_every, ...`` and after
    the last one; the values it returns become history columns. Its time is not counted in
    ``time``. Row 0 of the history is the initialisation.
    """
    if objective not in OBJECTIVES or solver not in SOLVERS[objective]:
        raise ValueError(f"objective={objective!r} with solver={solver!r} is not supported.")
    if isinstance(random_state, np.random.Generator):
        rng = random_state
    else:
        rng = np.random.default_rng(random_state)
    start = time.perf_counter()
    data = RowColumnData(X)
    if isinstance(init, str):
        H, W = initialize(data, n_components, init, rng)
    else:
        H = np.array(init[0], dtype=np.float64, order="C", copy=True)
        W = np.array(init[1], dtype=np.float64, order="C", copy=True)

    losses: dict[int, float] = {}
    logliks: dict[int, float] = {}
    times: dict[int, float] = {}
    extras: dict[int, Mapping[str, float]] = {}
    paused = 0.0  # seconds spent in callbacks, excluded from the recorded times

    def elapsed() -> float:
        return time.perf_counter() - start - paused

    # loss of the initial factors
    if objective == "frobenius":
        losses[0] = _frobenius_loss(data, W, data.t_times(H), H.T @ H)
    else:
        term = kl_loglik_data_term(data.X.indptr, data.X.indices, data.X.data, H, W, _EPS)
        losses[0], logliks[0] = _kl_losses(data, term, H.sum(0), W.sum(0))
    times[0] = elapsed()

    def has_converged(t: int) -> bool:
        if tol <= 0 or t < 1 or t not in losses or t - 1 not in losses:
            return False
        previous = losses[t - 1]
        return previous - losses[t] < tol * max(abs(previous), np.finfo(float).tiny)

    converged = False
    t = 0
    bar = progress_bar(total=max_iter, disable=not progress, desc=f"NMF ({objective})")
    for t in range(1, max_iter + 1):
        if objective == "frobenius":
            XW = data.times(W)
            WtW = W.T @ W
            if solver == "hals":
                hals_update(H, XW, WtW)
            else:
                H *= XW / np.maximum(H @ WtW, _EPS)
            XtH = data.t_times(H)
            HtH = H.T @ H
            if solver == "hals":
                hals_update(W, XtH, HtH)
            else:
                W *= XtH / np.maximum(W @ HtH, _EPS)
            losses[t] = _frobenius_loss(data, W, XtH, HtH)
        else:
            # the fused H pass also yields the log-likelihood of the previous iterate
            H_colsum_before = H.sum(0)
            W_colsum = np.maximum(W.sum(0), _EPS)
            term = kl_multiplicative_update(
                data.X.indptr, data.X.indices, data.X.data, H, W, W_colsum, _EPS, t > 1
            )
            if t > 1:
                losses[t - 1], logliks[t - 1] = _kl_losses(data, term, H_colsum_before, W.sum(0))
            H_colsum = np.maximum(H.sum(0), _EPS)
            kl_multiplicative_update(
                data.Xt.indptr, data.Xt.indices, data.Xt.data, W, H, H_colsum, _EPS, False
            )
        times[t] = elapsed()
        if callback is not None and (t % track_every == 0 or t == max_iter):
            tick = time.perf_counter()
            extras[t] = dict(callback(H, W))
            paused += time.perf_counter() - tick
        bar.update(1)
        if t % 10 == 0 and (t in losses or t - 1 in losses):
            bar.set_postfix(loss=f"{losses.get(t, losses.get(t - 1)):.5g}")
        if has_converged(t) or (objective == "kl" and has_converged(t - 1)):
            converged = True
            break
    bar.close()
    if objective == "kl":  # one more pass for the loss of the final iterate
        term = kl_loglik_data_term(data.X.indptr, data.X.indices, data.X.data, H, W, _EPS)
        losses[t], logliks[t] = _kl_losses(data, term, H.sum(0), W.sum(0))
    if callback is not None and t not in extras:
        extras[t] = dict(callback(H, W))

    iterations = sorted(times)
    history: dict[str, list] = {
        "iteration": iterations,
        "loss": [losses[i] for i in iterations],
    }
    if objective == "kl":
        history["poisson_loglik"] = [logliks[i] for i in iterations]
    history["time"] = [times[i] for i in iterations]
    columns = sorted({c for row in extras.values() for c in row})
    for column in columns:
        history[column] = [extras.get(i, {}).get(column, np.nan) for i in iterations]
    return NMFResult(
        H=H,
        W=W,
        history=history,
        n_iter=t,
        converged=converged,
        empty_obs=data.empty_rows,
        empty_vars=data.empty_cols,
    )
