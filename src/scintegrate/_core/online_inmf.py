"""Online iNMF as a model with state: train, continue on new datasets, project, resume.

The state of Algorithm 1 of Gao & Welch is small and independent of the number of cells: the
factors ``W`` (m x k) and ``V_i`` (m x k), the sufficient statistics ``A_i`` (k x k) and ``B_i``
(m x k) with their two-epoch shadow copies, per-dataset step and epoch counters, and the random
generator. Keeping all of it makes training resumable: stopping after some epochs, taking the
state (:meth:`OnlineINMF.get_state`), rebuilding the model from it and continuing gives exactly the
factors of an uninterrupted run with the same seed. The state's file format is not kept here:
``tl/_online_inmf_file.py`` owns it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from ._nnls import solve_rows
from ._progress import progress_bar
from ._row_sources import MemoryRows, RowSource
from ._sparse import as_csr
from ._sparse_kernels import rows_transpose_times, single_threaded_blas
from .inmf import EPS, INMFResult, gram_h, hals_update_w_v

_FORMAT = "scintegrate.online_inmf"
_FORMAT_VERSION = 1


def _epoch_order(n: int, chunk_size: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``n`` cells that keeps runs of ``chunk_size`` consecutive cells together.

    With ``chunk_size=1`` this is a plain permutation; larger chunks make mini-batches out of a
    few contiguous runs, which is what makes reading them from HDF5 cheap.
    """
    if chunk_size <= 1:
        return rng.permutation(n)
    starts = np.arange(0, n, chunk_size)
    order = rng.permutation(len(starts))
    return np.concatenate([np.arange(s, min(s + chunk_size, n)) for s in starts[order]])


def minibatch_plan(n_cells: Sequence[int], batch_size: int) -> int:
    """Mini-batches per epoch: every dataset is split into this many parts, so each mini-batch
    takes cells from every dataset in proportion to its size (about ``batch_size`` in total)."""
    return max(1, round(sum(n_cells) / batch_size))


