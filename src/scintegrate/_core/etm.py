"""Single-cell embedded topic model (scETM; Zhao et al., Nat Commun 2021): arrays in, arrays out.

Model (N cells, G genes, K topics, L gene-embedding dimensions, S batches):

* encoder q(delta | x): the unit-sum normalised counts ``x / l`` go through an MLP (each hidden
  layer Linear -> ReLU -> BatchNorm -> Dropout, as in scETM) to the mean ``mu`` and log-variance
  of a K-dimensional Gaussian; ``theta = softmax(delta)`` is logistic-normal;
* decoder: ``beta = alpha @ rho`` (K x G, alpha K x L topic embeddings, rho L x G gene
  embeddings, optionally with fixed rows such as pathway memberships stacked above the trainable
  ones) and ``log p(g | n) = log_softmax_g(theta_n @ beta + lambda_{s(n)})`` with a batch-specific
  gene intercept ``lambda`` (only when there are batches);
* loss: the categorical (multinomial without its constant) negative log-likelihood of the raw
  counts plus ``w_KL`` times the KL divergence of q from N(0, I), averaged over the cells of a
  mini-batch. ``w_KL`` rises linearly from 0 to ``kl_weight`` over the first ``kl_warmup``
  fraction of the epochs.

Counts are kept in CSR form on the device and mini-batches are gathered from it. Neither the
whole matrix nor a mini-batch is ever densified: the first encoder layer is a sparse-dense
product (``embedding_bag`` over the non-zeros) and the likelihood needs the logits only at the
non-zeros, plus the per-cell log-sum-exp normaliser.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._adam import Adam
from ._numba import njit
from ._progress import progress_bar
from ._sparse import as_csr, csr_tensor, numpy_dtype

LOGVAR_CLAMP = 10.0  # scETM clamps log sigma to [-10, 10]; we clamp the log-variance the same


def torch_generator(rng: np.random.Generator, device: str) -> torch.Generator:
    """A torch Generator on ``device`` seeded from the numpy Generator ``rng``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return generator


class Noise:
    """The training noise (dropout masks, reparameterisation draws), seeded.

    On CPU the draws come from numpy's PCG64, 3x faster than torch's CPU generator (2 ms per
    2000 x 128 dropout mask); elsewhere from a torch Generator on the device. A torch
    Generator can be given directly.
    """

    def __init__(self, source: np.random.Generator | torch.Generator, device: str = "cpu"):
        if isinstance(source, torch.Generator):
            self._torch, self._numpy = source, None
        elif torch.device(device).type == "cpu":
            self._torch, self._numpy = None, np.random.default_rng(source.integers(0, 2**63 - 1))
        else:
            self._torch, self._numpy = torch_generator(source, device), None

    def uniform(self, like: torch.Tensor) -> torch.Tensor:
        if self._numpy is None:
            return torch.rand(
                like.shape, generator=self._torch, device=like.device, dtype=like.dtype
            )
        return torch.from_numpy(self._numpy.random(like.shape, dtype=numpy_dtype(like.dtype)))

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        if self._numpy is None:
            return torch.randn(
                like.shape, generator=self._torch, device=like.device, dtype=like.dtype
            )
        return torch.from_numpy(
            self._numpy.standard_normal(like.shape, dtype=numpy_dtype(like.dtype))
        )


def _as_noise(generator: Noise | torch.Generator | None) -> Noise | None:
    return generator if generator is None or isinstance(generator, Noise) else Noise(generator)


