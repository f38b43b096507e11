"""Inputs shared by the metrics: an embedding and per-cell labels, from arrays or an AnnData."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._utils._clustering import check_embedding
from .._utils._validation import get_obs_labels, get_obsm


def get_embedding(data: Any, use_rep: str | None, *, example: str = "X_nmf") -> np.ndarray:
    """The embedding: ``data`` itself, or ``data.obsm[use_rep]`` when ``data`` is an AnnData."""
    if isinstance(data, AnnData):
        if use_rep is None:
            raise ValueError(
                f"Pass use_rep, the adata.obsm key of the embedding (e.g. {example!r})."
            )
        embedding = get_obsm(data, use_rep)
        return check_embedding(embedding, what=f"adata.obsm[{use_rep!r}]")
    return check_embedding(data)


def get_array(value: Any, *, param: str) -> np.ndarray:
    """An embedding given as an array (the paired metrics take no AnnData)."""
    if isinstance(value, AnnData):
        raise ValueError(
            f"{param} must be an array (cells x dimensions), got an AnnData; pass the embedding "
            f"itself, e.g. adata.obsm['X_mmdma']."
        )
    return check_embedding(value, what=param)


def get_labels(
    data: Any, values: str | Sequence, n_cells: int, *, param: str
) -> pd.Series | Sequence:
    """Per-cell labels: an ``obs`` column of ``data`` (by name) or a sequence, one per cell."""
    if isinstance(values, str):
        if not isinstance(data, AnnData):
            raise ValueError(
                f"{param}={values!r} is a column name, which needs an AnnData; with an array, "
                "pass one label per cell."
            )
        get_obs_labels(data, values, param=param)
        values = data.obs[values]
    if np.ndim(values) != 1:
        raise ValueError(f"{param} must be one label per cell, got shape {np.shape(values)}.")
    if len(values) != n_cells:
        raise ValueError(
            f"{param} has {len(values)} entries but the embedding has {n_cells} cells."
        )
    return values
