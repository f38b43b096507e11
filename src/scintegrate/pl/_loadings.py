"""Gene loadings of one iNMF factor: the shared part and each dataset's own (rliger
``plotGeneLoadings``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from mudata import MuData

from .._docs import doc_params
from .._utils._factors import get_inmf_loadings
from .._utils._mudata import is_mudata
from .._utils._validation import check_positive_int
from ._common import finish, plot_mudata

_MARKER_COLOR = "#8227A0"  # rliger's highlight colour
_OTHER_COLOR = "0.6"


def _marker_genes(adata: AnnData, markers_key: str, factor: int) -> dict[str, set[str]]:
    """Genes of ``uns[markers_key]`` for the factor: ``"shared"`` and one entry per dataset."""
    record = adata.uns.get(markers_key)
    if not isinstance(record, Mapping) or not isinstance(record.get("shared"), pd.DataFrame):
        raise ValueError(
            f"adata.uns[{markers_key!r}] holds no marker tables; run tl.factor_markers(adata, "
            f"key_added={markers_key!r}) first, or pass markers_key=None."
        )
    shared, specific = record["shared"], record.get("specific")
    out = {"shared": set(shared.loc[shared["factor"] == factor, "gene"].astype(str))}
    if isinstance(specific, pd.DataFrame):
        rows = specific[specific["factor"] == factor]
        for dataset, genes in rows.groupby(rows["dataset"].astype(str), observed=True)["gene"]:
            out[dataset] = set(genes.astype(str))
    return out


@doc_params
def gene_loadings(
    adata: AnnData | MuData,
    key: str = "inmf",
    n_top: int = 10,
    *,
    factor: int,
    datasets: Sequence[str] | None = None,
    markers_key: str | None = None,
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> list[Axes] | Figure:
    """Top genes of one iNMF factor: shared loadings and each dataset's own (rliger).

    As rliger's ``plotGeneLoadings``/``plotGeneLoadingRank``: one panel for the loading both
    datasets share, ``W + min_d V_d`` (the smallest over the datasets shown), then one panel
    per dataset for its specific loading ``V_d``. Each panel shows the ``n_top`` genes with the
    largest positive loading as horizontal bars, largest on top. With ``markers_key`` the genes
    that :func:`~scintegrate.tl.factor_markers` reported as markers of that panel (shared, or
    specific to that dataset) are drawn in colour, the others in grey.

    A :class:`~mudata.MuData` integrated by ``tl.inmf``/``tl.online_inmf``/``tl.uinmf`` is
    drawn from the first modality's loadings (the shared features carry the same ``W`` and
    ``V`` in every modality) and the container's ``uns`` (``uns[key]``, ``uns[markers_key]``).

    Parameters
    ----------
    {adata}
    key
        ``key_added`` of ``tl.inmf`` / ``tl.online_inmf``: reads ``varm[f"{key}_W"]``,
        ``varm[f"{key}_V"]`` and ``uns[key]["batches"]``.
    n_top
        Genes per panel.
    factor
        The factor (0-based index).
    datasets
        Datasets to show, as named in ``uns[key]["batches"]``; all by default.
    markers_key
        ``key_added`` of a :func:`~scintegrate.tl.factor_markers` call whose markers are
        highlighted.
    ax
        Axes to draw into, one per panel (``1 + len(datasets)``); a new figure when ``None``.
    show
        Show the figure (``plt.show()``); by default only when no ``ax`` was given and the
        session is interactive.
    return_fig
        Return the :class:`~matplotlib.figure.Figure` instead of the Axes.

    Returns
    -------
    The list of panel Axes, shared first (or the Figure when ``return_fig``).
    """
    if is_mudata(adata):
        return plot_mudata(
            gene_loadings, adata, ax=ax, show=show, return_fig=return_fig,
            needs={"varm": [f"{key}_W"], "uns": key}, single=True, key=key, n_top=n_top,
            factor=factor, datasets=datasets, markers_key=markers_key,
        )  # fmt: skip
    loadings = get_inmf_loadings(adata, key)
    W, V, batches = loadings.W, loadings.V, loadings.batches
    n_top = check_positive_int(n_top, param="n_top")
    k = W.shape[1]
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or not 0 <= factor < k:
        raise ValueError(f"factor must be a factor index in [0, {k - 1}], got {factor!r}.")
    factor = int(factor)
    if datasets is None:
        chosen = list(range(len(batches)))
    else:
        if isinstance(datasets, str) or len(datasets) == 0:
            raise ValueError(f"datasets must be a list of dataset names, got {datasets!r}.")
        chosen = []
        for name in datasets:
            found = np.flatnonzero(batches == str(name))
            if found.size != 1:
                raise ValueError(
                    f"datasets: {name!r} is not a dataset of {key!r} "
                    f"(datasets: {', '.join(map(repr, batches))})."
                )
            chosen.append(int(found[0]))
    highlight = None if markers_key is None else _marker_genes(adata, markers_key, factor)
    n_panels = 1 + len(chosen)
    if ax is None:
        fig, axes = plt.subplots(1, n_panels, figsize=(2.6 * n_panels, 0.22 * n_top + 1.3))
        axes, created = list(np.atleast_1d(axes)), True
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        if len(axes) != n_panels or not all(isinstance(a, Axes) for a in axes):
            raise ValueError(
                f"ax must be {n_panels} Axes (shared + {len(chosen)} datasets), got {ax!r}."
            )
        fig, created = axes[0].figure, False

    names = np.asarray(adata.var_names).astype(str)
    panels = [("shared", "shared (W + min V)", W[:, factor] + V[:, factor, chosen].min(axis=1))]
    panels += [(batches[d], f"{batches[d]} (V)", V[:, factor, d]) for d in chosen]
    for axis, (which, title, values) in zip(axes, panels, strict=True):
        top = np.argsort(-values, kind="stable")[:n_top]
        top = top[values[top] > 0][::-1]  # largest at the top of the panel
        colors = [
            _MARKER_COLOR
            if highlight is None or names[g] in highlight.get(which, ())
            else _OTHER_COLOR
            for g in top
        ]
        axis.barh(np.arange(top.size), values[top], color=colors)
        axis.set_yticks(np.arange(top.size), names[top], fontsize=7)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("loading")
        axis.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"{key}: factor {factor}", fontsize=10)
    if created:
        fig.tight_layout()
    return finish(fig, axes, created=created, show=show, return_fig=return_fig)
