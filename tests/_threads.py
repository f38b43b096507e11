"""How many threads each test process may use."""

from __future__ import annotations

import os


def threads_per_worker() -> int:
    """Cores per pytest-xdist worker (all cores when the suite runs in one process).

    With ``-n auto`` every worker would otherwise start as many BLAS, OpenMP, numba and torch
    threads as the machine has cores, and so would every notebook kernel a worker starts: on 2
    cores, 2 workers then run 4 or more busy threads for 2 cores. Measured on a quiet 2-core
    machine, two executions of ``tutorials/etm_snareseq.ipynb`` side by side: 182 s each with
    the default thread pools, 69 s each with one thread per kernel.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // max(1, workers))
