"""Clustering agreement metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


def _reference_scores(a, b):
    """ARI and NMI from their definitions, on a contingency table counted by pandas."""
    table = pd.crosstab(pd.Series(a, dtype=object), pd.Series(b, dtype=object), dropna=False)
    table = table.to_numpy(dtype=float)
    n = table.sum()

    def pairs(x):
        return np.sum(x * (x - 1)) / 2

    rows, cols, total = pairs(table.sum(1)), pairs(table.sum(0)), n * (n - 1) / 2
    expected = rows * cols / total
    ari = (pairs(table) - expected) / ((rows + cols) / 2 - expected)
    p_a, p_b = table.sum(1) / n, table.sum(0) / n

    def entropy(p):
        return -np.sum(p[p > 0] * np.log(p[p > 0]))

    joint = table / n
    nz = joint > 0
    mi = np.sum(joint[nz] * np.log(joint[nz] / np.outer(p_a, p_b)[nz]))
    return ari, mi / ((entropy(p_a) + entropy(p_b)) / 2)


def test_ari_nmi_match_their_definitions_on_real_labels(cortex):
    pairs = [("cell_type", "library"), ("cell_type", "cell_type_fine")]
    for first, second in pairs:
        a, b = cortex.obs[first].to_numpy(), cortex.obs[second].to_numpy()
        ari, nmi = _reference_scores(a, b)
        assert adjusted_rand_index(a, b) == pytest.approx(ari, abs=1e-14)
        assert normalized_mutual_info(a, b) == pytest.approx(nmi, abs=1e-14)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 6, 300), rng.integers(0, 4, 300)
        b[:150] = a[:150]
        ari, nmi = _reference_scores(a, b)
        assert adjusted_rand_index(a, b) == pytest.approx(ari, abs=1e-14)
        assert normalized_mutual_info(a, b) == pytest.approx(nmi, abs=1e-14)


def test_missing_and_mixed_labels_are_labels_of_their_own():
    a = np.array(["x", None, None, "y", "y"], dtype=object)
    assert adjusted_rand_index(a, [0, 1, 1, 2, 2]) == 1.0
    assert normalized_mutual_info(a, [0, 1, 1, 2, 2]) == pytest.approx(1.0)
    b = pd.Categorical(["p", np.nan, np.nan, "q", "q"])
    assert adjusted_rand_index(a, b) == 1.0


@pytest.mark.parametrize("score", [adjusted_rand_index, normalized_mutual_info])
def test_label_scores_refuse_empty_and_mismatched_input(score):
    # both returned 1.0 on empty input before
    with pytest.raises(ValueError, match="empty"):
        score([], [])
    with pytest.raises(ValueError, match="different lengths"):
        score([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="one label per cell"):
        score(np.zeros((3, 2)), np.zeros((3, 2)))


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embedding": np.ones(10)}, "cells x dimensions"),
        ({"embedding": np.ones((10, 2), dtype=object)}, "expected real numbers"),
        ({"resolution": -1}, "resolution must be a finite number > 0"),
        ({"resolution": 0}, "resolution must be a finite number > 0"),
        ({"resolution": "high"}, "resolution must be a finite number"),
        ({"resolution": np.inf}, "resolution must be a finite number"),
        ({"n_neighbors": 1}, "n_neighbors must be an integer >= 2"),
        ({"metric": None}, "metric must be a distance name"),
        ({"random_state": -1}, "random_state must be an integer >= 0"),
        ({"random_state": "seed"}, "random_state must be"),
    ],
)
def test_leiden_and_ari_refuse_bad_options(kwargs, message):
    kwargs = {"embedding": np.arange(20.0).reshape(10, 2), **kwargs}
    embedding = kwargs.pop("embedding")
    with pytest.raises(ValueError, match=message):
        si.metrics.leiden_clusters(embedding, **kwargs)
    if embedding.ndim == 2 and embedding.dtype != object:
        with pytest.raises(ValueError, match=message):
            si.metrics.ari(embedding, np.zeros(10), **kwargs)
    else:  # the array metrics check the embedding the same way
        with pytest.raises(ValueError, match=message):
            si.metrics.ari(embedding, np.zeros(10))


def test_resolution_lists_are_checked_too():
    with pytest.raises(ValueError, match="resolution is empty"):
        si.metrics.cluster_agreement(np.ones((10, 2)), np.zeros(10), resolution=[])
    with pytest.raises(ValueError, match="resolution must be a finite number > 0"):
        si.metrics.nmi(np.ones((10, 2)), np.zeros(10), resolution=[0.5, -1])
    with pytest.raises(ValueError, match="one resolution"):
        si.metrics.leiden_clusters(np.ones((10, 2)), resolution=[0.5, 1.0])


def test_labels_by_name_need_an_anndata():
    with pytest.raises(ValueError, match="needs an AnnData"):
        si.metrics.ari(np.ones((10, 2)), "cell_type")


def test_a_generator_seeds_the_clustering():
    rng = np.random.default_rng(0)
    embedding = np.repeat(np.eye(3) * 10, 20, axis=0) + rng.normal(size=(60, 3))
    first = si.metrics.leiden_clusters(embedding, random_state=np.random.default_rng(7))
    second = si.metrics.leiden_clusters(embedding, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
    assert len(np.unique(first)) == 3
