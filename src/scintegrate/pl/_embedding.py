"""UMAP and t-SNE of a tool's embedding, drawn with scanpy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from mudata import MuData

from .._docs import doc_params
from .._utils._clustering import check_seed, neighbors_graph
from .._utils._mudata import container_anndata, copy_back, is_mudata
from .._utils._slots import write_slots
from .._utils._validation import check_bool, check_number, check_positive_int
from ._common import get_cell_factors


def _check_color(adata: AnnData, color: Any, kwargs: dict) -> None:
    """Refuse a ``color`` key that :func:`scanpy.pl.embedding` cannot find, before any write.

    scanpy takes ``obs`` columns and genes: ``var_names`` (``raw.var_names`` when it uses
    ``.raw``, which it does by default when there is one and no ``layer``), or values of the
    ``var[gene_symbols]`` column.
    """
    if color is None:
        return
    keys = [color] if isinstance(color, str) else list(color)
    use_raw = kwargs.get("use_raw")
    if use_raw is None:
        use_raw = kwargs.get("layer") is None and adata.raw is not None
    genes = adata.raw.var_names if use_raw and adata.raw is not None else adata.var_names
    symbols = kwargs.get("gene_symbols")
    for key in keys:
        if key is None or key in adata.obs.columns or key in adata.var_names:
            continue
        if symbols is not None and symbols in adata.var.columns:
            matches = adata.var.index[adata.var[symbols] == key]
            key = matches[0] if len(matches) else key
        if key in genes:
            continue
        raw = " or adata.raw.var_names" if genes is not adata.var_names else ""
        raise ValueError(
            f"color={key!r} is neither a column of adata.obs nor a gene of adata.var_names{raw}; "
            "pass obs column names or genes."
        )


def _on_container(plot, mdata, key, color, **kwargs):
    """A joint plot of a MuData: the container's embedding (``mdata.obsm[f"X_{key}"]``),
    coloured by container columns, ``"modality"``, or modality columns (``"rna:cell_type"``, or
    ``"cell_type"`` gathered from every modality that has it); what the plot computes is stored
    on the container."""
    columns = [] if color is None else [color] if isinstance(color, str) else list(color)
    if f"X_{key}" not in mdata.obsm:
        raise ValueError(
            f"mdata.obsm has no 'X_{key}': run the tool on the MuData with key_added={key!r} "
            "(paired cells get no container embedding: plot a modality, mdata[mod], instead)."
        )
    view = container_anndata(mdata, columns)
    result = plot(view, key, color=color, **kwargs)
    copy_back(view, mdata)
    return result


def _check_options(adata, key, color, metric, recompute, random_state, kwargs) -> np.ndarray:
    embedding = get_cell_factors(adata, key)
    _check_color(adata, color, kwargs)
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a distance name such as 'cosine', got {metric!r}.")
    check_bool(recompute, param="recompute")
    check_seed(random_state)
    return embedding


@doc_params
def umap(
    adata: AnnData | MuData,
    key: str = "nmf",
    *,
    color: str | Sequence[str] | None = None,
    n_neighbors: int = 15,
    metric: str = "cosine",
    recompute: bool = False,
    random_state: int | np.random.Generator | None = 0,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Figure | Axes | list[Axes] | None:
    """UMAP of ``obsm[f"X_{key}"]``, computed once and drawn with :func:`scanpy.pl.embedding`.

    A :class:`~mudata.MuData` gives the joint UMAP of ``mdata.obsm[f"X_{key}"]`` (the cells of
    every modality, as ``tl.inmf``, ``tl.online_inmf``, ``tl.mmdma`` and ``tl.scjmt`` write it):
    ``color`` takes container columns, ``"modality"``, ``"<mod>:<column>"`` (muon's naming), or a
    column name gathered from every modality that has it; the results are stored on the
    container.

    Parameters
    ----------
    {adata}
    key
        The tool's ``key_added``; embeds ``adata.obsm[f"X_{key}"]``.
    color
        ``obs`` columns or genes to colour by (checked before anything is computed).
    n_neighbors, metric
        kNN graph of the embedding (at least 2 neighbours; cosine distance by default: factor
        loadings scale with depth).
    recompute
        Recompute even when ``obsm[f"X_{key}_umap"]`` exists.
    random_state
        Seed of the neighbour search and of UMAP (a numpy Generator gives one seed).
    show, return_fig
        As in scanpy.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``ax``, ``palette``, ``legend_loc``).

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns. When it computes the UMAP, writes (after every
    check, replacing what an earlier call wrote there):

    ``adata.obsp[f"{key}_neighbors_distances"]``, ``adata.obsp[f"{key}_neighbors_connectivities"]``
        The kNN graph (scanpy's layout, usable as ``neighbors_key=f"{key}_neighbors"``).
    ``adata.uns[f"{key}_neighbors"]``
        scanpy's description of that graph.
    ``adata.obsm[f"X_{key}_umap"]``, ``adata.uns[f"X_{key}_umap"]``
        The coordinates and the UMAP parameters.
    """
    import scanpy as sc

    if is_mudata(adata):
        return _on_container(
            umap, adata, key, color, n_neighbors=n_neighbors, metric=metric,
            recompute=recompute, random_state=random_state, show=show, return_fig=return_fig,
            **kwargs,
        )  # fmt: skip
    embedding = _check_options(adata, key, color, metric, recompute, random_state, kwargs)
    n_neighbors = check_positive_int(n_neighbors, param="n_neighbors", minimum=2)
    basis = f"{key}_umap"
    coords_key = f"X_{basis}"
    if recompute or coords_key not in adata.obsm:
        # computed on a new AnnData holding the embedding, written into adata only at the end
        seed = check_seed(random_state)
        neighbors_key = f"{key}_neighbors"
        graph = neighbors_graph(
            embedding,
            n_neighbors=n_neighbors,
            metric=metric,
            random_state=seed,
            use_rep=f"X_{key}",
            key_added=neighbors_key,
            scanpy_graph=True,
        )
        sc.tl.umap(graph, neighbors_key=neighbors_key, random_state=seed, key_added=coords_key)
        obsp = [f"{neighbors_key}_distances", f"{neighbors_key}_connectivities"]
        write_slots(
            adata,
            neighbors_key,
            uns=graph.uns[neighbors_key],
            obsp={name: graph.obsp[name] for name in obsp},
        )
        write_slots(
            adata, coords_key, uns=graph.uns[coords_key], obsm={coords_key: graph.obsm[coords_key]}
        )
    return sc.pl.embedding(
        adata, basis=basis, color=color, show=show, return_fig=return_fig, **kwargs
    )


@doc_params
def tsne(
    adata: AnnData | MuData,
    key: str = "nmf",
    *,
    color: str | Sequence[str] | None = None,
    perplexity: float = 30.0,
    metric: str = "cosine",
    recompute: bool = False,
    random_state: int | np.random.Generator | None = 0,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Figure | Axes | list[Axes] | None:
    """t-SNE of ``obsm[f"X_{key}"]``, computed once and drawn with :func:`scanpy.pl.embedding`.

    A :class:`~mudata.MuData` gives the joint t-SNE of ``mdata.obsm[f"X_{key}"]``, coloured as
    in :func:`umap`.

    Parameters
    ----------
    {adata}
    key
        The tool's ``key_added``; embeds ``adata.obsm[f"X_{key}"]``.
    color
        ``obs`` columns or genes to colour by (checked before anything is computed).
    perplexity
        t-SNE perplexity, a number > 0.
    metric
        Distance between cells (cosine by default: factor loadings scale with depth).
    recompute
        Recompute even when ``obsm[f"X_{key}_tsne"]`` exists.
    random_state
        Seed of t-SNE (a numpy Generator gives one seed).
    show, return_fig
        As in scanpy.
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns. When it computes the t-SNE, writes (after every
    check, replacing what an earlier call wrote there):

    ``adata.obsm[f"X_{key}_tsne"]``, ``adata.uns[f"X_{key}_tsne"]``
        The coordinates and the t-SNE parameters.
    """
    import scanpy as sc

    if is_mudata(adata):
        return _on_container(
            tsne, adata, key, color, perplexity=perplexity, metric=metric,
            recompute=recompute, random_state=random_state, show=show, return_fig=return_fig,
            **kwargs,
        )  # fmt: skip
    embedding = _check_options(adata, key, color, metric, recompute, random_state, kwargs)
    check_number(perplexity, param="perplexity", minimum=0, exclusive_minimum=True)
    basis = f"{key}_tsne"
    coords_key = f"X_{basis}"
    if recompute or coords_key not in adata.obsm:
        # computed on a new AnnData holding the embedding, written into adata only at the end
        cells = AnnData(
            obsm={f"X_{key}": embedding}, obs=pd.DataFrame(index=adata.obs_names.copy())
        )
        sc.tl.tsne(
            cells,
            use_rep=f"X_{key}",
            perplexity=perplexity,
            metric=metric,
            random_state=check_seed(random_state),
            key_added=coords_key,
        )
        write_slots(
            adata, coords_key, uns=cells.uns[coords_key], obsm={coords_key: cells.obsm[coords_key]}
        )
    return sc.pl.embedding(
        adata, basis=basis, color=color, show=show, return_fig=return_fig, **kwargs
    )
