"""The thread pools of a pytest-xdist worker are limited to its share of the cores."""

from __future__ import annotations

import os

import pytest
from _threads import threads_per_worker


def test_worker_pools_use_their_share_of_the_cores():
    threads = threads_per_worker()
    if threads >= (os.cpu_count() or 1):
        pytest.skip("the suite runs in one process: the pools keep their defaults")
    import numba
    import torch
    from threadpoolctl import threadpool_info

    assert torch.get_num_threads() == threads
    assert numba.get_num_threads() <= threads
    assert all(pool["num_threads"] <= threads for pool in threadpool_info())
