"""``tl.inmf`` and ``tl.online_inmf``: integrative NMF (LIGER) of several datasets in one AnnData."""

from __future__ import annotations

from dataclasses import dataclass
from inspect import cleandoc
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._core.inmf import SOLVERS, INMFResult, fit_inmf
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._random import get_rng
from .._utils._slots import history_frame, record_params
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_in,
    check_key,
    check_positive_int,
    get_matrix,
    get_obs_labels,
)

_DEFAULT_LAYER = "liger_scaled"
_DEFAULT_MASK = "liger_highly_variable"


@dataclass
class _Datasets:
    """The per-batch matrices (selected genes only) and how they map back onto ``adata``."""

    matrices: list
    batches: list[str]
    cells: list[np.ndarray]  # row indices of each batch in adata
    genes: np.ndarray  # column indices of the genes used


def _check_lambda(lambda_) -> float:
    if isinstance(lambda_, bool) or not isinstance(lambda_, int | float | np.number):
        raise ValueError(f"lambda_ must be a non-negative number, got {lambda_!r}.")
    if not np.isfinite(lambda_) or lambda_ < 0:
        raise ValueError(f"lambda_ must be a non-negative finite number, got {lambda_!r}.")
    return float(lambda_)


def _gene_mask(adata: AnnData, mask_var) -> np.ndarray:
    if mask_var is None:
        return np.arange(adata.n_vars)
    if isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            if mask_var == _DEFAULT_MASK:
                logger.info(
                    "adata.var has no %r column; using all %d genes.", mask_var, adata.n_vars
                )
                return np.arange(adata.n_vars)
            raise ValueError(
                f"mask_var={mask_var!r} is not a column of adata.var. Pass the name of a boolean "
                "column (pp.liger_preprocess writes 'liger_highly_variable'), a boolean array, or "
                "None to use every gene."
            )
        mask = adata.var[mask_var].to_numpy()
        where = f"adata.var[{mask_var!r}]"
    else:
        mask = np.asarray(mask_var)
        where = "mask_var"
    if mask.dtype != bool or mask.shape != (adata.n_vars,):
        raise ValueError(
            f"{where} must be a boolean mask with one entry per gene ({adata.n_vars}), got dtype "
            f"{mask.dtype} and shape {mask.shape}."
        )
    if not mask.any():
        raise ValueError(f"{where} selects no genes.")
    return np.flatnonzero(mask)


def _check_shared_genes(X, codes: np.ndarray, uniques, gene_names) -> None:
    """Refuse genes that a dataset does not have at all (all NaN, as an outer join leaves them).

    Genes measured in every dataset are what makes the factorisation joint; a gene present in
    only some datasets would be read as "not expressed" in the others.
    """
    if sp.issparse(X):
        if not np.issubdtype(X.dtype, np.floating) or not np.isnan(X.data).any():
            return  # the usual case: nothing to locate, no copy made
        nan_entries = sp.csr_matrix(X, copy=True)
        nan_entries.data = np.isnan(nan_entries.data).astype(np.int8)
        nan_entries.eliminate_zeros()
    else:
        nan_entries = np.isnan(X) if np.issubdtype(X.dtype, np.floating) else None
        if nan_entries is None or not nan_entries.any():
            return
    for code, name in enumerate(uniques):
        rows = np.flatnonzero(codes == code)
        per_gene = np.asarray(nan_entries[rows].sum(axis=0)).ravel()
        missing = np.flatnonzero(per_gene == len(rows))
        if len(missing):
            shown = ", ".join(map(str, gene_names[missing[:5]]))
            raise ValueError(
                f"The gene sets differ between datasets: {len(missing)} genes ({shown}"
                f"{', ...' if len(missing) > 5 else ''}) are missing (all NaN) in dataset "
                f"{name!r}. Use only genes measured in every dataset, e.g. anndata.concat(..., "
                "join='inner') or adata[:, shared_genes]."
            )


