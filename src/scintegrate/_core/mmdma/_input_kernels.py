"""Input kernels of the dual MMD-MA: the n x n matrix ``K`` of each modality.

The dual (Liu et al. 2019; appendix A of Meng-Papaxanthos et al. 2023) embeds a modality by
``Z = K a`` with ``K`` any positive semi-definite kernel matrix on its cells: the linear kernel
``X Xᵀ`` (the original; the same embeddings as the primal ``Z = X W`` with ``W = Xᵀ a``), or a
non-linear one such as the Gaussian RBF kernel ``exp(-|x - x'|² / (2 s²))``, whose maps are
non-linear functions of the features. The matrices are built in float32 row block by row block
(memory ``4 n²`` bytes, no float64 n x n copy).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

INPUT_KERNELS = ("linear", "rbf")
# cells per modality up to which the dual holds its n x n kernel matrix
DUAL_MAX_CELLS = 20_000
# cells whose pairwise distances give the median heuristic of the input RBF kernel
_MEDIAN_SAMPLE = 2000


def kernel_bytes(n: int) -> int:
    """Bytes of one n x n float32 kernel matrix."""
    return 4 * n * n


def check_dual_size(sizes, names=("first", "second")) -> None:
    """ValueError when a modality has more cells than the dual holds an n x n matrix for."""
    for n, name in zip(sizes, names, strict=True):
        if n > DUAL_MAX_CELLS:
            need = sum(kernel_bytes(m) for m in sizes) / 2**30
            raise ValueError(
                f"formulation='dual' holds an n x n kernel matrix per modality; modality "
                f"{name!r} has {n} cells (limit {DUAL_MAX_CELLS}): the two matrices would need "
                f"{need:.1f} GiB (float32) and every step O(n² d) time. Use "
                "formulation='primal' (with input_kernel='rbf': Nyström features, memory "
                "linear in the cells) or subsample the cells."
            )


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def _sq_norms(X) -> np.ndarray:
    if sp.issparse(X):
        return np.asarray(X.multiply(X).sum(1), dtype=np.float64).ravel()
    X = np.asarray(X, dtype=np.float64)
    return np.einsum("ij,ij->i", X, X)


def median_distance(X, rng: np.random.Generator | None = None) -> float:
    """Median Euclidean distance between distinct cells of ``X`` (on at most 2,000 cells drawn
    with ``rng``; all of them below that): the median heuristic of the input RBF kernel."""
    n = X.shape[0]
    if n > _MEDIAN_SAMPLE:
        rng = np.random.default_rng(0) if rng is None else rng
        rows = np.sort(rng.choice(n, _MEDIAN_SAMPLE, replace=False))
        X = X[rows]
    A = _dense(X)
    sq = np.einsum("ij,ij->i", A, A)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (A @ A.T)
    iu = np.triu_indices(len(A), 1)
    med = float(np.median(np.maximum(d2[iu], 0.0)))
    return math.sqrt(med) if med > 0 else 1.0


def _cross(A, B) -> np.ndarray:
    """``A Bᵀ`` as a dense float64 array (A, B dense or sparse)."""
    out = A @ B.T
    return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float64)


def kernel_matrix(
    X,
    kind: str | Callable = "linear",
    bandwidth: float | None = None,
    *,
    rows: np.ndarray | None = None,
    block: int = 2048,
) -> np.ndarray:
    """The float32 kernel matrix between the cells ``rows`` of ``X`` (all: ``None``) and all
    cells: ``X Xᵀ`` (``"linear"``), ``exp(-|x_i - x_j|² / (2 bandwidth²))`` (``"rbf"``), or
    ``kind(X)`` for a callable (validated: finite, n x n, symmetric)."""
    if callable(kind):
        K = np.asarray(kind(X), dtype=np.float64)
        n = X.shape[0]
        if K.shape != (n, n):
            raise ValueError(
                f"input_kernel callable must return a cells x cells matrix ({n} x {n}), got "
                f"shape {K.shape}."
            )
        if not np.all(np.isfinite(K)):
            raise ValueError("input_kernel callable returned non-finite values.")
        scale = max(float(np.abs(K).max()), 1e-300)
        if not np.allclose(K, K.T, rtol=0, atol=1e-6 * scale):
            raise ValueError("input_kernel callable must return a symmetric matrix.")
        K = 0.5 * (K + K.T)
        return np.ascontiguousarray(K if rows is None else K[rows], dtype=np.float32)
    Xr = X if rows is None else X[rows]
    nr, n = Xr.shape[0], X.shape[0]
    out = np.empty((nr, n), dtype=np.float32)
    if kind == "rbf":
        if bandwidth is None or not bandwidth > 0:
            raise ValueError("the RBF input kernel needs a positive bandwidth.")
        sq_all = _sq_norms(X)
        sq_rows = sq_all if rows is None else sq_all[rows]
        gamma = 1.0 / (2.0 * bandwidth**2)
    for i in range(0, nr, block):
        i1 = min(i + block, nr)
        G = _cross(Xr[i:i1], X)
        if kind == "rbf":
            d2 = np.maximum(sq_rows[i:i1, None] + sq_all[None, :] - 2.0 * G, 0.0)
            G = np.exp(-gamma * d2)
        out[i:i1] = G
    if rows is None and kind == "rbf":
        np.fill_diagonal(out, 1.0)
    return out


def nystrom_features(
    X,
    kind: str | Callable,
    bandwidth: float | None,
    n_landmarks: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Nyström features ``Φ = K_nm K_mm^{-1/2}`` (n x r, r <= ``n_landmarks``) of ``n_landmarks``
    cells drawn at random: ``Φ Φᵀ`` approximates the n x n kernel matrix, so the primal on ``Φ``
    is the dual on that approximation with memory linear in the cells. Eigenvalues of ``K_mm``
    below 1e-8 of the largest are dropped."""
    if callable(kind):
        raise ValueError(
            "a callable input_kernel needs formulation='dual' (Nyström features are built for "
            "'linear' and 'rbf' only)."
        )
    n = X.shape[0]
    m = min(int(n_landmarks), n)
    landmarks = np.sort(rng.choice(n, m, replace=False))
    K_nm = kernel_matrix(X, kind, bandwidth, rows=landmarks).T.astype(np.float64)  # n x m
    K_mm = K_nm[landmarks]
    K_mm = 0.5 * (K_mm + K_mm.T)
    evals, evecs = np.linalg.eigh(K_mm)
    keep = evals > evals.max() * 1e-8
    proj = evecs[:, keep] / np.sqrt(evals[keep])
    return np.ascontiguousarray(K_nm @ proj)


