"""Clustering agreement metrics."""

from __future__ import annotations

import numpy as np
import pytest

import scintegrate as si
from scintegrate.metrics import adjusted_rand_index, normalized_mutual_info


def test_ari_nmi_known_values():
    a = ["x", "x", "y", "y"]
    assert adjusted_rand_index(a, [1, 1, 2, 2]) == pytest.approx(1.0)
    assert normalized_mutual_info(a, [5, 5, 7, 7]) == pytest.approx(1.0)
    # hand-computed: contingency [[2,1],[0,1]] -> index 1, rows 3+0=... ARI = 0
    assert adjusted_rand_index([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)


def test_ari_nmi_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 6, 300), rng.integers(0, 4, 300)
        b[:150] = a[:150]
        assert adjusted_rand_index(a, b) == pytest.approx(
            metrics.adjusted_rand_score(a, b), abs=1e-12
        )
        assert normalized_mutual_info(a, b) == pytest.approx(
            metrics.normalized_mutual_info_score(a, b), abs=1e-12
        )


def test_ari_on_separated_clusters_is_one():
    rng = np.random.default_rng(0)
    centers = np.eye(5) * 20
    labels = np.repeat(np.arange(5), 60)
    embedding = centers[labels] + rng.normal(size=(300, 5))
    assert si.metrics.ari(embedding, labels, resolution=0.3) == pytest.approx(1.0)
    assert si.metrics.nmi(embedding, labels, resolution=0.3) == pytest.approx(1.0)
    shuffled = rng.permutation(labels)
    assert abs(si.metrics.ari(embedding, shuffled, resolution=0.3)) < 0.05


def test_resolution_grid_reports_best_and_table(cortex_small):
    si.tl.nmf(cortex_small, 5, objective="kl", max_iter=20)
    table = si.metrics.cluster_agreement(
        cortex_small, "cell_type", use_rep="X_nmf", resolution=[0.2, 0.5, 1.0]
    )
    assert list(table.columns) == ["resolution", "n_clusters", "ari", "nmi"]
    assert table["n_clusters"].is_monotonic_increasing
    best = si.metrics.ari(cortex_small, "cell_type", use_rep="X_nmf", resolution=[0.2, 0.5, 1.0])
    assert best == pytest.approx(table["ari"].max())
    single = si.metrics.ari(cortex_small, "cell_type", use_rep="X_nmf", resolution=0.5)
    assert single == pytest.approx(table.loc[1, "ari"])
    # same seed, same clusters
    a = si.metrics.leiden_clusters(cortex_small.obsm["X_nmf"], random_state=1)
    b = si.metrics.leiden_clusters(cortex_small.obsm["X_nmf"], random_state=1)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"use_rep": None}, "Pass use_rep"),
        ({"use_rep": "X_pca"}, "not in adata.obsm"),
        ({"use_rep": "X_nmf", "labels": "type"}, "not a column of adata.obs"),
    ],
)
def test_metric_bad_input(cortex_small, kwargs, message):
    si.tl.nmf(cortex_small, 3, max_iter=2)
    kwargs = {"labels": "cell_type", **kwargs}
    with pytest.raises(ValueError, match=message):
        si.metrics.ari(cortex_small, **kwargs)


def test_metric_length_mismatch():
    with pytest.raises(ValueError, match="labels has 3 entries"):
        si.metrics.ari(np.ones((10, 2)), [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        si.metrics.ari(np.full((10, 2), np.nan), np.zeros(10))


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
