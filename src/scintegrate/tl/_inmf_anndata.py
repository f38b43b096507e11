"""The AnnData side shared by ``tl.inmf`` and ``tl.online_inmf``: per-dataset matrices in, slots out.

:func:`split_datasets` validates an in-memory AnnData and cuts it into one matrix per dataset;
:func:`write_results` is the one way either tool writes its factors (through
:func:`~scintegrate._utils._slots.write_slots`, so a second call with the same key replaces the
first call's slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._core._sparse import as_csr
from .._core.inmf import INMFResult
from .._logging import logger
from .._utils._row_inputs import LIGER_LAYER, LIGER_MASK
from .._utils._slots import history_frame, record_params, write_slots
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_number,
    get_matrix,
    matrix_label,
    obs_batch_codes,
)


@dataclass
class InMemoryDatasets:
    """The per-batch matrices (selected genes only) and how they map back onto ``adata``."""

    matrices: list
    batches: list[str]
    cells: list[np.ndarray]  # row indices of each batch in adata
    genes: np.ndarray  # column indices of the genes used


def check_lambda(lambda_) -> float:
    """``lambda_``, the weight of the dataset-specific term: a finite number >= 0."""
    return check_number(lambda_, param="lambda_", minimum=0)


def _gene_mask(adata: AnnData, mask_var) -> np.ndarray:
    if mask_var is None:
        return np.arange(adata.n_vars)
    if isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            if mask_var == LIGER_MASK:
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


def _check_shared_genes(X, codes: np.ndarray, batches, gene_names) -> None:
    """Refuse genes that a dataset does not have at all (all NaN, as an outer join leaves them).

    Genes measured in every dataset are what makes the factorisation joint; a gene present in
    only some datasets would be read as "not expressed" in the others.
    """
    if sp.issparse(X):
        if not np.issubdtype(X.dtype, np.floating) or not np.isnan(X.data).any():
            return  # the usual case: nothing to locate, no copy made
        nan_entries = as_csr(X, canonical=True)
        nan_entries.data = np.isnan(nan_entries.data).astype(np.int8)
        nan_entries.eliminate_zeros()
    else:
        nan_entries = np.isnan(X) if np.issubdtype(X.dtype, np.floating) else None
        if nan_entries is None or not nan_entries.any():
            return
    for code, name in enumerate(batches):
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


def split_datasets(
    adata: AnnData, batch_key: str, layer: str | None, mask_var, n_components: int
) -> InMemoryDatasets:
    """Validate everything and cut the data into one (sparse) matrix per batch."""
    check_adata(adata)
    if not isinstance(batch_key, str):
        raise ValueError(
            f"batch_key must be the name of the adata.obs column naming each cell's dataset, got "
            f"{batch_key!r}."
        )
    codes, batches = obs_batch_codes(adata, batch_key, param="batch_key", order="sorted")
    if layer == LIGER_LAYER and layer not in adata.layers:
        raise ValueError(
            f"adata.layers[{layer!r}] not found. Run scintegrate.pp.liger_preprocess(adata, "
            f"batch_key={batch_key!r}) first, or pass layer= naming a non-negative, per-dataset "
            "scaled matrix (layer=None uses .X)."
        )
    X = get_matrix(adata, layer)
    genes = _gene_mask(adata, mask_var)
    if sp.issparse(X):
        X = as_csr(X)
    X = X[:, genes]
    _check_shared_genes(X, codes, batches, adata.var_names[genes])
    check_finite_nonnegative(
        X,
        what=matrix_label(layer),
        fix="iNMF needs non-negative data: use LIGER's scaling without centring "
        "(pp.liger_preprocess), not log-scaled or centred values.",
    )
    if n_components > len(genes):
        raise ValueError(
            f"n_components={n_components} is larger than the number of genes used "
            f"({len(genes)}); choose fewer components or select more genes."
        )
    if len(batches) < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has a single value ({batches[0]!r}); iNMF integrates two or "
            "more datasets. Use tl.nmf for one dataset."
        )
    matrices, cells = [], []
    for code, name in enumerate(batches):
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
    return InMemoryDatasets(matrices, list(batches), cells, genes)


def shared_params(
    result: INMFResult,
    *,
    batch_key: str | None,
    layer: str | None,
    mask_var,
    n_genes: int,
    lambda_: float,
    random_state,
) -> dict[str, Any]:
    """The ``uns[key]["params"]`` entries both tools record (each adds its own after these)."""
    return {
        "n_components": result.W.shape[1],
        "batch_key": batch_key,
        "layer": layer,
        "mask_var": mask_var if isinstance(mask_var, str) else None,
        "n_genes": n_genes,
        "lambda_": lambda_,
        "random_state": random_state if isinstance(random_state, int) else None,
        "n_iter": result.n_iter,
    }


def _scatter(n: int, positions: np.ndarray | None, values: np.ndarray, axis: int = 0):
    """``values`` placed at ``positions`` along ``axis`` of an array ``n`` long there, zero
    elsewhere; ``values`` itself when ``positions`` is ``None``."""
    if positions is None:
        return values
    shape = list(values.shape)
    shape[axis] = n
    out = np.zeros(shape)
    index = [slice(None)] * values.ndim
    index[axis] = positions
    out[tuple(index)] = values
    return out


def write_results(
    target: AnnData,
    key_added: str,
    result: INMFResult,
    *,
    batches: Sequence[str],
    params: dict[str, Any],
    cells: Sequence[np.ndarray] | None = None,
    genes: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
    extra_varm: dict[str, np.ndarray] | None = None,
) -> None:
    """Write an iNMF result into ``target`` (the one slot writer of the iNMF tools).

    ``cells`` holds each dataset's rows of ``target`` (``None``: the datasets' cells fill
    ``target`` in order) and ``genes`` the columns of the genes used (``None``: every column, in
    order); factors are zero elsewhere. Writes ``obsm[f"X_{key}"]`` (H), ``varm[f"{key}_W"]``,
    ``varm[f"{key}_V"]`` (n_vars x k x n_batches) and ``uns[key]`` (``params``, ``batches``,
    ``objective``, ``history``, with online iNMF's statistics ``A`` and ``B``, and ``extra``),
    and the entries of ``extra_varm`` (``tl.uinmf``'s unshared loadings).
    """
    k = result.W.shape[1]
    if cells is None:
        first, last = result.H[0], result.H[-1]
        if first.base is not None and first.base is last.base:  # views of one array: no copy
            H = first.base
        else:
            H = np.concatenate(result.H)
    else:
        H = np.zeros((target.n_obs, k))
        for rows, h in zip(cells, result.H, strict=True):
            H[rows] = h
    W = _scatter(target.n_vars, genes, result.W.copy() if genes is None else result.W)
    V = _scatter(target.n_vars, genes, np.stack(result.V, axis=2))
    uns = {
        "params": record_params(params),
        "batches": np.asarray(batches, dtype=object),
        "objective": float(result.objective),
        "history": history_frame(result.history),
    }
    if getattr(result, "A", None) is not None:
        uns["A"] = np.stack(result.A)
        uns["B"] = _scatter(target.n_vars, genes, np.stack(result.B), axis=1)
    uns.update(extra or {})
    write_slots(
        target,
        key_added,
        uns=uns,
        obsm={f"X_{key_added}": H},
        varm={f"{key_added}_W": W, f"{key_added}_V": V, **(extra_varm or {})},
    )
