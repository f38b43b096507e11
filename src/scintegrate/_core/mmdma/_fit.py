"""The MMD-MA fit: Adam on the two maps from several starts, and the choice of the one kept.

The objective (see the package docstring) is minimised by full-batch or mini-batch Adam from
``n_restarts`` starts (:class:`_Start`); half-way through each start the symmetry search may
replace the second map by a mirror image of it (:mod:`._symmetry`); the start with the lowest
final loss (or narrow-kernel MMD², ``select``) is returned as an :class:`MMDMAResult`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .._adam import Adam
from .._progress import progress_bar
from ._kernels import median_bandwidth, mmd2
from ._modality import _Modality
from ._rotation_search import rotation_search
from ._symmetry import _symmetry_search

# n x m below which the fit runs on one CPU thread
_SMALL_PROBLEM = 2_000_000


@dataclass
class MMDMAResult:
    """Embeddings, maps and training history of the best restart."""

    embeddings: list[np.ndarray]
    """``Z_x`` (n x d) and ``Z_y`` (m x d)."""
    weights: list[np.ndarray]
    """``W_x`` (p x d) and ``W_y`` (q x d) in the primal; ``a_x`` (n x d), ``a_y`` in the dual."""
    loss: float
    """Final objective of the best restart (mean over the last epoch's steps)."""
    history: dict[str, list] = field(default_factory=dict)
    """Per epoch: ``loss``, ``mmd``, ``penalty``, ``distortion``, ``bandwidth``, ``time``."""
    restart_losses: list[float] = field(default_factory=list)
    restart_scores: list[float] = field(default_factory=list)
    """What the restarts were ranked by (``select``): final loss, or narrow-kernel MMD²."""
    restart_symmetry: list[bool] = field(default_factory=list)
    """Whether the half-way symmetry search changed the second map, per restart."""
    restart_embeddings: list[list[np.ndarray]] = field(default_factory=list)
    """With ``keep_restart_embeddings``: ``(Z_x, Z_y)`` of every restart, in order."""
    best_restart: int = 0
    bandwidth: float = 1.0
    """Bandwidth used at the last epoch of the best restart."""
    backend: str = "torch"
    distortion_route: list[str] = field(default_factory=list)
    restart_start_mmd: list[float] = field(default_factory=list)
    """With ``init="rotation_search"``: the MMD² of each restart's start found by the search."""


@dataclass(frozen=True)
class _Options:
    """The settings of one fit: the keyword arguments of :func:`fit_mmdma`."""

    formulation: str
    backend: str
    lambda_penalty: float
    lambda_distortion: float
    bandwidth: float | str
    bandwidth_factor: float
    bandwidth_final_factor: float | None
    unbiased: bool
    max_epochs: int
    lr: float
    lr_schedule: str
    batch_size: int | None
    n_restarts: int
    select: str
    select_factor: float
    symmetry_search: bool
    init: str | Sequence
    median_sample: int
    device: str
    dtype: torch.dtype
    progress: bool
    block_size: int | None


def fit_mmdma(
    X,
    Y,
    n_dims: int = 10,
    *,
    formulation: str = "primal",
    backend: str = "torch",
    lambda_penalty: float = 0.1,
    lambda_distortion: float = 0.1,
    bandwidth: float | str = "median",
    bandwidth_factor: float = 1.0,
    bandwidth_final_factor: float | None = None,
    unbiased: bool = False,
    max_epochs: int = 500,
    lr: float = 0.2,
    lr_schedule: str = "constant",
    batch_size: int | None = None,
    n_restarts: int = 1,
    select: str = "loss",
    select_factor: float = 0.25,
    symmetry_search: bool = True,
    init: str | Sequence = "random",
    median_sample: int = 256,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    rng: np.random.Generator | None = None,
    progress: bool = False,
    block_size: int | None = None,
    kernels: Sequence | None = None,
    keep_restart_embeddings: bool = False,
) -> MMDMAResult:
    """Learn the two maps of MMD-MA by Adam; the objective is in the package docstring.

    ``bandwidth="median"`` sets the kernel bandwidth, at every step, to the median distance
    between the embeddings of a fixed random sample of ``median_sample`` cells of each modality
    (not differentiated through); a number fixes it. ``batch_size`` (``None``: full batch)
    computes the MMD term of each step on random mini-batches of that many cells per modality;
    an epoch is then ``ceil(max(n, m) / batch_size)`` steps. Each of the ``n_restarts`` runs
    starts from its own random orthonormal maps; the one with the lowest final loss is kept.
    ``init`` may instead be a pair of arrays, the starting maps themselves (primal: ``p x d``
    and ``q x d``; dual: ``n x d`` and ``m x d``), for a warm start; every restart then starts
    from them. ``kernels`` (dual only) gives the two n x n input kernel matrices ``K_x``,
    ``K_y`` (:func:`._input_kernels.kernel_matrix`) instead of the linear ``X Xᵀ``, ``Y Yᵀ``.
    ``keep_restart_embeddings`` returns every restart's embeddings too (benchmarks score each
    restart with them).
    """
    if kernels is not None and formulation != "dual":
        raise ValueError("kernels (input kernel matrices) need formulation='dual'.")
    opts = _Options(
        formulation=formulation, backend=backend, lambda_penalty=lambda_penalty,
        lambda_distortion=lambda_distortion, bandwidth=bandwidth,
        bandwidth_factor=bandwidth_factor, bandwidth_final_factor=bandwidth_final_factor,
        unbiased=unbiased, max_epochs=max_epochs, lr=lr, lr_schedule=lr_schedule,
        batch_size=batch_size, n_restarts=n_restarts, select=select,
        select_factor=select_factor, symmetry_search=symmetry_search, init=init,
        median_sample=median_sample, device=device, dtype=dtype, progress=progress,
        block_size=block_size,
    )  # fmt: skip
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    threads = torch.get_num_threads()
    if device == "cpu" and X.shape[0] * Y.shape[0] <= _SMALL_PROBLEM:
        # tiny kernels: thread start-up and barriers cost more than they save (10x on a busy
        # 2-core machine), so small problems run single-threaded
        torch.set_num_threads(1)
    try:
        return _fit(X, Y, n_dims, opts, rng, kernels, keep_restart_embeddings)
    finally:
        torch.set_num_threads(threads)


def _fit(
    X,
    Y,
    n_dims: int,
    opts: _Options,
    rng: np.random.Generator,
    kernels=None,
    keep_restart_embeddings: bool = False,
) -> MMDMAResult:
    """Train ``opts.n_restarts`` starts, each with its own torch generator drawn from ``rng``,
    and keep the one with the lowest score (the first of equals)."""
    kernels = (None, None) if kernels is None else kernels
    mods = [
        _Modality(M, opts.formulation, opts.dtype, opts.device, kernel=K)
        for M, K in zip((X, Y), kernels, strict=True)
    ]
    bar = progress_bar(
        total=opts.n_restarts * opts.max_epochs,
        desc="MMD-MA",
        unit="epoch",
        disable=not opts.progress,
    )
    starts, start_mmd = [None] * opts.n_restarts, []
    if opts.init == "rotation_search":
        starts, start_mmd = _searched_starts(mods, n_dims, rng, opts)
    losses, scores, symmetry, restart_embeddings = [], [], [], []
    best, best_index = None, 0
    for restart in range(opts.n_restarts):
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        start = _Start(mods, n_dims, gen, opts, maps=starts[restart])
        start.train(bar)
        losses.append(start.loss)
        scores.append(start.score)
        symmetry.append(start.symmetry_applied)
        if keep_restart_embeddings:
            restart_embeddings.append([z.cpu().double().numpy() for z in start._embeddings()])
        if best is None or start.score < best.score:
            best, best_index = start, restart
    bar.close()
    with torch.no_grad():
        Z = [m.embed(w).cpu().double().numpy() for m, w in zip(mods, best.maps, strict=True)]
    return MMDMAResult(
        embeddings=Z,
        weights=[w.cpu().double().numpy() for w in best.maps],
        loss=losses[best_index],
        history=_history(best.record, best.times),
        restart_losses=losses,
        restart_scores=scores,
        restart_symmetry=symmetry,
        restart_embeddings=restart_embeddings,
        best_restart=best_index,
        bandwidth=float(best.record[-1, 4]),
        backend=opts.backend,
        distortion_route=[m.route for m in mods],
        restart_start_mmd=start_mmd,
    )


def _searched_starts(mods, n_dims: int, rng: np.random.Generator, opts: _Options):
    """One pair of starting maps per restart, from :func:`rotation_search`: the principal maps
    of each modality, scaled so that its embedding has unit mean squared norm, the second one
    turned by the restart's rotation (the best rotation first); and the rotations' MMD²."""
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    bases, embeddings = [], []
    with torch.no_grad():
        for mod in mods:
            basis = mod._principal_basis(n_dims)
            z = mod.embed(basis.to(dtype=opts.dtype, device=opts.device)).double().cpu()
            scale = float(z.pow(2).sum(1).mean().sqrt())
            if not scale > 0:
                raise ValueError(
                    "init='rotation_search': a modality's principal embedding is all zeros; "
                    "its features carry no variation to align."
                )
            bases.append(basis / scale)
            embeddings.append(z)
    rotations, mmd = rotation_search(*embeddings, gen, n_keep=opts.n_restarts)
    starts = [
        [
            bases[0].to(dtype=opts.dtype, device=opts.device),
            (bases[1] @ R).to(dtype=opts.dtype, device=opts.device),
        ]
        for R in rotations
    ]
    return starts, [float(v) for v in mmd]


def _starting_maps(mods, n_dims: int, gen: torch.Generator, opts: _Options, maps=None) -> list:
    """The maps a start begins from: ``maps`` when given (a searched start), else
    ``opts.init`` (a kind, or the maps themselves)."""
    if maps is not None:
        maps = [w.clone() for w in maps]
    elif isinstance(opts.init, str):
        maps = [mod.init(n_dims, gen, opts.dtype, opts.device, opts.init) for mod in mods]
    else:
        maps = [
            torch.as_tensor(np.asarray(w), dtype=opts.dtype, device=opts.device).clone()
            for w in opts.init
        ]
    return [w.contiguous().requires_grad_(True) for w in maps]


class _Start:
    """One start of the fit: its maps, their optimizer and its random stream.

    After :meth:`train`: ``record`` (epochs x [loss, mmd, penalty, distortion, bandwidth], each
    the mean over the epoch's steps), ``times`` (seconds since the start, per epoch), ``loss``
    (the last epoch's), ``score`` (what the starts are ranked by), ``symmetry_applied`` and
    ``maps`` (the trained maps, detached).
    """

    def __init__(self, mods, n_dims: int, gen: torch.Generator, opts: _Options, maps=None) -> None:
        self.mods, self.gen, self.opts = mods, gen, opts
        self.sizes = [mod.n for mod in mods]
        self.full = opts.batch_size is None or opts.batch_size >= max(self.sizes)
        self.params = _starting_maps(mods, n_dims, gen, opts, maps)
        # the cells whose embeddings give the median bandwidth, fixed for the whole start
        self.sample = [
            torch.randperm(n, generator=gen)[: min(n, opts.median_sample)].to(opts.device)
            for n in self.sizes
        ]
        # Adam moves every entry by about lr per step: scale lr by the size of the entries (the
        # RMS of the random start, 1/sqrt(p) for an orthonormal W) so that lr is a relative step
        # whatever the number of features
        self.opt = Adam(
            self.params, [opts.lr * float(w.detach().pow(2).mean().sqrt()) for w in self.params]
        )
        self.median_state: dict = {}
        self.symmetry_applied = False

    def train(self, bar) -> None:
        """Every epoch (one step, or one per mini-batch), then the record and the score."""
        opts = self.opts
        steps = 1 if self.full else math.ceil(max(self.sizes) / opts.batch_size)
        records, times = [], []
        begin = time.perf_counter()
        for epoch in range(opts.max_epochs):
            if opts.symmetry_search and epoch == opts.max_epochs // 2 and epoch:
                # half-way: undo a mirror image if a narrow kernel decisively prefers it; the
                # second half of the epochs then converges whichever alignment was chosen
                self.symmetry_applied = self._undo_mirror_image()
            # cosine annealing of the learning rate over the epochs (to 0), or constant
            if opts.lr_schedule == "cosine":
                schedule = 0.5 * (1 + math.cos(math.pi * epoch / opts.max_epochs))
            else:
                schedule = 1.0
            records.append(torch.stack([self._step(epoch, schedule) for _ in range(steps)]).mean(0))
            times.append(time.perf_counter() - begin)
            bar.update(1)
        self.record = torch.stack(records).cpu().double().numpy()
        if not np.all(np.isfinite(self.record[:, 0])):
            raise FloatingPointError(
                "MMD-MA diverged (non-finite loss); lower lr or scale the input features."
            )
        self.times = times
        self.loss = float(self.record[-1, 0])
        self.score = self._score()
        self.maps = [w.detach().clone() for w in self.params]

    def _embeddings(self) -> list[torch.Tensor]:
        """Both embeddings of every cell at the current maps (no gradient)."""
        with torch.no_grad():
            return [m.embed(w) for m, w in zip(self.mods, self.params, strict=True)]

    def _undo_mirror_image(self) -> bool:
        """Apply the map of :func:`_symmetry_search` to the second map (and to its Adam momentum)
        when there is one; whether it was applied."""
        zs = self._embeddings()
        with torch.no_grad():
            t = _symmetry_search(zs[0], zs[1], factor=self.opts.select_factor, gen=self.gen)
            if t is None:
                return False
            t = t.to(dtype=self.params[1].dtype, device=self.params[1].device)
            self.params[1].copy_(self.params[1] @ t)
            self.opt.m[1].copy_(self.opt.m[1] @ t)
        return True

    def _step(self, epoch: int, schedule: float) -> torch.Tensor:
        """One Adam step on all cells or on a mini-batch; returns its [loss, mmd, penalty,
        distortion, bandwidth]."""
        opts, mods, params = self.opts, self.mods, self.params
        if self.full:
            idx = [None, None]
        else:
            idx = [
                torch.randint(n, (min(opts.batch_size, n),), generator=self.gen).to(opts.device)
                for n in self.sizes
            ]
        # penalty and distortion are exact: the dual and the "cells" route need every Z
        need_full_z = opts.formulation == "dual" or any(m.route == "cells" for m in mods)
        Zs_full = (
            [m.embed(w) for m, w in zip(mods, params, strict=True)]
            if (self.full or need_full_z)
            else [None, None]
        )
        Zs = (
            Zs_full
            if self.full
            else [m.embed(w, i) for m, w, i in zip(mods, params, idx, strict=True)]
        )
        bw = self._bandwidth(Zs, epoch)
        mmd = mmd2(
            Zs[0],
            Zs[1],
            bw,
            unbiased=opts.unbiased,
            backend=opts.backend,
            block_size=opts.block_size,
        )
        pen = sum(m.penalty(w, z) for m, w, z in zip(mods, params, Zs_full, strict=True))
        dis = sum(m.distortion(w, z) for m, w, z in zip(mods, params, Zs_full, strict=True))
        loss = mmd + opts.lambda_penalty * pen + opts.lambda_distortion * dis
        grads = torch.autograd.grad(loss, params)
        self.opt.step(grads, schedule)
        return torch.stack(
            [
                loss.detach(),
                mmd.detach(),
                pen.detach(),
                dis.detach(),
                torch.as_tensor(bw, dtype=loss.dtype, device=loss.device),
            ]
        )

    def _bandwidth(self, Zs: list, epoch: int) -> float:
        """The kernel bandwidth of a step: the fixed one, or the factor of this epoch times the
        median distance between the embeddings of the sampled cells (not differentiated)."""
        opts = self.opts
        if not isinstance(opts.bandwidth, str):
            return float(opts.bandwidth)
        with torch.no_grad():
            pooled = torch.cat(
                [
                    (m.embed(w, s) if not self.full else z[s])
                    for m, w, s, z in zip(self.mods, self.params, self.sample, Zs, strict=True)
                ]
            )
            factor = opts.bandwidth_factor
            if opts.bandwidth_final_factor is not None:
                t = epoch / max(opts.max_epochs - 1, 1)
                factor = (
                    opts.bandwidth_factor
                    * (opts.bandwidth_final_factor / opts.bandwidth_factor) ** t
                )
            return factor * median_bandwidth(pooled, self.median_state)

    def _score(self) -> float:
        """What the starts are ranked by: the final loss (``select="loss"``), or the MMD² of the
        final embeddings under a kernel ``select_factor`` times narrower than the last one
        trained with: it sees the fine structure that tells an alignment from its mirror
        images, which the training kernel (and so the loss) barely does."""
        if self.opts.select == "loss":
            return self.loss
        narrow = self.opts.select_factor * float(self.record[-1, 4])
        zs = self._embeddings()
        with torch.no_grad():
            return float(mmd2(zs[0], zs[1], narrow, backend=self.opts.backend))


def _history(record: np.ndarray, times: list[float]) -> dict[str, list]:
    """The per-epoch history of :class:`MMDMAResult` from a start's record."""
    return {
        "epoch": list(range(1, len(record) + 1)),
        "loss": record[:, 0].tolist(),
        "mmd": record[:, 1].tolist(),
        "penalty": record[:, 2].tolist(),
        "distortion": record[:, 3].tolist(),
        "bandwidth": record[:, 4].tolist(),
        "time": times,
    }


def objective(
    X,
    Y,
    weights: Sequence,
    *,
    formulation: str = "primal",
    lambda_penalty: float = 1.0,
    lambda_distortion: float = 1.0,
    bandwidth: float = 1.0,
    unbiased: bool = False,
    backend: str = "torch",
    dtype=torch.float64,
    device: str = "cpu",
    kernels: Sequence | None = None,
) -> dict[str, float]:
    """The objective and its terms at given maps (full batch, fixed bandwidth); ``kernels``: the
    dual's input kernel matrices, as in :func:`fit_mmdma`."""
    kernels = (None, None) if kernels is None else kernels
    mods = [
        _Modality(M, formulation, dtype, device, kernel=K)
        for M, K in zip((X, Y), kernels, strict=True)
    ]
    ws = [torch.as_tensor(np.asarray(w), dtype=dtype, device=device) for w in weights]
    with torch.no_grad():
        Z = [m.embed(w) for m, w in zip(mods, ws, strict=True)]
        mmd = mmd2(Z[0], Z[1], bandwidth, unbiased=unbiased, backend=backend)
        pen = sum(m.penalty(w, z) for m, w, z in zip(mods, ws, Z, strict=True))
        dis = sum(m.distortion(w, z) for m, w, z in zip(mods, ws, Z, strict=True))
    loss = mmd + lambda_penalty * pen + lambda_distortion * dis
    return {"loss": float(loss), "mmd": float(mmd), "penalty": float(pen), "distortion": float(dis)}
