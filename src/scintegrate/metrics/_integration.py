"""LIGER's integration metrics: alignment, agreement and cluster purity (rliger 2.x formulas).

``alignment_score`` measures how well batches mix in an embedding, ``agreement`` how well the
integrated embedding preserves each batch's own neighbourhoods (a per-batch NMF of its scaled
data being the reference geometry), ``purity`` how well clusters respect known labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._logging import logger
from .._utils._clustering import contingency_table
from .._utils._random import get_rng
from .._utils._validation import (
    batch_codes,
    check_finite_nonnegative,
    check_positive_int,
    get_matrix,
    get_obs_labels,
)
from ._common import get_embedding, get_labels

# iterations of the per-batch NMF of `agreement` (rliger runs 30 ANLS iterations; HALS sweeps
# are cheaper and converge more slowly, so more of them, stopping at a relative change of 1e-4)
_AGREEMENT_NMF_MAX_ITER = 100
_AGREEMENT_NMF_TOL = 1e-4


def _knn(embedding: np.ndarray, k: int) -> np.ndarray:
    """Exact Euclidean k nearest neighbours of every row among the others (self excluded)."""
    from sklearn.neighbors import NearestNeighbors  # imported late: heavy

    return NearestNeighbors(n_neighbors=k).fit(embedding).kneighbors(return_distance=False)


def alignment_score(
    data: AnnData | np.ndarray,
    *,
    batches: str | Sequence,
    use_rep: str | None = None,
    n_neighbors: int | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> float:
    """LIGER's alignment score: how evenly the batches mix among each cell's neighbours.

    rliger's ``calcAlignment`` (Butler et al. 2018, Welch et al. 2019): every batch is downsampled
    without replacement to the size ``n_min`` of the smallest one; with ``N`` batches, each
    sampled cell counts ``x``, how many of its ``k`` nearest sampled neighbours (exact Euclidean,
    itself excluded) come from its own batch, and scores ``1 - (x - k/N) / (k - k/N)``. The
    result is the mean over the sampled cells: 0 for fully separated batches, about 1 for
    batches mixed at random (slightly above 1, as a cell is not its own neighbour), and at most
    ``N / (N - 1)`` when every neighbour comes from another batch. ``k`` is at most
    ``n_min - 1``, so that fully separated batches can score 0; every batch needs 2 cells. The
    neighbours' batches are those of the sampled
    cells (rliger 2.x indexes the unsampled labels there, which is wrong whenever the batches
    differ in size; rliger 1.x did it right).

    Parameters
    ----------
    data
        An embedding (cells x dimensions), or an AnnData with the embedding in ``obsm[use_rep]``.
    batches
        The batch of every cell, or the ``obs`` column holding it when ``data`` is an AnnData.
    use_rep
        ``obsm`` key of the embedding when ``data`` is an AnnData (e.g. ``"X_inmf_qn"``).
    n_neighbors
        Neighbours ``k``; by default ``max(floor(0.01 n), 10)`` with ``n`` the number of cells,
        as rliger, lowered to ``n_min - 1`` (with a warning) for a smaller smallest batch. At
        most ``n_min - 1``.
    random_state
        Seed of the downsampling.

    Returns
    -------
    The alignment score (mean over the sampled cells).
    """
    embedding = get_embedding(data, use_rep, example="X_inmf_qn").astype(np.float64, copy=False)
    values = get_labels(data, batches, embedding.shape[0], param="batches")
    codes, names = batch_codes(values, what="batches")
    n_batches = len(names)
    if n_batches < 2:
        raise ValueError(
            f"The alignment score compares batches; got a single batch ({names[0]!r})."
        )
    sizes = np.bincount(codes, minlength=n_batches)
    n_min = int(sizes.min())
    if n_min < 2:
        raise ValueError(
            f"Batch {names[int(np.argmin(sizes))]!r} has a single cell. The alignment score needs "
            "at least 2 cells in every batch, so that a cell's neighbours can come from its own "
            "batch; remove or merge that batch."
        )
    default_k = max(int(np.floor(0.01 * embedding.shape[0])), 10)
    if n_neighbors is None:
        k = min(default_k, n_min - 1)
        if k < default_k:
            logger.warning(
                "The smallest batch has %d cells: alignment_score uses %d neighbours instead of "
                "%d.",
                n_min,
                k,
                default_k,
            )
    else:
        k = check_positive_int(n_neighbors, param="n_neighbors")
        if k > n_min - 1:
            raise ValueError(
                f"n_neighbors={k} is too large: the smallest batch has {n_min} cells, so a cell "
                f"has at most {n_min - 1} neighbours of its own batch and fully separated batches "
                f"could not score 0. Choose n_neighbors <= {n_min - 1}."
            )
    rng = get_rng(random_state)
    sampled = np.concatenate(
        [
            rng.choice(np.flatnonzero(codes == b), size=n_min, replace=False)
            for b in range(n_batches)
        ]
    )
    own = codes[sampled]
    neighbours = _knn(embedding[sampled], k)
    same = (own[neighbours] == own[:, None]).sum(axis=1)
    expected = k / n_batches
    return float(np.mean(1 - (same - expected) / (k - expected)))


def purity(
    labels_true: str | Sequence,
    labels_pred: str | Sequence,
    *,
    adata: AnnData | None = None,
) -> float:
    """Cluster purity: the fraction of cells in the majority true class of their cluster.

    ``Σ_c max_t |c ∩ t| / N`` over the predicted clusters ``c`` and true classes ``t`` (rliger's
    ``calcPurity``, dividing by the number of compared cells as rliger 1.x). 1 when every cluster
    holds a single class; it favours many small clusters, so report it with the cluster count
    (or with ARI/NMI). Missing labels form a class of their own.

    Parameters
    ----------
    labels_true
        Known labels, one per cell, or an ``obs`` column of ``adata``.
    labels_pred
        Predicted clusters, one per cell, or an ``obs`` column of ``adata`` (e.g.
        ``"inmf_qn_clusters"``).
    adata
        AnnData whose ``obs`` holds the columns named by ``labels_true``/``labels_pred``.

    Returns
    -------
    The purity, between ``max_t |t| / N`` (one cluster) and 1.
    """
    if adata is not None and not isinstance(adata, AnnData):
        raise ValueError(f"adata must be an AnnData, got {type(adata).__name__}.")
    resolved = []
    for name, values in (("labels_true", labels_true), ("labels_pred", labels_pred)):
        if isinstance(values, str):
            if adata is None:
                raise ValueError(
                    f"{name}={values!r} is a column name; pass adata=... as well, or one label "
                    "per cell."
                )
            values = get_obs_labels(adata, values, param=name)
        resolved.append(np.asarray(values, dtype=object))
    if resolved[0].size == 0:
        raise ValueError("purity needs at least one cell.")
    table = contingency_table(resolved[0], resolved[1])  # true x predicted
    return float(table.max(axis=0).sum() / table.sum())


def agreement(
    data: AnnData | np.ndarray,
    *,
    batches: str | Sequence,
    X=None,
    use_rep: str | None = None,
    layer: str | None = None,
    mask_var: str | np.ndarray | None = None,
    n_components: int = 40,
    n_neighbors: int = 15,
    random_state: int | np.random.Generator | None = 0,
) -> float:
    """LIGER's agreement: how well an integrated embedding keeps each batch's own neighbours.

    rliger's ``calcAgreement``: for every batch, its scaled data are factorised on their own by
    NMF with ``n_components`` factors (squared error, HALS; scintegrate's ``tl.nmf`` solver) and
    every cell's ``n_neighbors`` nearest neighbours (exact Euclidean, itself excluded) in that
    per-batch NMF embedding are compared with its neighbours among the same batch's cells in the
    integrated embedding. The result is the mean Jaccard index ``|N₁ ∩ N₂| / |N₁ ∪ N₂|`` over
    all cells: 1 means the integration kept every neighbourhood; rliger reports typical values
    of 0.2-0.3 after quantile normalisation.

    Parameters
    ----------
    data
        The integrated embedding (cells x dimensions), or an AnnData with it in
        ``obsm[use_rep]``.
    batches
        The batch of every cell, or the ``obs`` column holding it when ``data`` is an AnnData.
    X
        Non-negative scaled data (cells x features, dense or sparse), e.g. the layer of
        ``pp.liger_preprocess``. With an AnnData it may be omitted: ``layer`` is used instead.
    use_rep
        ``obsm`` key of the embedding when ``data`` is an AnnData (e.g. ``"X_inmf_qn"``).
    layer
        Layer of ``data`` holding the scaled data when ``X`` is omitted (``None``: ``.X``), e.g.
        ``"liger_scaled"``.
    mask_var
        Features to use: a boolean mask, or (with an AnnData) a ``var`` column such as
        ``"liger_highly_variable"``; all features by default.
    n_components
        Factors of the per-batch NMF (rliger ``ndims``), capped at the batch's size.
    n_neighbors
        Neighbours per cell (rliger ``nNeighbors``), capped at the batch's size minus one.
    random_state
        Seed of the NMF initialisations (NNDSVDA by randomised SVD).

    Returns
    -------
    The mean Jaccard index over all cells, between 0 and 1.
    """
    embedding = get_embedding(data, use_rep, example="X_inmf_qn").astype(np.float64, copy=False)
    n_cells = embedding.shape[0]
    values = get_labels(data, batches, n_cells, param="batches")
    codes, names = batch_codes(values, what="batches")
    X = _agreement_matrix(data, X, layer, mask_var, n_cells)
    n_components = check_positive_int(n_components, param="n_components")
    n_neighbors = check_positive_int(n_neighbors, param="n_neighbors")
    rng = get_rng(random_state)

    reference = batch_nmf_embeddings(X, codes, names, n_components, rng)
    scores = []
    for b, name in enumerate(names):
        rows = np.flatnonzero(codes == b)
        k = min(n_neighbors, rows.size - 1)
        if k < 1:
            logger.warning("Batch %r has a single cell; it is left out of the agreement.", name)
            continue
        if k < n_neighbors:
            logger.warning(
                "Batch %r has %d cells: agreement uses %d neighbours there.", name, rows.size, k
            )
        scores.append(jaccard_overlap(_knn(reference[b], k), _knn(embedding[rows], k)))
    if not scores:
        raise ValueError("Every batch has a single cell; the agreement is undefined.")
    return float(np.mean(np.concatenate(scores)))


def _agreement_matrix(data, X, layer, mask_var, n_cells):
    if X is None:
        if not isinstance(data, AnnData):
            raise ValueError(
                "Pass X, the scaled data (cells x features) the embedding was computed from; "
                "it can only be omitted when data is an AnnData (see layer)."
            )
        X = get_matrix(data, layer)
    elif layer is not None:
        raise ValueError("Pass either X or layer, not both.")
    if not (isinstance(X, np.ndarray) or sp.issparse(X)):
        X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != n_cells:
        raise ValueError(f"X must have one row per cell ({n_cells}), got shape {X.shape}.")
    if mask_var is not None:
        if isinstance(mask_var, str):
            if not isinstance(data, AnnData) or mask_var not in data.var.columns:
                raise ValueError(
                    f"mask_var={mask_var!r} is not a column of adata.var; pass a boolean mask "
                    "over the features or the name of a boolean var column."
                )
            mask_var = data.var[mask_var].to_numpy()
        mask_var = np.asarray(mask_var)
        if mask_var.dtype != bool or mask_var.shape != (X.shape[1],):
            raise ValueError(
                f"mask_var must be a boolean mask of length {X.shape[1]} (one per feature)."
            )
        if not mask_var.any():
            raise ValueError("mask_var selects no feature.")
        X = X[:, mask_var]
    check_finite_nonnegative(
        X, what="The scaled data X", fix="Agreement factorises it by NMF: pass non-negative data."
    )
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    return X


def batch_nmf_embeddings(
    X, codes: np.ndarray, names: Sequence[str], n_components: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per-batch NMF cell factors of ``X`` (squared error, HALS), batch by batch in code order."""
    from .._core.nmf import fit_nmf

    out = []
    for b, name in enumerate(names):
        rows = np.flatnonzero(codes == b)
        block = X[rows]
        k = min(n_components, *block.shape)
        if k < n_components:
            logger.warning(
                "Batch %r has shape %s: its NMF uses %d instead of %d factors.",
                name,
                block.shape,
                k,
                n_components,
            )
        result = fit_nmf(
            block,
            k,
            objective="frobenius",
            solver="hals",
            max_iter=_AGREEMENT_NMF_MAX_ITER,
            tol=_AGREEMENT_NMF_TOL,
            random_state=rng,
        )
        out.append(result.H)
    return out


def jaccard_overlap(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard index of two neighbour index arrays (n x k, distinct entries per row)."""
    n = first.shape[0]
    width = int(max(first.max(initial=0), second.max(initial=0))) + 1
    rows = np.arange(n)[:, None]
    common = np.intersect1d(
        (rows * width + first).ravel(), (rows * width + second).ravel(), assume_unique=True
    )
    inter = np.bincount(common // width, minlength=n)
    union = first.shape[1] + second.shape[1] - inter
    return inter / union
