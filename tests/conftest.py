"""Shared fixtures: small real data from the bundled SNARE-seq cortex RNA."""

from __future__ import annotations

import os

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from _threads import threads_per_worker

import scintegrate as si


def pytest_configure(config):
    threads = threads_per_worker()
    if threads >= (os.cpu_count() or 1):
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # BLAS and OpenMP pools of this worker
    import numba
    import torch

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet():
    si.settings.progress_bar = False
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def cortex():
    """The full bundled dataset (10,309 cells x 1,677 genes); copy before modifying."""
    return si.datasets.snareseq_cortex_rna()


@pytest.fixture
def cortex_small(cortex):
    """400 cells x the 300 most-detected genes of the real data, raw counts (CSR)."""
    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(cortex.n_obs, 400, replace=False))
    sub = cortex[cells].copy()
    detected = np.asarray((sub.X > 0).sum(0)).ravel()
    genes = np.sort(np.argsort(-detected, kind="stable")[:300])
    return sub[:, genes].copy()
