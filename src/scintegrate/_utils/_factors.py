"""Reading an integrative NMF back from AnnData: the shared and dataset-specific gene loadings.

``tl.inmf`` and ``tl.online_inmf`` write ``varm[f"{key}_W"]`` (genes x k),
``varm[f"{key}_V"]`` (genes x k x datasets) and ``uns[key]["batches"]`` (the datasets in the
order of V's last axis). ``tl.factor_markers``, ``metrics.dataset_specificity`` and
``pl.gene_loadings`` read them through :func:`get_inmf_loadings`, with one set of messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from anndata import AnnData

from ._validation import check_adata


@dataclass
class INMFLoadings:
    """Gene loadings of an iNMF and its datasets."""

    W: np.ndarray
    """Shared loadings, genes x k."""
    V: np.ndarray
    """Dataset-specific loadings, genes x k x datasets."""
    batches: np.ndarray
    """Dataset names in the order of ``V``'s last axis (strings)."""
    record: Mapping[str, Any]
    """``uns[key]``, for the parameters of the factorisation."""


def get_inmf_loadings(adata: AnnData, key: str) -> INMFLoadings:
    """W, V and the dataset names of the iNMF written under ``key``, checked for consistency."""
    check_adata(adata)
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be the key_added of tl.inmf / tl.online_inmf, got {key!r}.")
    needed = [f"{key}_W", f"{key}_V"]
    missing = [name for name in needed if name not in adata.varm]
    if missing or not isinstance(adata.uns.get(key), Mapping):
        keys = ", ".join(map(repr, adata.varm.keys())) or "none"
        raise ValueError(
            f"No integrative NMF under key={key!r}: adata.varm needs {needed} (keys: {keys}) and "
            f"adata.uns[{key!r}] its record. Run tl.inmf or tl.online_inmf with "
            f"key_added={key!r} first, or pass the key you used."
        )
    W = np.asarray(adata.varm[f"{key}_W"], dtype=np.float64)
    V = np.asarray(adata.varm[f"{key}_V"], dtype=np.float64)
    record = adata.uns[key]
    batches = np.asarray(record.get("batches", []), dtype=object).astype(str).ravel()
    if W.ndim != 2 or V.ndim != 3 or V.shape[:2] != W.shape:
        raise ValueError(
            f"adata.varm[{key + '_W'!r}] (shape {W.shape}) and adata.varm[{key + '_V'!r}] "
            f"(shape {V.shape}) do not fit: expected genes x k and genes x k x datasets with the "
            "same k. Were they written by different calls?"
        )
    if len(batches) != V.shape[2]:
        raise ValueError(
            f"adata.uns[{key!r}]['batches'] names {len(batches)} datasets but "
            f"adata.varm[{key + '_V'!r}] has {V.shape[2]}; the record and the loadings do not "
            "belong together."
        )
    for name, values in (("W", W), ("V", V)):
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(
                f"adata.varm[{key + '_' + name!r}] has negative, NaN or infinite values; iNMF "
                "loadings are non-negative."
            )
    return INMFLoadings(W=W, V=V, batches=batches, record=record)


def dataset_pair(batches: np.ndarray, datasets: Sequence[str] | None) -> tuple[int, int]:
    """Positions in ``batches`` of the two datasets compared (both, when there are only two)."""
    if datasets is None:
        if len(batches) != 2:
            shown = ", ".join(map(repr, batches[:20]))
            raise ValueError(
                f"The factorisation has {len(batches)} datasets ({shown}); name the two to "
                "compare with datasets=(first, second)."
            )
        return 0, 1
    if isinstance(datasets, str) or len(datasets) != 2:
        raise ValueError(f"datasets must name two datasets, got {datasets!r}.")
    positions = []
    for name in datasets:
        found = np.flatnonzero(batches == str(name))
        if found.size != 1:
            shown = ", ".join(map(repr, batches[:20]))
            raise ValueError(
                f"datasets: {name!r} is not a dataset of the factorisation (datasets: {shown})."
            )
        positions.append(int(found[0]))
    if positions[0] == positions[1]:
        raise ValueError(f"datasets must name two different datasets, got {datasets!r}.")
    return positions[0], positions[1]
