"""``tl.inmf``: integrative NMF (LIGER) of several datasets in one AnnData, by a batch solver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from .._core.inmf import SOLVERS, fit_inmf
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._mudata import is_mudata, run_on_mudata
from .._utils._random import get_rng
from .._utils._row_inputs import LIGER_LAYER, LIGER_MASK
from .._utils._validation import check_in, check_key, check_number, check_positive_int
from ._inmf_anndata import check_lambda, shared_params, split_datasets, write_results


@doc_params
def inmf(
    adata: AnnData | MuData,
    n_components: int = 20,
    *,
    batch_key: str | None = None,
    layer: str | None = LIGER_LAYER,
    mask_var: str | np.ndarray | None = LIGER_MASK,
    lambda_: float = 5.0,
    solver: Literal["anls", "hals", "mu"] = "anls",
    max_iter: int = 30,
    tol: float = 1e-6,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "inmf",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Integrative NMF (LIGER) of the datasets in ``adata``, by a batch solver.

    Each dataset ``i`` (cells with the same ``obs[batch_key]``) is factorised as
    ``X_i ≈ H_i (W + V_i)ᵀ`` with non-negative cell factors ``H_i``, shared gene loadings ``W``
    and dataset-specific loadings ``V_i``, minimising objective (1) of Gao & Welch (2021),
    ``Σ_i ||X_i - H_i (W + V_i)ᵀ||² + λ Σ_i ||H_i V_iᵀ||²``. Larger ``lambda_`` pushes more of the
    signal into the shared ``W``, i.e. a stronger alignment.

    Solvers (all update every ``H_i``, then ``V_i`` and ``W``, and keep sparse data sparse):

    * ``"anls"`` (default): each block solved exactly by non-negative least squares with block
      principal pivoting (Kim & Park 2011), compiled and parallel over cells and genes, warm
      started from the previous iterate. The objective never increases.
    * ``"hals"``: one exact coordinate-descent sweep per block (updates (5)-(7) of the paper, in
      their exact form). The objective never increases.
    * ``"mu"``: multiplicative updates (the original iNMF algorithm); slowest to converge.

    The input should be LIGER-preprocessed (:func:`scintegrate.pp.liger_preprocess`): library-size
    normalised, variable genes selected, each gene scaled (not centred) per dataset. For datasets
    larger than memory or streaming input use :func:`online_inmf`.

    Parameters
    ----------
    {adata}
    n_components
        Number of factors ``k``.
    batch_key
        ``obs`` column naming each cell's dataset (batch, donor, technology, modality); needed
        for an AnnData. For a MuData each modality is a dataset, and ``batch_key`` (a column of
        every modality's ``obs``) splits each one further.
    layer
        Layer with the scaled, non-negative data; ``None`` uses ``.X``.
    mask_var
        Genes to use: a boolean ``var`` column (default: the one written by
        :func:`~scintegrate.pp.liger_preprocess`, all genes when absent), a boolean array, or
        ``None`` for all genes.
    lambda_
        Weight of the dataset-specific term (LIGER's default 5).
    solver
        ``"anls"``, ``"hals"`` or ``"mu"``, see above.
    {inmf_iterations}
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True``, and writes:

    ``adata.obsm[f"X_{key_added}"]``
        Cell factors (n_obs x k): each cell's row of its own dataset's ``H_i``.
    ``adata.varm[f"{key_added}_W"]``
        Shared gene loadings ``W`` (n_vars x k); zero for genes outside ``mask_var``.
    ``adata.varm[f"{key_added}_V"]``
        Dataset-specific loadings ``V_i`` stacked as (n_vars x k x n_batches), in the order of
        ``uns[key_added]["batches"]``.
    ``adata.uns[key_added]["params"]``
        Every argument that affected the result and the package version.
    ``adata.uns[key_added]["batches"]``
        The dataset names (values of ``obs[batch_key]``: in the order of its categories when
        categorical, otherwise sorted), in the order used for ``V``.
    ``adata.uns[key_added]["objective"]``
        The final value of objective (1) on all cells.
    ``adata.uns[key_added]["history"]``
        A DataFrame, one row per iteration (0 = the start): ``objective`` and ``time`` (s).

    For a :class:`~mudata.MuData` (``adata`` may be one) the modalities are integrated on the
    features they share, matched by name, exactly as their concatenation would be (the same
    seed gives the same factors); the slots go to ``mdata[mod].obsm``/``varm`` of every modality
    (``varm`` zero for features a modality does not share), the cell factors also to
    ``mdata.obsm[f"X_{key_added}"]`` (unless cells are in several modalities), and ``uns`` to
    ``mdata.uns[key_added]``, whose ``batches`` name the datasets (the modalities, or
    ``"<mod>:<value>"`` with ``batch_key``).

    A second call with the same ``key_added`` replaces every slot of the first.
    """
    if is_mudata(adata):
        return run_on_mudata(
            inmf,
            adata,
            key_added=key_added,
            copy=copy,
            mask_var=mask_var,
            layer=layer,
            batch_key=batch_key,
            n_components=n_components,
            lambda_=lambda_,
            solver=solver,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
        )
    n_components = check_positive_int(n_components, param="n_components")
    lambda_ = check_lambda(lambda_)
    check_in(solver, SOLVERS, param="solver")
    max_iter = check_positive_int(max_iter, param="max_iter")
    check_number(tol, param="tol", minimum=0)
    key_added = check_key(key_added)
    datasets = split_datasets(adata, batch_key, layer, mask_var, n_components)

    result = fit_inmf(
        datasets.matrices,
        n_components,
        lambda_=lambda_,
        solver=solver,
        max_iter=max_iter,
        tol=tol,
        rng=get_rng(random_state),
        progress=settings.progress_bar,
    )
    logger.info(
        "iNMF (%s): %d iterations, objective %.6g%s",
        solver,
        result.n_iter,
        result.objective,
        " (converged)" if result.converged else "",
    )
    params = shared_params(
        result,
        batch_key=batch_key,
        layer=layer,
        mask_var=mask_var,
        n_genes=len(datasets.genes),
        lambda_=lambda_,
        random_state=random_state,
    )
    params.update(solver=solver, max_iter=max_iter, tol=tol, converged=result.converged)
    target = adata.copy() if copy else adata
    write_results(
        target,
        key_added,
        result,
        batches=datasets.batches,
        params=params,
        cells=datasets.cells,
        genes=datasets.genes,
    )
    return target if copy else None
