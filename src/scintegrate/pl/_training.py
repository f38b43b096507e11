"""Training curves from ``uns[key]["history"]``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from mudata import MuData

from .._docs import doc_params
from .._utils._mudata import is_mudata
from ._common import finish, get_axes, get_uns_entry, plot_mudata

_LABELS = {
    "loss": "loss",
    "poisson_loglik": "mean Poisson log-likelihood",
    "ari": "ARI",
    "nmi": "NMI",
    "time": "seconds",
}


@doc_params
def training_curve(
    adata: AnnData | MuData,
    key: str = "nmf",
    *,
    y: str = "loss",
    y2: str | None = "ari",
    x: str = "iteration",
    label: str | None = None,
    color: str = "C0",
    color2: str = "C3",
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Plot a tool's training history: one metric, and optionally a second on a twin axis.

    With the defaults this draws the loss and the ARI against the iteration, as in the training
    curves of NMF and scETM. Call it twice on the same ``ax`` with ``y2=None`` to compare runs
    (e.g. ``y="ari"`` of NMF-SSE and NMF-Poisson).

    A :class:`~mudata.MuData` draws the history in ``mdata.uns[key]`` (where the tools run on a
    MuData write it), or else one panel per modality that has ``uns[key]``.

    Parameters
    ----------
    {adata}
    key
        The ``key_added`` of the tool; the history is ``adata.uns[key]["history"]``.
    y
        History column for the left axis (e.g. ``"loss"``, ``"poisson_loglik"``, ``"ari"``).
    y2
        History column for the right axis; skipped when ``None`` or absent from the history.
    x
        History column for the horizontal axis (``"iteration"``, ``"epoch"`` or ``"time"``).
    label
        Legend label of the ``y`` curve (defaults to ``key``).
    color, color2
        Colours of the two curves.
    {plot_common}

    Returns
    -------
    The Axes of ``y`` (or the Figure when ``return_fig``).
    """
    if is_mudata(adata):
        return plot_mudata(
            training_curve, adata, ax=ax, show=show, return_fig=return_fig,
            needs={"uns": key}, key=key, y=y, y2=y2, x=x, label=label, color=color,
            color2=color2,
        )  # fmt: skip
    history = get_uns_entry(adata, key).get("history")
    if not isinstance(history, pd.DataFrame):
        raise ValueError(f"adata.uns[{key!r}] has no 'history' DataFrame to plot.")
    for column in (x, y):
        if column not in history.columns:
            raise ValueError(
                f"{column!r} is not a column of the history of {key!r} "
                f"(columns: {', '.join(history.columns)})."
            )
    history = history.sort_values(x)
    fig, ax, created = get_axes(ax, (5, 3.5))
    values = history[[x, y]].dropna()
    ax.plot(
        values[x],
        values[y],
        color=color,
        label=label or key,
        marker="." if len(values) < 30 else None,
    )
    ax.set_xlabel(x)
    ax.set_ylabel(_LABELS.get(y, y), color=color if y2 else "black")
    if y2 is not None and y2 in history.columns and history[y2].notna().any():
        ax2 = ax.twinx()
        second = history[[x, y2]].dropna()
        ax2.plot(second[x], second[y2], color=color2, marker="o", markersize=3, linewidth=1)
        ax2.set_ylabel(_LABELS.get(y2, y2), color=color2)
    ax.set_title(f"{key}: training history")
    return finish(fig, ax, created=created, show=show, return_fig=return_fig)


@doc_params
def delta_w(
    adata: AnnData | MuData,
    key: str = "inmf",
    *,
    x: str = "epoch",
    label: str | None = None,
    color: str = "C0",
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Relative change of the shared gene loadings ``W`` per online iNMF update, on a log scale.

    ``tl.online_inmf`` records after every mini-batch update ``‖W_new - W_old‖_F / ‖W_old‖_F``
    (``delta_W`` in ``uns[key]["history"]``); its decay shows the shared factors settling, as
    in Fig. S2 of the online iNMF paper (Gao et al. 2021). Call it again on the same ``ax`` to
    compare runs (e.g. mini-batch sizes).

    A :class:`~mudata.MuData` draws the history in ``mdata.uns[key]``, or else one panel per
    modality that has ``uns[key]``.

    Parameters
    ----------
    {adata}
    key
        The ``key_added`` of ``tl.online_inmf``; the history is ``adata.uns[key]["history"]``.
    x
        History column for the horizontal axis: ``"epoch"`` (fractional epochs),
        ``"iteration"`` (mini-batch updates) or ``"time"`` (seconds).
    label
        Legend label of the curve (defaults to ``key``).
    color
        Colour of the curve.
    {plot_common}

    Returns
    -------
    The Axes (or the Figure when ``return_fig``).
    """
    if is_mudata(adata):
        return plot_mudata(
            delta_w, adata, ax=ax, show=show, return_fig=return_fig, needs={"uns": key},
            key=key, x=x, label=label, color=color,
        )  # fmt: skip
    history = get_uns_entry(adata, key).get("history")
    if not isinstance(history, pd.DataFrame) or "delta_W" not in history.columns:
        raise ValueError(
            f"adata.uns[{key!r}] has no history with a 'delta_W' column; tl.online_inmf records "
            "it (batch tl.inmf does not)."
        )
    if x not in ("epoch", "iteration", "time") or x not in history.columns:
        raise ValueError(
            f"x={x!r} is not supported; use 'epoch', 'iteration' or 'time' (a column of the "
            "history)."
        )
    values = history[[x, "delta_W"]].dropna().sort_values(x)
    values = values[values["delta_W"] > 0]  # a log scale shows positive changes only
    fig, ax, created = get_axes(ax, (5, 3.5))
    ax.plot(values[x], values["delta_W"], color=color, label=label or key, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("relative change of W")
    ax.set_title(f"{key}: convergence of W")
    if created:
        fig.tight_layout()
    return finish(fig, ax, created=created, show=show, return_fig=return_fig)
