"""MMD-MA (Liu et al. 2019) in the primal, as reformulated by LSMMD-MA (Meng-Papaxanthos et al. 2023).

Two modalities ``X`` (n x p) and ``Y`` (m x q), measured on different cells, are mapped to a
shared d-dimensional space by ``Z_x = X W_x`` and ``Z_y = Y W_y`` (primal) or
``Z_x = K_x a_x`` with ``K_x = X X^T`` (dual, the original MMD-MA; ``W_x = X^T a_x`` gives the
same embedding). The objective is

    L = MMD^2(Z_x, Z_y) + l1 (pen_x + pen_y) + l2 (dis_x + dis_y)

* ``MMD^2``: squared maximum mean discrepancy with the Gaussian RBF kernel
  ``k(z, z') = exp(-|z - z'|^2 / (2 s^2))`` (``s``: the bandwidth), biased (V-statistic) or
  unbiased (U-statistic) estimate. The three kernel sums are computed without ever holding an
  n x m matrix: blockwise in torch (:class:`_KernelSum`, value and gradient in one pass, memory
  ``block_size^2``), or symbolically with KeOps ``LazyTensor`` (memory linear in n).
* ``pen = ||W^T W - I_d||_F`` (primal) ``= ||a^T K a - I_d||_F`` (dual): the non-collapsing
  penalty of the paper's appendix A.
* ``dis = ||X X^T - Z Z^T||_F / ||X X^T||_F``: the distortion of appendix A, divided by the
  constant ``||X X^T||_F`` so that it lies in [0, 1] whatever the scale and size of the data
  (the paper leaves it unnormalised and the reference code divides by ``n sqrt(p)``; a constant
  factor only rescales ``l2``). Without any n x n matrix, with ``G = X^T X``:
  ``||X X^T - X W W^T X^T||_F^2 = ||G||_F^2 - 2 ||G W||_F^2 + ||W^T G W||_F^2``; ``G`` (p x p)
  is computed once, so a step costs O(p^2 d) (the "gram" route, used when p is small). For large
  p the same value is ``||G||_F^2 - 2 ||X^T Z||_F^2 + ||Z^T Z||_F^2`` with ``Z = X W`` already
  at hand: O(nnz(X) d) per step and no p x p matrix (the "cells" route).

Sparse ``X`` stays sparse (CSR torch tensors; ``X W`` and ``X^T Z`` are sparse products).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from .._adam import Adam
from .._progress import progress_bar

FORMULATIONS = ("primal", "dual")
BACKENDS = ("auto", "torch", "keops")
# elements of one kernel tile of the torch backend: 64k floats = 256 kB in float32 (L2 cache)
_TILE_ELEMENTS = 1 << 16
_LOG2E = 1.4426950408889634
# the primal distortion uses G = X^T X (p x p) when p is at most this and p^2 <= 4 nnz(X)
_GRAM_MAX_FEATURES = 8192
# n x m below which the fit runs on one CPU thread
_SMALL_PROBLEM = 2_000_000


# --------------------------------------------------------------------------------------------
# Gaussian kernel sums and MMD
# --------------------------------------------------------------------------------------------


def _padded(width: int) -> int:
    """``width`` rounded up to a multiple of 16: BLAS products with a right-hand side of 11
    columns run 3-8x slower than with 16 (MKL on AVX-512), so the ``[z, 1]`` operands are
    zero-padded."""
    return -(-width // 16) * 16


def _kernel_operands(a: torch.Tensor, scale: float):
    """``left`` (n x (d+2)), ``right_t`` ((d+2) x n) with ``left[i] . right_t[:, j] =
    -scale |a_i - a_j|^2``, and ``[a, 1]`` zero-padded to a multiple of 16 columns."""
    d = a.shape[1]
    sq = (a * a).sum(1, keepdim=True)
    one = torch.ones_like(sq)
    left = torch.cat([a, sq, one], 1)
    right_t = torch.cat([(2 * scale) * a, -scale * one, -scale * sq], 1).T.contiguous()
    a1 = torch.nn.functional.pad(torch.cat([a, one], 1), (0, _padded(d + 1) - d - 1))
    return left, right_t, a1


def _kernel_pass(a: torch.Tensor, b: torch.Tensor | None, bandwidth: float, block: int | None):
    """Row sums of the Gaussian kernel ``k_ij = exp(-|a_i - b_j|^2 / (2 s^2))`` with the
    kernel-weighted sums of the other side, tile by tile, never holding the n x m matrix.

    Returns ``acc_a`` with ``acc_a[i, :d] = sum_j k_ij b_j`` and ``acc_a[i, d] = sum_j k_ij``,
    and ``acc_b`` the same for the rows of ``b`` (``None`` when ``b is None``: the sum over
    pairs of rows of ``a``, of which only the upper tiles are computed, each used for both
    sides). The value and both gradients of the kernel sum follow from them (``_MMD2``).

    Speed (one CPU core, n = m = 1,000, d = 10: ~7 ms for the three sums of an MMD, ~3x less
    than one 1000 x 1000 block with ``exp``): tiles of 64k elements stay in the L2 cache;
    the exponent is built in base 2 (``exp2`` is 3x faster than ``exp`` and has no slow path
    when it underflows, which ``exp`` has: 10x slower for a narrow kernel), by one product of
    the ``[a, |a|^2, 1]`` and ``[2c b, -c, -c |b|^2]`` operands; the right-hand sides ``[b, 1]``
    are padded to 16 columns.
    """
    symmetric = b is None
    scale = _LOG2E / (2.0 * bandwidth**2)
    left_a, right_a, a1 = _kernel_operands(a, scale)
    if symmetric:
        right_b, b1 = right_a, a1
    else:
        _, right_b, b1 = _kernel_operands(b, scale)
    n, m = len(a), right_b.shape[1]
    if block is not None:
        rows = cols = int(block)
    elif symmetric:
        # square tiles: the upper triangle of tiles covers every pair
        rows = cols = max(16, min(n, math.isqrt(_TILE_ELEMENTS)))
    else:
        cols = min(m, 1024)
        rows = max(16, _TILE_ELEMENTS // cols)
    acc_a = a.new_zeros(n, a1.shape[1])
    acc_b = acc_a if symmetric else a.new_zeros(m, b1.shape[1])
    buf = a.new_empty(min(rows, n) * min(cols, m))
    for i in range(0, n, rows):
        i1 = min(i + rows, n)
        for j in range(i if symmetric else 0, m, cols):
            j1 = min(j + cols, m)
            k = buf[: (i1 - i) * (j1 - j)].view(i1 - i, j1 - j)
            torch.mm(left_a[i:i1], right_b[:, j:j1], out=k)
            k.exp2_()
            acc_a[i:i1].addmm_(k, b1[j:j1])
            if not symmetric or j != i:
                acc_b[j:j1].addmm_(k.T, a1[i:i1])
    return acc_a, (None if symmetric else acc_b)


def _pass_sum_and_grad(acc: torch.Tensor, z: torch.Tensor, bandwidth: float):
    """Kernel sum and ``sum_j d k(z_i, w_j) / d z_i = sum_j k_ij (w_j - z_i) / s^2``."""
    d = z.shape[1]
    return acc[:, d].sum(), (acc[:, :d] - z * acc[:, d : d + 1]) / bandwidth**2


def _kernel_total(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> float:
    """``sum_ij exp(-|a_i - b_j|^2 / (2 s^2))`` alone (no gradient), in row blocks of about
    256k kernel values."""
    scale = _LOG2E / (2.0 * bandwidth**2)
    left, _, _ = _kernel_operands(a, scale)
    _, right_t, _ = _kernel_operands(b, scale)
    rows = max(1, (1 << 18) // max(1, len(b)))
    total = 0.0
    for i in range(0, len(a), rows):
        total += float(torch.mm(left[i : i + rows], right_t).exp2_().sum(dtype=torch.float64))
    return total


class _MMD2(torch.autograd.Function):
    """MMD² (biased or unbiased) and its gradients in closed form, in one pass over the
    kernel tiles (no autograd graph through the tiles, nothing kept but the two gradients)."""

    @staticmethod
    def forward(ctx, zx, zy, bandwidth: float, unbiased: bool, block):
        n, m = len(zx), len(zy)
        if unbiased:
            # the diagonal k(z, z) = 1 removed from S_xx and S_yy (it has no gradient)
            cxx, cyy, const = 1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -n / (n * (n - 1))
            const -= m / (m * (m - 1))
        else:
            cxx, cyy, const = 1.0 / n**2, 1.0 / m**2, 0.0
        cxy = -2.0 / (n * m)
        acc_xx, _ = _kernel_pass(zx, None, bandwidth, block)
        acc_yy, _ = _kernel_pass(zy, None, bandwidth, block)
        acc_xy, acc_yx = _kernel_pass(zx, zy, bandwidth, block)
        s_xx, g_xx = _pass_sum_and_grad(acc_xx, zx, bandwidth)
        s_yy, g_yy = _pass_sum_and_grad(acc_yy, zy, bandwidth)
        s_xy, g_xy = _pass_sum_and_grad(acc_xy, zx, bandwidth)
        _, g_yx = _pass_sum_and_grad(acc_yx, zy, bandwidth)
        # both arguments of the symmetric sums vary: twice the one-sided gradient
        ctx.save_for_backward((2 * cxx) * g_xx + cxy * g_xy, (2 * cyy) * g_yy + cxy * g_yx)
        return cxx * s_xx + cyy * s_yy + cxy * s_xy + const

    @staticmethod
    def backward(ctx, grad_out):
        gx, gy = ctx.saved_tensors
        return grad_out * gx, grad_out * gy, None, None, None


class _KernelSum(torch.autograd.Function):
    """``sum_ij exp(-|a_i - b_j|^2 / (2 s^2))`` and its gradients (``b=None``: over pairs of
    rows of ``a``, both kernel arguments varying)."""

    @staticmethod
    def forward(ctx, a, b, bandwidth: float, block):
        acc_a, acc_b = _kernel_pass(a, b, bandwidth, block)
        total, grad_a = _pass_sum_and_grad(acc_a, a, bandwidth)
        if b is None:
            grad_a, grad_b = 2 * grad_a, None
        else:
            grad_b = _pass_sum_and_grad(acc_b, b, bandwidth)[1]
        ctx.save_for_backward(grad_a, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_a, grad_b = ctx.saved_tensors
        return (
            grad_out * grad_a,
            grad_out * grad_b if grad_b is not None else None,
            None,
            None,
        )


def keops_available() -> bool:
    """Whether pykeops can be imported (it compiles its formulas on first use)."""
    try:
        import pykeops.torch  # noqa: F401
    except Exception:
        return False
    return True


def _keops_kernel_sum(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    from pykeops.torch import LazyTensor

    scale = 1.0 / (math.sqrt(2.0) * bandwidth)
    a_i = LazyTensor((a * scale).contiguous()[:, None, :])
    b_j = LazyTensor((b * scale).contiguous()[None, :, :])
    k_ij = (-((a_i - b_j) ** 2).sum(-1)).exp()
    return k_ij.sum(dim=1).sum()


def kernel_sum(
    a: torch.Tensor,
    b: torch.Tensor | None,
    bandwidth: float,
    *,
    backend: str = "torch",
    block_size: int | None = None,
) -> torch.Tensor:
    """Differentiable ``sum_ij exp(-|a_i - b_j|^2 / (2 bandwidth^2))`` without an n x m matrix.

    ``b=None`` sums over all ordered pairs of rows of ``a`` (the same as ``b=a``, but the
    gradient flows through both kernel arguments at the cost of one).
    """
    if backend == "keops":
        return _keops_kernel_sum(a, a if b is None else b, bandwidth)
    return _KernelSum.apply(a, b, float(bandwidth), block_size)


def mmd2(
    zx: torch.Tensor,
    zy: torch.Tensor,
    bandwidth: float,
    *,
    unbiased: bool = False,
    backend: str = "torch",
    block_size: int | None = None,
) -> torch.Tensor:
    """Squared MMD between the rows of ``zx`` and ``zy`` with a Gaussian RBF kernel.

    Biased (V-statistic, >= 0): ``S_xx / n^2 + S_yy / m^2 - 2 S_xy / (n m)``; unbiased
    (U-statistic): the diagonal terms (each ``k(z, z) = 1``) removed from ``S_xx`` and ``S_yy``.
    """
    if backend == "torch":
        return _MMD2.apply(zx, zy, float(bandwidth), bool(unbiased), block_size)
    n, m = len(zx), len(zy)
    kw = {"backend": backend, "block_size": block_size}
    s_xx = kernel_sum(zx, None, bandwidth, **kw)
    s_yy = kernel_sum(zy, None, bandwidth, **kw)
    s_xy = kernel_sum(zx, zy, bandwidth, **kw)
    if unbiased:
        return (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2.0 * s_xy / (n * m)
    return s_xx / n**2 + s_yy / m**2 - 2.0 * s_xy / (n * m)


def mmd2_dense(zx, zy, bandwidth: float, *, unbiased: bool = False) -> torch.Tensor:
    """Reference MMD^2 that materialises the kernel matrices (tests and tiny inputs only)."""

    def k(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * bandwidth**2))

    n, m = len(zx), len(zy)
    s_xx, s_yy, s_xy = k(zx, zx).sum(), k(zy, zy).sum(), k(zx, zy).sum()
    if unbiased:
        return (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2.0 * s_xy / (n * m)
    return s_xx / n**2 + s_yy / m**2 - 2.0 * s_xy / (n * m)


_PAIRS: dict = {}


def _lower_median(values: np.ndarray, hint: float | None = None) -> float:
    """``torch.median``'s lower median of ``values`` (exact), by ``np.partition``. With a
    ``hint`` close to the answer (the previous step's median), only the values within 2% of it
    are partitioned after one count of those below: ~5x faster, and the full partition when
    the median has moved out of that window."""
    k = (len(values) - 1) // 2
    if hint is not None and hint > 0:
        lo, hi = 0.98 * hint, 1.02 * hint
        below = int(np.count_nonzero(values < lo))
        if below <= k:
            window = values[(values >= lo) & (values <= hi)]
            if below + len(window) > k:
                return float(np.partition(window, k - below)[k - below])
    return float(np.partition(values, k)[k])


def median_bandwidth(z: torch.Tensor, state: dict | None = None) -> float:
    """Median heuristic: the median Euclidean distance between distinct rows of ``z``.

    Computed on squared distances (the median commutes with the square root) from one product
    of ``[z, |z|², 1]`` and ``[-2z, 1, |z|²]``, gathered by flat index from the upper triangle
    (cached per size and device), the (lower) median selected on the CPU by
    :func:`_lower_median`: ~4x faster than ``cdist`` + ``triu_indices`` + 2-D indexing +
    ``torch.median``, same value. ``state`` (a dict kept between the calls of one fit) holds the
    last median as the hint of the next."""
    n = len(z)
    key = (n, str(z.device))
    if key not in _PAIRS:
        iu = torch.triu_indices(n, n, offset=1, device=z.device)
        _PAIRS.clear()
        _PAIRS[key] = iu[0] * n + iu[1]
    sq = (z * z).sum(1, keepdim=True)
    one = torch.ones_like(sq)
    d2 = torch.cat([z, sq, one], 1) @ torch.cat([-2.0 * z, one, sq], 1).T
    pairs = d2.view(-1).index_select(0, _PAIRS[key])
    if pairs.device.type == "cpu":
        hint = None if state is None else state.get("median")
        med = _lower_median(pairs.detach().numpy(), hint)
        if state is not None:
            state["median"] = med
    else:
        med = float(pairs.median())
    return math.sqrt(med) if med > 0 else 1.0


# --------------------------------------------------------------------------------------------
# one modality: embedding, penalty and distortion
# --------------------------------------------------------------------------------------------


def _product(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``A @ v`` for a constant ``A`` and a ``v`` of few columns. Dense ``A``: computed as
    ``(vᵀ Aᵀ)ᵀ``, 4-6x faster on one CPU core than ``A @ v`` with d = 10 columns (MKL)."""
    if A.layout == torch.strided:
        return torch.mm(v.T, A.T).T
    return A @ v


class _Linear(torch.autograd.Function):
    """``A @ v`` for a constant (dense or sparse) ``A`` whose transpose ``At`` is given too."""

    @staticmethod
    def forward(ctx, v, A, At):
        ctx.At = At
        return _product(A, v)

    @staticmethod
    def backward(ctx, grad):
        return _product(ctx.At, grad), None, None


class _GramDistortion(torch.autograd.Function):
    """``sqrt(max(|G|² - 2 |G W|² + |Wᵀ G W|², 0) + 1e-12 |G|²) / |G|`` (``|.|``: Frobenius,
    ``G = XᵀX``: the primal distortion) with its gradient in closed form, O(p² d):
    ``d sq / dW = 4 (G W (Wᵀ G W) - G G W)``."""

    @staticmethod
    def forward(ctx, W, G, gram_sq: float, gram_norm: float):
        GW = _product(G, W)
        WtGW = W.T @ GW
        sq = gram_sq - 2.0 * (GW * GW).sum() + (WtGW * WtGW).sum()
        root = torch.sqrt(sq.clamp_min(0.0) + 1e-12 * gram_sq)
        if float(sq) > 0:
            grad = (GW @ WtGW - _product(G, GW)) * (2.0 / (float(root) * gram_norm))
        else:
            grad = torch.zeros_like(W)
        ctx.save_for_backward(grad)
        return root / gram_norm

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None, None


def _to_torch(X, dtype, device):
    """Dense tensor, or (CSR tensor, CSR tensor of the transpose) for sparse input."""
    if sp.issparse(X):
        csr = sp.csr_matrix(X, dtype=np.float64)
        csr.sum_duplicates()

        def conv(m):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
                return torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(m.data),
                    size=m.shape,
                    dtype=dtype,
                    check_invariants=False,
                ).to(device)

        return conv(csr), conv(csr.T.tocsr())
    return torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=dtype, device=device), None


