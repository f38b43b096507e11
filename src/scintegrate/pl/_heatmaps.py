"""Heatmaps of factor loadings: cells x factors grouped by label, and top features per factor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

if TYPE_CHECKING:
    from mudata import MuData

from .._docs import doc_params
from .._utils._mudata import is_mudata
from .._utils._validation import (
    check_in,
    check_number,
    check_positive_int,
    get_obs_labels,
)
from ._common import finish, get_axes, get_cell_factors, get_feature_factors, plot_mudata


def _group_means(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean row of every group (groups x columns); 0 for a group without cells."""
    return np.stack(
        [
            values[codes == g].mean(0) if (codes == g).any() else np.zeros(values.shape[1])
            for g in range(n_groups)
        ]
    )


def _dendrogram_order(profiles: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage clustering of the rows (Euclidean, optimal ordering)."""
    if profiles.shape[0] < 3:
        return np.arange(profiles.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage

    return leaves_list(linkage(profiles, method="average", optimal_ordering=True))


def _scale_rows(values: np.ndarray, how: str | None) -> np.ndarray:
    """Scale each row: ``"sum"`` to sum 1, ``"max"`` to maximum 1, ``None`` unchanged."""
    if how is None:
        return values
    if how == "sum":
        denom = values.sum(axis=1, keepdims=True)
    elif how == "max":
        denom = values.max(axis=1, keepdims=True)
    else:
        raise ValueError(f"normalize={how!r} is not supported; use 'sum', 'max' or None.")
    return values / np.where(denom > 0, denom, 1.0)


@doc_params
def factor_heatmap(
    adata: AnnData | MuData,
    key: str = "nmf",
    *,
    groupby: str,
    normalize: Literal["sum", "max"] | None = "sum",
    order_factors: bool | Literal["hierarchical"] = True,
    order_groups: Literal["hierarchical"] | None = None,
    cmap: str = "Reds",
    vmax: float | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Heatmap of the cells x factors matrix ``obsm[f"X_{key}"]``, cells grouped by a label.

    Cells are sorted by ``groupby`` (a colour bar on the left marks the groups) and factors are
    ordered by the group in which they are highest, so that blocks line up on the diagonal.
    Either order can instead follow a hierarchical clustering (average linkage on Euclidean
    distances between the groups' mean loadings, leaves in the optimal order of
    :func:`scipy.cluster.hierarchy.linkage`), which puts similar factors, or similar groups,
    next to each other.

    A :class:`~mudata.MuData` draws the cells of every modality together from
    ``mdata.obsm[f"X_{key}"]`` (cells without factors left out), ``groupby`` being a container
    column, ``"modality"``, ``"<mod>:<column>"`` or a column gathered from every modality; when
    the container has no such entry (cells in several modalities), one panel per modality.

    Parameters
    ----------
    {adata}
    key
        The tool's ``key_added``; plots ``adata.obsm[f"X_{key}"]``.
    groupby
        ``obs`` column with the cell labels, e.g. cell types.
    normalize
        Scale each cell's row to sum 1 (``"sum"``, topic proportions; the default, since NMF
        loadings grow with sequencing depth), to maximum 1 (``"max"``), or not at all.
    order_factors
        ``True``: order factors by the group with the highest mean loading; ``False``: factor
        index order; ``"hierarchical"``: by a hierarchical clustering of the factors' mean
        loadings per group.
    order_groups
        ``None``: groups in category order; ``"hierarchical"``: by a hierarchical clustering
        of the groups' mean loadings.
    cmap, vmax
        Colour map and upper colour limit.
    {plot_common}

    Returns
    -------
    The heatmap's Axes (or the Figure when ``return_fig``).
    """
    if is_mudata(adata):
        return plot_mudata(
            factor_heatmap, adata, ax=ax, show=show, return_fig=return_fig,
            needs={"obsm": f"X_{key}", "columns": [groupby]}, panel_size=(6.0, 6.0),
            key=key, groupby=groupby, normalize=normalize, order_factors=order_factors,
            order_groups=order_groups, cmap=cmap, vmax=vmax,
        )  # fmt: skip
    values = _scale_rows(get_cell_factors(adata, key), normalize)
    if not (isinstance(order_factors, bool | np.bool_) or order_factors == "hierarchical"):
        raise ValueError(
            f"order_factors must be True, False or 'hierarchical', got {order_factors!r}."
        )
    check_in(order_groups, (None, "hierarchical"), param="order_groups")
    if vmax is not None:
        check_number(vmax, param="vmax", minimum=0, exclusive_minimum=True)
    labels = pd.Categorical(get_obs_labels(adata, groupby, param="groupby"))
    n_groups = len(labels.categories)
    group_order = np.arange(n_groups)
    if order_groups == "hierarchical":
        group_order = _dendrogram_order(_group_means(values, labels.codes, n_groups))
    rank = np.empty(n_groups, dtype=np.int64)
    rank[group_order] = np.arange(n_groups)
    order = np.argsort(np.where(labels.codes >= 0, rank[labels.codes], -1), kind="stable")
    values, codes = values[order], labels.codes[order]
    means = _group_means(values, codes, n_groups)
    n_factors = values.shape[1]
    factor_order = np.arange(n_factors)
    if order_factors == "hierarchical":
        factor_order = _dendrogram_order(means.T)
    elif order_factors:
        factor_order = np.lexsort((-means.max(0), means.argmax(0)))
    fig, ax, created = get_axes(ax, (max(4.0, 0.3 * n_factors + 2.5), 6))
    image = ax.imshow(
        values[:, factor_order],
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=0,
        vmax=vmax,
    )
    ax.set_xticks(range(n_factors), [str(f) for f in factor_order], fontsize=7)
    ax.set_xlabel("factor")
    ax.set_yticks([])
    ax.set_ylabel(f"cells grouped by {groupby}")
    # group bar and labels
    palette = plt.get_cmap("tab20")
    colors = [palette(g % 20) for g in range(len(labels.categories))]
    bar = ax.inset_axes([-0.06, 0, 0.04, 1])
    bar.imshow(
        codes[:, None],
        aspect="auto",
        interpolation="nearest",
        cmap=plt.matplotlib.colors.ListedColormap(colors),
        vmin=-0.5,
        vmax=len(colors) - 0.5,
    )
    bar.set_axis_off()
    ax.legend(
        handles=[Patch(color=colors[g], label=str(labels.categories[g])) for g in group_order],
        loc="upper left",
        bbox_to_anchor=(1.18, 1),
        fontsize=7,
        frameon=False,
        title=groupby,
    )
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label=f"{key} loading")
    return finish(fig, ax, created=created, show=show, return_fig=return_fig)


