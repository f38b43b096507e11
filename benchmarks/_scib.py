"""The scIB metrics (``scintegrate.metrics.scib``, i.e. scib-metrics) of a benchmark's embeddings.

Every benchmark that scores an integration also prints this table: one row per embedding, the
scIB metrics and their aggregates (batch correction, bio conservation, total = 0.4 batch + 0.6
bio), computed on at most ``n_cells`` cells drawn at random (seed ``seed``; kBET, k-means and the
silhouettes grow faster than linearly with the cells). Needs ``pip install 'scintegrate[scib]'``.

In a benchmark (3 lines)::

    from _scib import add_scib_argument, scib_table   # import
    add_scib_argument(parser)                          # --scib-cells N (0 = all, -1 = skip)
    table = scib_table(adata, {"name": "X_key", ...}, batch_key=..., labels=..., args=args)
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

import scintegrate as si


def add_scib_argument(parser: argparse.ArgumentParser, default: int = 4000) -> None:
    parser.add_argument(
        "--scib-cells",
        type=int,
        default=default,
        help="cells drawn at random for the scIB metrics (0: all cells; -1: skip them)",
    )


def scib_table(
    adata: ad.AnnData,
    embeddings: Mapping[str, str],
    *,
    batch_key: str,
    labels,
    args: argparse.Namespace,
    keep: np.ndarray | None = None,
    unintegrated: str | None = "X_pca",
    seed: int = 0,
) -> pd.DataFrame | None:
    """scIB metrics of ``adata.obsm[key]`` for each ``name: key``, printed and returned.

    ``labels``: one cell type per cell of ``adata``; ``keep``: the cells scored (e.g. those with
    a label). ``unintegrated``: an obsm key of ``adata``, or ``"X_pca"`` computed from the counts
    in ``adata.X`` (metrics.scib's log-normalised PCA) when ``adata`` has none.
    """
    n_cells = getattr(args, "scib_cells", 4000)
    if n_cells < 0:
        return None
    rows = np.flatnonzero(np.ones(adata.n_obs, bool) if keep is None else keep)
    if n_cells and len(rows) > n_cells:
        rows = np.sort(np.random.default_rng(seed).choice(rows, n_cells, replace=False))
    obsm = {key: np.asarray(adata.obsm[key])[rows] for key in embeddings.values()}
    compute_pca = unintegrated is not None and unintegrated not in adata.obsm
    if unintegrated is not None and not compute_pca:
        obsm[unintegrated] = np.asarray(adata.obsm[unintegrated])[rows]
    part = ad.AnnData(
        adata.X[rows] if compute_pca else None,
        obs=pd.DataFrame(
            {
                "batch": np.asarray(adata.obs[batch_key]).astype(str)[rows],
                "label": np.asarray(labels).astype(str)[rows],
            },
            index=np.asarray(adata.obs_names)[rows],
        ),
        obsm=obsm,
    )
    table = si.metrics.scib(
        part,
        list(dict.fromkeys(embeddings.values())),
        batch_key="batch",
        labels_key="label",
        unintegrated=unintegrated,
    )
    names = {key: name for name, key in embeddings.items()}
    if unintegrated is not None:
        names.setdefault(unintegrated, f"unintegrated ({unintegrated})")
    table.index = [names[key] for key in table.index]
    print(
        f"scIB metrics (scib-metrics, {len(rows)} cells, batches {batch_key!r}, "
        f"{len(np.unique(part.obs['label']))} labels):"
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.round(3).to_string())
    print()
    return table
