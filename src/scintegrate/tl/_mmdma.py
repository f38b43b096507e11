"""``tl.mmdma``: MMD-MA in the primal (LSMMD-MA) for matching cells across two modalities."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from mudata import MuData

from .._core.mmdma import BACKENDS, FORMULATIONS, ROTATION_SEARCH_STARTS
from .._core.mmdma._input_kernels import (
    INPUT_KERNELS,
    check_dual_size,
    prepare_input,
)
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._device import resolve_device
from .._utils._random import get_rng
from .._utils._slots import history_frame, record_params, write_slots
from .._utils._validation import (
    check_bool,
    check_finite,
    check_in,
    check_key,
    check_number,
    check_positive_int,
    get_matrix,
    get_obsm,
    matrix_label,
)

if TYPE_CHECKING:
    from .._core.mmdma import MMDMAResult

_INITS = ("random", "uniform", "pca", "rotation_search")


@doc_params
def mmdma(
    mdata: MuData | tuple[AnnData, AnnData],
    n_dims: int = 10,
    *,
    mods: Sequence[str] = ("rna", "atac"),
    layer: str | Mapping[str, str | None] | None = None,
    use_rep: str | Mapping[str, str] | None = None,
    formulation: Literal["primal", "dual"] = "primal",
    input_kernel: Literal["linear", "rbf"] | Callable = "linear",
    input_bandwidth: float | Literal["median"] = "median",
    n_landmarks: int = 1000,
    n_kernel_components: int | None = 20,
    backend: Literal["auto", "torch", "keops"] = "auto",
    lambda_penalty: float = 0.1,
    lambda_distortion: float = 0.1,
    bandwidth: float | Literal["median"] = "median",
    max_epochs: int = 500,
    lr: float = 0.2,
    batch_size: int | None = None,
    n_restarts: int = 1,
    select: Literal["loss", "narrow_mmd"] = "loss",
    symmetry_search: bool = True,
    init: Literal["random", "uniform", "pca", "rotation_search"]
    | tuple[np.ndarray, np.ndarray] = "random",
    unbiased: bool = False,
    device: str = "auto",
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "mmdma",
    copy: bool = False,
) -> MuData | list[AnnData] | None:
    """Embed two modalities measured on different cells in one space by MMD-MA (primal, LSMMD-MA).

    Learns linear maps ``W_x`` (features of the first modality x ``n_dims``) and ``W_y`` so that
    the embeddings ``Z_x = X W_x`` and ``Z_y = Y W_y`` have the same distribution, minimising
    (Meng-Papaxanthos et al. 2023, eq. 1)::

        MMD²(X W_x, Y W_y) + λ₁ (pen(W_x) + pen(W_y)) + λ₂ (dis(X, W_x) + dis(Y, W_y))

    * ``MMD²``: squared maximum mean discrepancy (biased estimate) with the Gaussian kernel
      ``exp(-|z - z'|² / (2 s²))``; computed block by block (torch) or symbolically (KeOps), never
      holding an n x m kernel matrix, so memory grows linearly with the number of cells.
    * ``pen(W) = ||WᵀW - I||_F``: keeps the embedding from collapsing.
    * ``dis(X, W) = ||XXᵀ - XWWᵀXᵀ||_F / ||XXᵀ||_F``: keeps the geometry of the cells; divided by
      the constant ``||XXᵀ||_F`` (so it lies in [0, 1]) so that ``lambda_distortion`` does not
      depend on the scale of the data. Computed from ``XᵀX``, precomputed once: O(p² d) per step.

    Full-batch Adam from random orthonormal maps; the best (lowest final loss) of
    ``n_restarts`` random starts is kept. MMD matching is non-convex and blind to symmetries of
    the cells' distribution: a start can end in a mirror image (or a rotated copy) of the true
    alignment with about the same loss. Half-way through each start, ``symmetry_search`` tests
    reflections and rotations of the second embedding under a narrow kernel and applies one
    only when it fits decisively better (see below); on the branch simulation of
    ``benchmarks/mmdma.py`` this took the defaults from 2 of 5 seeds to all of 23 starts over
    four simulated datasets (FOSCTTM <= 0.007), and changed nothing on SNARE-seq
    (``benchmarks/README.md``). The maps are linear, so the scale of each modality matters:
    give features of comparable scale (e.g. normalised, log-transformed, PCA / LSI coordinates
    via ``use_rep``).

    ``input_kernel="rbf"`` makes the maps non-linear (Liu et al. 2019): ``Z = Kα`` with the
    centred Gaussian kernel ``K`` of each modality's cells. Linear maps keep each modality's
    own geometry, which differs between assays; with a kernel of the scale of the distances
    between groups of cells the geometry of both becomes closer to that of the groups, which
    MMD can match. Unsupervised rule for real data (it never looks at a pairing):
    ``input_kernel="rbf"`` with the median bandwidth of each modality
    (``input_bandwidth="median"``), ``n_kernel_components=20``, ``init="rotation_search"`` and
    one start (``n_restarts=1``); ``lambda_*`` and ``bandwidth`` at their defaults. On the
    SNARE-seq cell lines (``n_dims=5``, 200 epochs, seeds 0-4, one core) this gave FOSCTTM
    0.203, 0.198, 0.199, 0.193, 0.198 (mean 0.198, max 0.203) in about 20 s per seed, and
    mean 0.199 (max 0.203) with two BLAS threads, against 0.29-0.37 (mean 0.332) for the
    linear defaults and means of 0.221 and 0.263 (max 0.521) for the earlier rule of 32
    ``init="pca"`` restarts ranked by the loss (200 s). On the sci-CAR features (unpaired,
    label transfer) it gave 0.486, 0.733, 0.463, 0.048, 0.051 (mean 0.356; linear defaults
    0.336, 32 ``init="pca"`` restarts 0.497): there the loss cannot tell good alignments from
    bad ones. More restarts from the search's next distinct rotations, lowest final loss kept,
    did not help on either (``n_restarts=4``: SNARE-seq mean 0.207, max 0.241; sci-CAR mean
    0.301). See ``benchmarks/README.md``. Not (yet) the default: it
    was tuned on the SNARE-seq cell lines only.

    Parameters
    ----------
    mdata
        A :class:`~mudata.MuData` holding (at least) the two modalities named in ``mods``; their
        cells may differ (unpaired data) or coincide. Or a pair ``(adata_x, adata_y)`` of
        AnnData objects, one per modality: results are then written into each of them.
    n_dims
        Dimension ``d`` of the shared embedding (at most the number of features of each
        modality).
    mods
        Names of the two modalities in ``mdata.mod`` (with a pair of AnnData: the names used in
        ``uns``).
    layer
        Layer holding each modality's matrix instead of ``.X``: one name for both, or a mapping
        modality -> layer. Sparse matrices stay sparse.
    use_rep
        ``obsm`` key of a representation to integrate instead of the features (e.g. ``"X_pca"``
        and ``"X_lsi"``): one key for both, or a mapping modality -> key.
    formulation
        ``"primal"`` (learn ``W``; memory linear in cells, the default) or ``"dual"`` (the
        original MMD-MA: learn ``α`` with ``Z = Kα``, ``K = XXᵀ`` or another
        ``input_kernel``; holds an n x n matrix per modality, at most 20,000 cells each).
    input_kernel
        Kernel on each modality's inputs, defining the family of maps (Liu et al. 2019):
        ``"linear"`` (``K = XXᵀ``: linear maps, the default), ``"rbf"`` (the Gaussian kernel
        ``exp(-|x - x'|² / (2 s²))``, centred (``HKH``): non-linear maps), or a callable taking
        a modality's cells x features matrix and returning its cells x cells positive
        semi-definite kernel matrix (used as returned; ``formulation="dual"`` only). With
        ``formulation="dual"`` a non-linear kernel is held as an n x n float32 matrix per
        modality (4 n² bytes: 1.6 GB at 20,000 cells, the limit: past it a ValueError says
        what it would need), and the embedding is ``Z = Kα``; the penalty is
        ``||αᵀKα - I||_F`` and the distortion ``||K - ZZᵀ||_F / ||K||_F``, the terms of the
        linear case with ``K`` in place of ``XXᵀ``. With ``formulation="primal"``, ``"rbf"``
        is approximated by Nyström features of ``n_landmarks`` random cells
        (``Φ = K_nm K_mm^{-1/2}``, centred), on which the primal is the dual for the kernel
        ``ΦΦᵀ``: memory linear in the cells. Non-linear maps have no ``W`` (no ``varm`` slot).
    input_bandwidth
        Bandwidth ``s`` of the ``"rbf"`` input kernel: ``"median"`` (each modality its own
        median distance between cells, on at most 2,000 cells drawn with ``random_state``)
        or a positive number (both modalities). Ignored by the other kernels.
    n_landmarks
        Cells drawn at random per modality for the Nyström features of a non-linear
        ``input_kernel`` with ``formulation="primal"`` (all cells when there are fewer).
        Ignored otherwise.
    n_kernel_components
        Leading kernel principal components kept by the primal with a non-linear
        ``input_kernel``: the centred Nyström features are reduced to that many principal
        components (``None``: all), i.e. the dual is fitted on that rank approximation of the
        kernel. Ignored otherwise.
    backend
        Kernel sums of the MMD: ``"torch"`` (blockwise, always available), ``"keops"`` (pykeops
        ``LazyTensor``, install ``scintegrate[keops]``; compiles on first use) or ``"auto"``
        (KeOps on a CUDA device when installed, torch otherwise). Both give the same value and
        gradient.
    lambda_penalty
        ``λ₁``, weight of the non-collapsing penalty.
    lambda_distortion
        ``λ₂``, weight of the distortion term.
    bandwidth
        Kernel bandwidth ``s``: a fixed positive number, or ``"median"`` for the median distance
        between the current embeddings of a fixed random sample of 256 cells per modality,
        updated at every step (not differentiated).
    max_epochs
        Number of epochs (full-batch: one Adam step each).
    lr
        Adam learning rate *relative to the size of the entries of the maps*: each map gets the
        rate ``lr x RMS(start)`` (``lr / sqrt(p)`` for an orthonormal ``W``), so that the same
        value works whatever the number of features.
    batch_size
        ``None`` (full batch) or a number of cells per modality drawn at random for the MMD term
        of each step (for very large data; penalty and distortion stay exact). An epoch is then
        ``ceil(max(n_x, n_y) / batch_size)`` steps.
    n_restarts
        Number of random starts; one is kept (``select``).
    select
        ``"loss"``: keep the start with the lowest final loss. ``"narrow_mmd"``: keep the
        start whose final embeddings have the lowest MMD² under a kernel 4x narrower than the
        trained one (it sees the fine structure that tells an alignment from its mirror
        images, which the trained kernel, and so the loss, barely does). Experimental: on
        SNARE-seq (tutorial) it was worse than ``"loss"``.
    symmetry_search
        Half-way through each start, look for a reflection or rotation of the second
        embedding that matches the first far better under a narrow kernel, and apply it
        (``W_y -> W_y T``; training then goes on from there). Both embeddings are reduced to
        their 2-3 leading principal dimensions and whitened there, each with its own
        covariance; reflections through lines (planes) and rotations at 5-degree steps are
        scored by the MMD² with a bandwidth 0.25 x their median distance, the 6 best refined on
        their angles with 0.1 x, and the best is applied only when its MMD² is below half the
        current one: on data without such a symmetry nothing changes. Costs a few hundred
        kernel sums on at most 1,000 cells per modality, once per start.
    init
        Starting maps: ``"random"`` (random orthonormal), ``"uniform"`` (every entry
        uniform(0, 0.1), the reference implementation's start) or ``"pca"`` (the top principal
        axes of each modality, randomly rotated); or a pair of arrays, the starting maps
        themselves, for a warm start (from an earlier run's ``varm["mmdma_W"]``, say): ``W_x``
        (features of the first modality x ``n_dims``) and ``W_y`` in the primal, ``a_x``
        (cells x ``n_dims``) and ``a_y`` in the dual (``obsm["mmdma_alpha"]``). Every restart
        then starts from them, so ``n_restarts`` must be 1.

        ``"rotation_search"``: the principal maps of each modality (where penalty and
        distortion are smallest), each scaled so that its embedding has unit mean squared
        norm, the second one turned by the orthogonal ``n_dims x n_dims`` matrix (rotation or
        reflection) that best matches the two embeddings by MMD², found by a global search
        before the fit: 128 Haar-random rotations descended by Adam on 256 k-means centroids
        per modality, the 4 best (at least ``2 n_restarts``) refined on up to 2,000 cells per
        modality. Restart ``i`` starts from the ``i``-th best rotation, distinct ones first
        (refined starts often end in the same minimum). MMD matching leaves
        that rotation to the fit, which from random starts often ends in a wrong alignment
        with about the same loss; the search covers the orthogonal group far more densely
        than restarts can (about 20 s on one core at ``n_dims=5``, the d x d parameters are
        few; the search runs on the CPU whatever ``device``). Meant for small ``n_dims`` (the
        group grows as ``n_dims²``).
    unbiased
        Use the unbiased (U-statistic) MMD² estimate, as the reference implementation does,
        instead of the biased one.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or with ``copy=True`` the modified copy (a MuData, or a list of the two AnnData).
    Writes the slots below, after removing every slot an earlier call with the same
    ``key_added`` wrote:

    ``mdata.obsm[f"X_{key_added}"]``
        The joint embedding, one row per cell of ``mdata.obs``: each modality's cells get their
        own embedding (a cell present in both gets the mean of its two), other cells NaN.
        Not written for a pair of AnnData.
    ``mdata[mod].obsm[f"X_{key_added}"]``
        Each modality's embedding ``Z`` (n_obs x n_dims).
    ``mdata[mod].varm[f"{key_added}_W"]``
        The map ``W`` (n_vars x n_dims), ``Z = X W`` (in the dual ``W = Xᵀα``). With ``use_rep``
        it is stored as ``mdata.uns[key_added][f"W_{mod}"]`` instead. Linear
        ``input_kernel`` only.
    ``mdata[mod].obsm[f"{key_added}_alpha"]``
        Dual only: the dual coefficients ``α`` (n_obs x n_dims).
    ``mdata.uns[key_added]["params"]``
        Every argument that affected the result, the resolved device and backend, the package
        version.
    ``mdata.uns[key_added]["history"]``
        DataFrame, one row per epoch of the kept restart: ``loss``, ``mmd``, ``penalty``,
        ``distortion``, ``bandwidth``, ``time`` (s since the start).
    ``mdata.uns[key_added]["restart_losses"]``, ``["restart_scores"]``, ``["restart_symmetry"]``, ``["best_restart"]``, ``["loss"]``, ``["bandwidth"]``
        Final loss of every restart, what they were ranked by (``select``), whether the
        symmetry search changed its second map, the index of the kept one, its final loss and
        bandwidth.
    ``mdata.uns[key_added]["restart_start_mmd"]``
        ``init="rotation_search"`` only: the MMD² of each restart's starting rotation.

    With a pair of AnnData, each one gets its ``obsm``/``varm`` slots and a copy of
    ``uns[key_added]``.

    Examples
    --------
    >>> import scintegrate as si
    >>> mdata = si.datasets.snareseq_celllines()
    >>> si.tl.mmdma(mdata, n_dims=5)
    >>> mdata.obsm["X_mmdma"].shape
    (2094, 5)
    """
    n_dims = check_positive_int(n_dims, param="n_dims")
    check_in(formulation, FORMULATIONS, param="formulation")
    input_kernel, input_bandwidth = _check_input_kernel(input_kernel, input_bandwidth, formulation)
    n_landmarks = check_positive_int(n_landmarks, param="n_landmarks", minimum=2)
    if n_kernel_components is not None:
        n_kernel_components = check_positive_int(n_kernel_components, param="n_kernel_components")
    linear = isinstance(input_kernel, str) and input_kernel == "linear"
    check_in(backend, BACKENDS, param="backend")
    lambda_penalty = check_number(lambda_penalty, param="lambda_penalty", minimum=0)
    lambda_distortion = check_number(lambda_distortion, param="lambda_distortion", minimum=0)
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}.")
    else:
        bandwidth = check_number(bandwidth, param="bandwidth", minimum=0, exclusive_minimum=True)
    max_epochs = check_positive_int(max_epochs, param="max_epochs")
    lr = check_number(lr, param="lr", minimum=0, exclusive_minimum=True)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, param="batch_size", minimum=2)
    n_restarts = check_positive_int(n_restarts, param="n_restarts")
    check_in(select, ("loss", "narrow_mmd"), param="select")
    symmetry_search = check_bool(symmetry_search, param="symmetry_search")
    _check_init_kind(init, n_restarts)
    if not isinstance(init, str) and formulation == "primal" and not linear:
        raise ValueError(
            "init given as arrays with a non-linear input_kernel needs formulation='dual' "
            "(the primal maps act on Nyström features drawn anew by each call)."
        )
    unbiased = check_bool(unbiased, param="unbiased")
    key_added = check_key(key_added)
    adatas, mods, is_mudata = _get_modalities(mdata, mods)
    if key_added in mods:
        raise ValueError(f"key_added={key_added!r} equals a modality name; choose another key.")
    layers = _per_mod(layer, mods, param="layer")
    reps = _per_mod(use_rep, mods, param="use_rep")
    data = [
        _get_data(adata, m, lay, rep, n_dims=n_dims, linear=linear)
        for adata, m, lay, rep in zip(adatas, mods, layers, reps, strict=True)
    ]
    if formulation == "dual":
        check_dual_size([X.shape[0] for X in data], mods)
    if not isinstance(init, str):
        init = _check_init(init, data, n_dims, formulation)
    rng = get_rng(random_state)
    # the input kernel of each modality: the data (linear), its n x n matrix (dual) or its
    # Nyström features (primal); random draws (median sample, landmarks) come from rng
    inputs = [
        prepare_input(
            X, input_kernel, input_bandwidth, formulation, n_landmarks, rng, n_kernel_components
        )
        for X in data
    ]
    fit_data = [x for x, _, _ in inputs]
    kernels = None if linear or formulation == "primal" else [k for _, k, _ in inputs]
    bandwidths = [b for _, _, b in inputs]
    for m, X in zip(mods, fit_data, strict=True):
        if n_dims > (X.shape[0] if formulation == "dual" else X.shape[1]):
            raise ValueError(
                f"n_dims={n_dims} is larger than the rank available for modality {m!r} "
                f"({X.shape[1]} kernel features); choose a smaller n_dims or more "
                "n_landmarks / n_kernel_components."
            )
    from .._core.mmdma import fit_mmdma, resolve_backend  # imports torch

    resolved_device = resolve_device(device)
    resolved_backend = resolve_backend(backend, resolved_device)

    result = fit_mmdma(
        fit_data[0],
        fit_data[1],
        n_dims,
        formulation=formulation,
        backend=resolved_backend,
        lambda_penalty=lambda_penalty,
        lambda_distortion=lambda_distortion,
        bandwidth=bandwidth,
        max_epochs=max_epochs,
        lr=lr,
        batch_size=batch_size,
        n_restarts=n_restarts,
        select=select,
        symmetry_search=symmetry_search,
        init=init,
        unbiased=unbiased,
        device=resolved_device,
        rng=rng,
        progress=settings.progress_bar,
        kernels=kernels,
    )
    logger.info(
        "MMD-MA (%s, %s): final loss %.4g, MMD² %.3g (restart %d of %d)",
        formulation,
        resolved_backend,
        result.loss,
        result.history["mmd"][-1],
        result.best_restart + 1,
        n_restarts,
    )

    params = {
        "n_dims": n_dims,
        "mods": list(mods),
        "layer": layers if any(v is not None for v in layers) else None,
        "use_rep": reps if any(v is not None for v in reps) else None,
        "formulation": formulation,
        "input_kernel": input_kernel if linear or not callable(input_kernel) else "callable",
        "input_bandwidth": (
            None if bandwidths[0] is None else dict(zip(mods, map(float, bandwidths), strict=True))
        ),
        "input_bandwidth_rule": input_bandwidth if not linear else None,
        "n_landmarks": n_landmarks if (formulation == "primal" and not linear) else None,
        "n_kernel_components": (
            n_kernel_components if (formulation == "primal" and not linear) else None
        ),
        "backend": resolved_backend,
        "lambda_penalty": lambda_penalty,
        "lambda_distortion": lambda_distortion,
        "bandwidth": bandwidth,
        "max_epochs": max_epochs,
        "lr": lr,
        "lr_scaling": "rms_of_start",
        "batch_size": batch_size,
        "n_restarts": n_restarts,
        "select": select,
        "symmetry_search": symmetry_search,
        "mmd_estimator": "unbiased" if unbiased else "biased",
        "init": init if isinstance(init, str) else "given",
        "device": resolved_device,
        "random_state": random_state if isinstance(random_state, int) else None,
    }
    if copy:
        mdata = mdata.copy() if is_mudata else [a.copy() for a in adatas]
    _write_results(mdata, mods, data, reps, result, params, key_added=key_added)
    return mdata if copy else None


def _check_init_kind(init, n_restarts: int) -> None:
    """``init`` names a kind of start, or is a pair (checked later against the data)."""
    if isinstance(init, str):
        check_in(init, _INITS, param="init")
        if init == "rotation_search" and n_restarts > ROTATION_SEARCH_STARTS:
            raise ValueError(
                f"init='rotation_search' starts each restart from one of the "
                f"{ROTATION_SEARCH_STARTS} rotations it searches; use n_restarts <= "
                f"{ROTATION_SEARCH_STARTS}."
            )
    elif isinstance(init, Mapping) or not isinstance(init, Sequence) or len(init) != 2:
        raise ValueError(
            "init must be 'random', 'uniform', 'pca', 'rotation_search' or a pair of arrays "
            f"(W_x, W_y), got {type(init).__name__}."
        )
    elif n_restarts > 1:
        raise ValueError(
            "init given as arrays starts every restart from the same maps; use n_restarts=1."
        )


def _per_mod(value, mods: Sequence[str], *, param: str) -> list:
    """A str/None for both modalities, or a mapping modality -> value."""
    if isinstance(value, Mapping):
        missing = [m for m in mods if m not in value]
        if missing:
            raise ValueError(f"{param} is a mapping but has no entry for modality {missing[0]!r}.")
        return [value[m] for m in mods]
    return [value, value]


def _get_modalities(mdata, mods) -> tuple[list[AnnData], list[str], bool]:
    """The two AnnData objects to integrate, their names, and whether the input is a MuData."""
    if isinstance(mdata, MuData):
        if isinstance(mods, str) or len(mods) != 2 or len(set(mods)) != 2:
            raise ValueError(f"mods must name two different modalities, got {mods!r}.")
        available = ", ".join(map(repr, mdata.mod.keys())) or "none"
        for m in mods:
            if m not in mdata.mod:
                raise ValueError(
                    f"Modality {m!r} is not in mdata.mod (available: {available}); pass "
                    "mods=(first, second) naming two of them."
                )
        return [mdata.mod[m] for m in mods], [str(m) for m in mods], True
    if (
        isinstance(mdata, list | tuple)
        and len(mdata) == 2
        and all(isinstance(a, AnnData) for a in mdata)
    ):
        if isinstance(mods, str) or len(mods) != 2 or len(set(mods)) != 2:
            raise ValueError(f"mods must be two different names, got {mods!r}.")
        return list(mdata), [str(m) for m in mods], False
    raise TypeError(
        f"mdata must be a MuData with two modalities or a pair (adata_x, adata_y) of AnnData, "
        f"got {type(mdata).__name__}."
    )


def _get_data(adata: AnnData, mod: str, layer, use_rep, *, n_dims: int, linear: bool):
    """The cells x features matrix of one modality, validated (never copied or modified)."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"Modality {mod!r} is empty ({adata.n_obs} cells x {adata.n_vars} features)."
        )
    if use_rep is not None:
        if layer is not None:
            raise ValueError("Pass either layer or use_rep, not both.")
        X = get_obsm(
            adata,
            use_rep,
            prefix=f"mdata[{mod!r}]",
            advice="Compute it first (e.g. sc.pp.pca) or pass use_rep=None to use the features.",
        )
        X = X.to_numpy() if hasattr(X, "to_numpy") else X
        where = f"mdata[{mod!r}].obsm[{use_rep!r}]"
    else:
        X = get_matrix(adata, layer)
        where = matrix_label(layer, prefix=f"mdata[{mod!r}]")
    if not sp.issparse(X):
        X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != adata.n_obs or X.shape[1] == 0:
        raise ValueError(f"{where} must be a cells x features matrix, got shape {X.shape}.")
    check_finite(X, what=where)
    if linear and n_dims > X.shape[1]:
        raise ValueError(
            f"n_dims={n_dims} is larger than the number of features of {where} "
            f"({X.shape[1]}); choose n_dims <= {X.shape[1]}."
        )
    if X.shape[0] < 2:
        raise ValueError(f"Modality {mod!r} has {X.shape[0]} cell; MMD-MA needs at least 2.")
    return X


def _check_input_kernel(kernel, bandwidth, formulation: str):
    """``input_kernel`` names a kernel or is a callable (dual only); ``input_bandwidth`` is
    ``"median"`` or a positive number."""
    if callable(kernel):
        if formulation != "dual":
            raise ValueError(
                "a callable input_kernel returns an n x n matrix: it needs formulation='dual'."
            )
    elif not isinstance(kernel, str):
        raise TypeError(
            "input_kernel must be 'linear', 'rbf' or a callable returning a cells x cells "
            f"kernel matrix, got {type(kernel).__name__}."
        )
    else:
        check_in(kernel, INPUT_KERNELS, param="input_kernel")
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(
                f"input_bandwidth must be 'median' or a positive number, got {bandwidth!r}."
            )
    else:
        bandwidth = check_number(
            bandwidth, param="input_bandwidth", minimum=0, exclusive_minimum=True
        )
    return kernel, bandwidth


def _check_init(init, data: list, n_dims: int, formulation: str) -> list[np.ndarray]:
    """Starting maps given as a pair of arrays: finite, not all zero, of the trained shapes."""
    primal = formulation == "primal"
    names, what = (("W_x", "W_y"), "features") if primal else (("a_x", "a_y"), "cells")
    maps = []
    for name, w, X in zip(names, init, data, strict=True):
        w = np.asarray(w, dtype=np.float64)
        rows = X.shape[1] if primal else X.shape[0]
        if w.shape != (rows, n_dims):
            raise ValueError(
                f"init {name} must have shape ({rows}, {n_dims}) ({what} x n_dims for "
                f"formulation={formulation!r}), got {w.shape}."
            )
        check_finite(w, what=f"init {name}")
        if not np.any(w):
            raise ValueError(f"init {name} is all zeros; the fit cannot move from it.")
        maps.append(w)
    return maps


def _joint_embedding(mdata: MuData, mods: list[str], Z: list[np.ndarray]) -> np.ndarray:
    """Rows of ``mdata.obs``: each modality's cells get their embedding, other cells NaN.

    A cell present in both modalities (same obs name) gets the mean of its two embeddings.
    """
    d = Z[0].shape[1]
    total = np.zeros((mdata.n_obs, d))
    count = np.zeros(mdata.n_obs)
    for m, z in zip(mods, Z, strict=True):
        # obsmap[m][i]: 1-based row of mdata's cell i in modality m, 0 when absent
        positions = np.asarray(mdata.obsmap[m]).ravel().astype(np.int64)
        present = positions > 0
        total[present] += z[positions[present] - 1]
        count[present] += 1
    out = np.full((mdata.n_obs, d), np.nan)
    embedded = count > 0
    out[embedded] = total[embedded] / count[embedded, None]
    return out


def _write_results(
    mdata, mods: list[str], data: list, reps: list, result: MMDMAResult, params: dict, *, key_added
) -> None:
    """Write the slots of the Returns section (replacing an earlier call's), into a MuData or
    into each AnnData of a pair."""
    uns = {
        "params": record_params(params),
        "history": history_frame(result.history),
        "restart_losses": np.asarray(result.restart_losses),
        "restart_scores": np.asarray(result.restart_scores),
        "restart_symmetry": np.asarray(result.restart_symmetry, dtype=bool),
        "best_restart": int(result.best_restart),
        "loss": float(result.loss),
        "bandwidth": float(result.bandwidth),
    }
    if result.restart_start_mmd:
        uns["restart_start_mmd"] = np.asarray(result.restart_start_mmd)
    slots = {}
    linear = params["input_kernel"] == "linear"
    for m, X, rep, Z, w in zip(mods, data, reps, result.embeddings, result.weights, strict=True):
        obsm = {f"X_{key_added}": Z}
        if params["formulation"] == "dual":
            obsm[f"{key_added}_alpha"] = w
            W = np.asarray(X.T @ w) if linear else None  # Z = X X^T alpha = X W
        else:
            W = w if linear else None
        if W is None:
            # a non-linear map: no features x n_dims matrix (the dual keeps alpha)
            slots[m] = {"obsm": obsm}
        elif rep is None:
            slots[m] = {"obsm": obsm, "varm": {f"{key_added}_W": W}}
        else:
            slots[m] = {"obsm": obsm}
            uns[f"W_{m}"] = W
    if isinstance(mdata, MuData):
        joint = _joint_embedding(mdata, mods, result.embeddings)
        write_slots(mdata, key_added, uns=uns, obsm={f"X_{key_added}": joint}, modalities=slots)
    else:
        for adata, m in zip(mdata, mods, strict=True):
            own = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in uns.items()}
            write_slots(adata, key_added, uns=own, **slots[m])
