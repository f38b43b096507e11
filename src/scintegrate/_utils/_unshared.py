"""Unshared features (UINMF): which dataset alone has each feature of a mosaic AnnData.

A mosaic AnnData holds the cells of several datasets and the union of their features (as
``anndata.concat(..., join="outer")`` makes it). A *shared* feature is measured in every dataset;
an *unshared* feature only in one, its owner. The owner of every feature is given either as a
``var`` column (the owner's name, missing for shared features) or as a mapping from dataset
names to their unshared features. :func:`unshared_owners` turns either into integer codes:
the owner's batch code, ``-1`` for shared features. ``pp.liger_unshared`` and ``tl.uinmf`` both
read the owners through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

SHARED = -1


def _owner_column(adata: AnnData, column: str, param: str) -> np.ndarray:
    """The owner names of a ``var`` column, ``None`` for shared features."""
    if column not in adata.var.columns:
        cols = ", ".join(map(repr, adata.var.columns[:20])) or "none"
        raise ValueError(
            f"{param}={column!r} is not a column of adata.var (columns: {cols}). Run "
            "scintegrate.pp.liger_unshared first, or store the dataset that alone has each "
            "unshared feature in a var column (missing for shared features)."
        )
    series = adata.var[column]
    if pd.api.types.is_bool_dtype(series.dtype):
        raise ValueError(
            f"adata.var[{column!r}] is boolean; it must name, for each unshared feature, the "
            "dataset that has it (a value of the batch column), and be missing (NaN/None) for "
            "shared features. pp.liger_unshared writes such a column."
        )
    present = series.notna().to_numpy()
    names = np.full(adata.n_vars, None, dtype=object)
    names[present] = series[present].astype(str).to_numpy()
    names[names == ""] = None
    return names


def _owner_mapping(adata: AnnData, features: Mapping, param: str) -> np.ndarray:
    """The owner names of ``{dataset: feature names or boolean mask}``."""
    names = np.full(adata.n_vars, None, dtype=object)
    index = adata.var_names
    if not index.is_unique:
        raise ValueError(
            "adata.var_names are not unique, so feature names cannot identify the unshared "
            "features; call adata.var_names_make_unique() first."
        )
    for dataset, selected in features.items():
        values = np.asarray(selected)
        if values.dtype == bool:
            if values.shape != (adata.n_vars,):
                raise ValueError(
                    f"{param}[{dataset!r}] is a boolean mask of shape {values.shape}; it needs "
                    f"one entry per feature ({adata.n_vars})."
                )
            where = np.flatnonzero(values)
        else:
            if isinstance(selected, str):
                values = np.asarray([selected], dtype=object)
            where = index.get_indexer(values.astype(str).ravel())
            if (where < 0).any():
                unknown = values.ravel()[where < 0]
                shown = ", ".join(map(repr, unknown[:5]))
                raise ValueError(
                    f"{param}[{dataset!r}] names {len(unknown)} features that are not in "
                    f"adata.var_names ({shown}{', ...' if len(unknown) > 5 else ''})."
                )
        twice = np.flatnonzero(pd.notna(names[where]))
        if len(twice):
            feature = index[where[twice[0]]]
            raise ValueError(
                f"Feature {feature!r} is listed as unshared for {names[where[twice[0]]]!r} and "
                f"for {str(dataset)!r}; an unshared feature belongs to one dataset. A feature "
                "that several datasets measure is shared by them."
            )
        names[where] = str(dataset)
    return names


def _unknown_datasets(unknown: list[str], batches, param: str, batch_key: str) -> None:
    shown = ", ".join(map(repr, unknown[:5]))
    raise ValueError(
        f"{param} names datasets that are not values of adata.obs[{batch_key!r}]: {shown}. "
        f"The datasets are {', '.join(repr(str(b)) for b in batches)}."
    )


def unshared_owners(
    adata: AnnData,
    unshared: str | Mapping[str, Sequence[str] | np.ndarray],
    batches: Sequence[str],
    *,
    param: str = "unshared",
    batch_key: str = "batch_key",
) -> np.ndarray:
    """Per feature, the code (position in ``batches``) of the dataset that alone has it; -1 for
    shared features.

    ``unshared`` is a ``var`` column of owner names (missing or empty for shared features) or a
    mapping ``{dataset: feature names or boolean mask over var}``. Owners that are not among
    ``batches`` are refused with the available names.
    """
    if isinstance(unshared, str):
        names = _owner_column(adata, unshared, param)
    elif isinstance(unshared, Mapping):
        unknown = sorted({str(name) for name in unshared} - {str(b) for b in batches})
        if unknown:
            _unknown_datasets(unknown, batches, param, batch_key)
        names = _owner_mapping(adata, unshared, param)
    else:
        raise ValueError(
            f"{param} must be the name of a var column or a mapping from dataset names to "
            f"feature names, got {type(unshared).__name__}."
        )
    batches = [str(b) for b in batches]
    lookup = {name: code for code, name in enumerate(batches)}
    owned = pd.notna(names)
    unknown = sorted({str(n) for n in names[owned]} - set(lookup))
    if unknown:
        _unknown_datasets(unknown, batches, param, batch_key)
    codes = np.full(adata.n_vars, SHARED, dtype=np.int64)
    codes[owned] = [lookup[n] for n in names[owned]]
    return codes


def owner_categorical(codes: np.ndarray, batches: Sequence[str]) -> pd.Categorical:
    """Owner codes as a categorical of dataset names (NaN for shared features), h5ad-safe."""
    return pd.Categorical.from_codes(codes, categories=[str(b) for b in batches])