def init_online_factors(
    sources: Sequence[RowSource], k: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Algorithm 1's start: W uniform(0, 2), each V_i from k randomly drawn (non-empty) cells of
    dataset i; every column scaled to unit L2 norm (as in rliger and libplanc).

    Only a few candidate cells of each dataset are read (a sorted random sample of 4k), so this
    works the same on data in memory and on disk.
    """
    m = sources[0].n_genes
    W = rng.uniform(0.0, 2.0, (m, k))
    W /= np.maximum(np.linalg.norm(W, axis=0), EPS)
    Vs = []
    for source in sources:
        n = source.n_cells
        candidates = np.sort(rng.choice(n, min(n, 4 * k), replace=False))
        block, rows = source.take(candidates)
        nonempty = rows[np.diff(block.indptr)[rows] > 0]
        if len(nonempty) == 0:
            raise ValueError(
                f"{len(candidates)} randomly drawn cells of a dataset are all empty in the genes "
                "used; remove empty cells (sc.pp.filter_cells) or check the gene selection."
            )
        chosen = np.sort(rng.choice(nonempty, k, replace=len(nonempty) < k))
        V = block[chosen].toarray().T
        V /= np.maximum(np.linalg.norm(V, axis=0), EPS)
        Vs.append(V)
    return W, Vs


def as_source(X) -> RowSource:
    """A row source for in-memory data (float64 CSR, read without copies) or a source as is."""
    if isinstance(X, RowSource):
        return X
    if isinstance(X, sp.csr_matrix) and X.dtype == np.float64 and X.has_canonical_format:
        return MemoryRows(X)
    return MemoryRows(as_csr(X, dtype=np.float64, canonical=True))


class OnlineINMF:
    """State of online iNMF; datasets are cells x genes CSR matrices (float64)."""

    def __init__(
        self,
        k: int,
        *,
        lambda_: float = 5.0,
        batch_size: int = 5000,
        hals_iter: int = 1,
        chunk_size: int = 1,
        rng: np.random.Generator,
    ) -> None:
        self.k = int(k)
        self.lambda_ = float(lambda_)
        self.batch_size = int(batch_size)
        self.hals_iter = int(hals_iter)
        self.chunk_size = int(chunk_size)
        self.rng = rng
        self.W: np.ndarray | None = None
        self.V: list[np.ndarray] = []
        self.A: list[np.ndarray] = []
        self.B: list[np.ndarray] = []
        self.A_old: list[np.ndarray] = []
        self.B_old: list[np.ndarray] = []
        self.steps: list[int] = []  # mini-batches each dataset has contributed
        self.epochs: list[int] = []  # epochs each dataset has completed
        self.names: list[str] = []
        self.history: dict[str, list] = {
            "iteration": [],
            "epoch": [],
            "objective": [],
            "delta_W": [],
            "time": [],
        }
        self.elapsed = 0.0  # seconds of training so far (the history's clock continues)

    # -- datasets ---------------------------------------------------------------------------
    def add_datasets(self, sources: Sequence[RowSource], names: Sequence[str]) -> list[int]:
        """Register new datasets: V_i from k randomly drawn non-empty cells, A_i = B_i = 0."""
        sources = [as_source(source) for source in sources]
        W, Vs = init_online_factors(sources, self.k, self.rng)
        if self.W is None:
            self.W = W
        elif W.shape[0] != self.W.shape[0]:
            raise ValueError(
                f"The new datasets have {W.shape[0]} genes, the model {self.W.shape[0]}; "
                "use the genes the model was trained on, in the same order."
            )
        m = self.W.shape[0]
        indices = []
        for name, V in zip(names, Vs, strict=True):
            if name in self.names:
                raise ValueError(f"A dataset named {name!r} is already part of the model.")
            indices.append(len(self.names))
            self.names.append(str(name))
            self.V.append(V)
            self.A.append(np.zeros((self.k, self.k)))
            self.B.append(np.zeros((m, self.k)))
            self.A_old.append(np.zeros((self.k, self.k)))
            self.B_old.append(np.zeros((m, self.k)))
            self.steps.append(0)
            self.epochs.append(0)
        return indices

    # -- training ---------------------------------------------------------------------------
    @single_threaded_blas
    def train(
        self,
        sources: Sequence[RowSource],
        active: Sequence[int],
        n_epochs: int,
        *,
        progress: bool = False,
        prefetch: bool = False,
    ) -> None:
        """Run ``n_epochs`` more epochs over the datasets ``active`` (data given in that order).

        Datasets not in ``active`` keep their V_i, A_i, B_i, but still shape W through A_i, B_i
        (scenario 2 of the paper: new data refines the shared factors). With ``prefetch`` the
        next mini-batch is read by a background thread while the current one is computed (the
        same batches in the same order: the result is the same).
        """
        sources = [as_source(source) for source in sources]
        n_cells = [source.n_cells for source in sources]
        parts = minibatch_plan(n_cells, self.batch_size)
        update_v = [i in set(active) for i in range(len(self.names))]
        bar = progress_bar(total=parts * n_epochs, desc="online iNMF", disable=not progress)
        start = time.perf_counter() - self.elapsed
        pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if prefetch else None

        def read(splits, part):
            batch = []
            for source, split in zip(sources, splits, strict=True):
                cells = split[part]
                batch.append(source.take(np.sort(cells)) if len(cells) else None)
            return batch

        try:
            for _ in range(n_epochs):
                self._epoch(sources, active, n_cells, parts, update_v, bar, start, read, pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        self.elapsed = time.perf_counter() - start
        bar.close()

    def _epoch(self, sources, active, n_cells, parts, update_v, bar, start, read, pool) -> None:
        """One epoch of :meth:`train` (``read`` gives a part's mini-batches, ``pool`` reads the
        next part ahead when given)."""
        splits = [
            np.array_split(_epoch_order(n, self.chunk_size, self.rng), parts) for n in n_cells
        ]
        ahead = None if pool is None else pool.submit(read, splits, 0)
        for part in range(parts):
            if ahead is None:
                batch = read(splits, part)
            else:
                batch = ahead.result()
                ahead = pool.submit(read, splits, part + 1) if part + 1 < parts else None
            estimate = 0.0
            for source, i, taken in zip(sources, active, batch, strict=True):
                if taken is None:
                    continue
                X, rows = taken
                estimate += self._absorb(X, i, rows, source.n_cells, new_epoch=part == 0)
            W_before = self.W.copy()
            for _ in range(self.hals_iter):
                hals_update_w_v(self.W, self.V, self.A, self.B, self.lambda_, update_v)
            change = np.linalg.norm(self.W - W_before) / max(np.linalg.norm(W_before), 1e-300)
            self.history["iteration"].append(len(self.history["iteration"]) + 1)
            self.history["epoch"].append(max(self.steps[i] for i in active) / parts)
            self.history["objective"].append(estimate)
            self.history["delta_W"].append(change)
            self.history["time"].append(time.perf_counter() - start)
            bar.set_postfix(objective=f"{estimate:.6g}", refresh=False)
            bar.update()
        for i in active:
            self.epochs[i] += 1

    def _absorb(self, X, i: int, cells: np.ndarray, n_cells: int, *, new_epoch: bool) -> float:
        """Solve one mini-batch of dataset i and fold it into A_i, B_i (10); returns its
        scaled contribution to the objective estimate."""
        V = self.V[i]
        L = self.W + V
        G = L.T @ L + self.lambda_ * (V.T @ V)
        size = len(cells)
        h = np.empty((size, self.k))
        sq_norm, cross = solve_rows(X, cells, L, G, h)
        hth = h.T @ h
        if new_epoch and self.epochs[i] > 0:  # forget what precedes the previous epoch
            self.A[i] -= self.A_old[i]
            self.B[i] -= self.B_old[i]
            self.A_old[i] = self.A[i].copy()
            self.B_old[i] = self.B[i].copy()
        self.steps[i] += 1
        decay = (self.steps[i] - 1) / self.steps[i]
        for stat in (self.A[i], self.B[i], self.A_old[i], self.B_old[i]):
            stat *= decay
        self.A[i] += hth / size
        self.B[i] += rows_transpose_times(X, cells, h) / size
        return (sq_norm - 2.0 * cross + float(np.sum(G * hth))) * (n_cells / size)

    # -- cells ------------------------------------------------------------------------------
    def solve(
        self, source: RowSource, dataset: int | None = None, *, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Cell factors of a source's cells with the model fixed: with a dataset's V_i (its
        H-step), or onto W alone for cells of a dataset the model has not seen (scenario 3).
        Streams the cells in blocks of ``batch_size``; returns ``H`` and the objective term."""
        L, G = self.solve_factors(dataset)
        H, values = solve_source(as_source(source), L, G, self.k, self.block_size, out=out)
        return H, sum_terms(values)

    @property
    def block_size(self) -> int:
        """Cells per block when solving every cell (the mini-batch size)."""
        return max(self.batch_size, 1)

    def solve_factors(self, dataset: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``L = W (+ V_i)`` and the Gram matrix of the H-step for a dataset (``None``: W)."""
        V = None if dataset is None else self.V[dataset]
        G = gram_h(self.W, V, self.lambda_)
        L = self.W if V is None else self.W + V
        return L, G

    # -- state ----------------------------------------------------------------------------
    _LISTS = ("V", "A", "B", "A_old", "B_old")

    def get_state(self) -> dict:
        """Everything training needs to go on, as plain values (copies): ``settings`` (the
        constructor's numbers), ``rng_state``, ``names``, ``steps``, ``epochs``, ``elapsed``,
        ``W``, per-dataset stacks ``V``, ``A``, ``B``, ``A_old``, ``B_old`` (datasets first) and
        ``history``. :meth:`from_state` rebuilds the model; training then resumes exactly."""
        state = {
            "settings": {
                "k": self.k,
                "lambda_": self.lambda_,
                "batch_size": self.batch_size,
                "hals_iter": self.hals_iter,
                "chunk_size": self.chunk_size,
            },
            "rng_state": self.rng.bit_generator.state,
            "names": list(self.names),
            "steps": list(self.steps),
            "epochs": list(self.epochs),
            "elapsed": self.elapsed,
            "W": self.W.copy(),
            "history": {key: list(values) for key, values in self.history.items()},
        }
        for name in self._LISTS:
            state[name] = np.stack(getattr(self, name))
        return state

    @classmethod
    def from_state(cls, state: dict) -> OnlineINMF:
        """The model of a :meth:`get_state` dictionary; refuses an inconsistent one
        (``KeyError`` for a missing entry, ``ValueError`` for mismatched sizes)."""
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng_state"]
        model = cls(rng=rng, **state["settings"])
        model.names = [str(name) for name in state["names"]]
        model.steps = [int(step) for step in state["steps"]]
        model.epochs = [int(epoch) for epoch in state["epochs"]]
        model.elapsed = float(state["elapsed"])
        model.W = np.asarray(state["W"])
        for name in cls._LISTS:
            setattr(model, name, list(state[name]))
        for key in model.history:
            model.history[key] = list(state["history"][key])
        n, (m, k) = len(model.names), model.W.shape
        shapes = {"V": (m, k), "A": (k, k), "B": (m, k), "A_old": (k, k), "B_old": (m, k)}
        consistent = k == model.k and len(model.steps) == len(model.epochs) == n
        for name, shape in shapes.items():
            values = getattr(model, name)
            consistent &= len(values) == n and all(v.shape == shape for v in values)
        if not consistent:
            raise ValueError("the model's factors, statistics and datasets do not match")
        return model


def solve_source(
    source: RowSource,
    L: np.ndarray,
    G: np.ndarray,
    k: int,
    block_size: int,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[float]]:
    """Every cell's factors of a source (NNLS against ``L`` with Gram matrix ``G``), in blocks
    of ``block_size`` cells, and each block's objective term, in order. A cell's factors depend
    on that cell alone, so any split of the cells into ranges that start at multiples of
    ``block_size`` gives the same factors and terms (the Dask pass relies on it)."""
    H = np.zeros((source.n_cells, k)) if out is None else out
    values = []
    for start, stop, block, positions in source.blocks(block_size):
        h = np.empty((stop - start, k))
        sq_norm, cross = solve_rows(block, positions, L, G, h)
        values.append(sq_norm - 2.0 * cross + float(np.sum(G * (h.T @ h))))
        H[start:stop] = h
    return H, values


def sum_terms(values) -> float:
    """The objective from per-block terms, added in order (clipped at 0 against rounding)."""
    value = 0.0
    for term in values:
        value += term
    return max(value, 0.0)


@single_threaded_blas
def fit_online_inmf(
    Xs: Sequence,
    k: int,
    *,
    lambda_: float = 5.0,
    batch_size: int = 5000,
    max_epochs: int = 5,
    hals_iter: int = 1,
    chunk_size: int = 1,
    rng: np.random.Generator,
    progress: bool = False,
    solve_final_h: bool = True,
) -> INMFResult:
    """Online iNMF (Algorithm 1 of Gao & Welch) on in-memory datasets.

    Each iteration takes one part of every dataset's shuffled order (so a mini-batch has about
    ``batch_size`` cells, from each dataset in proportion to its size), solves their ``h`` by
    exact NNLS (11), folds ``h h^T / p_i`` and ``x h^T / p_i`` into ``A_i`` and ``B_i`` (10), and
    updates ``W`` and ``V_i`` by ``hals_iter`` HALS sweeps (12)-(13). Older mini-batches are
    down-weighted by ``(t - 1) / t`` per step (the linear forgetting of online dictionary
    learning) and statistics older than two epochs are dropped at each epoch start. After the last
    epoch every cell's ``H`` is solved with the final ``W`` and ``V_i``.

    The history records, per iteration, an estimate of objective (1) from the mini-batch just
    drawn (each dataset's mini-batch term scaled by ``n_i / p_i``, computed before the update, so
    in the first epoch it is measured on unseen cells).
    """
    data = [as_source(X) for X in Xs]
    model = OnlineINMF(
        k,
        lambda_=lambda_,
        batch_size=batch_size,
        hals_iter=hals_iter,
        chunk_size=chunk_size,
        rng=rng,
    )
    active = model.add_datasets(data, [str(i) for i in range(len(data))])
    model.train(data, active, max_epochs, progress=progress)
    Hs: list[np.ndarray] = []
    objective = float("nan")
    if solve_final_h:
        objective = 0.0
        for i, X in enumerate(data):
            H, value = model.solve(X, i)
            Hs.append(H)
            objective += value
    return INMFResult(
        W=model.W,
        V=model.V,
        H=Hs,
        objective=objective,
        history=model.history,
        n_iter=len(model.history["iteration"]),
        A=model.A,
        B=model.B,
    )
