"""Input access and validation. Every check raises a ValueError that says how to fix the input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData


def check_adata(adata: Any, *, name: str = "adata") -> AnnData:
    """Refuse anything that is not an in-memory AnnData with cells and features."""
    if not isinstance(adata, AnnData):
        raise TypeError(
            f"{name} must be an AnnData object, got {type(adata).__name__}. "
            "Wrap arrays with anndata.AnnData(X)."
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{name} is empty ({adata.n_obs} cells x {adata.n_vars} features).")
    return adata


def matrix_label(layer: str | None, *, prefix: str = "adata") -> str:
    """How error messages name the matrix that :func:`get_matrix` returns for ``layer``."""
    return f"{prefix}.X" if layer is None else f"{prefix}.layers[{layer!r}]"


def get_matrix(adata: AnnData, layer: str | None) -> np.ndarray | sp.spmatrix | sp.sparray:
    """Return ``.X`` or a layer without copying; backed matrices are refused with advice.

    Error messages name the matrix as :func:`matrix_label` does.
    """
    if layer is None:
        if adata.isbacked:
            raise ValueError(
                "adata is opened in backed mode; this tool needs the matrix in memory. "
                "Load it with adata.to_memory() (or read_h5ad without backed=...)."
            )
        X = adata.X
    else:
        if layer not in adata.layers:
            available = ", ".join(map(repr, adata.layers.keys())) or "none"
            raise ValueError(
                f"Layer {layer!r} not found in adata.layers (available: {available}). "
                "Pass layer=None to use .X."
            )
        X = adata.layers[layer]
    where = matrix_label(layer)
    if X is None:
        raise ValueError(f"{where} is empty (None); store a cells x features matrix there.")
    if not (isinstance(X, np.ndarray) or sp.issparse(X)):
        raise ValueError(
            f"{where} is a {type(X).__name__}; expected a numpy array or a scipy sparse "
            "matrix. Convert it, for example with .to_memory() or np.asarray()."
        )
    return X


def check_finite(X, *, what: str = "the input matrix") -> np.ndarray:
    """Refuse non-real dtypes, NaN and inf (stored values of sparse input); returns the values."""
    values = X.data if sp.issparse(X) else np.asarray(X)
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        raise ValueError(f"{what} has dtype {values.dtype}; expected real numbers.")
    if values.size and not np.isfinite(values).all():
        n_bad = int(values.size - np.isfinite(values).sum())
        raise ValueError(
            f"{what} contains {n_bad} NaN or infinite values. Remove or impute them first "
            "(for example with np.nan_to_num on a copy)."
        )
    return values


def check_finite_nonnegative(X, *, what: str = "the input matrix", fix: str = "") -> None:
    """Refuse NaN, inf and negative values, looking only at stored values of sparse input."""
    values = check_finite(X, what=what)
    if values.size and values.min() < 0:
        raise ValueError(
            f"{what} contains negative values (minimum {values.min():g}). "
            + (fix or "Pass non-negative data such as raw counts.")
        )


def get_obs_labels(adata: AnnData, key: str, *, param: str = "labels_key") -> np.ndarray:
    """Return the values of ``adata.obs[key]``, with a helpful error for a missing key."""
    if key not in adata.obs.columns:
        cols = ", ".join(map(repr, adata.obs.columns[:20])) or "none"
        raise ValueError(f"{param}={key!r} is not a column of adata.obs (columns: {cols}).")
    return adata.obs[key].to_numpy()


def get_obsm(
    adata: AnnData,
    key: str,
    *,
    param: str = "use_rep",
    prefix: str = "adata",
    advice: str = "",
) -> Any:
    """``adata.obsm[key]`` as stored, with an error that lists the keys there and ``advice``."""
    if key not in adata.obsm:
        keys = ", ".join(map(repr, adata.obsm.keys())) or "none"
        message = f"{param}={key!r} is not in {prefix}.obsm (keys: {keys})."
        raise ValueError(f"{message} {advice}" if advice else message)
    return adata.obsm[key]


def get_cell_factors(
    adata: AnnData, use_rep: str, *, tool: str, param: str = "use_rep"
) -> np.ndarray:
    """Non-negative cell factors (cells x k, k >= 1) from ``adata.obsm[use_rep]``, as an array.

    Sparse entries are made dense (they have few columns). ``tool`` names the caller in the
    messages (e.g. ``"Quantile normalisation"``), ``param`` the argument that named the key.
    """
    H = get_obsm(
        adata,
        use_rep,
        param=param,
        advice="Run tl.inmf or tl.online_inmf first, or pass the key of the cell factors.",
    )
    H = H.toarray() if sp.issparse(H) else np.asarray(H)
    if H.ndim != 2 or H.shape[1] == 0:
        raise ValueError(f"adata.obsm[{use_rep!r}] must be a cells x factors array, got {H.shape}.")
    check_finite_nonnegative(
        H,
        what=f"adata.obsm[{use_rep!r}]",
        fix=f"{tool} expects non-negative NMF factors such as those of tl.inmf.",
    )
    return H


def check_dims(dims: Any, k: int, *, param: str = "use_dims") -> np.ndarray | None:
    """Distinct 0-based column indices into ``k`` factors as an int64 array (``None`` stays)."""
    if dims is None:
        return None
    array = np.asarray(dims)
    if (
        array.ndim != 1
        or array.size == 0
        or not np.issubdtype(array.dtype, np.integer)
        or array.min() < 0
        or array.max() >= k
        or np.unique(array).size != array.size
    ):
        raise ValueError(
            f"{param} must be distinct 0-based factor indices in [0, {k - 1}], got {dims!r}."
        )
    return array.astype(np.int64)


def batch_index(names: np.ndarray, name: Any, *, batch_key: str, param: str = "reference") -> int:
    """Code of the batch called ``name`` among ``names`` (from :func:`batch_codes`)."""
    matches = np.flatnonzero(names == str(name))
    if matches.size != 1:
        shown = ", ".join(map(repr, names[:20]))
        raise ValueError(
            f"{param}={name!r} is not a batch of adata.obs[{batch_key!r}] (batches: {shown})."
        )
    return int(matches[0])


def check_in(value: Any, allowed: tuple, *, param: str) -> None:
    """Refuse a value that is not one of the allowed options."""
    if value not in allowed:
        opts = ", ".join(map(repr, allowed))
        raise ValueError(f"{param}={value!r} is not supported; choose one of {opts}.")


def check_positive_int(value: Any, *, param: str, minimum: int = 1) -> int:
    """Refuse a value that is not an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{param} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_bool(value: Any, *, param: str) -> bool:
    """Refuse a value that is not ``True`` or ``False`` (numpy booleans accepted)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{param} must be True or False, got {value!r}.")
    return bool(value)


def check_key(key: Any, *, param: str = "key_added") -> str:
    """Keys become h5ad group names, so they must be non-empty strings without '/'."""
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"{param} must be a non-empty string without '/', got {key!r}.")
    return key


def check_number(
    value: Any,
    *,
    param: str,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    """Refuse anything but a finite real number within the bounds; returns it as a float.

    Booleans, strings, ``None``, NaN and infinity are refused with a message naming ``param``.
    """
    is_number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    if is_number and np.isfinite(value):
        above = minimum is None or (value > minimum if exclusive_minimum else value >= minimum)
        below = maximum is None or value <= maximum
        if above and below:
            return float(value)
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    within = f" {' and '.join(bounds)}" if bounds else ""
    raise ValueError(f"{param} must be a finite number{within}, got {value!r}.")


def batch_codes(
    values: Any, *, what: str = "batch labels", order: str = "categories"
) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes ``0..B-1`` and batch names (strings) of per-cell batch labels.

    The one encoding of batches, datasets and modalities used by every tool. With
    ``order="categories"``, categorical labels (a categorical Series or ``pd.Categorical``)
    keep the order of their observed categories and other labels are sorted; with
    ``order="sorted"`` all labels are sorted (the order ``tl.inmf``, ``tl.online_inmf`` and
    ``tl.etm`` have always used, kept so that their results reproduce). Missing labels, and
    labels that differ only in type, are refused.
    """
    if order not in ("categories", "sorted"):
        raise ValueError(f"order must be 'categories' or 'sorted', got {order!r}.")
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype) and order == "categories":
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


def obs_batch_codes(
    adata: AnnData, batch_key: str, *, param: str = "batch_key", order: str = "categories"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`batch_codes` of ``adata.obs[batch_key]``, with an error naming ``param``."""
    get_obs_labels(adata, batch_key, param=param)
    return batch_codes(adata.obs[batch_key], what=f"adata.obs[{batch_key!r}]", order=order)
