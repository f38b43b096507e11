"""``tl.uinmf``: integrative NMF with unshared features (UINMF, Kriebel & Welch 2022)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from .._core._sparse import as_csr
from .._core.uinmf import fit_uinmf
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._mudata import (
    OWNER_COLUMN,
    _user_batch_key,
    add_unshared,
    is_mudata,
    stack_modalities,
    write_back,
)
from .._utils._random import get_rng
from .._utils._row_inputs import LIGER_LAYER, LIGER_MASK
from .._utils._unshared import SHARED, unshared_owners
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_key,
    check_number,
    check_positive_int,
    get_matrix,
    matrix_label,
    obs_batch_codes,
)
from ._inmf_anndata import _check_shared_genes, check_lambda, shared_params, write_results

UNSHARED = "liger_unshared"
UNSHARED_MASK = "liger_unshared_highly_variable"


@dataclass
class MosaicDatasets:
    """Per-dataset shared and unshared blocks, and where they sit in ``adata``."""

    shared: list  # cells x shared features, per dataset
    unshared: list  # cells x own unshared features (or None), per dataset
    batches: list[str]
    cells: list[np.ndarray]  # row indices of each dataset
    genes: np.ndarray  # column indices of the shared features
    own: list[np.ndarray]  # column indices of each dataset's unshared features


def _mask(adata: AnnData, mask, *, param: str, default: str) -> np.ndarray:
    """A boolean mask over ``var`` from a column name, an array or ``None`` (everything)."""
    if mask is None:
        return np.ones(adata.n_vars, dtype=bool)
    if isinstance(mask, str):
        if mask not in adata.var.columns:
            if mask == default:
                logger.info("adata.var has no %r column; %s selects every feature.", mask, param)
                return np.ones(adata.n_vars, dtype=bool)
            raise ValueError(
                f"{param}={mask!r} is not a column of adata.var. Pass the name of a boolean "
                "column, a boolean array, or None to use every feature."
            )
        values = adata.var[mask].to_numpy()
        where = f"adata.var[{mask!r}]"
    else:
        values = np.asarray(mask)
        where = param
    if values.dtype != bool or values.shape != (adata.n_vars,):
        raise ValueError(
            f"{where} must be a boolean mask with one entry per feature ({adata.n_vars}), got "
            f"dtype {values.dtype} and shape {values.shape}."
        )
    return values


def split_mosaic(
    adata: AnnData,
    *,
    batch_key: str,
    unshared,
    layer: str | None,
    mask_var,
    mask_unshared,
    n_components: int,
) -> MosaicDatasets:
    """Validate everything and cut the data into shared and unshared blocks per dataset."""
    check_adata(adata)
    if not isinstance(batch_key, str):
        raise ValueError(f"batch_key must be the name of an adata.obs column, got {batch_key!r}.")
    codes, batches = obs_batch_codes(adata, batch_key, param="batch_key", order="sorted")
    if unshared is None:
        owners = np.full(adata.n_vars, SHARED, dtype=np.int64)
    else:
        owners = unshared_owners(adata, unshared, batches, batch_key=batch_key)
    if layer == LIGER_LAYER and layer not in adata.layers:
        raise ValueError(
            f"adata.layers[{layer!r}] not found. Run scintegrate.pp.liger_preprocess(adata, "
            f"batch_key={batch_key!r}) first, or pass layer= naming a non-negative, per-dataset "
            "scaled matrix (layer=None uses .X)."
        )
    X = get_matrix(adata, layer)
    where = matrix_label(layer)
    selected = _mask(adata, mask_var, param="mask_var", default=LIGER_MASK)
    selected_unshared = _mask(adata, mask_unshared, param="mask_unshared", default=UNSHARED_MASK)
    genes = np.flatnonzero(selected & (owners == SHARED))
    if len(genes) == 0:
        raise ValueError(
            "No shared feature is selected: UINMF needs features that every dataset measures "
            f"(missing in the owner column, selected by mask_var={mask_var!r}). Check the "
            "owner column and mask_var."
        )
    if len(batches) < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has a single value ({batches[0]!r}); UINMF integrates two "
            "or more datasets. Use tl.nmf for one dataset."
        )
    if n_components > len(genes):
        raise ValueError(
            f"n_components={n_components} is larger than the number of shared features used "
            f"({len(genes)}); choose fewer components or select more shared features."
        )
    if sp.issparse(X):
        X = as_csr(X)
    shared_block = X[:, genes]
    _check_shared_genes(shared_block, codes, batches, adata.var_names[genes])
    check_finite_nonnegative(
        shared_block,
        what=f"{where} (shared features)",
        fix="UINMF needs non-negative data: use LIGER's scaling without centring "
        "(pp.liger_preprocess), not log-scaled or centred values.",
    )
    blocks, unshared_blocks, cells, own_columns = [], [], [], []
    for code, name in enumerate(batches):
        rows = np.flatnonzero(codes == code)
        if len(rows) < n_components:
            raise ValueError(
                f"Dataset {name!r} has {len(rows)} cells, fewer than n_components="
                f"{n_components}; choose fewer components or drop that dataset."
            )
        own = np.flatnonzero(selected_unshared & (owners == code))
        block = shared_block[rows]
        Y = None
        if len(own):
            Y = X[rows][:, own]
            check_finite_nonnegative(
                Y,
                what=f"{where} (unshared features of dataset {name!r})",
                fix="Scale the unshared features like the shared ones (pp.liger_preprocess "
                "scales every feature per dataset), without centring.",
            )
        signal = np.asarray(block.sum(axis=1)).ravel()
        if Y is not None:
            signal = signal + np.asarray(Y.sum(axis=1)).ravel()
        empty = int(np.sum(signal == 0))
        if empty == len(rows):
            raise ValueError(
                f"Every cell of dataset {name!r} is empty in the features used; check the data "
                "or drop that dataset."
            )
        if empty:
            logger.warning(
                "Dataset %r has %d cells with no signal in the features used; their factors "
                "are zero.",
                name,
                empty,
            )
        blocks.append(block)
        unshared_blocks.append(Y)
        cells.append(rows)
        own_columns.append(own)
    if unshared is not None and not any(len(own) for own in own_columns):
        logger.warning(
            "No unshared feature is selected (owner column %r, mask_unshared=%r); UINMF "
            "without unshared features is iNMF.",
            unshared if isinstance(unshared, str) else "mapping",
            mask_unshared,
        )
    return MosaicDatasets(blocks, unshared_blocks, list(batches), cells, genes, own_columns)


@doc_params
def uinmf(
    adata: AnnData | MuData,
    n_components: int = 20,
    *,
    batch_key: str | None = None,
    unshared: str | Mapping[str, Sequence[str] | np.ndarray] | None = UNSHARED,
    layer: str | None = LIGER_LAYER,
    mask_var: str | np.ndarray | None = LIGER_MASK,
    mask_unshared: str | np.ndarray | None = UNSHARED_MASK,
    lambda_: float = 5.0,
    max_iter: int = 30,
    tol: float = 1e-6,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "uinmf",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Integrative NMF with unshared features (UINMF) of the datasets in a mosaic ``adata``.

    UINMF (Kriebel & Welch 2022) extends iNMF (:func:`inmf`) to features that only one dataset
    has: ATAC peaks next to gene activity, genes outside a targeted spatial panel,
    non-orthologous genes. Dataset ``i`` (cells with the same ``obs[batch_key]``) has the shared
    features ``X_i`` and its own unshared features ``Y_i``, factorised as
    ``[X_i, Y_i] ≈ H_i [W + V_i ; U_i]ᵀ`` with non-negative cell factors ``H_i``, shared
    loadings ``W``, dataset-specific loadings ``V_i`` and unshared loadings ``U_i``, minimising
    equation (1) of the paper (rliger's ``runUINMF``)

    ``Σ_i ||X_i - H_i (W + V_i)ᵀ||² + ||Y_i - H_i U_iᵀ||² + λ (||H_i V_iᵀ||² + ||H_i U_iᵀ||²)``.

    ``λ`` penalises both dataset-specific parts, ``V_i`` and ``U_i``. The unshared features
    inform the cell factors ``H_i`` of their dataset (and so the joint space) without having to
    exist in the other datasets. A dataset without unshared features has the iNMF term; with no
    unshared features at all this is :func:`inmf` (solver ``"anls"``), iterate for iterate.

    Solver: alternating non-negative least squares, every block (``H_i``, ``V_i``, ``U_i``,
    ``W``) solved exactly by block principal pivoting, as rliger (RcppPlanc) does, so the
    objective never increases; sparse data stays sparse. Every factor starts uniform on (0, 2),
    drawn as :func:`inmf` draws ``W``, ``V_i``, ``H_i`` (then ``U_i``); rliger instead starts
    ``V_i`` and ``U_i`` from the data of k random cells.

    **Input.** One AnnData with the cells of every dataset and the union of their features
    (``anndata.concat(..., join="outer")``; the features a dataset lacks are zero, or NaN in
    dense data, in its cells and are ignored there). ``unshared`` says which dataset owns each
    unshared feature. The recipe: :func:`~scintegrate.pp.liger_preprocess` (normalise, scale
    every feature per dataset, select shared genes), :func:`~scintegrate.pp.liger_unshared`
    (mark the unshared features and select the variable ones per dataset), then this function.

    There is no online (mini-batch, out-of-core) form: neither the paper nor rliger has one, and
    :func:`online_inmf` with unshared features would need per-dataset statistics for ``U_i`` in
    its model files and its file readers; use this batch solver (seconds for ten thousand
    cells) or :func:`online_inmf` on the shared features.

    Parameters
    ----------
    {adata}
    n_components
        Number of factors ``k``.
    batch_key
        ``obs`` column naming each cell's dataset; needed for an AnnData. For a MuData each
        modality is a dataset, and ``batch_key`` (a column of every modality's ``obs``) splits
        them further into datasets ``"<mod>:<value>"``.
    unshared
        Which features are unshared, and whose: a ``var`` column holding for each unshared
        feature the dataset that has it and a missing value (NaN, None, "") for shared features
        (default: the column written by :func:`~scintegrate.pp.liger_unshared`), or a mapping
        ``{dataset: feature names}`` (or boolean masks over ``var``). ``None``: no unshared
        features (iNMF). For a MuData, a ``var`` column of the modalities (boolean: ``True``
        marks that modality's unshared features; or the owning dataset, missing for the
        others; a modality without the column has none) or a mapping ``{modality or dataset:
        feature names or boolean mask over that modality's var}``.
    layer
        Layer with the scaled, non-negative data (shared and unshared features); ``None`` uses
        ``.X``.
    mask_var
        Shared features to use, among those without an owner: a boolean ``var`` column
        (default: :func:`~scintegrate.pp.liger_preprocess`'s selection, every feature when
        absent), a boolean array, or ``None`` for all. For a MuData a column name or ``None``
        (a shared feature is used where any modality's column is true).
    mask_unshared
        Unshared features to use, among those with an owner: a boolean ``var`` column (default:
        :func:`~scintegrate.pp.liger_unshared`'s selection, every unshared feature when
        absent), a boolean array, or ``None`` for all. For a MuData a boolean column of the
        modalities (all of a modality's unshared features where it lacks the column) or
        ``None``.
    lambda_
        Weight of the dataset-specific terms, ``V_i`` and ``U_i`` (rliger's default 5).
    {inmf_iterations}
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True``, and writes (replacing every slot
    of an earlier call with the same ``key_added``):

    ``adata.obsm[f"X_{key_added}"]``
        Cell factors (n_obs x k): each cell's row of its own dataset's ``H_i``.
    ``adata.varm[f"{key_added}_W"]``
        Shared loadings ``W`` (n_vars x k); zero outside the shared features used.
    ``adata.varm[f"{key_added}_V"]``
        Dataset-specific loadings ``V_i`` of the shared features, stacked as
        (n_vars x k x n_batches) in the order of ``uns[key_added]["batches"]``.
    ``adata.varm[f"{key_added}_U"]``
        Unshared loadings ``U_i`` (n_vars x k x n_batches): slice ``i`` is non-zero only in the
        rows of dataset ``i``'s unshared features used.
    ``adata.uns[key_added]["params"]``
        Every argument that affected the result and the package version.
    ``adata.uns[key_added]["batches"]``
        The dataset names, sorted (as :func:`inmf` orders them).
    ``adata.uns[key_added]["n_unshared"]``
        Unshared features used per dataset.
    ``adata.uns[key_added]["objective"]``
        The final value of the objective on all cells.
    ``adata.uns[key_added]["history"]``
        A DataFrame, one row per iteration (0 = the start): ``objective`` and ``time`` (s).

    For a :class:`~mudata.MuData` (``adata`` may be one) each modality is a dataset (split
    further by ``batch_key``): the shared features are those every modality has, matched by
    name, and each modality brings its own unshared features (``unshared``), exactly as the
    outer concatenation of the modalities would (the same seed gives the same factors). The
    cell factors go to every modality's ``obsm[f"X_{key_added}"]`` and to
    ``mdata.obsm[f"X_{key_added}"]`` (unless cells are in several modalities); ``W``, ``V``
    and ``U`` to every modality's ``varm`` on its own features (``U`` non-zero in the rows of
    its unshared features used, ``W`` and ``V`` zero outside the shared features used);
    ``uns`` to ``mdata.uns[key_added]``, whose ``batches`` name the datasets (the modalities,
    or ``"<mod>:<value>"``).

    Examples
    --------
    >>> import scintegrate as si
    >>> # mdata["atac"] holds gene activity (named like mdata["rna"]'s genes) and peaks
    >>> mdata["atac"].var["unshared"] = ~mdata["atac"].var_names.isin(mdata["rna"].var_names)
    >>> si.tl.uinmf(mdata, 20, unshared="unshared", layer=None, mask_var=None)
    >>> si.pp.quantile_norm(mdata, use_rep="X_uinmf", key_added="uinmf_qn")
    """
    if is_mudata(adata):
        return _uinmf_mudata(
            adata,
            n_components,
            batch_key=batch_key,
            unshared=unshared,
            layer=layer,
            mask_var=mask_var,
            mask_unshared=mask_unshared,
            lambda_=lambda_,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
            key_added=key_added,
            copy=copy,
        )
    n_components = check_positive_int(n_components, param="n_components")
    lambda_ = check_lambda(lambda_)
    max_iter = check_positive_int(max_iter, param="max_iter")
    check_number(tol, param="tol", minimum=0)
    key_added = check_key(key_added)
    data = split_mosaic(
        adata,
        batch_key=batch_key,
        unshared=unshared,
        layer=layer,
        mask_var=mask_var,
        mask_unshared=mask_unshared,
        n_components=n_components,
    )

    result = fit_uinmf(
        data.shared,
        data.unshared,
        n_components,
        lambda_=lambda_,
        max_iter=max_iter,
        tol=tol,
        rng=get_rng(random_state),
        progress=settings.progress_bar,
    )
    logger.info(
        "UINMF: %d iterations, objective %.6g%s",
        result.n_iter,
        result.objective,
        " (converged)" if result.converged else "",
    )
    n_unshared = np.asarray([len(own) for own in data.own], dtype=np.int64)
    params = shared_params(
        result,
        batch_key=batch_key,
        layer=layer,
        mask_var=mask_var,
        n_genes=len(data.genes),
        lambda_=lambda_,
        random_state=random_state,
    )
    params.update(
        unshared=unshared if isinstance(unshared, str) else None,
        mask_unshared=mask_unshared if isinstance(mask_unshared, str) else None,
        max_iter=max_iter,
        tol=tol,
        converged=result.converged,
    )
    U = np.zeros((adata.n_vars, n_components, len(data.batches)))
    for i, (own, U_i) in enumerate(zip(data.own, result.U, strict=True)):
        U[own, :, i] = U_i
    target = adata.copy() if copy else adata
    write_results(
        target,
        key_added,
        result,
        batches=data.batches,
        params=params,
        cells=data.cells,
        genes=data.genes,
        extra={"n_unshared": n_unshared},
        extra_varm={f"{key_added}_U": U},
    )
    return target if copy else None


