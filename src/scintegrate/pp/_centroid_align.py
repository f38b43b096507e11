"""``pp.centroid_align``: rliger 2.1's centroid alignment of iNMF cell factors across batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from .._core.centroid_align import centroid_align as _centroid_align
from .._docs import doc_params
from .._logging import logger
from .._utils._mudata import is_mudata, run_alignment_on_mudata
from .._utils._validation import (
    batch_index,
    check_adata,
    check_bool,
    check_dims,
    check_key,
    check_number,
    get_cell_factors,
    obs_batch_codes,
)
from ._quantile_norm import write_aligned


def _check_lambda(lambda_, names: np.ndarray) -> np.ndarray:
    """One ridge penalty per batch (batch order of ``names``) from a number or a sequence."""
    if isinstance(lambda_, Sequence | np.ndarray) and not isinstance(lambda_, str):
        values = list(np.asarray(lambda_, dtype=object).ravel())
        if len(values) != len(names):
            raise ValueError(
                f"lambda_ has {len(values)} values but there are {len(names)} batches "
                f"({', '.join(map(repr, names[:20]))}); pass one number, or one per batch in "
                "that order."
            )
        return np.array([check_number(v, param="lambda_", minimum=0) for v in values])
    return np.full(len(names), check_number(lambda_, param="lambda_", minimum=0))


@doc_params
def centroid_align(
    adata: AnnData | MuData,
    *,
    use_rep: str = "X_inmf",
    batch_key: str | None = None,
    reference: str | None = None,
    lambda_: float | Sequence[float] = 1.0,
    use_dims: Sequence[int] | None = None,
    center_emb: bool = True,
    scale_emb: bool = True,
    center_cluster: bool = False,
    scale_cluster: bool = False,
    shift: bool = False,
    key_added: str = "inmf_ca",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Align the iNMF cell factors of the batches by moving their cluster centroids together.

    rliger 2.1's ``centroidAlign``, an alternative to :func:`~scintegrate.pp.quantile_norm`.
    The factor loadings ``H`` are read as an embedding and as a soft clustering at once:

    1. **Embedding:** every factor is centred and divided by its standard deviation over all
       cells (``center_emb``, ``scale_emb``).
    2. **Soft clusters:** each cell's loadings divided by their sum give its probability of
       belonging to each factor's cluster (optionally centred and scaled first:
       ``center_cluster``, ``scale_cluster``, then ``shift`` to make them non-negative).
    3. **Alignment:** per cluster, a ridge regression of the embedding on the batch, weighted by
       the cluster probabilities, estimates the cluster's centroid as a common intercept plus an
       offset per batch (penalty ``lambda_`` on the offsets). Each cell then moves by the
       offsets of its own batch, weighted by its cluster probabilities: the batch centroids of
       every cluster coincide while each cell keeps its place around them. This is Harmony's
       mixture-of-experts ridge correction (Korsunsky et al. 2019), run once, as in rliger.

    Unlike quantile normalisation the step is deterministic (no subsampling, so no
    ``random_state``) and needs no hard clusters or minimum cluster sizes; the result is an
    embedding on the scale of standardised factors, with negative values.

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
        Name of a batch that stays where it is, the others moving onto its centroids. By
        default (``None``, as rliger) every batch moves towards the centroid of all of them.
        For a MuData a modality, or ``"<mod>:<value>"`` with ``batch_key``.
    lambda_
        Ridge penalty on the batch offsets (``>= 0``): one number, or one per batch in the order
        of ``uns[key_added]["batches"]``. Larger values move the cells less; the offsets of a
        cluster are shrunk noticeably only where a batch's total weight in it is comparable to
        ``lambda_``.
    use_dims
        Factor indices (0-based columns of ``obsm[use_rep]``) to use; all by default. The
        output has these columns only, as in rliger.
    center_emb, scale_emb
        Centre, and scale to unit standard deviation, each factor of the embedding.
    center_cluster, scale_cluster
        Centre, and scale, each factor before it becomes cluster probabilities.
    shift
        Subtract the overall minimum from the centred cluster weights (needed with
        ``center_cluster=True``, which makes some of them negative).
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True`` (not available for an AnnData
    opened in backed mode: there the results are kept in memory and the file is left
    unchanged), and writes (replacing every slot that an earlier call with the same
    ``key_added`` wrote):

    ``adata.obsm[f"X_{key_added}"]``
        The aligned embedding (n_obs x number of factors used, float64); usable with
        ``sc.pp.neighbors(use_rep=f"X_{key_added}")``.
    ``adata.obs[f"{key_added}_clusters"]``
        Categorical cluster of every cell: the (0-based) factor with its largest cluster
        probability, or ``"-1"`` for a cell without a positive loading.
    ``adata.uns[key_added]``
        ``params`` (every argument that affected the result, the penalties per batch and the
        package version), ``batches`` (names in order) and ``offsets``, the fitted centroid
        offsets (n_batches x clusters x dimensions; zero for a ``reference``).

    For a :class:`~mudata.MuData` integrated by ``tl.inmf``/``tl.online_inmf``/``tl.uinmf``,
    each modality is a batch (split further by ``batch_key``): the factors are read from every
    modality's ``obsm[use_rep]`` and aligned exactly as those of the concatenated modalities
    would be; the aligned embedding and clusters go to every modality and to the container
    (``mdata.obsm``, ``mdata.obs``; not for cells in several modalities), ``uns`` to the
    container.

    Examples
    --------
    >>> import scintegrate as si
    >>> si.pp.liger_preprocess(adata, batch_key="library")
    >>> si.tl.inmf(adata, 20, batch_key="library")
    >>> si.pp.centroid_align(adata, batch_key="library")
    >>> si.metrics.alignment_score(adata, batches="library", use_rep="X_inmf_ca")
    """
    if is_mudata(adata):
        return run_alignment_on_mudata(
            centroid_align,
            adata,
            use_rep=use_rep,
            batch_key=batch_key,
            copy=copy,
            key_added=key_added,
            reference=reference,
            lambda_=lambda_,
            use_dims=use_dims,
            center_emb=center_emb,
            scale_emb=scale_emb,
            center_cluster=center_cluster,
            scale_cluster=scale_cluster,
            shift=shift,
        )
    # validate everything before touching adata
    check_adata(adata)
    check_key(key_added)
    if not isinstance(batch_key, str):
        raise ValueError(
            f"batch_key must name the adata.obs column with each cell's dataset, got {batch_key!r}."
        )
    if adata.isbacked and copy:
        raise ValueError(
            "copy=True cannot copy an AnnData opened in backed mode. Call centroid_align "
            "without copy (the results are kept in memory), or load the data with "
            "adata.to_memory()."
        )
    H = get_cell_factors(adata, use_rep, tool="Centroid alignment")
    codes, names = obs_batch_codes(adata, batch_key)
    if len(names) < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has a single batch ({names[0]!r}); centroid alignment "
            "aligns batches and needs at least two."
        )
    ref_code = None if reference is None else batch_index(names, reference, batch_key=batch_key)
    lambdas = _check_lambda(lambda_, names)
    use_dims = check_dims(use_dims, H.shape[1])
    flags = {
        name: check_bool(value, param=name)
        for name, value in (
            ("center_emb", center_emb),
            ("scale_emb", scale_emb),
            ("center_cluster", center_cluster),
            ("scale_cluster", scale_cluster),
            ("shift", shift),
        )
    }
    if flags["center_cluster"] and not flags["shift"]:
        raise ValueError(
            "center_cluster=True makes some cluster weights negative; pass shift=True as well "
            "(the weights are then shifted to be non-negative)."
        )

    result = _centroid_align(
        H, codes, lambda_=lambdas, reference=ref_code, use_dims=use_dims, **flags
    )
    logger.info(
        "Centroid alignment of %d batches (%s)",
        len(names),
        "all move" if ref_code is None else f"reference {names[ref_code]!r}",
    )
    return write_aligned(
        adata,
        key_added,
        result.Z,
        result.clusters,
        copy=copy,
        params={
            "use_rep": use_rep,
            "batch_key": batch_key,
            "reference": None if ref_code is None else str(names[ref_code]),
            "lambda_": lambdas.tolist(),
            "use_dims": None if use_dims is None else use_dims.tolist(),
            **flags,
        },
        uns={"batches": names, "offsets": result.offsets},
    )
