"""tl.inmf and tl.online_inmf: slots, parameters, seeds, copy, round trip, sparse == dense, and
one clear error per kind of bad input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scintegrate as si

K = 5


@pytest.fixture(scope="module")
def prepared(cortex):
    """Three SNARE-seq libraries as datasets, LIGER-preprocessed (1,000 cells)."""
    adata = cortex[cortex.obs["library"].isin(["09A", "09B", "09C"])].copy()
    rng = np.random.default_rng(0)
    adata = adata[np.sort(rng.choice(adata.n_obs, 1000, replace=False))].copy()
    adata.obs["library"] = adata.obs["library"].astype(str)
    si.pp.liger_preprocess(adata, batch_key="library")
    return adata


@pytest.fixture
def adata(prepared):
    return prepared.copy()


def run(tool, adata, k=K, **kwargs):
    options = {"batch_key": "library", "random_state": 0}
    if tool is si.tl.online_inmf:
        options.update(batch_size=300, max_epochs=2)
    else:
        options.update(max_iter=5)
    options.update(kwargs)
    return tool(adata, k, **options)


TOOLS = [si.tl.inmf, si.tl.online_inmf]
IDS = ["inmf", "online_inmf"]


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
def test_slots(tool, adata):
    X_before = adata.X.copy()
    scaled_before = adata.layers["liger_scaled"].copy()
    assert run(tool, adata) is None
    genes = adata.var["liger_highly_variable"].to_numpy()
    H, W, V = adata.obsm["X_inmf"], adata.varm["inmf_W"], adata.varm["inmf_V"]
    assert H.shape == (adata.n_obs, K)
    assert W.shape == (adata.n_vars, K)
    assert V.shape == (adata.n_vars, K, 3)
    assert (H >= 0).all() and (W >= 0).all() and (V >= 0).all()
    assert np.all(W[~genes] == 0) and np.all(V[~genes] == 0)
    assert (H.sum(1) > 0).mean() > 0.99
    uns = adata.uns["inmf"]
    assert list(uns["batches"]) == ["09A", "09B", "09C"]
    assert uns["params"]["n_components"] == K
    assert uns["params"]["batch_key"] == "library"
    assert uns["params"]["n_genes"] == genes.sum()
    assert "scintegrate_version" in uns["params"]
    assert np.isfinite(uns["objective"]) and uns["objective"] > 0
    history = uns["history"]
    assert {"iteration", "objective", "time"} <= set(history.columns)
    assert (history["time"].diff().dropna() >= 0).all()
    if tool is si.tl.online_inmf:
        assert uns["A"].shape == (3, K, K)
        assert uns["B"].shape == (3, adata.n_vars, K)
        assert history["epoch"].iloc[-1] == pytest.approx(2.0)
    # .X and the input layer are untouched
    assert (adata.X != X_before).nnz == 0
    assert (adata.layers["liger_scaled"] != scaled_before).nnz == 0


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
def test_each_cell_gets_its_own_datasets_factors(tool, adata):
    run(tool, adata)
    batches = list(adata.uns["inmf"]["batches"])
    genes = adata.var["liger_highly_variable"].to_numpy()
    X = adata.layers["liger_scaled"][:, genes]
    W = adata.varm["inmf_W"][genes]
    H = adata.obsm["X_inmf"]
    for i, name in enumerate(batches):
        rows = (adata.obs["library"] == name).to_numpy()
        V = adata.varm["inmf_V"][genes, :, i]
        fit = np.sum((X[rows].toarray() - H[rows] @ (W + V).T) ** 2)
        other = adata.varm["inmf_V"][genes, :, (i + 1) % 3]
        worse = np.sum((X[rows].toarray() - H[rows] @ (W + other).T) ** 2)
        assert fit < worse


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
def test_custom_key_copy_and_seed(tool, adata):
    out = run(tool, adata, key_added="liger", copy=True)
    assert isinstance(out, ad.AnnData)
    assert "X_inmf" not in adata.obsm and "liger" not in adata.uns
    assert {"X_liger"} <= set(out.obsm) and {"liger_W", "liger_V"} <= set(out.varm)
    again = run(tool, adata, key_added="liger", copy=True)
    np.testing.assert_array_equal(out.obsm["X_liger"], again.obsm["X_liger"])
    other = run(tool, adata, key_added="liger", copy=True, random_state=1)
    assert not np.allclose(out.obsm["X_liger"], other.obsm["X_liger"])


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
def test_sparse_equals_dense(tool, adata):
    sparse = run(tool, adata, copy=True)
    dense_input = adata.copy()
    dense_input.layers["liger_scaled"] = adata.layers["liger_scaled"].toarray()
    dense = run(tool, dense_input, copy=True)
    np.testing.assert_allclose(sparse.obsm["X_inmf"], dense.obsm["X_inmf"], rtol=1e-7, atol=1e-9)
    csc = adata.copy()
    csc.layers["liger_scaled"] = sp.csc_array(adata.layers["liger_scaled"])
    np.testing.assert_allclose(
        sparse.obsm["X_inmf"], run(tool, csc, copy=True).obsm["X_inmf"], rtol=1e-7, atol=1e-9
    )


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
def test_h5ad_round_trip(tool, adata, tmp_path):
    run(tool, adata)
    path = tmp_path / "inmf.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_inmf"], adata.obsm["X_inmf"])
    np.testing.assert_array_equal(back.varm["inmf_V"], adata.varm["inmf_V"])
    assert list(back.uns["inmf"]["batches"]) == list(adata.uns["inmf"]["batches"])
    pd.testing.assert_frame_equal(back.uns["inmf"]["history"], adata.uns["inmf"]["history"])
    if tool is si.tl.online_inmf:
        np.testing.assert_array_equal(back.uns["inmf"]["B"], adata.uns["inmf"]["B"])


def test_solvers_and_mask(adata):
    objectives = {}
    for solver in ("anls", "hals", "mu"):
        out = run(si.tl.inmf, adata, solver=solver, max_iter=10, copy=True)
        objectives[solver] = out.uns["inmf"]["objective"]
        assert out.uns["inmf"]["params"]["solver"] == solver
    assert objectives["anls"] < objectives["mu"]
    mask = np.zeros(adata.n_vars, bool)
    mask[:50] = True
    out = run(si.tl.inmf, adata, mask_var=mask, copy=True)
    assert out.uns["inmf"]["params"]["n_genes"] == 50
    assert np.all(out.varm["inmf_W"][50:] == 0)


def test_default_mask_absent_uses_all_genes(adata):
    del adata.var["liger_highly_variable"]
    run(si.tl.inmf, adata)
    assert adata.uns["inmf"]["params"]["n_genes"] == adata.n_vars


def _negative(a):
    a.layers["liger_scaled"] = a.layers["liger_scaled"].copy()
    a.layers["liger_scaled"].data[0] = -1.0


def _nan(a):
    a.layers["liger_scaled"] = a.layers["liger_scaled"].copy()
    a.layers["liger_scaled"].data[0] = np.nan


def _empty_batch(a):
    rows = (a.obs["library"] == "09C").to_numpy()
    scaled = a.layers["liger_scaled"].tolil()
    scaled[np.flatnonzero(rows)] = 0
    a.layers["liger_scaled"] = scaled.tocsr()


def _tiny_batch(a):
    a.obs["library"] = a.obs["library"].astype(str)
    a.obs.iloc[:3, a.obs.columns.get_loc("library")] = "tiny"


def _gene_missing_in_one_batch(a):
    """As anndata.concat(join="outer") leaves a gene one dataset did not measure."""
    dense = a.layers["liger_scaled"].toarray()
    genes = np.flatnonzero(a.var["liger_highly_variable"].to_numpy())[:4]
    dense[np.ix_((a.obs["library"] == "09B").to_numpy(), genes)] = np.nan
    a.layers["liger_scaled"] = sp.csr_matrix(dense)


def _single_batch(a):
    a.obs["library"] = "only"


def _missing_batch_label(a):
    a.obs["library"] = a.obs["library"].astype(object)
    a.obs.iloc[0, a.obs.columns.get_loc("library")] = None


BAD_INPUT = [
    ("negative", _negative, {}, "negative values"),
    ("nan", _nan, {}, "NaN or infinite"),
    ("genes differ", _gene_missing_in_one_batch, {}, "gene sets differ .* dataset '09B'"),
    ("empty batch", _empty_batch, {}, "Every cell of dataset '09C' is empty"),
    ("tiny batch", _tiny_batch, {}, "Dataset 'tiny' has 3 cells, fewer than n_components"),
    ("single batch", _single_batch, {}, "single value"),
    ("missing batch", _missing_batch_label, {}, "missing values"),
    ("unknown key", None, {"batch_key": "donor"}, "batch_key='donor' is not a column"),
    ("no layer", None, {"layer": "scaled"}, "Layer 'scaled' not found"),
    ("bad mask", None, {"mask_var": "not_there"}, "mask_var='not_there' is not a column"),
    ("lambda", None, {"lambda_": -1.0}, "lambda_ must be a finite number >= 0"),
    ("lambda inf", None, {"lambda_": np.inf}, "lambda_ must be a finite number >= 0"),
    ("k too big", None, {"mask_var": np.arange(3000) < 3}, "larger than the number of genes"),
]


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
@pytest.mark.parametrize(
    ("modify", "kwargs", "match"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input(tool, adata, modify, kwargs, match):
    if "mask_var" in kwargs and not isinstance(kwargs["mask_var"], str):
        kwargs = {"mask_var": np.arange(adata.n_vars) < 3}
    if modify is not None:
        modify(adata)
    before = adata.copy()
    with pytest.raises(ValueError, match=match):
        run(tool, adata, **kwargs)
    assert "inmf" not in adata.uns and "X_inmf" not in adata.obsm
    after, original = adata.layers["liger_scaled"], before.layers["liger_scaled"]
    np.testing.assert_array_equal(after.indices, original.indices)
    np.testing.assert_array_equal(after.data, original.data)  # NaN compares equal here


@pytest.mark.parametrize("tol", [np.inf, np.nan, "a", -1e-3, None, True])
def test_bad_tol(adata, tol):
    with pytest.raises(ValueError, match=r"tol must be a finite number >= 0"):
        run(si.tl.inmf, adata, tol=tol)
    assert "inmf" not in adata.uns and "X_inmf" not in adata.obsm


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
def test_second_call_replaces_the_first(tool, adata):
    run(tool, adata)
    slots = {"obsm:X_inmf", "varm:inmf_W", "varm:inmf_V"}
    assert set(adata.uns["inmf"]["slots"]) == slots
    adata.obsm["X_inmf_other"] = np.zeros((adata.n_obs, 1))  # not written by the tool: kept
    run(tool, adata, k=K - 1)
    assert adata.obsm["X_inmf"].shape == (adata.n_obs, K - 1)
    assert adata.varm["inmf_V"].shape == (adata.n_vars, K - 1, 3)
    assert set(adata.uns["inmf"]["slots"]) == slots and "X_inmf_other" in adata.obsm


@pytest.mark.parametrize("tool", TOOLS, ids=IDS)
def test_batches_are_sorted_whatever_the_category_order(tool, adata):
    # the order of V and of uns["batches"] has always been sorted; kept so results reproduce
    order = ["09C", "09A", "09B"]
    adata.obs["library"] = pd.Categorical(adata.obs["library"], categories=[*order, "unused"])
    run(tool, adata)
    assert list(adata.uns["inmf"]["batches"]) == sorted(order)
    rows = (adata.obs["library"] == "09A").to_numpy()
    genes = adata.var["liger_highly_variable"].to_numpy()
    X = adata.layers["liger_scaled"][rows][:, genes].toarray()
    H, W = adata.obsm["X_inmf"][rows], adata.varm["inmf_W"][genes]
    own = np.sum((X - H @ (W + adata.varm["inmf_V"][genes, :, 0]).T) ** 2)
    other = np.sum((X - H @ (W + adata.varm["inmf_V"][genes, :, 1]).T) ** 2)
    assert own < other  # V[..., 0] is the first sorted name's


def test_missing_preprocessing_is_explained(cortex):
    adata = cortex[:300].copy()
    with pytest.raises(ValueError, match=r"pp\.liger_preprocess"):
        si.tl.inmf(adata, 5, batch_key="library")


def test_backed_input_refused(prepared, tmp_path):
    path = tmp_path / "backed.h5ad"
    prepared.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match="backed"):
        si.tl.inmf(backed, K, batch_key="library", layer=None)