def _uinmf_mudata(
    mdata, n_components, *, batch_key, unshared, mask_var, mask_unshared, layer, key_added, copy,
    **kwargs,
):  # fmt: skip
    """:func:`uinmf` of a MuData: the modalities stacked into one mosaic AnnData (shared
    features matched by name, each modality's unshared ones appended), fitted, written back."""
    for param, value in (("mask_var", mask_var), ("mask_unshared", mask_unshared)):
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"For a MuData, {param} must name a boolean var column of the modalities, or be "
                f"None; got {type(value).__name__} (a mask cannot span several modalities)."
            )
    key_added = check_key(key_added)
    target = mdata.copy() if copy else mdata
    stacked = stack_modalities(
        target,
        batch_key=batch_key,
        layer=layer,
        var_columns=[mask_var] if isinstance(mask_var, str) else [],
    )
    if unshared is not None:
        add_unshared(
            stacked,
            target,
            unshared=unshared,
            mask_unshared=mask_unshared,
            default_mask=UNSHARED_MASK,
            layer=layer,
        )
    uinmf(
        stacked.adata,
        n_components,
        batch_key=stacked.batch_key,
        unshared=None if unshared is None else OWNER_COLUMN,
        layer=layer,
        mask_var=mask_var,
        mask_unshared=None,  # add_unshared appended the selected unshared features only
        key_added=key_added,
        copy=False,
        **kwargs,
    )
    params = stacked.adata.uns[key_added]["params"]
    _user_batch_key(params, batch_key)
    params["unshared"] = unshared if isinstance(unshared, str) else None
    params["mask_unshared"] = mask_unshared
    write_back(
        target,
        stacked,
        key_added,
        obsm=[f"X_{key_added}"],
        varm=[f"{key_added}_W", f"{key_added}_V", f"{key_added}_U"],
        container_obsm=[f"X_{key_added}"],
    )
    return target if copy else None