def _split_datasets(
    adata: AnnData, batch_key: str, layer: str | None, mask_var, n_components: int
) -> _Datasets:
    """Validate everything and cut the data into one (sparse) matrix per batch."""
    check_adata(adata)
    if not isinstance(batch_key, str):
        raise ValueError(f"batch_key must be the name of an adata.obs column, got {batch_key!r}.")
    labels = get_obs_labels(adata, batch_key, param="batch_key")
    if pd.isna(labels).any():
        raise ValueError(
            f"adata.obs[{batch_key!r}] has missing values; every cell must belong to a dataset."
        )
    if layer == _DEFAULT_LAYER and layer not in adata.layers:
        raise ValueError(
            f"adata.layers[{layer!r}] not found. Run scintegrate.pp.liger_preprocess(adata, "
            f"batch_key={batch_key!r}) first, or pass layer= naming a non-negative, per-dataset "
            "scaled matrix (layer=None uses .X)."
        )
    X = get_matrix(adata, layer)
    where = ".X" if layer is None else f".layers[{layer!r}]"
    genes = _gene_mask(adata, mask_var)
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    X = X[:, genes]
    codes, uniques = pd.factorize(labels, sort=True)
    _check_shared_genes(X, codes, uniques, adata.var_names[genes])
    check_finite_nonnegative(
        X,
        what=f"adata{where}",
        fix="iNMF needs non-negative data: use LIGER's scaling without centring "
        "(pp.liger_preprocess), not log-scaled or centred values.",
    )
    if n_components > len(genes):
        raise ValueError(
            f"n_components={n_components} is larger than the number of genes used "
            f"({len(genes)}); choose fewer components or select more genes."
        )
    if len(uniques) < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has a single value ({uniques[0]!r}); iNMF integrates two or "
            "more datasets. Use tl.nmf for one dataset."
        )
    matrices, cells = [], []
    for code, name in enumerate(uniques):
        rows = np.flatnonzero(codes == code)
        block = X[rows]
        if len(rows) < n_components:
            raise ValueError(
                f"Dataset {name!r} has {len(rows)} cells, fewer than n_components="
                f"{n_components}; choose fewer components or drop that dataset."
            )
        row_sums = np.asarray(block.sum(axis=1)).ravel()
        empty = int(np.sum(row_sums == 0))
        if empty == len(rows):
            raise ValueError(
                f"Every cell of dataset {name!r} is empty in the genes used; check the data "
                "or drop that dataset."
            )
        if empty:
            logger.warning(
                "Dataset %r has %d cells with no signal in the genes used; their factors are zero.",
                name,
                empty,
            )
        matrices.append(block)
        cells.append(rows)
    return _Datasets(matrices, [str(u) for u in uniques], cells, genes)


def _write_results(
    adata: AnnData,
    datasets: _Datasets,
    result: INMFResult,
    key_added: str,
    params: dict,
    *,
    batch_key: str,
    layer: str | None,
    mask_var,
    lambda_: float,
    random_state,
    extra: dict | None = None,
) -> None:
    """Write factors and ``uns``; ``params`` holds the solver-specific arguments, the keywords
    the ones both tools share."""
    k = result.W.shape[1]
    params = {
        "n_components": k,
        "batch_key": batch_key,
        "layer": layer,
        "mask_var": mask_var if isinstance(mask_var, str) else None,
        "n_genes": len(datasets.genes),
        "lambda_": lambda_,
        "random_state": random_state if isinstance(random_state, int) else None,
        "n_iter": result.n_iter,
        **params,
    }
    H = np.zeros((adata.n_obs, k))
    for rows, h in zip(datasets.cells, result.H, strict=True):
        H[rows] = h
    W = np.zeros((adata.n_vars, k))
    W[datasets.genes] = result.W
    V = np.zeros((adata.n_vars, k, len(datasets.batches)))
    for i, v in enumerate(result.V):
        V[datasets.genes, :, i] = v
    adata.obsm[f"X_{key_added}"] = H
    adata.varm[f"{key_added}_W"] = W
    adata.varm[f"{key_added}_V"] = V
    uns = {
        "params": record_params(params),
        "batches": np.asarray(datasets.batches, dtype=object),
        "objective": float(result.objective),
        "history": history_frame(result.history),
    }
    uns.update(extra or {})
    adata.uns[key_added] = uns


_RETURNS = """
    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True``, and writes:

    ``adata.obsm[f"X_<key_added>"]``
        Cell factors (n_obs x k): each cell's row of its own dataset's ``H_i``.
    ``adata.varm[f"<key_added>_W"]``
        Shared gene loadings ``W`` (n_vars x k); zero for genes outside ``mask_var``.
    ``adata.varm[f"<key_added>_V"]``
        Dataset-specific loadings ``V_i`` stacked as (n_vars x k x n_batches), in the order of
        ``uns[key_added]["batches"]``.
    ``adata.uns[key_added]["params"]``
        Every argument that affected the result and the package version.
    ``adata.uns[key_added]["batches"]``
        The dataset names (values of ``obs[batch_key]``), in the order used for ``V``.
    ``adata.uns[key_added]["objective"]``
        The final value of objective (1) on all cells.
    ``adata.uns[key_added]["history"]``
        A DataFrame, one row per {row}.
    """


