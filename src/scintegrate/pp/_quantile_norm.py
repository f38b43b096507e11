"""``pp.quantile_norm``: LIGER's quantile alignment of iNMF cell factors across batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from .._core.quantile_norm import quantile_norm as _quantile_norm
from .._docs import doc_params
from .._logging import logger
from .._utils._mudata import is_mudata, run_alignment_on_mudata
from .._utils._random import get_rng
from .._utils._slots import record_params, write_slots
from .._utils._validation import (
    batch_index,
    check_adata,
    check_bool,
    check_dims,
    check_key,
    check_positive_int,
    get_cell_factors,
    obs_batch_codes,
)


@doc_params
def quantile_norm(
    adata: AnnData | MuData,
    *,
    use_rep: str = "X_inmf",
    batch_key: str | None = None,
    reference: str | None = None,
    quantiles: int = 50,
    min_cells: int = 20,
    n_neighbors: int = 20,
    use_dims: Sequence[int] | None = None,
    center: bool = False,
    max_sample: int = 1000,
    refine_knn: bool = True,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "inmf_qn",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Quantile-align the iNMF cell factors of every batch to a reference batch (LIGER).

    rliger's ``quantileNorm`` (Welch et al. 2019; Gao et al. 2021), the step that makes the
    factor loadings ``H`` of different datasets comparable after integrative NMF:

    1. **Clusters:** per batch, every factor is divided by its root-mean-square over the batch's
       cells (``sqrt(Σ h²/(n - 1))``; with ``center=True`` centred and divided by its standard
       deviation) and every cell is assigned to the factor with the largest scaled loading
       (among ``use_dims``). Cells without a positive loading get cluster ``"-1"``.
    2. **Refinement** (``refine_knn``): per batch, a majority vote over each cell's
       ``n_neighbors`` nearest neighbours (exact Euclidean kNN on the raw factors, the cell
       itself included); ties go to the smaller factor index. All cells vote at once with the
       labels of step 1 (rliger updates labels while it scans the cells, so its result depends
       on the cell order; the simultaneous vote does not).
    3. **Alignment:** for every batch (the reference too), cluster and factor with at least
       ``min_cells`` cells in both the batch and the reference, the ``quantiles + 1`` quantiles
       of a random subsample (at most ``max_sample`` cells) of the batch's loadings are mapped
       to those of the reference by piecewise-linear interpolation, clamped outside the range.
       Loadings whose quantiles sum to 0 or take fewer than 2 distinct values become 0. Cells of
       clusters too small on either side, and cells of cluster ``"-1"``, keep their loadings.

    Parameters
    ----------
    {adata}
    use_rep
        ``obsm`` key of the non-negative cell factors (cells x k), e.g. ``"X_inmf"`` from
        ``tl.inmf``/``tl.online_inmf``.
    batch_key
        ``obs`` column with the dataset (batch) of every cell; at least two batches. Needed for
        an AnnData; for a MuData each modality is a batch and ``batch_key`` splits them further.
    reference
        Name of the reference batch; by default the largest one (the first in category order
        on ties), as in rliger.
    quantiles
        Number of quantile intervals (``quantiles + 1`` quantiles, type 7 as R's default).
    min_cells
        Minimum number of cells of a cluster, in a batch and in the reference, to align it.
    n_neighbors
        Neighbours of the kNN refinement (capped at the batch size).
    use_dims
        Factor indices (0-based columns of ``obsm[use_rep]``) used for the cluster assignment;
        all by default. Alignment always covers all factors.
    center
        Centre the factors before scaling them in step 1 (rliger suggests it for less sparse
        modalities such as methylation).
    max_sample
        Maximum number of cells whose loadings give the quantiles of a cluster (at least 2).
    refine_knn
        Refine the clusters by the kNN vote of step 2.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True`` (not available for an AnnData
    opened in backed mode: there the results are kept in memory, the file is left unchanged, and
    a warning says so), and writes (replacing every slot
    that an earlier call with the same ``key_added`` wrote):

    ``adata.obsm[f"X_{key_added}"]``
        The aligned factors (n_obs x k, float64); usable with
        ``sc.pp.neighbors(use_rep=f"X_{key_added}")``.
    ``adata.obs[f"{key_added}_clusters"]``
        Categorical cluster of every cell: the (0-based) index of its max factor after
        refinement, or ``"-1"`` for cells without a positive loading.
    ``adata.uns[key_added]``
        ``params`` (every argument that affected the result, the resolved ``reference`` and the
        package version), ``batches`` (names in order) and ``n_unaligned`` (cells per batch whose
        cluster was too small to align and whose loadings were kept).

    For a :class:`~mudata.MuData` integrated by ``tl.inmf``/``tl.online_inmf``, each modality is
    a batch (split further by ``batch_key``; ``reference`` names a modality, or
    ``"<mod>:<value>"``): the factors are read from every modality's ``obsm[use_rep]``, and the
    aligned factors and clusters written to every modality and to the container
    (``mdata.obsm``, ``mdata.obs``), ``uns`` to the container.

    Examples
    --------
    >>> import scintegrate as si
    >>> si.pp.liger_preprocess(adata, batch_key="library")
    >>> # ... tl.inmf or tl.online_inmf writes the cell factors to adata.obsm["X_inmf"]
    >>> si.pp.quantile_norm(adata, batch_key="library")
    >>> si.metrics.alignment_score(adata, batches="library", use_rep="X_inmf_qn")
    """
    if is_mudata(adata):
        return run_alignment_on_mudata(
            quantile_norm,
            adata,
            use_rep=use_rep,
            batch_key=batch_key,
            copy=copy,
            key_added=key_added,
            reference=reference,
            quantiles=quantiles,
            min_cells=min_cells,
            n_neighbors=n_neighbors,
            use_dims=use_dims,
            center=center,
            max_sample=max_sample,
            refine_knn=refine_knn,
            random_state=random_state,
        )
    # validate everything before touching adata
    check_adata(adata)
    if not isinstance(batch_key, str):
        raise ValueError(
            f"batch_key must name the adata.obs column with each cell's dataset, got {batch_key!r}."
        )
    check_key(key_added)
    if adata.isbacked and copy:
        raise ValueError(
            "copy=True cannot copy an AnnData opened in backed mode. Call quantile_norm without "
            "copy (the results are kept in memory), or load the data with adata.to_memory()."
        )
    H = get_cell_factors(adata, use_rep, tool="Quantile normalisation")
    codes, names = obs_batch_codes(adata, batch_key)
    if len(names) < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has a single batch ({names[0]!r}); quantile "
            "normalisation aligns batches to a reference and needs at least two."
        )
    sizes = np.bincount(codes, minlength=len(names))
    if reference is None:
        ref_code = int(np.argmax(sizes))
    else:
        ref_code = batch_index(names, reference, batch_key=batch_key)
    k = H.shape[1]
    quantiles = check_positive_int(quantiles, param="quantiles")
    min_cells = check_positive_int(min_cells, param="min_cells")
    n_neighbors = check_positive_int(n_neighbors, param="n_neighbors")
    max_sample = check_positive_int(max_sample, param="max_sample", minimum=2)
    use_dims = check_dims(use_dims, k)
    center = check_bool(center, param="center")
    refine_knn = check_bool(refine_knn, param="refine_knn")
    rng = get_rng(random_state)

    result = _quantile_norm(
        H,
        codes,
        ref_code,
        quantiles=quantiles,
        min_cells=min_cells,
        n_neighbors=n_neighbors,
        use_dims=use_dims,
        center=bool(center),
        max_sample=max_sample,
        refine_knn=bool(refine_knn),
        random_state=rng,
    )
    n_unaligned = np.bincount(codes[~result.aligned], minlength=len(names)).astype(np.int64)
    logger.info(
        "Quantile normalisation to reference %r: %d of %d cells aligned",
        names[ref_code],
        int(result.aligned.sum()),
        H.shape[0],
    )
    if n_unaligned.sum():
        logger.info(
            "%d cells kept their loadings (cluster smaller than min_cells=%d on either side, or "
            "no positive loading).",
            int(n_unaligned.sum()),
            min_cells,
        )
    return write_aligned(
        adata,
        key_added,
        result.H_norm,
        result.clusters,
        copy=copy,
        params={
            "use_rep": use_rep,
            "batch_key": batch_key,
            "reference": str(names[ref_code]),
            "quantiles": quantiles,
            "min_cells": min_cells,
            "n_neighbors": n_neighbors,
            "use_dims": None if use_dims is None else use_dims.tolist(),
            "center": bool(center),
            "max_sample": max_sample,
            "refine_knn": bool(refine_knn),
            "random_state": random_state if isinstance(random_state, int) else None,
        },
        uns={"batches": names, "n_unaligned": n_unaligned},
    )


def write_aligned(
    adata, key_added: str, embedding, clusters, *, copy: bool, params: dict, uns: dict
):
    """The one slot writer of the alignment tools (:func:`quantile_norm`,
    :func:`~scintegrate.pp.centroid_align`): ``obsm[f"X_{key}"]``, the categorical
    ``obs[f"{key}_clusters"]`` and ``uns[key]`` (``params`` plus ``uns``), into ``adata`` or a
    copy (returned). A backed ``adata`` keeps the results in memory only, and says so."""
    categories = [str(c) for c in np.unique(clusters)]
    labels = pd.Categorical(np.asarray(clusters).astype(str), categories=categories)
    if adata.isbacked:
        logger.warning(
            "adata is backed by %s: the results are kept in memory and the file is not changed. "
            "Save them with adata.write_h5ad(path) or work on adata.to_memory().",
            adata.filename,
        )
    adata = adata.copy() if copy else adata
    write_slots(
        adata,
        key_added,
        obsm={f"X_{key_added}": embedding},
        obs={f"{key_added}_clusters": labels},
        uns={"params": record_params(params), **uns},
    )
    return adata if copy else None
