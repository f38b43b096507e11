"""Helpers shared by the plot functions: slot lookup, the ax/show/return_fig convention, and
what a plot of a MuData draws (:func:`plot_mudata`)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._mudata import MODALITY_COLUMN, container_anndata
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


def _modality_view(mdata, name: str, columns) -> AnnData:
    """A modality's annotations for plotting (``obs``/``var`` copied, arrays shared), with the
    container's ``uns`` entries added and ``"modality"`` / ``"<name>:<column>"`` columns."""
    mod = mdata.mod[name]
    obs = mod.obs.copy()
    for column in columns:
        if column is None or column in obs.columns:
            continue
        prefix, sep, field = column.partition(":")
        if column == MODALITY_COLUMN:
            obs[column] = pd.Categorical([name] * mod.n_obs)
        elif sep and prefix == name and field in obs.columns:
            obs[column] = obs[field]
    view = AnnData(obs=obs, var=mod.var.copy())
    for group in ("obsm", "varm", "obsp"):
        target = getattr(view, group)
        for entry, value in getattr(mod, group).items():
            target[entry] = value
    view.uns.update(mod.uns)
    view.uns.update(mdata.uns)
    return view


def mudata_views(
    mdata,
    *,
    obsm: str | None = None,
    varm: Sequence[str] = (),
    uns: str | None = None,
    columns: Sequence[str | None] = (),
) -> list[tuple[str | None, AnnData]]:
    """The AnnData views a plot of a MuData draws, each with its modality (``None``: joint).

    The plot functions read an AnnData; for a MuData this picks what they read. Cell-level plots
    (``obsm`` and ``obs`` columns, ``uns`` records) draw **one joint view** of the container when
    it holds what they need (``mdata.obsm[obsm]``, ``mdata.uns[uns]``): the cells of every
    modality, ``columns`` taken from ``mdata.obs``, ``"modality"``, muon's ``"<mod>:<column>"``
    or a column gathered from every modality that has it (cells without a value in ``obsm``,
    such as cells a tool did not embed, are left out). Otherwise, and always for feature-level
    plots (``varm``: one of these entries), **one view per modality** that has what they need
    (its own ``obsm``, ``varm`` and ``uns``, the container's ``uns`` added). Nothing is written
    into ``mdata``: the views copy ``obs`` and ``var`` and share the arrays.
    """
    columns = [c for c in columns if c is not None]
    if not varm and (obsm is None or obsm in mdata.obsm) and (uns is None or uns in mdata.uns):
        view = container_anndata(mdata, columns)
        if obsm is not None:
            values = np.asarray(view.obsm[obsm], dtype=float)
            embedded = np.isfinite(values).all(axis=1)
            if not embedded.all():
                view = view[embedded].copy()
        return [(None, view)]
    views = []
    for name, mod in mdata.mod.items():
        if obsm is not None and obsm not in mod.obsm:
            continue
        if varm and not any(entry in mod.varm for entry in varm):
            continue
        if uns is not None and uns not in mod.uns and uns not in mdata.uns:
            continue
        views.append((name, _modality_view(mdata, name, columns)))
    if not views:
        needs = [f"obsm[{obsm!r}]"] if obsm else []
        needs += [f"varm[{' or '.join(map(repr, varm))}]"] if varm else []
        needs += [f"uns[{uns!r}]"] if uns else []
        raise ValueError(
            f"Neither the MuData nor any of its modalities ({', '.join(map(repr, mdata.mod))}) "
            f"has {' and '.join(needs)}; run the tool on the MuData (or a modality) with that "
            "key first, or pass the key you used."
        )
    return views


def plot_mudata(
    plot,
    mdata,
    *,
    ax=None,
    show: bool | None,
    return_fig: bool,
    needs: dict,
    single: bool = False,
    panel_size: tuple[float, float] = (5.0, 4.0),
    **kwargs,
):
    """Draw ``plot`` (a plot function of this package taking ``ax``, ``show`` and
    ``return_fig``) for a MuData: on the joint view, or one panel per modality
    (:func:`mudata_views` with ``needs``); ``single`` draws the first modality's view only
    (plots that make their own panels). Several panels go into a new figure, one per modality
    titled by its name, or into ``ax``, a sequence of that many Axes; the list of panel Axes is
    returned (the Figure with ``return_fig``)."""
    views = mudata_views(mdata, **needs)
    if single:
        views = views[:1]
    if len(views) == 1:
        return plot(views[0][1], ax=ax, show=show, return_fig=return_fig, **kwargs)
    if ax is None:
        fig, axes = plt.subplots(
            1, len(views), figsize=(panel_size[0] * len(views), panel_size[1]), squeeze=False
        )
        axes, created = list(axes[0]), True
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        if len(axes) != len(views) or not all(isinstance(a, Axes) for a in axes):
            names = ", ".join(repr(name) for name, _ in views)
            raise ValueError(
                f"This MuData is drawn in {len(views)} panels, one per modality ({names}); pass "
                f"ax as {len(views)} Axes, or ax=None."
            )
        fig, created = axes[0].figure, False
    for (name, view), axis in zip(views, axes, strict=True):
        plot(view, ax=axis, show=False, return_fig=False, **kwargs)
        title = axis.get_title()
        axis.set_title(f"{name}: {title}" if title else str(name))
    if created:
        fig.tight_layout()
    return finish(fig, axes, created=created, show=show, return_fig=return_fig)
