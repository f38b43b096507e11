"""``tl.nmf``: non-negative matrix factorisation of counts with a training history."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._core.nmf import INITS, OBJECTIVES, SOLVERS, fit_nmf
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._device import resolve_device
from .._utils._random import get_rng
from .._utils._slots import history_frame, record_params, write_slots
from .._utils._tracking import label_tracker
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_in,
    check_key,
    check_number,
    check_positive_int,
    get_matrix,
    matrix_label,
)


@doc_params
def nmf(
    adata: AnnData,
    n_components: int = 20,
    *,
    layer: str | None = None,
    objective: Literal["frobenius", "kl"] = "frobenius",
    solver: Literal["auto", "hals", "mu"] = "auto",
    max_iter: int = 200,
    tol: float = 1e-4,
    init: Literal["nndsvda", "nndsvd", "nndsvdar", "random"] | tuple = "nndsvda",
    labels_key: str | None = None,
    track_every: int = 1,
    resolution: float = 1.0,
    random_state: int | np.random.Generator | None = 0,
    device: str = "cpu",
    key_added: str = "nmf",
    copy: bool = False,
) -> AnnData | None:
    """Non-negative matrix factorisation of a count matrix, ``X ≈ H Wᵀ``.

    Cells get a non-negative embedding ``H`` (cells x k) and features non-negative loadings ``W``
    (features x k). Two models are available (the NMF-SSE and NMF-Poisson models of Lee & Seung):

    * ``objective="frobenius"`` minimises the sum of squared errors, by hierarchical alternating
      least squares (``solver="hals"``, the default: exact coordinate descent, one sweep over the
      k columns of each factor per iteration) or by multiplicative updates (``"mu"``);
    * ``objective="kl"`` maximises the Poisson log-likelihood of the counts, i.e. minimises the
      generalised Kullback-Leibler divergence, by multiplicative updates. The model is evaluated
      only at the non-zero counts, so sparse input is never densified.

    Both solvers never increase their objective. Sparse matrices (CSR/CSC, ``spmatrix`` or
    ``sparray``) stay sparse; dense input is converted to CSR internally.

    Parameters
    ----------
    {adata}
    n_components
        Number of factors k; at most ``min(n_obs, n_vars)``.
    {layer}
        It must hold non-negative values, raw counts for ``objective="kl"``.
    objective
        ``"frobenius"`` (squared error) or ``"kl"`` (Poisson likelihood).
    solver
        ``"hals"`` or ``"mu"``; ``"auto"`` picks ``"hals"`` for Frobenius and ``"mu"`` for KL.
    max_iter
        Maximum number of iterations (one iteration updates ``H`` then ``W``).
    tol
        Stop when one iteration decreases the loss by less than ``tol`` times its value;
        ``0`` always runs ``max_iter`` iterations.
    init
        ``"nndsvda"`` (NNDSVD with zeros filled by the mean of ``X``; Boutsidis & Gallopoulos
        2008), ``"nndsvd"``, ``"nndsvdar"`` (zeros filled with small random values),
        ``"random"`` (scaled ``|N(0, 1)|``), or a tuple ``(H, W)`` of arrays of shapes
        ``(n_obs, k)`` and ``(n_vars, k)``.
    labels_key
        ``obs`` column of known cell labels. When given, the ARI and NMI of Leiden clusters of
        ``H`` are recorded in the history every ``track_every`` iterations. The clusters come
        from a 15-nearest-neighbour graph with cosine distance (the scale of a cell's row of ``H``
        follows its sequencing depth) at ``resolution``; the same numbers as
        ``metrics.ari(adata, labels_key, use_rep="X_nmf", metric="cosine")``.
    track_every
        Iterations between ARI evaluations. Each costs a kNN graph and a Leiden run, which is
        excluded from the recorded training time.
    resolution
        Leiden resolution of the tracked ARI.
    {random_state}
    device
        Only ``"cpu"`` is supported for now (numba kernels, parallel over rows);
        ``"auto"`` resolves to it.
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True``, and writes:

    ``adata.obsm[f"X_{key_added}"]``
        The cell factors ``H`` (n_obs x k), usable with ``sc.pp.neighbors(use_rep=...)``.
    ``adata.varm[f"{key_added}_W"]``
        The feature loadings ``W`` (n_vars x k).
    ``adata.uns[key_added]["params"]``
        Every argument that affected the result, the resolved solver, the number of iterations
        run, whether the tolerance was reached, and the package version.
    ``adata.uns[key_added]["history"]``
        DataFrame with one row per iteration (row 0 is the initialisation): ``iteration``,
        ``loss`` (mean squared error ``‖X - HWᵀ‖² / (n m)``, or mean generalised KL divergence
        for ``"kl"``), ``poisson_loglik`` for ``"kl"`` (mean Poisson log-likelihood
        ``Σ(x log μ - μ) / (n m)`` without the ``log x!`` term), ``time`` (seconds of training
        since the start, including initialisation), and ``ari`` and ``nmi`` when ``labels_key``
        is given (NaN between evaluations).
    ``adata.uns[key_added]["slots"]``
        The slots written, which a later call with the same ``key_added`` removes first.

    Examples
    --------
    >>> import scintegrate as si
    >>> adata = si.datasets.snareseq_cortex_rna()
    >>> si.tl.nmf(adata, 20, objective="kl", labels_key="cell_type", track_every=20)
    >>> adata.uns["nmf"]["history"].tail()
    """
    # validate everything before touching adata
    check_adata(adata)
    check_key(key_added)
    check_in(objective, OBJECTIVES, param="objective")
    if solver == "auto":
        solver = "hals" if objective == "frobenius" else "mu"
    if solver not in SOLVERS[objective]:
        raise ValueError(
            f"solver={solver!r} cannot optimise objective={objective!r}; "
            f"use one of {', '.join(map(repr, SOLVERS[objective]))} (or 'auto')."
        )
    max_iter = check_positive_int(max_iter, param="max_iter")
    track_every = check_positive_int(track_every, param="track_every")
    check_number(tol, param="tol", minimum=0)
    resolved_device = resolve_device(device)
    if resolved_device != "cpu":
        raise ValueError(
            f"tl.nmf runs on the CPU only for now (device resolved to {resolved_device!r}); "
            "pass device='cpu'."
        )
    X = get_matrix(adata, layer)
    where = matrix_label(layer)
    check_finite_nonnegative(
        X,
        what=where,
        fix="NMF needs non-negative data: pass raw counts (or a non-negative normalisation), "
        "not log-scaled or centred values; see the layer argument.",
    )
    n_obs, n_vars = X.shape
    n_components = check_positive_int(n_components, param="n_components")
    if n_components > min(n_obs, n_vars):
        raise ValueError(
            f"n_components={n_components} is larger than min(n_obs, n_vars) = "
            f"{min(n_obs, n_vars)}; choose fewer components."
        )
    nnz = X.nnz if sp.issparse(X) else int(np.count_nonzero(X))
    if nnz == 0:
        raise ValueError(f"{where} is all zeros; there is nothing to factorise.")
    if isinstance(init, str):
        check_in(init, INITS, param="init")
        init_param = init
    else:
        init = _check_custom_init(init, n_obs, n_vars, n_components)
        init_param = "custom"
    track = label_tracker(adata, labels_key, resolution=resolution, metric="cosine")
    callback = None if track is None else (lambda H, W: track(H))

    result = fit_nmf(
        X,
        n_components,
        objective=objective,
        solver=solver,
        max_iter=max_iter,
        tol=tol,
        init=init,
        random_state=get_rng(random_state),
        callback=callback,
        track_every=track_every,
        progress=settings.progress_bar,
    )
    empty = [
        f"{count} {what}"
        for count, what in ((result.empty_obs, "cells"), (result.empty_vars, "features"))
        if count
    ]
    if empty:
        logger.warning(
            "%s have no counts; their factors are zero. "
            "Filter them first (sc.pp.filter_cells / sc.pp.filter_genes) to avoid this.",
            " and ".join(empty),
        )
    logger.info(
        "NMF (%s, %s): %d iterations, final loss %.6g%s",
        objective,
        solver,
        result.n_iter,
        result.history["loss"][-1],
        " (converged)" if result.converged else "",
    )

    adata = adata.copy() if copy else adata
    write_slots(
        adata,
        key_added,
        obsm={f"X_{key_added}": result.H},
        varm={f"{key_added}_W": result.W},
        uns={
            "params": record_params(
                {
                    "n_components": n_components,
                    "layer": layer,
                    "objective": objective,
                    "solver": solver,
                    "max_iter": max_iter,
                    "tol": tol,
                    "init": init_param,
                    "labels_key": labels_key,
                    "track_every": track_every if labels_key is not None else None,
                    "resolution": resolution if labels_key is not None else None,
                    "random_state": random_state if isinstance(random_state, int) else None,
                    "device": resolved_device,
                    "n_iter": result.n_iter,
                    "converged": result.converged,
                }
            ),
            "history": history_frame(result.history),
        },
    )
    return adata if copy else None


def _check_custom_init(init, n_obs: int, n_vars: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(init, tuple | list) or len(init) != 2:
        raise ValueError(
            "init must be one of "
            + ", ".join(map(repr, INITS))
            + " or a tuple (H, W) of arrays of shapes (n_obs, k) and (n_vars, k)."
        )
    H, W = (np.asarray(a, dtype=np.float64) for a in init)
    for name, arr, shape in (("H", H, (n_obs, k)), ("W", W, (n_vars, k))):
        if arr.shape != shape:
            raise ValueError(f"init {name} has shape {arr.shape}; expected {shape}.")
        check_finite_nonnegative(arr, what=f"init {name}", fix="Initial factors must be >= 0.")
    return H, W
