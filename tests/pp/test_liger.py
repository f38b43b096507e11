"""pp.liger_preprocess: LIGER's normalise / select genes / scale, against a slow reference."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import norm

import scintegrate as si

KEY = "liger_highly_variable"


def reference_liger(X, batches, *, var_thresh=0.1, alpha=0.99, n_genes=None, combine="union"):
    """Direct dense transcription of rliger's normalize/selectGenes/scaleNotCenter per batch."""
    X = np.asarray(X, dtype=np.float64)
    G = X.shape[1]
    scaled = np.zeros_like(X)
    masks = []
    for b in pd.unique(np.asarray(batches)):
        rows = np.asarray(batches) == b
        raw = X[rows]
        n = raw.shape[0]
        n_umi = raw.sum(axis=1)
        normed = raw / n_umi[:, None]
        mean = normed.mean(axis=0)
        var = normed.var(axis=0, ddof=1)
        c = np.mean(1 / n_umi)
        with np.errstate(divide="ignore", invalid="ignore"):
            upper = mean + norm.ppf(1 - alpha / G / 2) * np.sqrt(mean * c / n)
            base = np.log10(mean * c)
            if n_genes is None:
                mask = (var / c > upper) & (np.log10(var) > base + var_thresh)
            else:
                pre = (var / c > upper) & (np.log10(var) > base)
                relative = (np.log10(var) - base)[pre]
                genes = np.flatnonzero(pre)[np.argsort(-relative, kind="stable")][:n_genes]
                mask = np.isin(np.arange(G), genes)
        masks.append(mask)
        rms = np.sqrt(np.sum(normed**2, axis=0) / (n - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled[rows] = np.where(rms > 0, normed / rms, 0.0)
    masks = np.column_stack(masks)
    selected = masks.any(1) if combine == "union" else masks.all(1)
    return scaled, selected


def test_matches_slow_reference_on_real_data(cortex_small):
    adata = cortex_small
    si.pp.liger_preprocess(adata, batch_key="library")
    expected, selected = reference_liger(adata.X.toarray(), adata.obs["library"])
    got = adata.layers["liger_scaled"]
    assert sp.issparse(got) and got.format == "csr" and got.dtype == np.float32
    np.testing.assert_allclose(got.toarray(), expected, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(adata.var[KEY].to_numpy(), selected)
    assert 20 < selected.sum() < adata.n_vars  # the real data has variable genes, not all
    uns = adata.uns[KEY]
    assert list(uns["batches"]) == list(adata.obs["library"].cat.categories)
    assert uns["n_cells"].sum() == adata.n_obs
    assert adata.varm[f"{KEY}_per_batch"].shape == (adata.n_vars, len(uns["batches"]))
    assert np.array_equal(adata.varm[f"{KEY}_per_batch"].any(1), selected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"var_thresh": 0.3},
        {"alpha_thresh": 0.5, "combine": "intersection", "var_thresh": -0.2},
        {"n_genes": 15},
        {"n_genes": 40, "combine": "intersection"},
    ],
)
def test_selection_options_match_reference(cortex_small, kwargs):
    out = si.pp.liger_preprocess(cortex_small, batch_key="library", copy=True, **kwargs)
    ref_kwargs = {
        "var_thresh": kwargs.get("var_thresh", 0.1),
        "alpha": kwargs.get("alpha_thresh", 0.99),
        "n_genes": kwargs.get("n_genes"),
        "combine": kwargs.get("combine", "union"),
    }
    _, selected = reference_liger(
        cortex_small.X.toarray(), cortex_small.obs["library"], **ref_kwargs
    )
    np.testing.assert_array_equal(out.var[KEY].to_numpy(), selected)
    if "n_genes" in kwargs:
        assert (out.uns[KEY]["n_selected"] <= kwargs["n_genes"]).all()
    assert out.uns[KEY]["params"]["combine"] == ref_kwargs["combine"]


def test_warnings_for_short_or_empty_selection(cortex_small, caplog):
    with caplog.at_level(logging.WARNING, logger="scintegrate"):
        out = si.pp.liger_preprocess(cortex_small, batch_key="library", n_genes=80, copy=True)
    assert "Fewer than n_genes=80 genes pass" in caplog.text
    assert out.uns[KEY]["n_selected"].min() < 80
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scintegrate"):
        out = si.pp.liger_preprocess(cortex_small, batch_key="library", var_thresh=5, copy=True)
    assert "No gene was selected" in caplog.text and not out.var[KEY].any()


def test_scaled_genes_have_unit_root_mean_square_per_batch(cortex_small):
    si.pp.liger_preprocess(cortex_small, batch_key="library")
    scaled = cortex_small.layers["liger_scaled"].toarray().astype(np.float64)
    for batch in cortex_small.obs["library"].cat.categories:
        rows = (cortex_small.obs["library"] == batch).to_numpy()
        rms = np.sqrt((scaled[rows] ** 2).sum(0) / (rows.sum() - 1))
        expressed = np.asarray(cortex_small.X[rows].sum(0)).ravel() > 0
        np.testing.assert_allclose(rms[expressed], 1.0, rtol=1e-5)
        assert np.all(rms[~expressed] == 0)


def test_input_untouched_and_copy_semantics(cortex_small):
    X_before = cortex_small.X.copy()
    out = si.pp.liger_preprocess(cortex_small, batch_key="library", copy=True)
    assert isinstance(out, ad.AnnData) and out is not cortex_small
    assert "liger_scaled" not in cortex_small.layers and KEY not in cortex_small.var
    assert si.pp.liger_preprocess(cortex_small, batch_key="library") is None
    assert (cortex_small.X != X_before).nnz == 0 and cortex_small.X.dtype == X_before.dtype
    assert not cortex_small.obsm  # nothing written there


def test_layer_and_custom_keys(cortex_small):
    cortex_small.layers["counts"] = cortex_small.X.copy()
    cortex_small.X = sp.csr_matrix(cortex_small.shape, dtype=np.float32)  # .X is not used
    si.pp.liger_preprocess(
        cortex_small, batch_key="library", layer="counts", layer_added="scaled", key_added="hv"
    )
    assert {"counts", "scaled"} <= set(cortex_small.layers) and "hv" in cortex_small.var
    assert {"hv_mean", "hv_var", "hv_per_batch"} <= set(cortex_small.varm)
    assert cortex_small.uns["hv"]["params"]["layer"] == "counts"


@pytest.mark.parametrize("fmt", ["csc_matrix", "csr_array", "dense", "dense_int"])
def test_sparse_and_dense_agree(cortex_small, fmt):
    X = cortex_small.X
    converted = {
        "csc_matrix": lambda: sp.csc_matrix(X),
        "csr_array": lambda: sp.csr_array(X),
        "dense": lambda: X.toarray(),
        "dense_int": lambda: X.toarray().astype(np.int64),
    }[fmt]()
    reference = si.pp.liger_preprocess(cortex_small, batch_key="library", copy=True)
    other = ad.AnnData(converted, obs=cortex_small.obs, var=cortex_small.var)
    si.pp.liger_preprocess(other, batch_key="library")
    got = other.layers["liger_scaled"]
    if fmt == "dense_int":
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
    if fmt == "csr_array":
        assert isinstance(got, sp.csr_array)
    got = got.toarray() if sp.issparse(got) else got
    np.testing.assert_allclose(got, reference.layers["liger_scaled"].toarray(), rtol=1e-6)
    np.testing.assert_array_equal(other.var[KEY], reference.var[KEY])


def test_small_blocks_give_the_same_result(cortex_small, monkeypatch):
    from scintegrate._core import liger as _liger

    reference = si.pp.liger_preprocess(cortex_small, batch_key="library", copy=True)
    dense = ad.AnnData(cortex_small.X.toarray(), obs=cortex_small.obs, var=cortex_small.var)
    monkeypatch.setattr(_liger, "_BLOCK_VALUES", 1000)  # many blocks, some single rows
    for adata in (cortex_small, dense):
        out = si.pp.liger_preprocess(adata, batch_key="library", copy=True)
        got = out.layers["liger_scaled"]
        got = got.toarray() if sp.issparse(got) else got
        np.testing.assert_allclose(got, reference.layers["liger_scaled"].toarray(), rtol=1e-6)
        np.testing.assert_allclose(out.varm[f"{KEY}_var"], reference.varm[f"{KEY}_var"])


def test_round_trip_h5ad(cortex_small, tmp_path):
    si.pp.liger_preprocess(cortex_small, batch_key="library", n_genes=20)
    path = tmp_path / "liger.h5ad"
    cortex_small.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert (back.layers["liger_scaled"] != cortex_small.layers["liger_scaled"]).nnz == 0
    np.testing.assert_array_equal(back.var[KEY], cortex_small.var[KEY])
    np.testing.assert_array_equal(back.varm[f"{KEY}_mean"], cortex_small.varm[f"{KEY}_mean"])
    assert back.uns[KEY]["params"] == cortex_small.uns[KEY]["params"]
    assert list(back.uns[KEY]["batches"]) == list(cortex_small.uns[KEY]["batches"])


# ------------------------------------------------------------------------------- bad input
def _with_X(adata, X):
    return ad.AnnData(X, obs=adata.obs.copy(), var=adata.var)


def _zero_rows(adata, rows):
    X = adata.X.tolil()
    X[rows, :] = 0
    return _with_X(adata, X.tocsr())


def _only_empty_batch(adata):
    rows = np.flatnonzero((adata.obs["library"] == "09A").to_numpy())
    return _zero_rows(adata, rows)


def _tiny_batch(adata):
    out = _with_X(adata, adata.X)
    labels = out.obs["library"].astype(str).to_numpy()
    labels[0] = "lonely"
    out.obs["library"] = labels
    return out


def _missing_batch(adata):
    out = _with_X(adata, adata.X)
    out.obs["library"] = out.obs["library"].astype(object)
    out.obs.iloc[3, out.obs.columns.get_loc("library")] = None
    return out


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda a: a, {"batch_key": "batch"}, "batch_key='batch' is not a column"),
        (lambda a: _with_X(a, -a.X), {}, "negative values"),
        (lambda a: _with_X(a, np.where(a.X.toarray() > 3, np.nan, a.X.toarray())), {}, "NaN"),
        (lambda a: _zero_rows(a, [0, 5]), {}, r"2 cells have zero total counts.*filter_cells"),
        (_only_empty_batch, {}, "'09A' .* contain only cells with zero total counts"),
        (_tiny_batch, {}, "'lonely' .* fewer than 2 cells"),
        (_missing_batch, {}, "1 missing values"),
        (lambda a: a, {"combine": "intersect"}, "combine='intersect' is not supported"),
        (lambda a: a, {"alpha_thresh": 0.0}, "alpha_thresh must be a finite number > 0 and <= 1"),
        (lambda a: a, {"alpha_thresh": 1.5}, "alpha_thresh must be a finite number > 0 and <= 1"),
        (lambda a: a, {"var_thresh": True}, "var_thresh must be a finite number"),
        (lambda a: a, {"var_thresh": np.nan}, "var_thresh must be a finite number"),
        (lambda a: a, {"n_genes": 0}, "n_genes must be an integer"),
        (lambda a: a, {"layer": "counts"}, "Layer 'counts' not found"),
        (lambda a: a, {"key_added": "a/b"}, "without '/'"),
        (lambda a: a, {"layer_added": ""}, "layer_added must be a non-empty string"),
    ],
)
def test_bad_input_raises_clear_error(cortex_small, mutate, kwargs, message):
    adata = mutate(cortex_small)
    kwargs = {"batch_key": "library", **kwargs}
    with pytest.raises(ValueError, match=message):
        si.pp.liger_preprocess(adata, **kwargs)
    assert "liger_scaled" not in adata.layers and KEY not in adata.var and KEY not in adata.uns


def test_second_call_replaces_the_first_calls_slots(cortex_small):
    si.pp.liger_preprocess(cortex_small, batch_key="library", layer_added="first")
    assert "layers:first" in set(cortex_small.uns[KEY]["slots"])
    si.pp.liger_preprocess(cortex_small, batch_key="library", layer_added="second")
    assert "first" not in cortex_small.layers and "second" in cortex_small.layers
    assert cortex_small.uns[KEY]["params"]["layer_added"] == "second"


def test_layer_added_must_not_overwrite_input(cortex_small):
    cortex_small.layers["counts"] = cortex_small.X.copy()
    with pytest.raises(ValueError, match="would be overwritten"):
        si.pp.liger_preprocess(
            cortex_small, batch_key="library", layer="counts", layer_added="counts"
        )


def test_backed_adata_rejected(cortex_small, tmp_path):
    path = tmp_path / "backed.h5ad"
    cortex_small.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match="backed mode"):
        si.pp.liger_preprocess(backed, batch_key="library")
    backed.file.close()
