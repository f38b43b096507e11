"""Composition of clusters and datasets as stacked bars (online iNMF paper, Fig. 5a)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from mudata import MuData

from .._docs import doc_params
from .._utils._mudata import is_mudata
from .._utils._validation import check_adata, check_bool, check_in, get_obs_labels
from ._common import finish, get_axes, plot_mudata


@doc_params
def proportions(
    adata: AnnData | MuData,
    *,
    groupby: str,
    batch_key: str,
    bars: Literal["batch", "group"] = "batch",
    normalize: bool = True,
    cmap: str = "tab20",
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Stacked bars of how clusters and datasets make up each other.

    With ``bars="batch"`` (the default) every dataset gets a bar divided into the fraction of
    its cells in each cluster (or cell type): the composition of each dataset, as in Fig. 5a of
    the online iNMF paper (Gao et al. 2021). With ``bars="group"`` every cluster gets a bar
    divided by the datasets its cells come from, which shows clusters made of one dataset only.

    A :class:`~mudata.MuData` counts the cells of every modality together: ``groupby`` and
    ``batch_key`` may be container columns, ``"modality"`` (each cell's modality),
    ``"<mod>:<column>"`` or a column gathered from every modality that has it (e.g.
    ``groupby="inmf_qn_clusters", batch_key="modality"``).

    Parameters
    ----------
    {adata}
    groupby
        ``obs`` column with the clusters or cell types (e.g. ``"inmf_qn_clusters"``).
    batch_key
        ``obs`` column with the dataset of every cell.
    bars
        ``"batch"``: one bar per dataset, stacked by cluster; ``"group"``: one bar per cluster,
        stacked by dataset.
    normalize
        Show fractions of each bar (each bar sums to 1); ``False`` shows cell counts.
    cmap
        Colour map of the stacked categories.
    {plot_common}

    Returns
    -------
    The bar chart's Axes (or the Figure when ``return_fig``).
    """
    if is_mudata(adata):
        return plot_mudata(
            proportions, adata, ax=ax, show=show, return_fig=return_fig,
            needs={"columns": [groupby, batch_key]}, groupby=groupby, batch_key=batch_key,
            bars=bars, normalize=normalize, cmap=cmap,
        )  # fmt: skip
    check_adata(adata)
    check_in(bars, ("batch", "group"), param="bars")
    normalize = check_bool(normalize, param="normalize")
    groups = pd.Categorical(get_obs_labels(adata, groupby, param="groupby"))
    batches = pd.Categorical(get_obs_labels(adata, batch_key, param="batch_key"))
    table = pd.crosstab(batches, groups, dropna=False)  # datasets x groups
    table = table.loc[table.sum(axis=1) > 0, table.sum(axis=0) > 0]
    if bars == "group":
        table = table.T
    if normalize:
        table = table.div(table.sum(axis=1), axis=0)
    rows, parts = [str(r) for r in table.index], [str(c) for c in table.columns]
    fig, ax, created = get_axes(ax, (max(3.0, 0.5 * len(rows) + 2.0), 4))
    palette = plt.get_cmap(cmap)
    bottom = np.zeros(len(rows))
    for i, part in enumerate(parts):
        values = table.iloc[:, i].to_numpy(dtype=float)
        ax.bar(rows, values, bottom=bottom, color=palette(i % palette.N), label=part, width=0.8)
        bottom += values
    ax.set_xlabel(batch_key if bars == "batch" else groupby)
    ax.set_ylabel("fraction of cells" if normalize else "cells")
    ax.tick_params(axis="x", labelrotation=90 if len(rows) > 6 else 0)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=7,
        frameon=False,
        title=groupby if bars == "batch" else batch_key,
    )
    ax.spines[["top", "right"]].set_visible(False)
    return finish(fig, ax, created=created, show=show, return_fig=return_fig)
