"""The passes of online iNMF that grow with the number of cells, as Dask tasks over row ranges.

Two passes read every cell once and are independent across cells: the statistics pass (library
sizes, per-gene sums for the variable genes and the scaling) and the final solve of every cell's
factors (or the projection of new cells). With a ``dask.distributed`` client they run on its
workers: each task gets a *portable* row source of a range of rows
(:meth:`~scintegrate._core._row_sources.RowSource.portable`: the file's location and the rows,
or the slice of a Dask array, never the data of a file), reads it where it runs and returns
small results; the factors the solve needs (``L = W + V_i`` and its Gram matrix) are broadcast
to every worker once per dataset with ``client.scatter(..., broadcast=True)``.

Row ranges start at multiples of the block size of the single-process pass and each task
returns its blocks' results separately, which this process adds up in row order: the
statistics, the gene selection and the objective are the same numbers as without Dask, and the
factors agree to floating-point tolerance (BLAS on the workers may sum in another order).

A task whose worker dies is run again elsewhere by the scheduler (up to its
``distributed.scheduler.allowed-failures``); a task that raises (e.g. a network file system
hiccup) is retried ``RETRIES`` times. Nothing here is imported unless a client is in use.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator

import numpy as np

RETRIES = 2  # re-runs of a task that raised (a dead worker's tasks are rescheduled anyway)
_ROWS_PER_TASK = 200_000  # at most this many cells per task (its transient memory on a worker)
_TASKS_PER_WORKER = 4  # at least this many tasks per worker, for balance


def resolve_client(client):
    """The client to use and whether it was opened here (then the caller closes it).

    ``None``: the active ``dask.distributed`` client if there is one (looked up only when
    ``distributed`` is already imported, so a run without Dask never imports it), else none;
    ``False``: none; a scheduler address (``"tcp://host:8786"``): a new client connected to it;
    a ``distributed.Client``: that client.
    """
    if client is False:
        return None, False
    if client is None:
        if "distributed" not in sys.modules:
            return None, False
        from distributed import default_client

        try:
            return default_client(), False
        except ValueError:  # no client is active
            return None, False
    if client is True:
        raise ValueError("client=True is ambiguous; pass a distributed.Client or its address.")
    if isinstance(client, str):
        try:
            from distributed import Client
        except ImportError:
            raise ImportError(_MISSING) from None
        try:
            return Client(client, timeout="30s"), True
        except OSError as error:
            raise ValueError(
                f"Cannot connect to the Dask scheduler at {client!r} ({error}); start one (e.g. "
                "dask scheduler, or a dask-jobqueue cluster) or pass client=None."
            ) from None
    if not all(hasattr(client, name) for name in ("submit", "scatter", "ncores")):
        raise TypeError(
            f"client must be a dask.distributed Client, a scheduler address or None, got "
            f"{type(client).__name__}."
        )
    return client, False


_MISSING = "Running on a Dask cluster needs dask and distributed: pip install 'scintegrate[dask]'."


def row_ranges(n: int, block_size: int, n_workers: int) -> list[tuple[int, int]]:
    """Row ranges for the tasks: starts at multiples of ``block_size``, at least
    ``_TASKS_PER_WORKER`` per worker where there are enough blocks, at most ``_ROWS_PER_TASK``
    rows each (rounded to whole blocks)."""
    n_blocks = max(1, math.ceil(n / block_size))
    n_tasks = max(_TASKS_PER_WORKER * max(n_workers, 1), math.ceil(n / _ROWS_PER_TASK))
    blocks_per_task = max(1, math.ceil(n_blocks / n_tasks))
    step = blocks_per_task * block_size
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def _n_workers(client) -> int:
    return max(1, len(client.ncores()))


def _results_in_order(client, futures) -> Iterator:
    """Each future's result in the order given, releasing it once read; on an error the
    remaining tasks are cancelled."""
    try:
        for i, future in enumerate(futures):
            yield future.result()
            futures[i] = None
    finally:
        pending = [f for f in futures if f is not None]
        if pending:
            client.cancel(pending)


# ------------------------------------------------------------------------------- statistics
def _stats_task(source, block_size: int) -> list[tuple]:
    from ._row_inputs import source_block_stats

    return source_block_stats(source, block_size)


def distributed_block_stats(client, source, block_size: int) -> Iterator[tuple]:
    """The per-block parts of the statistics pass (as
    :func:`~scintegrate._utils._row_inputs.source_block_stats` gives them in one process), in
    row order, computed by tasks over row ranges on the client's workers."""
    ranges = row_ranges(source.n_cells, block_size, _n_workers(client))
    futures = [
        client.submit(_stats_task, source.portable(a, b), block_size, pure=False, retries=RETRIES)
        for a, b in ranges
    ]
    for parts in _results_in_order(client, futures):
        yield from parts
        if parts and parts[-1][5]:  # a bad value: the fold raises, later ranges are not needed
            return


# -------------------------------------------------------------------------------- factors
def _solve_task(source, L, G, k: int, block_size: int):
    from .._core.online_inmf import solve_source

    return solve_source(source, L, G, k, block_size)


def distributed_solve(client, core, source, dataset: int | None, *, out=None):
    """:meth:`OnlineINMF.solve <scintegrate._core.online_inmf.OnlineINMF.solve>` as tasks over
    row ranges: ``L`` and ``G`` broadcast once, each task solves its range in blocks of the
    model's block size; the factors are written into ``out`` (or a new array) as they come."""
    from .._core.online_inmf import sum_terms

    L, G = core.solve_factors(dataset)
    block = core.block_size
    H = np.zeros((source.n_cells, core.k)) if out is None else out
    L_future, G_future = client.scatter([L, G], broadcast=True, hash=False)
    ranges = row_ranges(source.n_cells, block, _n_workers(client))
    futures = [
        client.submit(
            _solve_task,
            source.portable(a, b),
            L_future,
            G_future,
            core.k,
            block,
            pure=False,
            retries=RETRIES,
        )
        for a, b in ranges
    ]
    values = []
    for (a, b), (h, terms) in zip(ranges, _results_in_order(client, futures), strict=True):
        H[a:b] = h
        values.extend(terms)
    client.cancel([L_future, G_future])
    return H, sum_terms(values)