def center_kernel(K: np.ndarray) -> np.ndarray:
    """``H K H`` with ``H = I - 11ᵀ/n``, in place (the kernel of the centred feature map)."""
    r = K.mean(0, dtype=np.float64)
    K -= r[None, :].astype(K.dtype)
    K -= r[:, None].astype(K.dtype)
    K += K.dtype.type(r.mean())
    return K


def prepare_input(
    X,
    kind: str | Callable,
    bandwidth: float | str,
    formulation: str,
    n_landmarks: int,
    rng: np.random.Generator,
    n_components: int | None = None,
):
    """What the fit of one modality gets for an input kernel: ``(data, kernel, bandwidth)``.

    ``"linear"``: ``X`` itself, no kernel (``X Xᵀ`` is formed by the dual). ``"rbf"``: the
    bandwidth (``"median"``: :func:`median_distance`), then, in the dual, the centred n x n RBF
    kernel matrix, and in the primal the centred Nyström features of ``n_landmarks`` cells
    reduced to their ``n_components`` leading principal components (``None``: all), so that
    the primal on them is the dual on that rank-``n_components`` approximation of the kernel.
    A callable
    (dual only): its matrix, as returned (centre it yourself if wanted).
    """
    if not callable(kind) and kind == "linear":
        return X, None, None
    if callable(kind):
        if formulation != "dual":
            raise ValueError("a callable input_kernel needs formulation='dual'.")
        return X, kernel_matrix(X, kind), None
    s = median_distance(X, rng) if bandwidth == "median" else float(bandwidth)
    if formulation == "dual":
        return X, center_kernel(kernel_matrix(X, kind, s)), s
    features = nystrom_features(X, kind, s, n_landmarks, rng)
    features -= features.mean(0, keepdims=True)
    if n_components is not None and n_components < features.shape[1]:
        # the leading kernel principal components: U_r S_r of the centred features
        U, S, _ = np.linalg.svd(features, full_matrices=False)
        features = U[:, :n_components] * S[:n_components]
    return np.ascontiguousarray(features, dtype=np.float32), None, s