def _gram_sq_norm(X) -> float:
    """``||X^T X||_F^2 = ||X X^T||_F^2`` in float64, column block by column block."""
    Xs = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, np.float64)
    small_side_cols = Xs.shape[1] <= Xs.shape[0]
    A = Xs if small_side_cols else Xs.T  # ||A^T A||_F^2 with A having the fewer columns
    if sp.issparse(A):
        A = sp.csc_matrix(A)
    total = 0.0
    for j in range(0, A.shape[1], 1024):
        block = A.T @ A[:, j : j + 1024]
        block = block.toarray() if sp.issparse(block) else block
        total += float(np.sum(block * block))
    return total


class _Modality:
    """One modality's constant data and the terms of the loss that depend only on it."""

    def __init__(self, X, formulation: str, dtype, device) -> None:
        self.n, self.p = X.shape
        self.formulation = formulation
        self._basis = None
        self.X_host = None
        sparse = sp.issparse(X)
        if formulation == "dual":
            Xd = X.toarray() if sparse else np.asarray(X, np.float64)
            K = np.asarray(Xd, np.float64) @ np.asarray(Xd, np.float64).T
            self.K = torch.as_tensor(K, dtype=dtype, device=device)
            self.gram_sq = float(np.sum(K * K))
            self.X, self.Xt, self.G, self.sparse = None, None, None, False
            self.route = "dual"
            self.gram_norm = math.sqrt(self.gram_sq) if self.gram_sq > 0 else 1.0
            return
        self.X, self.Xt = _to_torch(X, dtype, device)
        self.sparse = sparse
        if not sparse:
            self.Xt = self.X.T
        self.X_host = sp.csr_matrix(X) if sparse else None
        nnz = X.nnz if sparse else self.n * self.p
        if self.p <= _GRAM_MAX_FEATURES and self.p * self.p <= 4 * nnz:
            Xs = sp.csr_matrix(X, dtype=np.float64) if sparse else np.asarray(X, np.float64)
            G = Xs.T @ Xs
            G = G.toarray() if sp.issparse(G) else np.asarray(G)
            self.G = torch.as_tensor(G, dtype=dtype, device=device)
            self.gram_sq = float(np.sum(G * G))
            self.route = "gram"
        else:
            self.G = None
            self.gram_sq = _gram_sq_norm(X)
            self.route = "cells"
        self.gram_norm = math.sqrt(self.gram_sq) if self.gram_sq > 0 else 1.0

    # Z for all cells, or for the rows ``idx``
    def embed(self, W: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        if self.formulation == "dual":
            if idx is None:
                return _Linear.apply(W, self.K, self.K)  # K is symmetric
            return self.K[idx] @ W
        if idx is not None:
            if not self.sparse:
                return self.X[idx] @ W
            # sparse: only the mini-batch is densified
            rows = self.X_host[idx.cpu().numpy()].toarray()
            return torch.as_tensor(rows, dtype=W.dtype, device=W.device) @ W
        return _Linear.apply(W, self.X, self.Xt)

    def penalty(self, W: torch.Tensor, Z: torch.Tensor | None) -> torch.Tensor:
        d = W.shape[1]
        eye = torch.eye(d, dtype=W.dtype, device=W.device)
        if self.formulation == "dual":
            # a^T K a = a^T Z with Z = K a (all cells)
            return torch.linalg.matrix_norm(W.T @ Z - eye)
        return torch.linalg.matrix_norm(W.T @ W - eye)

    def distortion(self, W: torch.Tensor, Z: torch.Tensor | None) -> torch.Tensor:
        if self.route == "gram":
            return _GramDistortion.apply(W, self.G, self.gram_sq, self.gram_norm)
        if self.route == "dual":
            cross = (Z * _Linear.apply(Z, self.K, self.K)).sum()  # tr(Z^T K Z)
        else:
            XtZ = _Linear.apply(Z, self.Xt, self.X)
            cross = (XtZ * XtZ).sum()
        ZtZ = Z.T @ Z
        third = (ZtZ * ZtZ).sum()
        sq = (self.gram_sq - 2.0 * cross + third).clamp_min(0.0)
        # d sqrt(x)/dx is infinite at 0: a tiny floor keeps the gradient finite
        return torch.sqrt(sq + 1e-12 * self.gram_sq) / self.gram_norm

    def _principal_basis(self, d: int) -> torch.Tensor:
        """Minimiser of penalty + distortion, float64 on the CPU: the top-d (uncentred) right
        singular vectors ``V_d`` of X (primal), or ``U_d S_d^-1`` with ``X = U S V^T`` (dual,
        so that ``X^T a = V_d``)."""
        if self._basis is not None and self._basis.shape[1] == d:
            return self._basis
        if self.route in ("dual", "gram"):
            M = (self.K if self.route == "dual" else self.G).detach().double().cpu()
            evals, evecs = torch.linalg.eigh(M)
            order = torch.argsort(evals, descending=True)[:d]
            basis = evecs[:, order]
            if self.route == "dual":
                floor = evals.max().clamp_min(1e-300) * 1e-12
                basis = basis / evals[order].clamp_min(floor).sqrt()
        else:
            from scipy.sparse.linalg import svds

            A = self.X_host if self.X_host is not None else self.X.detach().double().cpu().numpy()
            if d < min(A.shape) - 1:
                _, _, vt = svds(A.astype(np.float64), k=d, random_state=0)
            else:
                dense = A.toarray() if sp.issparse(A) else A
                _, _, vt = np.linalg.svd(np.asarray(dense, np.float64), full_matrices=False)
                vt = vt[:d]
            basis = torch.from_numpy(np.ascontiguousarray(vt.T))
        self._basis = basis
        return basis

    def init(self, d: int, gen: torch.Generator, dtype, device, how: str = "pca") -> torch.Tensor:
        """Starting map: ``"pca"``, the principal basis times a random (Haar) orthogonal d x d
        matrix, so that penalty and distortion start at their minimum and restarts differ by
        the rotation only; ``"random"``, a random orthonormal ``W`` (in the dual the ``a`` with
        ``X^T a`` its projection on the row space of X)."""
        if how == "pca":
            g = torch.randn(d, d, generator=gen, dtype=torch.float64)
            q, r = torch.linalg.qr(g)
            rotation = q * torch.sign(torch.diagonal(r))[None, :]
            W = self._principal_basis(d) @ rotation
            return W.to(dtype=dtype, device=device).contiguous()
        rows = self.p if self.formulation == "primal" else self.K.shape[0]
        if how == "uniform":
            # the reference implementation's start: every entry uniform(0, 0.1)
            W = torch.rand(rows, d, generator=gen, dtype=torch.float64) * 0.1
            return W.to(dtype=dtype, device=device).contiguous()
        q, _ = torch.linalg.qr(torch.randn(rows, d, generator=gen, dtype=torch.float64))
        if self.formulation == "primal":
            return q.to(dtype=dtype, device=device).contiguous()
        # a = U S^{-1/2} R with K = U S U^T and R orthonormal in the range of K: a^T K a = I
        K = self.K.to(torch.float64).cpu()
        evals, evecs = torch.linalg.eigh(K)
        keep = evals > evals.max() * 1e-10
        U, s = evecs[:, keep], evals[keep]
        R, _ = torch.linalg.qr(U.T @ q)
        alpha = U @ (R / s.sqrt()[:, None])
        return alpha.to(dtype=dtype, device=device).contiguous()


# --------------------------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------------------------


def _orthogonal_map(kind: str, angles: Sequence[float], k: int) -> torch.Tensor:
    """A k x k orthogonal map (k = 2 or 3) from its angles: ``"reflect"`` through the line
    (plane) normal to the unit vector at ``angles``, ``"turn"`` (k = 2: rotation by twice the
    angle; k = 3: the half-turn about that vector) or ``"point"`` (``-I``)."""
    eye = torch.eye(k, dtype=torch.float64)
    if kind == "point":
        return -eye
    if k == 2:
        (t,) = angles
        if kind == "turn":
            c, s = math.cos(2 * t), math.sin(2 * t)
            return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        u = torch.tensor([[math.cos(t)], [math.sin(t)]], dtype=torch.float64)
    else:
        theta, phi = angles
        u = torch.tensor(
            [
                [math.sin(theta) * math.cos(phi)],
                [math.sin(theta) * math.sin(phi)],
                [math.cos(theta)],
            ],
            dtype=torch.float64,
        )
    reflection = eye - 2.0 * u @ u.T
    return reflection if kind == "reflect" else -reflection


def _symmetry_grid(k: int, n_angles: int) -> tuple[list[tuple[str, list[float]]], float]:
    """The candidates of :func:`_symmetry_search` (kind, angles) and their angular spacing: in
    the plane, reflections through ``n_angles`` lines and rotations by multiples of
    ``2 pi / n_angles``; in 3-D, reflections through ``2 n_angles`` planes (Fibonacci normals on
    a half sphere), half-turns about the same normals and the point reflection."""
    if k == 2:
        grid = [("reflect", [math.pi * j / n_angles]) for j in range(n_angles)]
        grid += [("turn", [math.pi * j / n_angles]) for j in range(1, n_angles)]
        return grid, math.pi / n_angles
    count = 2 * n_angles
    grid = []
    for j in range(count):
        height = 1.0 - (j + 0.5) / count
        angles = [math.acos(height), (j * math.pi * (3.0 - math.sqrt(5.0))) % (2 * math.pi)]
        grid += [("reflect", angles), ("turn", angles)]
    grid.append(("point", []))
    return grid, math.sqrt(2.0 * math.pi / count)


def _sym_power(u: torch.Tensor, power: float) -> torch.Tensor:
    """``C^power`` of the covariance ``C`` of the (centred) rows of ``u``."""
    vals, vecs = torch.linalg.eigh(u.T @ u / len(u))
    return vecs @ torch.diag(vals.clamp_min(1e-12) ** power) @ vecs.T


def _symmetry_search(
    zx: torch.Tensor,
    zy: torch.Tensor,
    *,
    factor: float = 0.25,
    fine_factor: float = 0.1,
    max_dims: int = 3,
    n_angles: int = 36,
    shortlist: int = 6,
    margin: float = 0.5,
    gen: torch.Generator | None = None,
    max_cells: int = 1000,
    coarse_cells: int = 500,
) -> torch.Tensor | None:
    """A linear map ``T`` (d x d) of the second embedding that makes it match the first far
    better under a narrow kernel, or ``None``.

    MMD matching is blind to symmetries of the data: when the cells' distribution is (nearly)
    mirror-symmetric, as the branch simulation's T is, gradient descent ends in the true
    alignment or in a mirror image (or a rotated copy) of it with about the same loss. They
    differ in the fine structure: in the true alignment each cell lies on its partner, which a
    kernel much narrower than the trained one sees.

    Both embeddings are reduced to the leading principal subspace of the pooled cells (2 or 3
    dimensions, each with at least 5% of the top variance) and whitened there, each with its
    own covariance, so that a difference of scale between the modalities (their maps are
    nearly orthonormal, their features are not alike) does not blur the comparison. The
    orthogonal maps ``Q`` of :func:`_symmetry_grid` are scored by the MMD² between the whitened
    first embedding and the whitened second one times ``Q``, with a bandwidth ``factor`` times
    their median distance (only the cross term depends on ``Q``); the ``shortlist`` best are
    refined by a pattern search on their angles under a ``fine_factor`` bandwidth. The best is
    returned as the map ``C^-1/2 Q C^1/2`` of the second embedding in that subspace (``C``:
    its covariance there; other directions unchanged) when its fine MMD² is below ``margin``
    times the current one: on data without such a symmetry no candidate comes close and
    nothing changes. At most ``max_cells`` cells per modality are scored (``coarse_cells`` in
    the ranking).
    """
    d = zy.shape[1]
    if d < 2:
        return None
    subsets = []
    for z in (zx, zy):
        z = z.detach()
        if len(z) > max_cells:
            z = z[torch.randperm(len(z), generator=gen)[:max_cells].to(z.device)]
        z = z.double().cpu()
        subsets.append(z - z.mean(0))
    zx, zy = subsets
    pooled = torch.cat([zx, zy])
    vals, vecs = torch.linalg.eigh(pooled.T @ pooled)
    k = min(max_dims, int((vals >= 0.05 * vals[-1]).sum()))
    if k < 2:
        return None
    basis = vecs[:, d - k :]
    ux, uy = zx @ basis, zy @ basis
    whiten_y = _sym_power(uy, -0.5)
    wx = (ux @ _sym_power(ux, -0.5)).float()
    wy = (uy @ whiten_y).float()
    both = torch.cat([wx, wy])
    median = median_bandwidth(both[torch.randperm(len(both), generator=gen)[:512]])

    def scorer(wx: torch.Tensor, wy: torch.Tensor, bandwidth: float):
        n, m = len(wx), len(wy)
        fixed = _kernel_total(wx, wx, bandwidth) / n**2 + _kernel_total(wy, wy, bandwidth) / m**2

        def mmd_after(q: torch.Tensor) -> float:
            # an orthogonal q leaves the second embedding's own kernel sum unchanged
            return fixed - 2.0 * _kernel_total(wx, wy @ q.float(), bandwidth) / (n * m)

        return mmd_after

    # the coarse ranking on at most `coarse_cells` cells, the refinement on all (<= max_cells)
    sub_x = torch.randperm(len(wx), generator=gen)[:coarse_cells]
    sub_y = torch.randperm(len(wy), generator=gen)[:coarse_cells]
    coarse = scorer(wx[sub_x], wy[sub_y], factor * median)
    fine = scorer(wx, wy, fine_factor * median)
    grid, spacing = _symmetry_grid(k, n_angles)
    ranked = sorted(grid, key=lambda c: coarse(_orthogonal_map(c[0], c[1], k)))[:shortlist]
    best = margin * fine(torch.eye(k, dtype=torch.float64))
    best_q = None
    for kind, angles in ranked:
        angles = list(angles)
        value = fine(_orthogonal_map(kind, angles, k))
        step = spacing / 2
        for _ in range(5 if angles else 0):
            # pattern search: move one angle by +-step while that helps, then halve the step
            for i in range(len(angles)):
                for sign in (1.0, -1.0):
                    trial = list(angles)
                    trial[i] += sign * step
                    trial_value = fine(_orthogonal_map(kind, trial, k))
                    if trial_value < value:
                        angles, value = trial, trial_value
            step /= 2
        if value < best:
            best, best_q = value, _orthogonal_map(kind, angles, k)
    if best_q is None:
        return None
    inner = whiten_y @ best_q @ _sym_power(uy, 0.5)
    return torch.eye(d, dtype=torch.float64) - basis @ basis.T + basis @ inner @ basis.T


@dataclass
class MMDMAResult:
    """Embeddings, maps and training history of the best restart."""

    embeddings: list[np.ndarray]
    """``Z_x`` (n x d) and ``Z_y`` (m x d)."""
    weights: list[np.ndarray]
    """``W_x`` (p x d) and ``W_y`` (q x d) in the primal; ``a_x`` (n x d), ``a_y`` in the dual."""
    loss: float
    """Final objective of the best restart (mean over the last epoch's steps)."""
    history: dict[str, list] = field(default_factory=dict)
    """Per epoch: ``loss``, ``mmd``, ``penalty``, ``distortion``, ``bandwidth``, ``time``."""
    restart_losses: list[float] = field(default_factory=list)
    restart_scores: list[float] = field(default_factory=list)
    """What the restarts were ranked by (``select``): final loss, or narrow-kernel MMD²."""
    restart_symmetry: list[bool] = field(default_factory=list)
    """Whether the half-way symmetry search changed the second map, per restart."""
    best_restart: int = 0
    bandwidth: float = 1.0
    """Bandwidth used at the last epoch of the best restart."""
    backend: str = "torch"
    distortion_route: list[str] = field(default_factory=list)


def resolve_backend(backend: str, device: str) -> str:
    """``"auto"``: KeOps on CUDA when pykeops is installed, the torch blocks otherwise."""
    if backend == "auto":
        return "keops" if device.startswith("cuda") and keops_available() else "torch"
    if backend == "keops" and not keops_available():
        raise ValueError(
            "backend='keops' needs pykeops: pip install 'scintegrate[keops]' (or pykeops), or "
            "use backend='torch'."
        )
    return backend


def fit_mmdma(
    X,
    Y,
    n_dims: int = 10,
    *,
    formulation: str = "primal",
    backend: str = "torch",
    lambda_penalty: float = 0.1,
    lambda_distortion: float = 0.1,
    bandwidth: float | str = "median",
    bandwidth_factor: float = 1.0,
    bandwidth_final_factor: float | None = None,
    unbiased: bool = False,
    max_epochs: int = 500,
    lr: float = 0.2,
    lr_schedule: str = "constant",
    batch_size: int | None = None,
    n_restarts: int = 1,
    select: str = "loss",
    select_factor: float = 0.25,
    symmetry_search: bool = True,
    init: str | Sequence = "random",
    median_sample: int = 256,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    rng: np.random.Generator | None = None,
    progress: bool = False,
    block_size: int | None = None,
) -> MMDMAResult:
    """Learn the two maps of MMD-MA by Adam; see the module docstring for the objective.

    ``bandwidth="median"`` sets the kernel bandwidth, at every step, to the median distance
    between the embeddings of a fixed random sample of ``median_sample`` cells of each modality
    (not differentiated through); a number fixes it. ``batch_size`` (``None``: full batch)
    computes the MMD term of each step on random mini-batches of that many cells per modality;
    an epoch is then ``ceil(max(n, m) / batch_size)`` steps. Each of the ``n_restarts`` runs
    starts from its own random orthonormal maps; the one with the lowest final loss is kept.
    ``init`` may instead be a pair of arrays, the starting maps themselves (primal: ``p x d``
    and ``q x d``; dual: ``n x d`` and ``m x d``), for a warm start; every restart then starts
    from them.
    """
    kwargs = dict(
        backend=backend, lambda_penalty=lambda_penalty, lambda_distortion=lambda_distortion,
        bandwidth=bandwidth, bandwidth_factor=bandwidth_factor,
        bandwidth_final_factor=bandwidth_final_factor, unbiased=unbiased,
        max_epochs=max_epochs, lr=lr, lr_schedule=lr_schedule, batch_size=batch_size,
        n_restarts=n_restarts, select=select, select_factor=select_factor,
        symmetry_search=symmetry_search, init=init,
        median_sample=median_sample, progress=progress,
        block_size=block_size,
    )  # fmt: skip
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    sizes = [M.shape[0] for M in (X, Y)]
    threads = torch.get_num_threads()
    if device == "cpu" and sizes[0] * sizes[1] <= _SMALL_PROBLEM:
        # tiny kernels: thread start-up and barriers cost more than they save (10x on a busy
        # 2-core machine), so small problems run single-threaded
        torch.set_num_threads(1)
    try:
        return _fit(
            X, Y, n_dims, rng=rng, device=device, dtype=dtype, formulation=formulation, **kwargs
        )
    finally:
        torch.set_num_threads(threads)


def _fit(
    X,
    Y,
    n_dims,
    *,
    rng,
    device,
    dtype,
    formulation,
    backend,
    lambda_penalty,
    lambda_distortion,
    bandwidth,
    bandwidth_factor,
    bandwidth_final_factor,
    unbiased,
    max_epochs,
    lr,
    lr_schedule,
    batch_size,
    n_restarts,
    select,
    select_factor,
    symmetry_search,
    init,
    median_sample,
    progress,
    block_size,
) -> MMDMAResult:
    mods = [_Modality(M, formulation, dtype, device) for M in (X, Y)]
    sizes = [mod.n for mod in mods]
    full = batch_size is None or batch_size >= max(sizes)
    steps = 1 if full else math.ceil(max(sizes) / batch_size)
    best = None
    losses, scores, symmetry = [], [], []
    cosine = lr_schedule == "cosine"
    bar = progress_bar(
        total=n_restarts * max_epochs, desc="MMD-MA", unit="epoch", disable=not progress
    )
    for restart in range(n_restarts):
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        if isinstance(init, str):
            params = [mod.init(n_dims, gen, dtype, device, init) for mod in mods]
        else:
            params = [
                torch.as_tensor(np.asarray(w), dtype=dtype, device=device).clone() for w in init
            ]
        params = [w.contiguous().requires_grad_(True) for w in params]
        sample = [
            torch.randperm(n, generator=gen)[: min(n, median_sample)].to(device) for n in sizes
        ]
        # Adam moves every entry by about lr per step: scale lr by the size of the entries (the
        # RMS of the random start, 1/sqrt(p) for an orthonormal W) so that lr is a relative step
        # whatever the number of features
        opt = Adam(params, [lr * float(w.detach().pow(2).mean().sqrt()) for w in params])
        records = []
        symmetry_applied = False
        median_state = {}
        times = []
        start = time.perf_counter()
        for _epoch in range(max_epochs):
            if symmetry_search and _epoch == max_epochs // 2 and _epoch:
                # half-way: undo a mirror image if a narrow kernel decisively prefers it; the
                # second half of the epochs then converges whichever alignment was chosen
                with torch.no_grad():
                    zs = [m.embed(w) for m, w in zip(mods, params, strict=True)]
                    t = _symmetry_search(zs[0], zs[1], factor=select_factor, gen=gen)
                    if t is not None:
                        t = t.to(dtype=params[1].dtype, device=params[1].device)
                        params[1].copy_(params[1] @ t)
                        opt.m[1].copy_(opt.m[1] @ t)
                        symmetry_applied = True
            # cosine annealing of the learning rate over the epochs (to 0), or constant
            schedule = 0.5 * (1 + math.cos(math.pi * _epoch / max_epochs)) if cosine else 1.0
            acc = []
            for _step in range(steps):
                if full:
                    idx = [None, None]
                else:
                    idx = [
                        torch.randint(n, (min(batch_size, n),), generator=gen).to(device)
                        for n in sizes
                    ]
                need_full_z = formulation == "dual" or any(m.route == "cells" for m in mods)
                Zs_full = (
                    [m.embed(w) for m, w in zip(mods, params, strict=True)]
                    if (full or need_full_z)
                    else [None, None]
                )
                Zs = (
                    Zs_full
                    if full
                    else [m.embed(w, i) for m, w, i in zip(mods, params, idx, strict=True)]
                )
                if isinstance(bandwidth, str):
                    with torch.no_grad():
                        pooled = torch.cat(
                            [
                                (m.embed(w, s) if not full else z[s])
                                for m, w, s, z in zip(mods, params, sample, Zs, strict=True)
                            ]
                        )
                        factor = bandwidth_factor
                        if bandwidth_final_factor is not None:
                            t = _epoch / max(max_epochs - 1, 1)
                            factor = (
                                bandwidth_factor * (bandwidth_final_factor / bandwidth_factor) ** t
                            )
                        bw = factor * median_bandwidth(pooled, median_state)
                else:
                    bw = float(bandwidth)
                mmd = mmd2(
                    Zs[0], Zs[1], bw, unbiased=unbiased, backend=backend, block_size=block_size
                )
                pen = sum(m.penalty(w, z) for m, w, z in zip(mods, params, Zs_full, strict=True))
                dis = sum(m.distortion(w, z) for m, w, z in zip(mods, params, Zs_full, strict=True))
                loss = mmd + lambda_penalty * pen + lambda_distortion * dis
                grads = torch.autograd.grad(loss, params)
                opt.step(grads, schedule)
                acc.append(
                    torch.stack(
                        [
                            loss.detach(),
                            mmd.detach(),
                            pen.detach(),
                            dis.detach(),
                            torch.as_tensor(bw, dtype=loss.dtype, device=loss.device),
                        ]
                    )
                )
            records.append(torch.stack(acc).mean(0))
            times.append(time.perf_counter() - start)
            bar.update(1)
        rec = torch.stack(records).cpu().double().numpy()
        if not np.all(np.isfinite(rec[:, 0])):
            raise FloatingPointError(
                "MMD-MA diverged (non-finite loss); lower lr or scale the input features."
            )
        final = float(rec[-1, 0])
        losses.append(final)
        narrow = select_factor * float(rec[-1, 4])
        if select == "loss":
            score = final
        else:
            # the MMD of the final embeddings under a kernel `select_factor` times narrower than
            # the one trained with: it sees the fine structure that tells an alignment from its
            # mirror images, which the training kernel (and so the loss) barely does
            with torch.no_grad():
                zs = [m.embed(w) for m, w in zip(mods, params, strict=True)]
                score = float(mmd2(zs[0], zs[1], narrow, backend=backend))
        scores.append(score)
        symmetry.append(symmetry_applied)
        if best is None or score < best[0]:
            best = (score, restart, [w.detach().clone() for w in params], rec, times)
    bar.close()
    _, restart, params, rec, times = best
    final = losses[restart]
    with torch.no_grad():
        Z = [m.embed(w).cpu().double().numpy() for m, w in zip(mods, params, strict=True)]
    history = {
        "epoch": list(range(1, len(rec) + 1)),
        "loss": rec[:, 0].tolist(),
        "mmd": rec[:, 1].tolist(),
        "penalty": rec[:, 2].tolist(),
        "distortion": rec[:, 3].tolist(),
        "bandwidth": rec[:, 4].tolist(),
        "time": times,
    }
    return MMDMAResult(
        embeddings=Z,
        weights=[w.cpu().double().numpy() for w in params],
        loss=final,
        history=history,
        restart_losses=losses,
        restart_scores=scores,
        restart_symmetry=symmetry,
        best_restart=restart,
        bandwidth=float(rec[-1, 4]),
        backend=backend,
        distortion_route=[m.route for m in mods],
    )


def objective(
    X,
    Y,
    weights: Sequence,
    *,
    formulation: str = "primal",
    lambda_penalty: float = 1.0,
    lambda_distortion: float = 1.0,
    bandwidth: float = 1.0,
    unbiased: bool = False,
    backend: str = "torch",
    dtype=torch.float64,
    device: str = "cpu",
) -> dict[str, float]:
    """The objective and its terms at given maps (full batch, fixed bandwidth)."""
    mods = [_Modality(M, formulation, dtype, device) for M in (X, Y)]
    ws = [torch.as_tensor(np.asarray(w), dtype=dtype, device=device) for w in weights]
    with torch.no_grad():
        Z = [m.embed(w) for m, w in zip(mods, ws, strict=True)]
        mmd = mmd2(Z[0], Z[1], bandwidth, unbiased=unbiased, backend=backend)
        pen = sum(m.penalty(w, z) for m, w, z in zip(mods, ws, Z, strict=True))
        dis = sum(m.distortion(w, z) for m, w, z in zip(mods, ws, Z, strict=True))
    loss = mmd + lambda_penalty * pen + lambda_distortion * dis
    return {"loss": float(loss), "mmd": float(mmd), "penalty": float(pen), "distortion": float(dis)}
