"""Subsets of the bundled real data shared by several test files (not fixtures: each file
decides the scope)."""

from __future__ import annotations

import numpy as np


def cortex_three_libraries(cortex, *, n_cells: int, n_genes: int, seed: int):
    """``n_cells`` random cells of libraries 09A-09C x the ``n_genes`` genes with most counts
    among them (cells left without counts dropped), ``library`` a fresh category; for the
    scETM tests, which need batches."""
    keep = cortex.obs["library"].isin(["09A", "09B", "09C"]).to_numpy()
    adata = cortex[keep].copy()
    adata = adata[np.random.default_rng(seed).choice(adata.n_obs, n_cells, replace=False)].copy()
    totals = np.asarray(adata.X.sum(axis=0)).ravel()
    adata = adata[:, np.sort(np.argsort(-totals)[:n_genes])].copy()
    adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()
    adata.obs["library"] = adata.obs["library"].astype(str).astype("category")
    return adata
