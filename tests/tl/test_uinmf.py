"""tl.uinmf and pp.liger_unshared on a real mosaic (SNARE-seq RNA and ATAC of disjoint nuclei, the
ATAC with peaks of its own): slots, parameters, seeds, copy, round trip, sparse == dense,
equality with tl.inmf without unshared features, and one clear error per kind of bad input."""

from __future__ import annotations

import functools
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scintegrate as si

K = 4


@pytest.fixture(autouse=True)
def _one_numba_thread():
    """Small inputs: on a busy machine the kernels' thread pool costs more than the work."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@functools.cache
def _snareseq():
    return (
        si.datasets.snareseq_cortex_rna(),
        si.datasets.snareseq_cortex_atac_gene_activity(),
        si.datasets.snareseq_cortex_atac_peaks(),
    )


def mosaic_counts(n_cells: int = 250, n_peaks: int = 400) -> tuple[ad.AnnData, pd.Index]:
    """RNA of some nuclei, ATAC (gene activity + peaks) of other nuclei, outer-joined."""
    rna, activity, peaks = _snareseq()
    order = np.random.default_rng(0).permutation(rna.n_obs)
    rna_cells, atac_cells = np.sort(order[:n_cells]), np.sort(order[n_cells : 2 * n_cells])
    detected = np.asarray((peaks.X[atac_cells] > 0).sum(0)).ravel()
    chosen = np.sort(np.argsort(-detected, kind="stable")[:n_peaks])
    atac = ad.AnnData(
        sp.hstack([activity.X[atac_cells], peaks.X[atac_cells][:, chosen]], format="csr"),
        obs=activity.obs.iloc[atac_cells].copy(),
    )
    atac.var_names = list(activity.var_names) + list(peaks.var_names[chosen])
    both = ad.concat(
        {"rna": rna[rna_cells].copy(), "atac": atac},
        join="outer",
        label="modality",
        index_unique="-",
    )
    both.obs["modality"] = both.obs["modality"].astype(str)
    return both, peaks.var_names[chosen]


@pytest.fixture(scope="module")
def prepared():
    adata, peak_names = mosaic_counts()
    si.pp.liger_preprocess(adata, batch_key="modality")
    si.pp.liger_unshared(adata, batch_key="modality", features={"atac": peak_names})
    # at 250 cells few sparse peaks pass LIGER's variance test; use all 400 of them here
    adata.var["liger_unshared_highly_variable"] = (adata.var["liger_unshared"] == "atac").to_numpy()
    return adata


@pytest.fixture
def adata(prepared):
    return prepared.copy()


def run(adata, k=K, **kwargs):
    options = {"batch_key": "modality", "max_iter": 5, "random_state": 0}
    options.update(kwargs)
    return si.tl.uinmf(adata, k, **options)


def _masks(adata):
    owner = adata.var["liger_unshared"]
    shared = adata.var["liger_highly_variable"].to_numpy() & owner.isna().to_numpy()
    own = adata.var["liger_unshared_highly_variable"].to_numpy() & (owner == "atac").to_numpy()
    return shared, own


def test_slots(adata):
    X_before = adata.X.copy()
    scaled_before = adata.layers["liger_scaled"].copy()
    assert run(adata) is None
    shared, own = _masks(adata)
    H, W = adata.obsm["X_uinmf"], adata.varm["uinmf_W"]
    V, U = adata.varm["uinmf_V"], adata.varm["uinmf_U"]
    assert H.shape == (adata.n_obs, K) and W.shape == (adata.n_vars, K)
    assert V.shape == U.shape == (adata.n_vars, K, 2)
    for factor in (H, W, V, U):
        assert (factor >= 0).all()
    assert np.all(W[~shared] == 0) and np.all(V[~shared] == 0)
    uns = adata.uns["uinmf"]
    assert list(uns["batches"]) == ["atac", "rna"]  # sorted, as tl.inmf orders them
    # U: the ATAC slice lives on the ATAC's selected peaks only; the RNA has none
    assert np.all(U[~own] == 0) and np.all(U[:, :, 1] == 0)
    assert (U[own, :, 0].sum(1) > 0).mean() > 0.5
    np.testing.assert_array_equal(uns["n_unshared"], [own.sum(), 0])
    assert own.sum() == 400
    params = uns["params"]
    assert params["n_components"] == K and params["batch_key"] == "modality"
    assert params["unshared"] == "liger_unshared"
    assert params["mask_unshared"] == "liger_unshared_highly_variable"
    assert params["n_genes"] == shared.sum() and params["lambda_"] == 5.0
    assert "scintegrate_version" in params
    history = uns["history"]
    assert list(history["iteration"]) == list(range(6))
    assert np.all(np.diff(history["objective"]) <= 0)
    assert set(uns["slots"]) == {"obsm:X_uinmf", "varm:uinmf_W", "varm:uinmf_V", "varm:uinmf_U"}
    assert (adata.X != X_before).nnz == 0
    assert (adata.layers["liger_scaled"] != scaled_before).nnz == 0


def test_objective_from_the_slots(adata):
    """The slots reproduce the recorded objective: W and V_i on the shared features, U_i on the
    dataset's own features, each cell with its own dataset's loadings."""
    run(adata, lambda_=2.0)
    shared, own = _masks(adata)
    scaled = adata.layers["liger_scaled"]
    W = adata.varm["uinmf_W"][shared]
    total = 0.0
    for i, name in enumerate(adata.uns["uinmf"]["batches"]):
        rows = (adata.obs["modality"] == name).to_numpy()
        H = adata.obsm["X_uinmf"][rows]
        V = adata.varm["uinmf_V"][shared, :, i]
        X = scaled[rows][:, shared].toarray()
        total += np.sum((X - H @ (W + V).T) ** 2) + 2.0 * np.sum((H @ V.T) ** 2)
        if name == "atac":
            U = adata.varm["uinmf_U"][own, :, i]
            Y = scaled[rows][:, own].toarray()
            total += np.sum((Y - H @ U.T) ** 2) + 2.0 * np.sum((H @ U.T) ** 2)
    assert adata.uns["uinmf"]["objective"] == pytest.approx(total, rel=1e-9)


def test_custom_key_copy_and_seed(adata):
    out = run(adata, key_added="mosaic", copy=True)
    assert isinstance(out, ad.AnnData)
    assert "X_uinmf" not in adata.obsm and "mosaic" not in adata.uns
    assert {"mosaic_W", "mosaic_V", "mosaic_U"} <= set(out.varm) and "X_mosaic" in out.obsm
    again = run(adata, key_added="mosaic", copy=True)
    np.testing.assert_array_equal(out.obsm["X_mosaic"], again.obsm["X_mosaic"])
    np.testing.assert_array_equal(out.varm["mosaic_U"], again.varm["mosaic_U"])
    other = run(adata, key_added="mosaic", copy=True, random_state=1)
    assert not np.allclose(out.obsm["X_mosaic"], other.obsm["X_mosaic"])


def test_sparse_equals_dense(adata):
    sparse = run(adata, copy=True)
    dense_input = adata.copy()
    dense_input.layers["liger_scaled"] = adata.layers["liger_scaled"].toarray()
    dense = run(dense_input, copy=True)
    for key in ("X_uinmf",):
        np.testing.assert_allclose(sparse.obsm[key], dense.obsm[key], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sparse.varm["uinmf_U"], dense.varm["uinmf_U"], rtol=1e-9, atol=1e-12)
    csc = adata.copy()
    csc.layers["liger_scaled"] = sp.csc_array(adata.layers["liger_scaled"])
    np.testing.assert_allclose(
        run(csc, copy=True).obsm["X_uinmf"], sparse.obsm["X_uinmf"], rtol=1e-9, atol=1e-12
    )


def test_dense_outer_join_with_nan_outside_each_dataset(adata):
    """anndata.concat(join="outer") of dense data leaves NaN where a dataset lacks a feature:
    those entries are never read."""
    expected = run(adata, copy=True)
    dense = adata.layers["liger_scaled"].toarray()
    owner = adata.var["liger_unshared"].to_numpy()
    rna = (adata.obs["modality"] == "rna").to_numpy()
    dense[np.ix_(rna, pd.notna(owner))] = np.nan
    adata.layers["liger_scaled"] = dense
    out = run(adata, copy=True)
    np.testing.assert_allclose(out.obsm["X_uinmf"], expected.obsm["X_uinmf"], rtol=1e-9)


def test_h5ad_round_trip(adata, tmp_path):
    run(adata)
    path = tmp_path / "uinmf.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    for key in ("uinmf_W", "uinmf_V", "uinmf_U"):
        np.testing.assert_array_equal(back.varm[key], adata.varm[key])
    np.testing.assert_array_equal(back.obsm["X_uinmf"], adata.obsm["X_uinmf"])
    pd.testing.assert_frame_equal(back.uns["uinmf"]["history"], adata.uns["uinmf"]["history"])
    np.testing.assert_array_equal(back.uns["uinmf"]["n_unshared"], adata.uns["uinmf"]["n_unshared"])
    pd.testing.assert_series_equal(back.var["liger_unshared"], adata.var["liger_unshared"])
    # the read-back object runs again, with the same result
    again = run(back, copy=True)
    np.testing.assert_array_equal(again.obsm["X_uinmf"], adata.obsm["X_uinmf"])


def test_second_call_replaces_the_first(adata):
    run(adata)
    adata.varm["uinmf_other"] = np.zeros((adata.n_vars, 1))  # not written by the tool: kept
    run(adata, k=K - 1)
    assert adata.varm["uinmf_U"].shape == (adata.n_vars, K - 1, 2)
    assert adata.obsm["X_uinmf"].shape == (adata.n_obs, K - 1)
    assert "uinmf_other" in adata.varm


def test_without_unshared_features_equals_inmf(adata):
    shared, _ = _masks(adata)
    ours = run(adata, unshared=None, mask_var=shared, copy=True)
    inmf = si.tl.inmf(
        adata, K, batch_key="modality", mask_var=shared, max_iter=5, random_state=0, copy=True
    )
    np.testing.assert_array_equal(ours.obsm["X_uinmf"], inmf.obsm["X_inmf"])
    np.testing.assert_array_equal(ours.varm["uinmf_W"], inmf.varm["inmf_W"])
    np.testing.assert_array_equal(ours.varm["uinmf_V"], inmf.varm["inmf_V"])
    assert np.all(ours.varm["uinmf_U"] == 0)
    assert ours.uns["uinmf"]["objective"] == inmf.uns["inmf"]["objective"]


def test_unshared_as_mapping_and_masks(adata):
    from_column = run(adata, copy=True)
    owner = adata.var["liger_unshared"]
    peaks = adata.var_names[(owner == "atac").to_numpy()]
    from_mapping = run(adata, unshared={"atac": list(peaks)}, copy=True)
    np.testing.assert_array_equal(from_column.obsm["X_uinmf"], from_mapping.obsm["X_uinmf"])
    # without the selection column every unshared feature is used (here: all are selected)
    del adata.var["liger_unshared_highly_variable"]
    run(adata)
    assert adata.uns["uinmf"]["n_unshared"][0] == len(peaks) == 400
    np.testing.assert_array_equal(adata.obsm["X_uinmf"], from_column.obsm["X_uinmf"])
    mask = np.zeros(adata.n_vars, bool)
    mask[np.flatnonzero((owner == "atac").to_numpy())[:7]] = True
    run(adata, mask_unshared=mask)
    assert adata.uns["uinmf"]["n_unshared"][0] == 7
    assert np.count_nonzero(adata.varm["uinmf_U"].any(axis=(1, 2))) <= 7


# ---------------------------------------------------------------------------- pp.liger_unshared
def test_liger_unshared_selects_per_owner_as_liger():
    adata, peak_names = mosaic_counts(n_cells=200, n_peaks=300)
    X_before = adata.X.copy()
    si.pp.liger_unshared(adata, batch_key="modality", features={"atac": peak_names})
    owner = adata.var["liger_unshared"]
    assert isinstance(owner.dtype, pd.CategoricalDtype)
    assert list(owner.cat.categories) == ["atac", "rna"]
    assert (owner == "atac").sum() == 300 and owner.isna().sum() == adata.n_vars - 300
    selected = adata.var["liger_unshared_highly_variable"].to_numpy()
    assert not selected[owner.isna().to_numpy()].any()
    # LIGER's test by hand on the ATAC cells (normalised by the total over all features)
    atac = (adata.obs["modality"] == "atac").to_numpy()
    counts = adata.X[atac].toarray()
    normed = counts / counts.sum(1, keepdims=True)
    cols = np.flatnonzero((owner == "atac").to_numpy())
    mean, var = normed[:, cols].mean(0), normed[:, cols].var(0, ddof=1)
    c, n = np.mean(1 / counts.sum(1)), atac.sum()
    from scipy.stats import norm

    n_features_of_atac = adata.n_vars  # every feature is the ATAC's (shared genes + its peaks)
    upper = mean + norm.ppf(1 - (0.99 / n_features_of_atac) / 2) * np.sqrt(mean * c / n)
    with np.errstate(divide="ignore"):
        expected = (var / c > upper) & (np.log10(var) > np.log10(mean * c) + 0.1)
        preselected = (var / c > upper) & (np.log10(var) > np.log10(mean * c))
    np.testing.assert_array_equal(selected[cols], expected)
    uns = adata.uns["liger_unshared"]
    np.testing.assert_array_equal(uns["n_unshared"], [300, 0])
    np.testing.assert_array_equal(uns["n_selected"], [expected.sum(), 0])
    assert 0 < expected.sum() < 300
    assert (adata.X != X_before).nnz == 0
    # n_features keeps the top ones per owner among those passing the Poisson test (at most)
    top = si.pp.liger_unshared(
        adata, batch_key="modality", features="liger_unshared", n_features=2, copy=True
    )
    chosen = top.var["liger_unshared_highly_variable"].to_numpy()[cols]
    assert chosen.sum() == min(2, preselected.sum()) and not (chosen & ~preselected).any()


def test_liger_preprocess_scales_the_unshared_block_as_scale_not_center(prepared):
    """rliger's scaleNotCenter of a dataset's unshared features: counts over the cell's total
    (all features), divided by the root-mean-square over the dataset's cells."""
    atac = (prepared.obs["modality"] == "atac").to_numpy()
    cols = np.flatnonzero((prepared.var["liger_unshared"] == "atac").to_numpy())[:50]
    counts = prepared.X[atac].toarray()
    normed = counts / counts.sum(1, keepdims=True)
    block = normed[:, cols]
    rms = np.sqrt((block**2).sum(0) / (atac.sum() - 1))
    expected = np.divide(block, rms, out=np.zeros_like(block), where=rms > 0)
    np.testing.assert_allclose(
        prepared.layers["liger_scaled"][atac][:, cols].toarray(), expected, rtol=1e-6
    )


