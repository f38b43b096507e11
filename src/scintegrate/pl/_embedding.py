"""UMAP and t-SNE of a tool's embedding, drawn with scanpy."""

from __future__ import annotations

from collections.abc import Sequence

from anndata import AnnData

from .._docs import doc_params
from ..metrics._clustering import knn_transformer_kwargs
from ._common import get_cell_factors


def _neighbors(adata: AnnData, key: str, n_neighbors: int, metric: str, random_state: int) -> str:
    import scanpy as sc

    neighbors_key = f"{key}_neighbors"
    sc.pp.neighbors(
        adata,
        n_neighbors=n_neighbors,
        use_rep=f"X_{key}",
        metric=metric,
        random_state=random_state,
        key_added=neighbors_key,
        **knn_transformer_kwargs(adata.n_obs),
    )
    return neighbors_key


@doc_params
def umap(
    adata: AnnData,
    key: str = "nmf",
    *,
    color: str | Sequence[str] | None = None,
    n_neighbors: int = 15,
    metric: str = "cosine",
    recompute: bool = False,
    random_state: int = 0,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """UMAP of ``obsm[f"X_{key}"]``, computed once and drawn with :func:`scanpy.pl.embedding`.

    Parameters
    ----------
    {adata}
    key
        The tool's ``key_added``; embeds ``adata.obsm[f"X_{key}"]``.
    color
        ``obs`` columns or genes to colour by.
    n_neighbors, metric
        kNN graph of the embedding (cosine by default: factor loadings scale with depth).
    recompute
        Recompute even when ``obsm[f"X_{key}_umap"]`` exists.
    random_state
        Seed of the neighbour search and of UMAP.
    show, return_fig
        As in scanpy.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``ax``, ``palette``, ``legend_loc``).

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns. Writes ``adata.obsp[f"{key}_neighbors_distances"]``,
    ``adata.obsp[f"{key}_neighbors_connectivities"]``, ``adata.uns[f"{key}_neighbors"]`` and the
    coordinates ``adata.obsm[f"X_{key}_umap"]``.
    """
    import scanpy as sc

    get_cell_factors(adata, key)
    basis = f"{key}_umap"
    if recompute or f"X_{basis}" not in adata.obsm:
        neighbors_key = _neighbors(adata, key, n_neighbors, metric, random_state)
        sc.tl.umap(
            adata, neighbors_key=neighbors_key, random_state=random_state, key_added=f"X_{basis}"
        )
    return sc.pl.embedding(
        adata, basis=basis, color=color, show=show, return_fig=return_fig, **kwargs
    )


@doc_params
def tsne(
    adata: AnnData,
    key: str = "nmf",
    *,
    color: str | Sequence[str] | None = None,
    perplexity: float = 30,
    metric: str = "cosine",
    recompute: bool = False,
    random_state: int = 0,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """t-SNE of ``obsm[f"X_{key}"]``, computed once and drawn with :func:`scanpy.pl.embedding`.

    Parameters
    ----------
    {adata}
    key
        The tool's ``key_added``; embeds ``adata.obsm[f"X_{key}"]``.
    color
        ``obs`` columns or genes to colour by.
    perplexity
        t-SNE perplexity.
    metric
        Distance between cells (cosine by default: factor loadings scale with depth).
    recompute
        Recompute even when ``obsm[f"X_{key}_tsne"]`` exists.
    random_state
        Seed of t-SNE.
    show, return_fig
        As in scanpy.
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns. Writes the coordinates
    ``adata.obsm[f"X_{key}_tsne"]`` and ``adata.uns[f"X_{key}_tsne"]`` (t-SNE parameters).
    """
    import scanpy as sc

    get_cell_factors(adata, key)
    basis = f"{key}_tsne"
    if recompute or f"X_{basis}" not in adata.obsm:
        sc.tl.tsne(
            adata,
            use_rep=f"X_{key}",
            perplexity=perplexity,
            metric=metric,
            random_state=random_state,
            key_added=f"X_{basis}",
        )
    return sc.pl.embedding(
        adata, basis=basis, color=color, show=show, return_fig=return_fig, **kwargs
    )