@doc_params
def top_features(
    adata: AnnData | MuData,
    key: str = "nmf",
    n_top: int = 5,
    *,
    varm_key: str | None = None,
    normalize: Literal["sum", "max"] | None = "sum",
    gene_symbols: str | None = None,
    cmap: str = "Reds",
    vmax: float | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Heatmap of the top features of every factor (features x factors).

    For each factor, its ``n_top`` highest-loading features are taken; the union is shown in
    factor order. With ``normalize="sum"`` each factor's loadings become a distribution over
    features (as topic-gene distributions); cap the colours with ``vmax`` (e.g. 0.2) so that
    features with small absolute values remain visible.

    A :class:`~mudata.MuData` gives one panel per modality with the loadings (each modality
    has its own features), titled by the modality; ``ax`` is then one Axes per panel.

    Parameters
    ----------
    {adata}
    key
        The tool's ``key_added``; loadings are read from ``varm[f"{key}_W"]`` (NMF) or
        ``varm[f"{key}_beta"]`` (topic models) unless ``varm_key`` is given.
    n_top
        Features per factor.
    varm_key
        ``varm`` entry (features x factors) to use instead.
    normalize
        Scale each factor over features to sum 1 (``"sum"``), to maximum 1 (``"max"``), or not.
    gene_symbols
        ``var`` column with the feature names to show instead of ``var_names``.
    cmap, vmax
        Colour map and upper colour limit.
    {plot_common}

    Returns
    -------
    The heatmap's Axes (or the Figure when ``return_fig``).
    """
    if is_mudata(adata):
        return plot_mudata(
            top_features, adata, ax=ax, show=show, return_fig=return_fig,
            needs={"varm": [varm_key] if varm_key else [f"{key}_W", f"{key}_beta"]},
            panel_size=(6.0, 8.0), key=key, n_top=n_top, varm_key=varm_key,
            normalize=normalize, gene_symbols=gene_symbols, cmap=cmap, vmax=vmax,
        )  # fmt: skip
    loadings, _ = get_feature_factors(adata, key, varm_key)
    if loadings.ndim != 2:
        raise ValueError(
            f"Feature loadings must be features x factors, got shape {loadings.shape}."
        )
    n_top = check_positive_int(n_top, param="n_top")
    if vmax is not None:
        check_number(vmax, param="vmax", minimum=0, exclusive_minimum=True)
    if gene_symbols is not None and gene_symbols not in adata.var.columns:
        raise ValueError(f"gene_symbols={gene_symbols!r} is not a column of adata.var.")
    names = np.asarray(adata.var[gene_symbols] if gene_symbols else adata.var_names).astype(str)
    values = _scale_rows(loadings.T, normalize).T  # features x factors
    chosen: list[int] = []
    for factor in range(values.shape[1]):
        for feature in np.argsort(-values[:, factor], kind="stable")[:n_top]:
            if feature not in chosen:
                chosen.append(int(feature))
    n_factors = values.shape[1]
    fig, ax, created = get_axes(
        ax, (max(4.0, 0.3 * n_factors + 2), max(4.0, 0.13 * len(chosen) + 1))
    )
    image = ax.imshow(
        values[chosen], aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=vmax
    )
    ax.set_yticks(range(len(chosen)), names[chosen], fontsize=6)
    ax.set_xticks(range(n_factors), [str(f) for f in range(n_factors)], fontsize=7)
    ax.set_xlabel("factor")
    ax.set_title(f"top {n_top} features per factor ({key})")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    return finish(fig, ax, created=created, show=show, return_fig=return_fig)
