"""tl.factor_markers and metrics.dataset_specificity: planted markers, the rank-sum test against
scipy, slots, round trip, bad input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _public_calls import integrated

import scintegrate as si
from scintegrate._core.factor_markers import bh_adjust, max_factor, rank_sum_test

SPECIFIC_1 = np.arange(45, 50)  # extra loading of factor 0 in dataset d1 only
SPECIFIC_2 = np.arange(50, 55)  # extra loading of factor 1 in dataset d2 only


def planted(n=150, seed=0):
    """A known integrative NMF and counts drawn from it: factor f loads genes 15f..15f+14 in
    both datasets (W); V adds dataset-specific genes to factor 0 (d1) and factor 1 (d2)."""
    rng = np.random.default_rng(seed)
    genes, k = 60, 3
    W = np.full((genes, k), 0.02)
    for f in range(k):
        W[15 * f : 15 * f + 15, f] = rng.uniform(0.8, 1.2, 15)
    V = np.zeros((genes, k, 2))
    V[SPECIFIC_1, 0, 0] = 0.6
    V[SPECIFIC_2, 1, 1] = 0.6
    H_blocks, X_blocks, batches = [], [], []
    for d in range(2):
        types = rng.integers(0, k, n)
        H = rng.gamma(1.0, 0.1, (n, k))
        H[np.arange(n), types] += rng.gamma(8.0, 0.5, n)
        X_blocks.append(rng.poisson(H @ (W + V[:, :, d]).T))
        H_blocks.append(H)
        batches += [f"d{d + 1}"] * n
    adata = ad.AnnData(
        sp.csr_matrix(np.vstack(X_blocks).astype(np.float32)),
        obs=pd.DataFrame({"batch": pd.Categorical(batches)}, index=[f"c{i}" for i in range(2 * n)]),
        var=pd.DataFrame(index=[f"g{g}" for g in range(genes)]),
    )
    adata.obsm["X_inmf"] = np.vstack(H_blocks)
    adata.varm["inmf_W"] = W
    adata.varm["inmf_V"] = V
    adata.uns["inmf"] = {
        "batches": np.array(["d1", "d2"], dtype=object),
        "params": {"batch_key": "batch"},
    }
    return adata


def test_planted_markers_are_found():
    adata = planted()
    si.tl.factor_markers(adata)
    record = adata.uns["inmf_markers"]
    assert record["factors_tested"].tolist() == [0, 1, 2]
    specific = record["specific"]
    found_1 = set(specific.query("dataset == 'd1' and factor == 0")["gene"])
    found_2 = set(specific.query("dataset == 'd2' and factor == 1")["gene"])
    assert found_1 == {f"g{g}" for g in SPECIFIC_1}
    assert found_2 == {f"g{g}" for g in SPECIFIC_2}
    assert len(specific) == 10  # nothing else passes the fold-change and p-value thresholds
    assert (specific["logfc"] > 1).all() and (specific["pval"] < 0.05).all()
    shared = record["shared"]
    for f in range(3):
        top = shared[shared["factor"] == f]
        assert len(top) == 30
        assert set(top["gene"][:15]) == {f"g{g}" for g in range(15 * f, 15 * f + 15)}
        assert top["loading"].is_monotonic_decreasing
    # the cells' largest factors are the planted types, read back from obs
    clusters = adata.obs["inmf_markers_clusters"]
    np.testing.assert_array_equal(
        clusters.astype(int), max_factor(adata.obsm["X_inmf"], np.arange(3))
    )


def test_dataset_specificity_by_hand():
    adata = planted()
    table = si.metrics.dataset_specificity(adata)
    W, V = adata.varm["inmf_W"], adata.varm["inmf_V"]
    n1 = np.sqrt(((W + V[:, :, 0]) ** 2).sum(0))
    n2 = np.sqrt(((W + V[:, :, 1]) ** 2).sum(0))
    np.testing.assert_allclose(table["specificity"], 100 * (1 - n1 / n2))
    np.testing.assert_allclose(table["norm_1"], n1)
    assert table.attrs["datasets"] == ["d1", "d2"]
    assert table.loc["0", "specificity"] < 0 < table.loc["1", "specificity"]
    assert table.loc["2", "specificity"] == 0
    swapped = si.metrics.dataset_specificity(adata, datasets=["d2", "d1"])
    np.testing.assert_allclose(swapped["norm_1"], n2)
    # factor_share_thresh leaves out the factors beyond it
    si.tl.factor_markers(adata, factor_share_thresh=1.0)
    assert adata.uns["inmf_markers"]["factors_tested"].tolist() == [2]
    assert set(adata.obs["inmf_markers_clusters"].dropna()) == {"2"}


def test_rank_sum_test_matches_scipy_and_bh():
    from scipy.stats import false_discovery_control, mannwhitneyu

    rng = np.random.default_rng(1)
    a = rng.poisson(1.0, (30, 700)).astype(float)  # more columns than one dense block
    b = rng.poisson(1.4, (25, 700)).astype(float)
    a[:, 3] = b[:, 3] = 2.0  # constant: p = 1
    pvals, diff = rank_sum_test(sp.csr_matrix(a), b)
    expected = mannwhitneyu(a, b, axis=0, method="asymptotic", use_continuity=True).pvalue
    expected[3] = 1.0
    np.testing.assert_allclose(pvals, expected, rtol=1e-12)
    np.testing.assert_allclose(diff, a.mean(0) - b.mean(0), atol=1e-12)
    np.testing.assert_allclose(bh_adjust(pvals), false_discovery_control(pvals), rtol=1e-12)


def test_slots_copy_round_trip_and_target_sum(tmp_path):
    adata = planted(n=60)
    X = adata.X.copy()
    out = si.tl.factor_markers(adata, copy=True, n_genes=5, key_added="fm")
    assert "fm" not in adata.uns and "fm_clusters" not in adata.obs
    np.testing.assert_array_equal(adata.X.toarray(), X.toarray())
    params = out.uns["fm"]["params"]
    assert params["key"] == "inmf" and params["n_genes"] == 5 and params["batch_key"] == "batch"
    assert list(params["datasets"]) == ["d1", "d2"] and params["target_sum"] == 1e4
    assert out.obs["fm_clusters"].dtype == "category"
    assert (out.uns["fm"]["shared"].groupby("factor").size() <= 5).all()
    path = tmp_path / "fm.h5ad"
    out.write_h5ad(path)
    back = ad.read_h5ad(path)
    for name in ("shared", "specific"):
        pd.testing.assert_frame_equal(
            back.uns["fm"][name], out.uns["fm"][name], check_dtype=False, check_categorical=False
        )
    np.testing.assert_array_equal(back.uns["fm"]["specificity"], out.uns["fm"]["specificity"])
    # already log-normalised values: target_sum=None tests them as they are; same p-values
    normalised = adata.copy()
    # computed in float64 as the function does: in float32 two cells' values can round to the
    # same number (a tie in the rank test) on one CPU and not on another
    counts = X.toarray().astype(np.float64)
    normalised.layers["log"] = sp.csr_matrix(np.log1p(counts * (1e4 / counts.sum(1)[:, None])))
    si.tl.factor_markers(normalised, layer="log", target_sum=None, n_genes=5, key_added="fm")
    pd.testing.assert_frame_equal(
        normalised.uns["fm"]["shared"], out.uns["fm"]["shared"], rtol=1e-10, atol=1e-12
    )
    # a second call with the same key replaces the first's slots
    si.tl.factor_markers(normalised, layer="log", target_sum=None, key_added="fm")
    assert (normalised.uns["fm"]["shared"].groupby("factor").size() == 30).all()


def test_real_factorisation_runs_and_is_deterministic():
    adata = integrated()  # tl.inmf of 120 cortex cells, two libraries, k = 3
    si.tl.factor_markers(adata, factor_share_thresh=None)
    again = integrated()
    si.tl.factor_markers(again, factor_share_thresh=None)
    pd.testing.assert_frame_equal(
        adata.uns["inmf_markers"]["shared"], again.uns["inmf_markers"]["shared"]
    )
    assert len(adata.uns["inmf_markers"]["shared"]) > 0


def _three_datasets():
    adata = planted(n=40)
    adata.obs["batch"] = pd.Categorical(np.repeat(["d1", "d2", "d3"], [40, 20, 20]))
    adata.varm["inmf_V"] = np.concatenate([adata.varm["inmf_V"]] * 2, axis=2)[:, :, :3]
    adata.uns["inmf"]["batches"] = np.array(["d1", "d2", "d3"], dtype=object)
    return adata


def test_more_than_two_datasets_need_a_pair():
    adata = _three_datasets()
    with pytest.raises(ValueError, match=r"has 3 datasets .*datasets=\(first, second\)"):
        si.tl.factor_markers(adata)
    si.tl.factor_markers(adata, datasets=["d3", "d1"], factor_share_thresh=None)
    assert list(adata.uns["inmf_markers"]["datasets"]) == ["d3", "d1"]
    assert adata.obs["inmf_markers_clusters"][40:60].isna().all()  # d2 was not compared


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (None, {"key": "nmf"}, r"No integrative NMF under key='nmf'"),
        (lambda a: a.varm.pop("inmf_V"), {}, r"adata.varm needs \['inmf_W', 'inmf_V'\]"),
        (lambda a: a.obsm.__setitem__("X_inmf", a.obsm["X_inmf"][:, :2]), {}, "has 2 factors"),
        (lambda a: a.varm.__setitem__("inmf_V", a.varm["inmf_V"][:, :2]), {}, "do not fit"),
        (lambda a: a.uns["inmf"].__setitem__("batches", ["d1"]), {}, "names 1 datasets"),
        (lambda a: a.obsm.pop("X_inmf"), {}, "key='X_inmf' is not in adata.obsm"),
        (None, {"batch_key": "nope"}, "batch_key='nope' is not a column"),
        (None, {"datasets": ["d1", "d9"]}, "'d9' is not a dataset of the factorisation"),
        (None, {"datasets": ["d1", "d1"]}, "two different datasets"),
        (None, {"datasets": "d1"}, "must name two datasets"),
        (None, {"layer": "nope"}, "Layer 'nope' not found"),
        (None, {"target_sum": 0}, "target_sum must be a finite number > 0"),
        (None, {"pval_thresh": 2}, "pval_thresh must be a finite number >= 0 and <= 1"),
        (None, {"n_genes": 0}, "n_genes must be an integer >= 1"),
        (None, {"factor_share_thresh": -1}, "factor_share_thresh must be"),
        (lambda a: a.obs.__setitem__("batch", "other"), {}, "datasets the factorisation does"),
        (lambda a: a.X.data.__setitem__(0, -1), {}, "negative values"),
        (lambda a: a.varm["inmf_W"].__setitem__((0, 0), np.nan), {}, "negative, NaN or inf"),
    ],
)
def test_bad_input(change, kwargs, message):
    adata = planted(n=20)
    if change is not None:
        change(adata)
    with pytest.raises(ValueError, match=message):
        si.tl.factor_markers(adata, **kwargs)
    assert "inmf_markers" not in adata.uns and "inmf_markers_clusters" not in adata.obs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "nmf"}, "No integrative NMF under key='nmf'"),
        ({"datasets": ["d1", "d9"]}, "'d9' is not a dataset of the factorisation"),
    ],
)
def test_dataset_specificity_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        si.metrics.dataset_specificity(planted(n=20), **kwargs)
    with pytest.raises(ValueError, match="has 3 datasets"):
        si.metrics.dataset_specificity(_three_datasets())


def test_no_factor_within_the_threshold():
    adata = planted(n=20)
    adata.varm["inmf_V"][:, :, 0] += 1.0  # every factor much stronger in d1
    with pytest.raises(ValueError, match="No factor has a dataset specificity within"):
        si.tl.factor_markers(adata)
