"""Gaussian kernel sums and the squared MMD, without an n x m matrix; the kernel bandwidth.

``MMD^2(Z_x, Z_y)``, the squared maximum mean discrepancy with the Gaussian RBF kernel
``k(z, z') = exp(-|z - z'|^2 / (2 s^2))`` (``s``: the bandwidth), biased (V-statistic) or
unbiased (U-statistic), is made of three kernel sums. They are computed blockwise in torch
(:class:`_MMD2`, :class:`_KernelSum`: value and gradient in one pass, memory ``block_size^2``)
or symbolically with KeOps ``LazyTensor`` (memory linear in n).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# elements of one kernel tile of the torch backend: 64k floats = 256 kB in float32 (L2 cache)
_TILE_ELEMENTS = 1 << 16
_LOG2E = 1.4426950408889634


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


# flat indices of the pairs i < j of an n x n matrix, for the last (n, device) seen
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


def at_most(z: torch.Tensor, count: int, gen: torch.Generator | None) -> torch.Tensor:
    """At most ``count`` rows of ``z``, drawn without replacement with ``gen`` (all rows, in
    order, when there are no more)."""
    if len(z) <= count:
        return z
    return z[torch.randperm(len(z), generator=gen)[:count].to(z.device)]


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
