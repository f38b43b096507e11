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
    # libraries that load their thread pools later (an OpenMP runtime pulled in by scikit-learn
    # or numba, scipy's BLAS) and subprocesses (CLI tests, Dask workers) read these variables
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))
    import numba
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
    import sklearn.cluster  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # every BLAS and OpenMP pool loaded so far
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