class CSRData:
    """A cells x genes count matrix (scipy CSR, float32 values) that yields mini-batches.

    A mini-batch is gathered by one compiled pass (:func:`_gather_block`) and moved to the
    device as a few small index/value tensors; nothing is densified.
    """

    def __init__(self, X, batch_codes: np.ndarray | None, device: str, dtype: torch.dtype):
        X = as_csr(X, dtype=np.float64)  # float64 CSR input is shared, never modified
        if not X.has_canonical_format:
            X = as_csr(X, canonical=True)  # a private copy, duplicates summed
        self.X = X
        self.n_obs, self.n_vars = X.shape
        self.device = device
        self.dtype = dtype
        self.library = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        codes = np.zeros(self.n_obs, dtype=np.int64) if batch_codes is None else batch_codes
        self.batch = np.asarray(codes, dtype=np.int64)
        self._all: MiniBatch | None = None

    def batch_of(self, cells: np.ndarray | None) -> MiniBatch:
        """The mini-batch of ``cells`` (row numbers; ``None``: all rows, cached).

        Its cells are ordered by batch (``MiniBatch.cells`` holds their row numbers), so that
        each batch is a contiguous block of rows.
        """
        if cells is None:
            if self._all is None:
                self._all = self._make(np.arange(self.n_obs))
            return self._all
        return self._make(np.asarray(cells))

    @property
    def library_mean(self) -> float:
        """Mean count per cell (sets the scale of the gradient)."""
        return float(self.library.mean())

    def batch_at(self, order: np.ndarray, bounds: np.ndarray, start: int, stop: int) -> MiniBatch:
        """The mini-batch of positions ``start:stop`` of an epoch order (see :func:`epoch_plan`)."""
        return self._make(order[start:stop])

    def _make(self, cells: np.ndarray) -> MiniBatch:
        return gather_minibatch(
            self.X, self.library, self.batch, cells, cells, self.device, self.dtype
        )


def gather_minibatch(
    X, library: np.ndarray, batch_codes: np.ndarray, cells: np.ndarray, local: np.ndarray,
    device: str, dtype: torch.dtype,
) -> MiniBatch:  # fmt: skip
    """The mini-batch of ``cells`` (row numbers of the dataset) held at rows ``local`` of the
    canonical float64 CSR matrix ``X``; ``library`` is per row of ``X``, ``batch_codes`` per
    row of the dataset.

    Its cells are ordered by batch (stable), so that each batch is a contiguous block of rows.
    """
    by_batch = np.argsort(batch_codes[cells], kind="stable")
    cells, local = cells[by_batch], local[by_batch]
    cell_library, batch = library[local], batch_codes[cells]
    n = len(cells)
    starts = np.flatnonzero(np.r_[True, batch[1:] != batch[:-1]])
    groups = tuple(
        (int(batch[a]), int(a), int(b)) for a, b in zip(starts, np.r_[starts[1:], n], strict=True)
    )
    n_vars = X.shape[1]
    width = padded_width(n_vars)
    # 32-bit positions when they fit: the transposition's scattered writes then stay in
    # cache (0.95 vs 1.5 ms per 2000-cell step)
    small = n * width < 2**31 and X.nnz < 2**31
    offsets, genes, counts, weights, rows, flat, t_crow, t_col, t_values = _gather_block(
        X.indptr,
        X.indices,
        X.data,
        library,
        local,
        n_vars,
        width,
        np.empty(0, dtype=numpy_dtype(dtype)),
        _INT32_LIKE if small else _INT64_LIKE,
    )

    def tensor(values):
        return torch.from_numpy(values).to(device)

    return MiniBatch(
        cells=cells,
        groups=groups,
        offsets=tensor(offsets[:-1]),
        flat=tensor(flat),
        indices=tensor(genes),
        counts=tensor(counts).to(dtype),
        weights=tensor(weights).to(dtype),
        rows=tensor(rows),
        library=tensor(cell_library).to(dtype),
        batch=tensor(batch),
        t_crow=tensor(t_crow),
        t_col=tensor(t_col),
        t_values=tensor(t_values).to(dtype),
        n_vars=n_vars,
    )