def test_liger_unshared_warns_about_values_elsewhere(caplog):
    adata, _ = mosaic_counts(n_cells=60, n_peaks=50)
    genes = adata.var_names[:3]  # RNA genes that both datasets measure, called unshared
    with caplog.at_level(logging.WARNING, logger="scintegrate"):
        si.pp.liger_unshared(adata, batch_key="modality", features={"rna": list(genes)})
    assert "non-zero in cells of other datasets" in caplog.text


# ---------------------------------------------------------------------------- bad input
def _negative_unshared(a):
    scaled = a.layers["liger_scaled"].tolil()
    atac = np.flatnonzero((a.obs["modality"] == "atac").to_numpy())
    peak = np.flatnonzero(a.var["liger_unshared_highly_variable"].to_numpy())[0]
    scaled[atac[0], peak] = -1.0
    a.layers["liger_scaled"] = scaled.tocsr()


def _unknown_owner(a):
    owner = a.var["liger_unshared"].astype(object)
    owner[owner == "atac"] = "ATAC"
    a.var["liger_unshared"] = owner


def _boolean_owner(a):
    a.var["liger_unshared"] = a.var["liger_unshared"].notna()


def _every_feature_unshared(a):
    owner = a.var["liger_unshared"].astype(object)
    owner[owner.isna()] = "rna"
    a.var["liger_unshared"] = owner


