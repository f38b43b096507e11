"""``pp.liger_unshared``: mark the unshared features of a mosaic AnnData and select the variable
ones per dataset, as rliger's ``selectGenes(useUnsharedDatasets=...)`` does for UINMF."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._core._sparse import as_csr
from .._core.liger import library_sizes, liger_stats, liger_variable_genes
from .._docs import doc_params
from .._logging import logger
from .._utils._slots import record_params, write_slots
from .._utils._unshared import SHARED, owner_categorical, unshared_owners
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_key,
    check_number,
    check_positive_int,
    get_matrix,
    matrix_label,
    obs_batch_codes,
)


@doc_params
def liger_unshared(
    adata: AnnData,
    *,
    batch_key: str,
    features: str | Mapping[str, Sequence[str] | np.ndarray],
    layer: str | None = None,
    var_thresh: float = 0.1,
    alpha_thresh: float = 0.99,
    n_features: int | None = None,
    key_added: str = "liger_unshared",
    copy: bool = False,
) -> AnnData | None:
    """Mark the features that only one dataset has, and select its variable ones (for UINMF).

    A *mosaic* AnnData holds the cells of several datasets (``obs[batch_key]``) and the union of
    their features, as ``anndata.concat({"rna": rna, "atac": atac}, join="outer",
    label="dataset")`` builds it (sparse input: the features a dataset lacks are stored zeros;
    dense: pass ``fill_value=0``). Features measured in every dataset are *shared*; the others
    are *unshared*, each owned by the one dataset that has it (ATAC peaks next to gene activity,
    genes missing from a targeted spatial panel, non-orthologous genes). This function records
    the owner of every unshared feature and, within each owner, selects the variable ones by
    LIGER's test, as rliger's ``selectGenes(useUnsharedDatasets=..., unsharedThresh=...)``:
    with ``μ``, ``σ²`` the mean and variance (ddof 1) over the owner's cells of the counts
    divided by each cell's total over all features, ``c`` the mean of 1/total, ``n`` cells and
    ``G`` the number of features of the owner (shared and its unshared ones), a feature is
    variable when ``σ²/c > μ + Φ⁻¹(1 - (α/G)/2)·sqrt(μc/n)`` and
    ``log10 σ² > log10(μc) + var_thresh``.

    The recipe for :func:`scintegrate.tl.uinmf` is: build the mosaic AnnData; run
    :func:`liger_preprocess` with the same ``batch_key`` (it normalises every cell by its total,
    scales every feature, unshared ones included, by its root-mean-square within each dataset,
    which is LIGER's ``scaleNotCenter`` of the unshared block, and selects the shared genes);
    run this function on the counts; call ``tl.uinmf``. Features a dataset does not have should
    be zero (or absent) in its cells; values there are ignored by ``tl.uinmf``, and this
    function warns about them.

    Parameters
    ----------
    {adata}
    batch_key
        ``obs`` column with the dataset of every cell.
    features
        Which features are unshared, and whose: a mapping ``{dataset: feature names}`` (or a
        boolean mask over ``var`` per dataset), or the name of a ``var`` column holding each
        feature's owner (missing for shared features). An unshared feature belongs to one
        dataset.
    {layer}
        It must hold raw counts (non-negative), as for :func:`liger_preprocess`.
    var_thresh
        Variance threshold (rliger ``unsharedThresh``): higher selects fewer features. Ignored
        when ``n_features`` is given.
    alpha_thresh
        Significance level α of the Poisson test (rliger ``alpha``); in (0, 1].
    n_features
        Instead of thresholding, keep this many unshared features per owner, ranked as
        ``liger_preprocess(n_genes=...)`` ranks genes.
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True``, and writes (replacing the slots of
    an earlier call with the same ``key_added``):

    ``adata.var[key_added]``
        Categorical: the dataset that owns each unshared feature, NaN for shared features.
        ``tl.uinmf(unshared=key_added)`` reads it.
    ``adata.var[f"{key_added}_highly_variable"]``
        Boolean: the selected unshared features (``tl.uinmf(mask_unshared=...)``).
    ``adata.uns[key_added]``
        ``params``, ``batches`` (dataset names, the categories of the owner column),
        ``n_unshared`` and ``n_selected`` (unshared features per dataset, all and selected).

    Examples
    --------
    >>> import anndata as ad
    >>> import scintegrate as si
    >>> adata = ad.concat({"rna": rna, "atac": atac}, join="outer", label="dataset")
    >>> si.pp.liger_preprocess(adata, batch_key="dataset")
    >>> si.pp.liger_unshared(adata, batch_key="dataset", features={"atac": peak_names})
    >>> si.tl.uinmf(adata, 20, batch_key="dataset")
    """
    check_adata(adata)
    key_added = check_key(key_added)
    check_number(var_thresh, param="var_thresh")
    check_number(alpha_thresh, param="alpha_thresh", minimum=0, maximum=1, exclusive_minimum=True)
    if n_features is not None:
        n_features = check_positive_int(n_features, param="n_features")
    if not isinstance(batch_key, str):
        raise ValueError(f"batch_key must be the name of an adata.obs column, got {batch_key!r}.")
    codes, batches = obs_batch_codes(adata, batch_key)
    owners = unshared_owners(adata, features, batches, param="features", batch_key=batch_key)
    X = get_matrix(adata, layer)
    where = matrix_label(layer)
    check_finite_nonnegative(
        X,
        what=where,
        fix="The unshared features are selected on raw counts: pass the counts layer, not "
        "scaled, log-transformed or centred values.",
    )
    if not (owners != SHARED).any():
        raise ValueError(
            "features marks no feature as unshared; name at least one dataset's own features, "
            "or use tl.inmf when every feature is shared."
        )
    if sp.issparse(X):
        X = as_csr(X)
    totals = library_sizes(X)
    n_batches = len(batches)
    n_unshared = np.bincount(owners[owners != SHARED], minlength=n_batches).astype(np.int64)
    selected = np.zeros(adata.n_vars, dtype=bool)
    for b in np.flatnonzero(n_unshared):
        rows = np.flatnonzero(codes == b)
        name = batches[b]
        if len(rows) < 2:
            raise ValueError(
                f"Dataset {name!r} has {len(rows)} cell; feature variances need at least 2."
            )
        if (totals[rows] <= 0).any():
            raise ValueError(
                f"{int((totals[rows] <= 0).sum())} cells of dataset {name!r} have zero total "
                f"counts in {where}; they cannot be library-size normalised. Remove them first, "
                "e.g. sc.pp.filter_cells(adata, min_counts=1)."
            )
        own = np.flatnonzero(owners == b)
        block = X[rows][:, own]
        stats = liger_stats(block, np.zeros(len(rows), dtype=np.int64), 1, totals[rows])
        n_features_of_dataset = int(np.sum((owners == SHARED) | (owners == b)))
        mask = liger_variable_genes(
            stats.mean[0],
            stats.var[0],
            stats.inv_umi_mean[0],
            len(rows),
            var_thresh=var_thresh,
            alpha_thresh=alpha_thresh,
            n_genes=n_features,
            n_tests=n_features_of_dataset,
        )
        selected[own[mask]] = True
        if not mask.any():
            logger.warning(
                "No unshared feature of dataset %r passes LIGER's variance test; lower "
                "var_thresh or set n_features.",
                name,
            )
        others = np.flatnonzero(codes != b)
        if len(others):
            elsewhere = X[others][:, own]
            n_elsewhere = elsewhere.nnz if sp.issparse(elsewhere) else np.count_nonzero(elsewhere)
            if n_elsewhere:
                logger.warning(
                    "%d values of the features owned by %r are non-zero in cells of other "
                    "datasets; tl.uinmf ignores them (a feature several datasets measure is "
                    "shared).",
                    n_elsewhere,
                    name,
                )
    n_selected = np.bincount(owners[selected], minlength=n_batches).astype(np.int64)
    logger.info(
        "Unshared features: %s",
        ", ".join(
            f"{batches[b]!r} {n_selected[b]} of {n_unshared[b]} selected"
            for b in np.flatnonzero(n_unshared)
        ),
    )
    adata = adata.copy() if copy else adata
    write_slots(
        adata,
        key_added,
        var={
            key_added: owner_categorical(owners, batches),
            f"{key_added}_highly_variable": selected,
        },
        uns={
            "params": record_params(
                {
                    "batch_key": batch_key,
                    "features": features if isinstance(features, str) else None,
                    "layer": layer,
                    "var_thresh": var_thresh,
                    "alpha_thresh": alpha_thresh,
                    "n_features": n_features,
                }
            ),
            "batches": np.asarray(batches, dtype=object),
            "n_unshared": n_unshared,
            "n_selected": n_selected,
        },
    )
    return adata if copy else None
