"""Metrics of paired embeddings: FOSCTTM, neighbourhood overlap, label transfer accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import scintegrate as si


def _foscttm_slow(x, y):
    from scipy.spatial.distance import cdist

    d = cdist(x, y)
    n = len(x)
    forward = [(d[i] < d[i, i]).sum() / (n - 1) for i in range(n)]
    backward = [(d[:, i] < d[i, i]).sum() / (n - 1) for i in range(n)]
    return np.array(forward), np.array(backward)


def test_foscttm_matches_direct_distances():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(157, 5))
    y = x + rng.normal(scale=0.7, size=x.shape)
    forward, backward = si.metrics.foscttm(x, y, per_cell=True, block_size=50)
    slow_forward, slow_backward = _foscttm_slow(x, y)
    np.testing.assert_allclose(forward, slow_forward)
    np.testing.assert_allclose(backward, slow_backward)
    assert si.metrics.foscttm(x, y) == pytest.approx((forward.mean() + backward.mean()) / 2)
    assert si.metrics.foscttm(x, x) == 0.0
    # unrelated embeddings are near chance
    assert 0.4 < si.metrics.foscttm(x, rng.normal(size=x.shape)) < 0.6


def test_foscttm_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        si.metrics.foscttm(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        si.metrics.foscttm(np.full((5, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        si.metrics.foscttm(np.zeros((1, 2)), np.zeros((1, 2)))


def test_paired_metrics_take_arrays_not_anndata(cortex_small):
    # the message used to advise a use_rep parameter these functions do not have
    with pytest.raises(ValueError, match=r"x must be an array .*obsm") as info:
        si.metrics.foscttm(cortex_small, np.zeros((cortex_small.n_obs, 2)))
    assert "use_rep" not in str(info.value)
    with pytest.raises(ValueError, match="y must be an array"):
        si.metrics.label_transfer_accuracy(
            np.zeros((5, 2)), cortex_small, labels_x=[0] * 5, labels_y=[0] * 5
        )
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        si.metrics.neighborhood_overlap(np.zeros((5, 2)), np.zeros((5, 2)), block_size=0)
    with pytest.raises(ValueError, match="n_neighbors must be an integer >= 1"):
        si.metrics.label_transfer_accuracy(
            np.zeros((5, 2)), np.zeros((5, 2)), labels_x=[0] * 5, labels_y=[0] * 5, n_neighbors=0
        )
