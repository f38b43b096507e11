"""tl.etm and ETMModel: slots, reproducibility, the model object, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _data import cortex_three_libraries
from anndata import AnnData, read_h5ad

import scintegrate as si

SMALL = {"emb_dim": 16, "hidden_sizes": (32,), "max_epochs": 4}


@pytest.fixture(scope="module")
def cortex():
    """600 SNARE-seq cortex cells from 3 libraries, the 400 genes with most counts."""
    return cortex_three_libraries(
        si.datasets.snareseq_cortex_rna(), n_cells=600, n_genes=400, seed=0
    )


# --------------------------------------------------------------------------------------------
# tl.etm
# --------------------------------------------------------------------------------------------


def test_slots_params_and_history(cortex):
    adata = cortex.copy()
    X_before = adata.X.copy()
    si.tl.etm(adata, 5, batch_key="library", **SMALL)
    assert adata.obsm["X_etm"].shape == (adata.n_obs, 5)
    np.testing.assert_allclose(adata.obsm["X_etm"].sum(1), 1.0)
    assert adata.obsm["etm_delta"].shape == (adata.n_obs, 5)
    assert adata.varm["etm_rho"].shape == (adata.n_vars, 16)
    np.testing.assert_allclose(adata.varm["etm_beta"].sum(0), 1.0)
    assert adata.varm["etm_batch_bias"].shape == (adata.n_vars, 3)
    uns = adata.uns["etm"]
    assert uns["alpha"].shape == (5, 16)
    assert list(uns["batches"]) == ["09A", "09B", "09C"]
    params = uns["params"]
    assert params["n_topics"] == 5 and params["batch_key"] == "library"
    assert params["device"] == "cpu" and params["kl_weight"] == 1.0
    assert params["n_epochs"] == 4 and params["n_steps"] == 4  # 600 cells <= 2000: full batch
    assert "scintegrate_version" in params
    history = uns["history"]
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert {"loss", "reconstruction", "kl", "kl_weight", "lr", "time"} <= set(history.columns)
    assert (adata.X != X_before).nnz == 0
    # custom key, no batches: no batch bias
    si.tl.etm(adata, 3, key_added="topics", **SMALL)
    assert adata.obsm["X_topics"].shape == (adata.n_obs, 3)
    assert "topics_batch_bias" not in adata.varm
    assert len(adata.uns["topics"]["batches"]) == 0


def test_rerun_without_batch_key_drops_the_batch_intercepts(cortex):
    """Issue 18: a second call with the same key leaves no slot of the first behind."""
    adata = cortex.copy()
    si.tl.etm(adata, 3, batch_key="library", **SMALL)
    assert "etm_batch_bias" in adata.varm
    si.tl.etm(adata, 3, **SMALL)
    assert "etm_batch_bias" not in adata.varm
    assert {"X_etm", "etm_delta"} <= set(adata.obsm) and "etm_beta" in adata.varm
    assert len(adata.uns["etm"]["batches"]) == 0
    # another key's slots are left alone
    si.tl.etm(adata, 3, batch_key="library", key_added="other", **SMALL)
    si.tl.etm(adata, 3, **SMALL)
    assert "other_batch_bias" in adata.varm


def test_batches_are_sorted_whatever_the_category_order():
    # tl.etm has always sorted batch names; kept so that earlier results reproduce
    adata = _tiny()
    adata.obs["batch"] = pd.Categorical(adata.obs["batch"], categories=["b", "a", "unused"])
    si.tl.etm(adata, 2, batch_key="batch", emb_dim=4, hidden_sizes=(8,), max_epochs=1)
    assert list(adata.uns["etm"]["batches"]) == ["a", "b"]
    assert adata.varm["etm_batch_bias"].shape == (adata.n_vars, 2)


def test_copy_and_return_model(cortex):
    adata = cortex.copy()
    out = si.tl.etm(adata, 3, copy=True, **SMALL)
    assert isinstance(out, AnnData) and "X_etm" in out.obsm and "X_etm" not in adata.obsm
    out, model = si.tl.etm(adata, 3, copy=True, return_model=True, **SMALL)
    assert isinstance(model, si.tl.ETMModel) and "X_etm" not in adata.obsm
    assert si.tl.etm(adata, 3, **SMALL) is None


def test_same_seed_same_theta_sparse_equals_dense(cortex):
    a, b, c = cortex.copy(), cortex.copy(), cortex.copy()
    c.X = c.X.toarray()
    kwargs = {"batch_key": "library", "batch_size": 250, **SMALL}  # 2 mini-batches per epoch
    si.tl.etm(a, 4, random_state=7, **kwargs)
    si.tl.etm(b, 4, random_state=7, **kwargs)
    si.tl.etm(c, 4, random_state=7, **kwargs)
    np.testing.assert_array_equal(a.obsm["X_etm"], b.obsm["X_etm"])
    np.testing.assert_array_equal(a.varm["etm_beta"], b.varm["etm_beta"])
    np.testing.assert_allclose(a.obsm["X_etm"], c.obsm["X_etm"], rtol=0, atol=1e-12)
    other = cortex.copy()
    si.tl.etm(other, 4, random_state=8, **kwargs)
    assert not np.allclose(a.obsm["X_etm"], other.obsm["X_etm"])


def test_h5ad_round_trip(cortex, tmp_path):
    adata = cortex.copy()
    si.tl.etm(adata, 3, batch_key="library", **SMALL)
    adata.write_h5ad(tmp_path / "etm.h5ad")
    back = read_h5ad(tmp_path / "etm.h5ad")
    for slot in ("X_etm", "etm_delta"):
        np.testing.assert_array_equal(back.obsm[slot], adata.obsm[slot])
    for slot in ("etm_rho", "etm_beta", "etm_batch_bias"):
        np.testing.assert_array_equal(back.varm[slot], adata.varm[slot])
    np.testing.assert_array_equal(back.uns["etm"]["alpha"], adata.uns["etm"]["alpha"])
    assert list(back.uns["etm"]["batches"]) == list(adata.uns["etm"]["batches"])
    pd.testing.assert_frame_equal(back.uns["etm"]["history"], adata.uns["etm"]["history"])
    assert back.uns["etm"]["params"]["batch_key"] == "library"


def test_model_embeds_new_cells_and_save_load(cortex, tmp_path):
    adata = cortex.copy()
    model = si.tl.etm(adata, 4, batch_key="library", return_model=True, **SMALL)
    theta = model.transform(adata)
    np.testing.assert_allclose(theta, adata.obsm["X_etm"], rtol=0, atol=1e-12)
    # genes matched by name: shuffled columns embed the same
    order = np.random.default_rng(0).permutation(adata.n_vars)
    np.testing.assert_allclose(model.transform(adata[:, order].copy()), theta, rtol=0, atol=1e-6)
    model.save(tmp_path / "model.pt")
    loaded = si.tl.ETMModel.load(tmp_path / "model.pt", device="cpu")
    np.testing.assert_array_equal(loaded.transform(adata), theta)
    delta = loaded.transform(adata, return_delta=True)
    np.testing.assert_allclose(delta, adata.obsm["etm_delta"], rtol=0, atol=1e-12)
    assert loaded.batches == ["09A", "09B", "09C"] and loaded.batch_key == "library"
    assert loaded.n_components == model.n_components == 4
    assert loaded.var_names.equals(adata.var_names) and loaded.var_names.equals(model.var_names)
    pd.testing.assert_frame_equal(model.history, adata.uns["etm"]["history"])
    pd.testing.assert_frame_equal(loaded.history, model.history)


def test_model_vocabulary_and_deprecated_aliases(cortex):
    adata = cortex.copy()
    model = si.tl.etm(adata, 3, return_model=True, **SMALL)
    assert isinstance(model.n_components, int) and model.n_components == 3
    assert isinstance(model.var_names, pd.Index) and len(model.var_names) == adata.n_vars
    assert list(model.history["epoch"]) == [1, 2, 3, 4]
    with pytest.warns(FutureWarning, match=r"n_topics is deprecated.*n_components"):
        assert model.n_topics == 3
    with pytest.warns(
        FutureWarning, match=r"get_latent_representation\(\) is deprecated.*transform"
    ):
        old = model.get_latent_representation(adata[:40], return_delta=True)
    np.testing.assert_array_equal(old, model.transform(adata[:40], return_delta=True))


def test_save_and_load_refuse_clearly(cortex, tmp_path):
    adata = cortex.copy()
    model = si.tl.etm(adata, 3, return_model=True, **SMALL)
    with pytest.raises(ValueError, match=r"folder .* does not exist"):
        model.save(tmp_path / "missing" / "model.pt")
    model.save(tmp_path / "model.pt")
    content = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    (tmp_path / "cut.pt").write_bytes(content[: len(content) // 2])
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.save({**saved, "format_version": 99}, tmp_path / "newer.pt")
    torch.save({k: v for k, v in saved.items() if k != "state_dict"}, tmp_path / "partial.pt")
    for name, match in [
        ("junk.pt", "Cannot read an scETM model"),
        ("cut.pt", "Cannot read an scETM model"),
        ("absent.pt", "Cannot read an scETM model"),
        ("foreign.pt", "not an scETM model written by ETMModel.save"),
        ("newer.pt", "format version 99.*Upgrade scintegrate"),
        ("partial.pt", "incomplete or damaged"),
    ]:
        with pytest.raises(ValueError, match=match):
            si.tl.ETMModel.load(tmp_path / name, device="cpu")
    assert saved["scintegrate_version"] == si.__version__


def test_embedding_refuses_unseen_batch_and_missing_genes(cortex):
    adata = cortex.copy()
    model = si.tl.etm(adata, 3, batch_key="library", return_model=True, **SMALL)
    new = adata[:50].copy()
    new.obs["library"] = "09Z"
    with pytest.raises(ValueError, match="not trained on: '09Z'"):
        model.transform(new)
    with pytest.raises(ValueError, match="lacks 1 of the model's"):
        model.transform(adata[:, 1:].copy())
    assert model.transform(new, batch_key=None).shape == (50, 3)


def test_fixed_gene_embedding(cortex):
    adata = cortex.copy()
    rng = np.random.default_rng(0)
    adata.varm["pathways"] = (rng.random((adata.n_vars, 6)) < 0.1).astype(float)
    si.tl.etm(adata, 3, fixed_gene_emb="pathways", emb_dim=4, hidden_sizes=(16,), max_epochs=3)
    rho = adata.varm["etm_rho"]
    assert rho.shape == (adata.n_vars, 10)
    np.testing.assert_array_equal(rho[:, :6], adata.varm["pathways"])  # fixed rows unchanged
    assert adata.uns["etm"]["alpha"].shape == (3, 10)
    si.tl.etm(adata, 3, fixed_gene_emb="pathways", emb_dim=0, hidden_sizes=(16,), max_epochs=2)
    assert adata.varm["etm_rho"].shape == (adata.n_vars, 6)


def test_elbo_improves_and_topics_find_cell_types(cortex):
    """Real data: the loss falls and theta separates cell types (ARI of Leiden clusters)."""
    adata = cortex.copy()
    si.tl.etm(
        adata,
        8,
        batch_key="library",
        emb_dim=64,
        max_epochs=150,
        lr=2e-2,  # 150 full-batch steps: scETM's 5e-3 needs thousands
        kl_warmup=0.1,
        labels_key="cell_type",
        eval_every=100,
        resolution=0.5,
    )
    history = adata.uns["etm"]["history"]
    assert history["ari"].notna().sum() == 2 and np.isnan(history["ari"].iloc[0])  # 100, 150
    warm = history[history["kl_weight"] == 1.0]
    assert warm["loss"].iloc[-1] < 0.97 * warm["loss"].iloc[0]
    assert history["reconstruction"].iloc[-1] < 0.9 * history["reconstruction"].iloc[0]
    assert history["ari"].iloc[-1] > 0.25


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def _tiny():
    rng = np.random.default_rng(5)
    X = rng.poisson(2.0, size=(20, 6)) * (rng.random((20, 6)) < 0.5)
    X[:, 0] += 1  # no empty cell
    X = X.astype(np.float64)
    adata = AnnData(sp.csr_matrix(X))
    adata.obs["batch"] = ["a", "b"] * 10
    return adata


@pytest.mark.parametrize(
    ("change", "kwargs", "match"),
    [
        (lambda a: setattr(a, "X", -a.X), {}, "negative values"),
        (lambda a: setattr(a, "X", a.X * 0.5), {}, "non-integer values"),
        (
            lambda a: setattr(a, "X", sp.csr_matrix(a.X.toarray() * (np.arange(20) != 3)[:, None])),
            {},
            "cells with zero counts",
        ),
        (None, {"batch_key": "nope"}, "batch_key='nope' is not a column"),
        (None, {"n_topics": 1}, "n_topics must be an integer >= 2"),
        (None, {"n_topics": 10**9}, "larger than the number of genes"),
        (None, {"layer": "counts"}, "Layer 'counts' not found"),
        (None, {"labels_key": "nope"}, "labels_key='nope' is not a column"),
        (None, {"fixed_gene_emb": "nope"}, "fixed_gene_emb='nope' is not a key"),
        (None, {"emb_dim": 0}, "emb_dim=0 needs fixed_gene_emb"),
        (None, {"hidden_sizes": ()}, "hidden_sizes must be a non-empty"),
        (None, {"kl_weight": -1.0}, "kl_weight must be a finite number"),
        (None, {"kl_warmup": 2.0}, "kl_warmup must be a finite number"),
        (None, {"lr": 0.0}, "lr must be a finite number > 0"),
        (None, {"dropout": 1.0}, "dropout must be a finite number"),
        (None, {"batch_size": 1}, "batch_size must be an integer >= 2"),
        (None, {"max_epochs": 0}, "max_epochs must be an integer >= 1"),
        (None, {"device": "tpu"}, "device='tpu' is not supported"),
        (None, {"key_added": "a/b"}, "key_added must be a non-empty string"),
    ],
)
def test_bad_input(change, kwargs, match):
    adata = _tiny()
    if change is not None:
        change(adata)
    with pytest.raises(ValueError, match=match):
        si.tl.etm(adata, **{"n_topics": 2, **kwargs})
    assert "etm" not in adata.uns


def test_bad_batch_values():
    adata = _tiny()
    adata.obs["batch"] = pd.Series([None, *["a"] * 19], index=adata.obs_names, dtype=object)
    with pytest.raises(ValueError, match="missing values"):
        si.tl.etm(adata, 2, batch_key="batch")


@pytest.mark.gpu
def test_cuda_training_and_embedding(cortex, tmp_path):
    adata = cortex.copy()
    model = si.tl.etm(adata, 3, batch_key="library", device="cuda", return_model=True, **SMALL)
    assert adata.uns["etm"]["params"]["device"].startswith("cuda")
    assert model.device.startswith("cuda")
    np.testing.assert_allclose(model.transform(adata), adata.obsm["X_etm"], atol=1e-6)
    model.save(tmp_path / "m.pt")
    cpu = si.tl.ETMModel.load(tmp_path / "m.pt", device="cpu")
    np.testing.assert_allclose(cpu.transform(adata), adata.obsm["X_etm"], atol=1e-4)
