"""Helpers shared by the plot functions: slot lookup and the ax/show/return_fig convention."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._validation import check_adata


def get_axes(ax, figsize):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax, True
    return ax.figure, ax, False


def finish(fig, ax, *, created: bool, show: bool | None, return_fig: bool) -> Axes | Figure:
    if show is None:
        show = created and matplotlib.is_interactive()
    if show:
        plt.show()
    return fig if return_fig else ax


def get_uns_entry(adata: AnnData, key: str) -> dict:
    check_adata(adata)
    if key not in adata.uns:
        raise ValueError(
            f"adata.uns has no entry {key!r}; run the tool first (e.g. tl.nmf(adata, "
            f"key_added={key!r})) or pass the key_added you used."
        )
    return adata.uns[key]


def get_cell_factors(adata: AnnData, key: str) -> np.ndarray:
    check_adata(adata)
    rep = f"X_{key}"
    if rep not in adata.obsm:
        keys = ", ".join(map(repr, adata.obsm.keys())) or "none"
        raise ValueError(
            f"adata.obsm has no {rep!r} (keys: {keys}); run the tool with key_added={key!r}."
        )
    return np.asarray(adata.obsm[rep])


def get_feature_factors(adata: AnnData, key: str, part: str | None) -> tuple[np.ndarray, str]:
    check_adata(adata)
    candidates = [part] if part is not None else [f"{key}_W", f"{key}_beta"]
    for name in candidates:
        if name in adata.varm:
            return np.asarray(adata.varm[name]), name
    keys = ", ".join(map(repr, adata.varm.keys())) or "none"
    raise ValueError(
        f"adata.varm has none of {candidates} (keys: {keys}); run the tool with "
        f"key_added={key!r} or name the loadings with varm_key=."
    )