def _tiny_batch(a):
    a.obs.iloc[:3, a.obs.columns.get_loc("modality")] = "tiny"


def _single_batch(a):
    a.obs["modality"] = "atac"


BAD_INPUT = [
    ("negative unshared", _negative_unshared, {}, r"unshared features of dataset 'atac'.*negative"),
    ("unknown owner", _unknown_owner, {}, r"not values of adata\.obs\['modality'\]: 'ATAC'"),
    ("boolean owner", _boolean_owner, {}, r"is boolean; it must name"),
    ("no shared features", _every_feature_unshared, {}, "No shared feature is selected"),
    ("k larger than a dataset", _tiny_batch, {}, "Dataset 'tiny' has 3 cells, fewer than n_comp"),
    ("single batch", _single_batch, {}, "single value"),
    ("unknown column", None, {"unshared": "owner"}, r"unshared='owner' is not a column"),
    (
        "unknown mapping",
        None,
        {"unshared": {"protein": ["Cd4"]}},
        r"not values of adata\.obs\['modality'\]: 'protein'",
    ),
    ("unknown feature", None, {"unshared": {"atac": ["chrZ_1_2"]}}, "not in adata.var_names"),
    ("unknown batch key", None, {"batch_key": "donor"}, "batch_key='donor' is not a column"),
    ("bad mask", None, {"mask_unshared": "not_there"}, "mask_unshared='not_there' is not"),
    ("k above shared", None, {"mask_var": "tiny_mask"}, "larger than the number of shared"),
    ("no layer", None, {"layer": "scaled"}, "Layer 'scaled' not found"),
    ("lambda", None, {"lambda_": -1.0}, "lambda_ must be a finite number >= 0"),
    ("tol", None, {"tol": np.nan}, "tol must be a finite number >= 0"),
]