def epoch_plan(
    n: int, chunk_size: int, buffer: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's order of ``n`` cells, shuffled by chunk, and its windows.

    The rows are cut into chunks of ``chunk_size`` consecutive rows; the chunks are permuted and
    taken ``buffer // chunk_size`` at a time (a window, at most ``buffer`` cells); the cells of a
    window are permuted among themselves. Mini-batches are consecutive slices of the order, so
    each mixes cells of a window's many chunks, and a reader holds one or two windows, each read
    as runs of consecutive rows. Returns the order and the window bounds (positions in the order,
    from 0 to ``n``). With one window (``n <= buffer`` rounded to chunks) the order is
    ``rng.permutation(n)``, and with ``chunk_size=1`` a uniformly random permutation.
    """
    n_chunks = -(-n // chunk_size)
    per_window = max(buffer // chunk_size, 1)
    if n_chunks <= per_window:
        return rng.permutation(n), np.array([0, n])
    chunks = rng.permutation(n_chunks)
    parts, bounds = [], [0]
    within = np.arange(chunk_size)
    for a in range(0, n_chunks, per_window):
        rows = (np.sort(chunks[a : a + per_window])[:, None] * chunk_size + within).ravel()
        rows = rows[rows < n]
        parts.append(rows[rng.permutation(len(rows))])
        bounds.append(bounds[-1] + len(rows))
    return np.concatenate(parts), np.asarray(bounds)


class SourceData:
    """A count matrix on disk (any row source) that yields mini-batches, window by window.

    ``source`` hands out CSR row blocks (see :mod:`._row_sources`); ``library`` holds every
    cell's count total, from the validation pass. In training, the rows of the one or two
    windows of :func:`epoch_plan` that a mini-batch needs are held in memory (read as runs of
    consecutive rows) and mini-batches are gathered from them exactly as :class:`CSRData` does,
    so the same order gives the same mini-batches. Memory is set by the window, never by the
    number of cells (beyond a few numbers per cell: library, batch code, epoch order).
    """

    def __init__(
        self, source, library: np.ndarray, batch_codes: np.ndarray | None, device: str,
        dtype: torch.dtype,
    ):  # fmt: skip
        self.source = source
        self.n_obs, self.n_vars = source.n_cells, source.n_genes
        self.device = device
        self.dtype = dtype
        self.library = np.asarray(library, dtype=np.float64)
        codes = np.zeros(self.n_obs, dtype=np.int64) if batch_codes is None else batch_codes
        self.batch = np.asarray(codes, dtype=np.int64)
        self._windows: dict[int, tuple[np.ndarray, object]] = {}  # window -> (rows, CSR)
        self._all: MiniBatch | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_obs, self.n_vars

    @property
    def library_mean(self) -> float:
        return float(self.library.mean())

    def _read(self, rows: np.ndarray):
        """Rows (sorted) as a canonical float64 CSR matrix of its own."""
        block, positions = self.source.take(rows)
        if len(positions) != block.shape[0] or not np.array_equal(
            positions, np.arange(block.shape[0])
        ):
            block = block[positions]
        if block.has_canonical_format and block.dtype == np.float64:
            return block
        return as_csr(block, dtype=np.float64, canonical=True)

    def batch_of(self, cells: np.ndarray | None) -> MiniBatch:
        """The mini-batch of ``cells`` (row numbers; ``None``: all rows, cached), read from disk."""
        if cells is None:
            if self._all is None:
                self._all = self.batch_of(np.arange(self.n_obs))
            return self._all
        cells = np.asarray(cells, dtype=np.int64)
        rows = np.unique(cells)
        block = self._read(rows)
        local = np.searchsorted(rows, cells)
        return gather_minibatch(
            block, self.library[rows], self.batch, cells, local, self.device, self.dtype
        )

    def batch_at(self, order: np.ndarray, bounds: np.ndarray, start: int, stop: int) -> MiniBatch:
        """The mini-batch of positions ``start:stop`` of the epoch order ``order``."""
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, stop, side="left")) - 1
        for window in list(self._windows):
            if not first <= window <= last:
                del self._windows[window]
        for window in range(first, last + 1):
            if window not in self._windows:
                rows = np.sort(order[bounds[window] : bounds[window + 1]])
                self._windows[window] = (rows, self._read(rows))
        cells = order[start:stop]
        if first == last:
            rows, block = self._windows[first]
            local = np.searchsorted(rows, cells)
        else:  # the mini-batch straddles two windows: gather from both, stacked
            import scipy.sparse as sp

            parts = [self._windows[w] for w in range(first, last + 1)]
            rows = np.concatenate([r for r, _ in parts])
            block = sp.vstack([b for _, b in parts], format="csr")
            local = np.empty(len(cells), dtype=np.int64)
            offset = 0
            for w, (window_rows, _) in zip(range(first, last + 1), parts, strict=True):
                inside = slice(max(bounds[w], start) - start, min(bounds[w + 1], stop) - start)
                local[inside] = offset + np.searchsorted(window_rows, cells[inside])
                offset += len(window_rows)
        return gather_minibatch(
            block, self.library[rows], self.batch, cells, local, self.device, self.dtype
        )

    def release(self) -> None:
        """Drop the windows held in memory (after training)."""
        self._windows.clear()


_INT32_LIKE = np.empty(0, np.int32)
_INT64_LIKE = np.empty(0, np.int64)


@njit(cache=True, nogil=True)
def _gather_block(
    indptr, indices, data, library, cells, n_vars, width, like, index_like
):  # pragma: no cover
    """The non-zeros of rows ``cells`` of a CSR matrix, and the transpose of the normalised block.

    Returns per-row offsets (n + 1), and per non-zero: gene, count, count / library, row in the
    block, flat position in a ``width``-column cells x genes buffer; then the transposed block
    (genes x cells CSR of count / library, rows in increasing order). Values come in the dtype
    of ``like`` and positions in that of ``index_like`` (empty arrays), so no conversion
    follows. One compiled pass replaces scipy's row gather and transposition (10 ms per
    2000-cell step).
    """
    n = cells.shape[0]
    offsets = np.empty(n + 1, index_like.dtype)
    nnz = 0
    for i in range(n):
        offsets[i] = nnz
        nnz += indptr[cells[i] + 1] - indptr[cells[i]]
    offsets[n] = nnz
    genes = np.empty(nnz, index_like.dtype)
    counts = np.empty(nnz, like.dtype)
    weights = np.empty(nnz, like.dtype)
    rows = np.empty(nnz, index_like.dtype)
    flat = np.empty(nnz, index_like.dtype)
    t_crow = np.zeros(n_vars + 1, index_like.dtype)
    for i in range(n):
        cell = cells[i]
        pos = offsets[i]
        for j in range(indptr[cell], indptr[cell + 1]):
            gene = indices[j]
            genes[pos] = gene
            counts[pos] = data[j]
            weights[pos] = data[j] / library[cell]
            rows[pos] = i
            flat[pos] = i * width + gene
            t_crow[gene + 1] += 1
            pos += 1
    for gene in range(n_vars):
        t_crow[gene + 1] += t_crow[gene]
    fill = t_crow[:-1].copy()
    t_col = np.empty(nnz, index_like.dtype)
    t_values = np.empty(nnz, like.dtype)
    for pos in range(nnz):
        gene = genes[pos]
        t_col[fill[gene]] = rows[pos]
        t_values[fill[gene]] = weights[pos]
        fill[gene] += 1
    return offsets, genes, counts, weights, rows, flat, t_crow, t_col, t_values


@dataclass
class MiniBatch:
    """Non-zeros of a block of cells and the transpose of its normalised counts.

    Per non-zero: gene, count, normalised count, row, and flat position in the cells x genes
    block; per row: CSR offset, library size, batch. ``t_*`` is ``(x / l)ᵀ`` as CSR (genes x
    cells). Cells are grouped by batch: ``groups`` lists (batch code, first row, end row).
    """

    cells: np.ndarray
    groups: tuple[tuple[int, int, int], ...]
    offsets: torch.Tensor
    flat: torch.Tensor
    indices: torch.Tensor
    counts: torch.Tensor
    weights: torch.Tensor
    rows: torch.Tensor
    library: torch.Tensor
    batch: torch.Tensor
    t_crow: torch.Tensor
    t_col: torch.Tensor
    t_values: torch.Tensor
    n_vars: int

    @property
    def n_cells(self) -> int:
        return self.library.shape[0]

    def transposed(self) -> torch.Tensor:
        """The normalised block transposed, ``(x / l)ᵀ``, as a sparse CSR tensor."""
        return csr_tensor(self.t_crow, self.t_col, self.t_values, (self.n_vars, self.n_cells))


class _SparseInput(torch.autograd.Function):
    """``(x / l) @ W`` for a sparse block: embedding_bag forward and backward (on the transpose)."""

    @staticmethod
    def forward(ctx, weight, batch):
        ctx.batch = batch
        return F.embedding_bag(
            batch.indices, weight, batch.offsets, mode="sum", per_sample_weights=batch.weights
        )

    @staticmethod
    def backward(ctx, grad):
        # (x / l)ᵀ @ grad as bags of the transposed block's rows: the embedding_bag kernel is
        # 3x faster than a sparse CSR x dense product on CPU
        batch = ctx.batch
        return F.embedding_bag(
            batch.t_col,
            grad.contiguous(),
            batch.t_crow[:-1],
            mode="sum",
            per_sample_weights=batch.t_values,
        ), None


def padded_width(n_vars: int) -> int:
    """Row width of the logits buffer: BLAS writes rows of a multiple of 16 floats 3x faster."""
    return -(-n_vars // 16) * 16


def _logits_into(out, theta, beta_padded, bias, batch) -> torch.Tensor:
    """``theta @ beta + lambda_b`` written into ``out`` (cells x padded genes); the logits view."""
    torch.mm(theta, beta_padded, out=out)
    logits = out[:, : batch.n_vars]
    if bias is not None:
        for code, start, end in batch.groups:
            logits[start:end] += bias[code]
    return logits


def _shifted_exp_(logits, top) -> torch.Tensor:
    """``exp(logits - top)`` in place, as ``exp2((logits - top) log2(e))``: 3x faster on CPU."""
    # probabilities below e^-60 are kept at that floor: it avoids denormal floats, which slow
    # CPU arithmetic tenfold, and changes the normaliser by less than G * 1e-26
    return logits.sub_(top).clamp_(min=-60.0).mul_(math.log2(math.e)).exp2_()


class _MultinomialNLL(torch.autograd.Function):
    """Per-cell ``-sum_g x_g log softmax(theta @ beta + lambda_b)_g`` from the non-zero counts.

    ``-sum_g x_g log p_g = l * logsumexp_g(logit_g) - sum_{g: x_g > 0} x_g logit_g``. The
    forward pass keeps one cells x genes buffer (taken from ``pool``), ``exp(logit - max)``,
    which the backward pass turns in place into the gradient of the logits, ``l p - x``, scaled
    by the incoming gradient, and gives back to the pool. A second backward pass through the
    same graph (``retain_graph``) recomputes the buffer. The batch intercept is added by row
    (no one-hot product) and its gradient summed by batch.
    """

    @staticmethod
    def forward(ctx, theta, beta, bias, batch, pool):
        n_vars = beta.shape[1]
        beta = F.pad(beta, (0, padded_width(n_vars) - n_vars))  # zero columns
        full = pool.take((theta.shape[0], beta.shape[1]), theta.dtype, theta.device)
        logits = _logits_into(full, theta, beta, bias, batch)
        # sum_{g: x_g > 0} x_g logit_g per cell: one weighted-bag pass over the non-zeros
        # (5x faster than gathering, scaling and index-adding them)
        fit = F.embedding_bag(
            batch.flat, full.view(-1, 1), batch.offsets, mode="sum", per_sample_weights=batch.counts
        ).squeeze(1)
        top = logits.amax(dim=1, keepdim=True)
        total = _shifted_exp_(logits, top).sum(dim=1)
        nll = batch.library * (top.squeeze(1) + total.log()) - fit
        ctx.batch = batch
        ctx.has_bias = bias is not None
        ctx.save_for_backward(theta, beta, bias, top, total)
        ctx.full = full  # exp(logits - max), zero padded
        ctx.pool = pool
        return nll

    @staticmethod
    def backward(ctx, grad):
        theta, beta, bias, top, total = ctx.saved_tensors
        batch, pool = ctx.batch, ctx.pool
        grad_full, ctx.full = ctx.full, None
        if grad_full is None:  # the buffer was consumed by an earlier backward pass
            grad_full = pool.take((theta.shape[0], beta.shape[1]), theta.dtype, theta.device)
            _shifted_exp_(_logits_into(grad_full, theta, beta, bias, batch), top)
        grad_full.mul_((grad * batch.library / total).unsqueeze(1))
        grad_full.view(-1).index_add_(0, batch.flat, -(grad[batch.rows] * batch.counts))
        grad_logits = grad_full[:, : batch.n_vars]
        grad_theta = grad_full @ beta.T if ctx.needs_input_grad[0] else None
        # thetaᵀ G as (Gᵀ theta)ᵀ: the same sums, but MKL's transposed-left product is 2x
        # slower for this shape on CPU (2.1-2.6 vs 1.3 ms per 2000-cell step)
        grad_beta = (grad_logits.T @ theta).T if ctx.needs_input_grad[1] else None
        grad_bias = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = torch.zeros_like(bias)
            for code, start, end in batch.groups:
                grad_bias[code] = grad_logits[start:end].sum(dim=0)
        pool.give_back(grad_full)
        return grad_theta, grad_beta, grad_bias, None, None


class BufferPool:
    """Reusable cells x genes buffers of the likelihood.

    A fresh 2000 x 2000 float32 tensor per step costs thousands of page faults (the allocator
    returns large blocks to the system); taking the buffer back after the backward pass removes
    them. A buffer still held by a forward pass without its backward is simply not reused.
    """

    def __init__(self):
        self._free: list[torch.Tensor] = []

    def take(self, shape: tuple[int, int], dtype: torch.dtype, device) -> torch.Tensor:
        for i, buffer in enumerate(self._free):
            if buffer.shape == shape and buffer.dtype == dtype and buffer.device == device:
                return self._free.pop(i)
        return torch.empty(shape, dtype=dtype, device=device)

    def give_back(self, buffer: torch.Tensor) -> None:
        self._free = [buffer]  # one kept: the step's shape; older shapes are dropped


class ETMModule(nn.Module):
    """The scETM encoder and decoder.

    Parameters
    ----------
    n_genes, n_topics, n_batches
        G, K and S (S <= 1 switches the batch intercept off).
    emb_dim
        Trainable gene-embedding dimensions L.
    hidden_sizes
        Widths of the encoder's hidden layers (at least one).
    dropout
        Dropout after each hidden layer.
    fixed_emb
        Optional fixed gene embeddings (L_f x G, e.g. pathway membership), stacked above the
        trainable ``rho``; ``alpha`` then has L_f + L columns.
    """

    def __init__(
        self,
        n_genes: int,
        n_topics: int,
        n_batches: int = 1,
        *,
        emb_dim: int,
        hidden_sizes: Sequence[int],
        dropout: float,
        fixed_emb: np.ndarray | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("hidden_sizes needs at least one layer.")
        self.n_genes, self.n_topics, self.n_batches = n_genes, n_topics, n_batches
        factory = {"dtype": dtype}
        sizes = [int(h) for h in hidden_sizes]
        # first layer: sparse input x (genes x hidden) weight, a sparse-dense product
        self.input_weight = nn.Parameter(torch.empty(n_genes, sizes[0], **factory))
        self.input_bias = nn.Parameter(torch.empty(sizes[0], **factory))
        self.hidden = nn.ModuleList(
            nn.Linear(a, b, **factory) for a, b in itertools.pairwise(sizes)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(h, **factory) for h in sizes)
        self.dropout = float(dropout)
        self.mu = nn.Linear(sizes[-1], n_topics, **factory)
        self.logvar = nn.Linear(sizes[-1], n_topics, **factory)
        n_fixed = 0 if fixed_emb is None else fixed_emb.shape[0]
        self.alpha = nn.Parameter(torch.empty(n_topics, n_fixed + emb_dim, **factory))
        self.rho = nn.Parameter(torch.empty(emb_dim, n_genes, **factory))
        if fixed_emb is not None:
            self.register_buffer("rho_fixed", torch.as_tensor(fixed_emb, **factory))
        else:
            self.rho_fixed = None
        self.batch_bias = (
            nn.Parameter(torch.empty(n_batches, n_genes, **factory)) if n_batches > 1 else None
        )
        self._pool = BufferPool()
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Linear layers as in torch (Kaiming uniform); alpha, rho and lambda ~ N(0, 1) (scETM)."""

        def uniform(tensor, bound):
            tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype))
            tensor.mul_(2 * bound).sub_(bound)

        bound = 1 / math.sqrt(self.n_genes)
        uniform(self.input_weight, bound)
        uniform(self.input_bias, bound)
        for layer in [*self.hidden, self.mu, self.logvar]:
            bound = 1 / math.sqrt(layer.in_features)
            uniform(layer.weight, bound)
            uniform(layer.bias, bound)
        for param in (self.alpha, self.rho, self.batch_bias):
            if param is not None:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype))

    @property
    def gene_embedding(self) -> torch.Tensor:
        """All gene embeddings, fixed rows first ((L_f + L) x G)."""
        if self.rho_fixed is None:
            return self.rho
        return torch.cat([self.rho_fixed, self.rho], dim=0)

    def topic_gene(self) -> torch.Tensor:
        """beta = alpha @ rho (K x G), the topics' gene logits."""
        return self.alpha @ self.gene_embedding

    def encode(
        self, batch: MiniBatch, generator: Noise | torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(delta | x) for the cells of ``batch``.

        In training mode dropout masks are drawn from ``generator`` (never the global RNG).
        """
        h = _SparseInput.apply(self.input_weight, batch) + self.input_bias
        for i, norm in enumerate(self.norms):
            if i > 0:
                h = self.hidden[i - 1](h)
            h = norm(F.relu(h))
            if self.training and self.dropout > 0:
                keep = _as_noise(generator).uniform(h)
                h = h * (keep >= self.dropout) / (1 - self.dropout)
        return self.mu(h), self.logvar(h).clamp(-LOGVAR_CLAMP, LOGVAR_CLAMP)

    def loss_terms(
        self, batch: MiniBatch, *, generator: Noise | torch.Generator | None, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell reconstruction NLL and KL (each of length n_cells)."""
        noise = _as_noise(generator)
        mu, logvar = self.encode(batch, noise)
        if sample:
            eps = noise.normal(mu)
            delta = mu + torch.exp(0.5 * logvar) * eps
        else:
            delta = mu
        theta = torch.softmax(delta, dim=1)
        nll = _MultinomialNLL.apply(theta, self.topic_gene(), self.batch_bias, batch, self._pool)
        kl = 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(dim=1)
        return nll, kl

    @torch.no_grad()
    def embed(self, data: CSRData, chunk_size: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
        """theta = softmax(mu) and mu for every cell of ``data`` (eval mode, no sampling)."""
        was_training = self.training
        self.eval()
        mu = np.empty((data.n_obs, self.n_topics))
        try:
            for start in range(0, data.n_obs, chunk_size):
                batch = data.batch_of(np.arange(start, min(start + chunk_size, data.n_obs)))
                mu[batch.cells] = self.encode(batch)[0].cpu().to(torch.float64).numpy()
        finally:
            self.train(was_training)
        theta = np.exp(mu - mu.max(axis=1, keepdims=True))
        return theta / theta.sum(axis=1, keepdims=True), mu


@dataclass
class ETMResult:
    """What :func:`fit_etm` returns."""

    module: ETMModule
    theta: np.ndarray
    mu: np.ndarray
    history: dict[str, list] = field(default_factory=dict)
    n_epochs: int = 0
    n_steps: int = 0
    stopped_early: bool = False


def kl_schedule(epoch: int, n_epochs: int, kl_weight: float, warmup: float) -> float:
    """KL weight of an epoch: linear from 0 to ``kl_weight`` over ``warmup`` of the epochs."""
    warm_epochs = warmup * n_epochs
    if warm_epochs <= 0:
        return kl_weight
    return kl_weight * min(1.0, epoch / warm_epochs)


def fit_etm(
    X,
    n_topics: int,
    *,
    batch_codes: np.ndarray | None = None,
    n_batches: int = 1,
    emb_dim: int,
    hidden_sizes: Sequence[int],
    dropout: float,
    fixed_emb: np.ndarray | None = None,
    max_epochs: int,
    batch_size: int,
    lr: float,
    lr_decay: float,
    kl_weight: float,
    kl_warmup: float,
    grad_clip: float | None,
    chunk_size: int = 1,
    shuffle_buffer: int | None = None,
    early_stopping_patience: int | None = None,
    early_stopping_tol: float = 1e-4,
    callback: Callable[[np.ndarray], dict] | None = None,
    eval_every: int,
    random_state: np.random.Generator,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> ETMResult:
    """Train scETM on a cells x genes count matrix ``X`` (sparse or dense, non-negative, or a
    :class:`SourceData` reading it from disk).

    One epoch is ``max(n_obs // batch_size, 1)`` steps over consecutive slices of a fresh epoch
    order (:func:`epoch_plan` with ``chunk_size`` and ``shuffle_buffer``; ``None``: one window,
    a plain permutation); the leftover cells of an epoch are skipped; a full batch when
    ``n_obs <= batch_size``. The same order, hence the same result, in memory and from disk.
    Adam with ``lr_t = lr * exp(-lr_decay * t)`` per step and gradient-norm clipping. The
    history records per epoch the mean loss, reconstruction NLL and KL per cell over the epoch's
    steps, the KL weight, the learning rate at the end of the epoch and the seconds of training
    since the start; ``callback(theta)`` (e.g. ARI) every ``eval_every`` epochs and after the
    last, excluded from the time. With ``early_stopping_patience``, training stops when the
    epoch loss has not improved by a relative ``early_stopping_tol`` for that many epochs
    (only once the KL warm-up is over, since the loss changes definition during it).

    The hyperparameters have no defaults here: :func:`scintegrate.tl.etm` declares them, once.
    """
    rng = random_state
    noise = Noise(rng, device)
    init_generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    module = ETMModule(
        X.shape[1],
        n_topics,
        n_batches,
        emb_dim=emb_dim,
        hidden_sizes=hidden_sizes,
        dropout=dropout,
        fixed_emb=fixed_emb,
        generator=init_generator,
        dtype=dtype,
    ).to(device)
    data = X if isinstance(X, SourceData) else CSRData(X, batch_codes, device, dtype)
    n_obs = data.n_obs
    buffer = n_obs if shuffle_buffer is None else max(int(shuffle_buffer), batch_size)
    full_batch = n_obs <= batch_size
    steps_per_epoch = 1 if full_batch else n_obs // batch_size
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = Adam(params, lr, fused=True)  # one pass per step; no torch.optim import cost
    # the gradient is taken of the loss per count (a constant rescaling of the per-cell loss),
    # so that gradient clipping and Adam's epsilon see the same scale whatever the depth
    scale = 1.0 / max(data.library_mean, 1.0)
    history: dict[str, list] = {
        k: [] for k in ("epoch", "loss", "reconstruction", "kl", "kl_weight", "lr", "time")
    }
    extra_keys: list[str] = []
    best, since_best, stopped_early = math.inf, 0, False
    elapsed = 0.0
    step = 0
    module.train()
    # mini-batches are gathered in this thread: a prefetch thread was measured 1.4x slower per
    # step on 2 cores (40 vs 28 ms), its Python parts holding the GIL while the training thread
    # waits for it between operations
    with progress_bar(total=max_epochs, desc="scETM", unit="epoch", disable=not progress) as bar:
        for epoch in range(1, max_epochs + 1):
            started = time.perf_counter()
            w_kl = kl_schedule(epoch - 1, max_epochs, kl_weight, kl_warmup)
            if not full_batch:
                order, bounds = epoch_plan(n_obs, chunk_size, buffer, rng)
            sums = torch.zeros(3, dtype=torch.float64, device=device)
            for s in range(steps_per_epoch):
                if full_batch:
                    batch = data.batch_of(None)
                else:
                    batch = data.batch_at(order, bounds, s * batch_size, (s + 1) * batch_size)
                nll, kl = module.loss_terms(batch, generator=noise)
                nll, kl = nll.mean(), kl.mean()
                loss = nll + w_kl * kl
                optimizer.zero_grad()
                (loss * scale).backward()
                if grad_clip:
                    nn.utils.clip_grad_norm_(params, grad_clip)
                optimizer.step(factor=math.exp(-lr_decay * step))
                step += 1
                sums += torch.stack([loss.detach(), nll.detach(), kl.detach()]).to(torch.float64)
            means = (sums / steps_per_epoch).cpu().numpy()
            elapsed += time.perf_counter() - started
            if not np.isfinite(means[0]):
                raise FloatingPointError(
                    f"scETM training diverged (loss {means[0]}) at epoch {epoch}; "
                    "lower lr or use more hidden units / fewer topics."
                )
            history["epoch"].append(epoch)
            history["loss"].append(float(means[0]))
            history["reconstruction"].append(float(means[1]))
            history["kl"].append(float(means[2]))
            history["kl_weight"].append(w_kl)
            history["lr"].append(lr * math.exp(-lr_decay * step))  # that of the next step
            history["time"].append(elapsed)
            last = epoch == max_epochs
            if epoch > kl_warmup * max_epochs and early_stopping_patience is not None:
                if means[0] < best - early_stopping_tol * abs(best):
                    best, since_best = float(means[0]), 0
                else:
                    since_best += 1
                    if since_best >= early_stopping_patience:
                        stopped_early = last = True
            if callback is not None and (epoch % eval_every == 0 or last):
                theta, _ = module.embed(data)
                values = callback(theta)
                for key, value in values.items():
                    if key not in history:
                        history[key] = [math.nan] * (len(history["epoch"]) - 1)
                        extra_keys.append(key)
                    history[key].append(value)
            for key in extra_keys:
                if len(history[key]) < len(history["epoch"]):
                    history[key].append(math.nan)
            bar.update(1)
            bar.set_postfix(loss=f"{means[0]:.4g}")
            if stopped_early:
                break
    if isinstance(data, SourceData):
        data.release()
    theta, mu = module.embed(data)
    return ETMResult(
        module=module,
        theta=theta,
        mu=mu,
        history=history,
        n_epochs=len(history["epoch"]),
        n_steps=step,
        stopped_early=stopped_early,
    )