@doc_params
def inmf(
    adata: AnnData,
    n_components: int = 20,
    *,
    batch_key: str,
    layer: str | None = _DEFAULT_LAYER,
    mask_var: str | np.ndarray | None = _DEFAULT_MASK,
    lambda_: float = 5.0,
    solver: Literal["anls", "hals", "mu"] = "anls",
    max_iter: int = 30,
    tol: float = 1e-6,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "inmf",
    copy: bool = False,
) -> AnnData | None:
    """Integrative NMF (LIGER) of the datasets in ``adata``, by a batch solver.

    Each dataset ``i`` (cells with the same ``obs[batch_key]``) is factorised as
    ``X_i ≈ H_i (W + V_i)ᵀ`` with non-negative cell factors ``H_i``, shared gene loadings ``W``
    and dataset-specific loadings ``V_i``, minimising objective (1) of Gao & Welch (2021),
    ``Σ_i ||X_i - H_i (W + V_i)ᵀ||² + λ Σ_i ||H_i V_iᵀ||²``. Larger ``lambda_`` pushes more of the
    signal into the shared ``W``, i.e. a stronger alignment.

    Solvers (all update every ``H_i``, then ``V_i`` and ``W``, and keep sparse data sparse):

    * ``"anls"`` (default): each block solved exactly by non-negative least squares with block
      principal pivoting (Kim & Park 2011), compiled and parallel over cells and genes, warm
      started from the previous iterate. The objective never increases.
    * ``"hals"``: one exact coordinate-descent sweep per block (updates (5)-(7) of the paper, in
      their exact form). The objective never increases.
    * ``"mu"``: multiplicative updates (the original iNMF algorithm); slowest to converge.

    The input should be LIGER-preprocessed (:func:`scintegrate.pp.liger_preprocess`): library-size
    normalised, variable genes selected, each gene scaled (not centred) per dataset. For datasets
    larger than memory or streaming input use :func:`online_inmf`.

    Parameters
    ----------
    {adata}
    n_components
        Number of factors ``k``.
    batch_key
        ``obs`` column naming each cell's dataset (batch, donor, technology, modality).
    layer
        Layer with the scaled, non-negative data; ``None`` uses ``.X``.
    mask_var
        Genes to use: a boolean ``var`` column (default: the one written by
        :func:`~scintegrate.pp.liger_preprocess`, all genes when absent), a boolean array, or
        ``None`` for all genes.
    lambda_
        Weight of the dataset-specific term (LIGER's default 5).
    solver
        ``"anls"``, ``"hals"`` or ``"mu"``, see above.
    max_iter
        Maximum number of iterations (rliger runs 30).
    tol
        Stop when the objective decreases by less than this fraction of its value in one
        iteration; 0 runs all ``max_iter`` iterations.
    {random_state}
    {key_added}
    {copy}

    """
    adata_in = adata
    n_components = check_positive_int(n_components, param="n_components")
    lambda_ = _check_lambda(lambda_)
    check_in(solver, SOLVERS, param="solver")
    max_iter = check_positive_int(max_iter, param="max_iter")
    if not (isinstance(tol, int | float) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}.")
    key_added = check_key(key_added)
    datasets = _split_datasets(adata_in, batch_key, layer, mask_var, n_components)

    result = fit_inmf(
        datasets.matrices,
        n_components,
        lambda_=lambda_,
        solver=solver,
        max_iter=max_iter,
        tol=tol,
        rng=get_rng(random_state),
        progress=settings.progress_bar,
    )
    logger.info(
        "iNMF (%s): %d iterations, objective %.6g%s",
        solver,
        result.n_iter,
        result.objective,
        " (converged)" if result.converged else "",
    )
    adata = adata_in.copy() if copy else adata_in
    params = {
        "solver": solver,
        "max_iter": max_iter,
        "tol": tol,
        "converged": result.converged,
    }
    _write_results(
        adata,
        datasets,
        result,
        key_added,
        params,
        batch_key=batch_key,
        layer=layer,
        mask_var=mask_var,
        lambda_=lambda_,
        random_state=random_state,
    )
    return adata if copy else None


inmf.__doc__ = (
    inmf.__doc__.rstrip()
    + "\n\n"
    + cleandoc(_RETURNS).format(row="iteration (0 = the start): ``objective`` and ``time`` (s)")
)