@pytest.mark.parametrize(
    ("modify", "kwargs", "match"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input(adata, modify, kwargs, match):
    if kwargs.get("mask_var") == "tiny_mask":
        mask = np.zeros(adata.n_vars, bool)
        mask[:2] = True
        kwargs = {"mask_var": mask}
    if modify is not None:
        modify(adata)
    before = adata.copy()
    with pytest.raises(ValueError, match=match):
        run(adata, **kwargs)
    assert "uinmf" not in adata.uns and "X_uinmf" not in adata.obsm
    assert (adata.layers["liger_scaled"] != before.layers["liger_scaled"]).nnz == 0


def test_missing_preprocessing_is_explained():
    adata, peaks = mosaic_counts(n_cells=40, n_peaks=20)
    with pytest.raises(ValueError, match=r"pp\.liger_unshared"):
        si.tl.uinmf(adata, 3, batch_key="modality")
    adata.var["liger_unshared"] = pd.Categorical(
        np.where(adata.var_names.isin(peaks), "atac", None)
    )
    with pytest.raises(ValueError, match=r"pp\.liger_preprocess"):
        si.tl.uinmf(adata, 3, batch_key="modality")


LIGER_UNSHARED_BAD = [
    ({"features": {"atac": ["chrZ_1_2"]}}, "not in adata.var_names"),
    ({"features": {"protein": ["Snap25"]}}, r"not values of adata\.obs\['modality'\]: 'protein'"),
    ({"features": {}}, "marks no feature as unshared"),
    ({"features": "owner"}, "features='owner' is not a column"),
    ({"var_thresh": np.inf}, "var_thresh must be a finite number"),
    ({"alpha_thresh": 0}, "alpha_thresh must be a finite number > 0"),
    ({"n_features": 0}, "n_features must be an integer >= 1"),
    ({"layer": "counts"}, "Layer 'counts' not found"),
]


@pytest.mark.parametrize(("kwargs", "match"), LIGER_UNSHARED_BAD)
def test_liger_unshared_bad_input(kwargs, match):
    adata, peaks = mosaic_counts(n_cells=40, n_peaks=20)
    options = {"batch_key": "modality", "features": {"atac": list(peaks)}} | kwargs
    with pytest.raises(ValueError, match=match):
        si.pp.liger_unshared(adata, **options)
    assert "liger_unshared" not in adata.var and "liger_unshared" not in adata.uns


def test_liger_unshared_refuses_a_feature_owned_twice_and_scaled_input():
    adata, peaks = mosaic_counts(n_cells=40, n_peaks=20)
    with pytest.raises(ValueError, match="belongs to one dataset"):
        si.pp.liger_unshared(
            adata, batch_key="modality", features={"atac": list(peaks), "rna": [peaks[0]]}
        )
    adata.X = adata.X.copy()
    adata.X.data[0] = -1.0
    with pytest.raises(ValueError, match="raw counts"):
        si.pp.liger_unshared(adata, batch_key="modality", features={"atac": list(peaks)})
