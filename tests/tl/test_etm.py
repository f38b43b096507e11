"""scETM: the likelihood and its gradients, training, slots, reproducibility, the model object."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData, read_h5ad

import scintegrate as si
from scintegrate._core.etm import (
    BufferPool,
    CSRData,
    ETMModule,
    _MultinomialNLL,
    fit_etm,
    kl_schedule,
)

SMALL = {"emb_dim": 16, "hidden_sizes": (32,), "max_epochs": 4}


@pytest.fixture(autouse=True)
def _no_progress():
    previous = si.settings.progress_bar
    si.settings.progress_bar = False
    yield
    si.settings.progress_bar = previous


@pytest.fixture(scope="module")
def cortex():
    """600 SNARE-seq cortex cells from 3 libraries, the 400 genes with most counts."""
    adata = si.datasets.snareseq_cortex_rna()
    keep = adata.obs["library"].isin(["09A", "09B", "09C"]).to_numpy()
    adata = adata[keep].copy()
    adata = adata[np.random.default_rng(0).choice(adata.n_obs, 600, replace=False)].copy()
    totals = np.asarray(adata.X.sum(axis=0)).ravel()
    adata = adata[:, np.sort(np.argsort(-totals)[:400])].copy()
    adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()
    adata.obs["library"] = adata.obs["library"].astype(str).astype("category")
    return adata


def _counts(rng, n=12, g=9, density=0.5):
    X = rng.poisson(2.0, size=(n, g)) * (rng.random((n, g)) < density)
    X[:, 0] += 1  # no empty cell
    return X.astype(np.float64)


# --------------------------------------------------------------------------------------------
# the likelihood and its gradients
# --------------------------------------------------------------------------------------------


def test_multinomial_nll_matches_dense_reference():
    rng = np.random.default_rng(0)
    X = _counts(rng)
    codes = rng.integers(0, 3, X.shape[0])
    data = CSRData(sp.csr_matrix(X), codes, "cpu", torch.float64)
    batch = data.batch_of(None)
    theta = torch.softmax(torch.randn(X.shape[0], 4, dtype=torch.float64), 1)
    beta = torch.randn(4, X.shape[1], dtype=torch.float64) * 3
    bias = torch.randn(3, X.shape[1], dtype=torch.float64)
    rows = batch.cells  # the mini-batch orders cells by batch
    got = _MultinomialNLL.apply(theta, beta, bias, batch, BufferPool())
    logits = theta @ beta + bias[torch.as_tensor(codes[rows])]
    want = -(torch.as_tensor(X[rows]) * torch.log_softmax(logits, 1)).sum(1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)


def test_multinomial_nll_reused_buffer_gives_the_same_gradients():
    """The pooled logits buffer is overwritten by backward; reuse must not leak between steps."""
    rng = np.random.default_rng(3)
    X = _counts(rng, n=9, g=20)
    data = CSRData(sp.csr_matrix(X), rng.integers(0, 2, 9), "cpu", torch.float64)
    batch = data.batch_of(None)
    pool = BufferPool()
    grads = []
    for scale in (1.0, 3.0, 1.0):  # the third step reuses the buffer left by the second
        theta = torch.softmax(
            scale
            * torch.randn(9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
            1,
        ).requires_grad_()
        beta = torch.randn(
            3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        ).requires_grad_()
        # an extra forward without backward in between must not corrupt the pending one
        nll = _MultinomialNLL.apply(theta, beta, None, batch, pool)
        _MultinomialNLL.apply(theta.detach(), beta.detach() * 2, None, batch, pool)
        nll.sum().backward()
        grads.append((nll.detach(), theta.grad, beta.grad))
    fresh_theta = grads[0]
    for got, want in zip(grads[2], fresh_theta, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(grads[1][1], grads[0][1])


def test_multinomial_nll_gradcheck():
    rng = np.random.default_rng(1)
    X = _counts(rng, n=7, g=6)
    data = CSRData(sp.csr_matrix(X), rng.integers(0, 2, 7), "cpu", torch.float64)
    batch = data.batch_of(None)
    theta = torch.softmax(torch.randn(7, 3, dtype=torch.float64), 1).requires_grad_()
    beta = torch.randn(3, 6, dtype=torch.float64).requires_grad_()
    bias = torch.randn(2, 6, dtype=torch.float64).requires_grad_()
    pool = BufferPool()  # shared across gradcheck's calls: reuse is exercised
    assert torch.autograd.gradcheck(
        lambda t, b, c: _MultinomialNLL.apply(t, b, c, batch, pool), (theta, beta, bias)
    )


def test_loss_gradients_match_finite_differences():
    """Every parameter of a tiny model (float64), central differences on sampled entries."""
    rng = np.random.default_rng(2)
    X = _counts(rng, n=10, g=8)
    data = CSRData(sp.csr_matrix(X), rng.integers(0, 2, 10), "cpu", torch.float64)
    batch = data.batch_of(None)
    module = ETMModule(
        8,
        3,
        2,
        emb_dim=4,
        hidden_sizes=(5, 4),
        dropout=0.2,
        fixed_emb=rng.random((2, 8)),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )

    def loss():
        nll, kl = module.loss_terms(batch, generator=torch.Generator().manual_seed(3))
        return (nll + 0.7 * kl).sum()

    module.zero_grad()
    loss().backward()
    checked = 0
    for name, param in module.named_parameters():
        flat = param.data.view(-1)
        grad = param.grad.view(-1)
        for i in rng.choice(flat.numel(), min(2, flat.numel()), replace=False):
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + 1e-6
                up = loss().item()
                flat[i] = old - 1e-6
                down = loss().item()
                flat[i] = old
            numeric = (up - down) / 2e-6
            assert grad[i].item() == pytest.approx(numeric, rel=1e-5, abs=1e-6), name
            checked += 1
    assert checked >= 20


def test_minibatch_gathers_the_right_cells():
    rng = np.random.default_rng(3)
    X = _counts(rng, n=30, g=7, density=0.3)
    codes = rng.integers(0, 4, 30)
    data = CSRData(sp.csr_matrix(X), codes, "cpu", torch.float64)
    cells = rng.choice(30, 11, replace=False)
    batch = data.batch_of(cells)
    assert sorted(batch.cells) == sorted(cells)
    assert np.all(np.diff(codes[batch.cells]) >= 0)  # grouped by batch
    dense = np.zeros((11, 7))
    dense[batch.rows.numpy(), batch.indices.numpy()] = batch.counts.numpy()
    np.testing.assert_array_equal(dense, X[batch.cells])
    np.testing.assert_allclose(batch.transposed().to_dense().numpy().T.sum(1), 1.0)
    for code, start, end in batch.groups:
        assert np.all(codes[batch.cells[start:end]] == code)


def test_minibatch_positions_in_32_and_64_bits_agree(monkeypatch):
    # 64-bit positions are used only for blocks of more than 2^31 cells x genes; force them
    from scintegrate._core import etm

    rng = np.random.default_rng(5)
    X = sp.csr_matrix(_counts(rng, n=40, g=9, density=0.3))
    codes = rng.integers(0, 3, 40)
    cells = rng.choice(40, 17, replace=False)
    theta = torch.softmax(torch.randn(17, 4, dtype=torch.float64), 1).requires_grad_()
    beta = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    results = []
    for like in (etm._INT32_LIKE, etm._INT64_LIKE):
        monkeypatch.setattr(etm, "_INT32_LIKE", like)
        batch = CSRData(X, codes, "cpu", torch.float64).batch_of(cells)
        assert (
            batch.indices.dtype
            == batch.flat.dtype
            == batch.t_col.dtype
            == torch.from_numpy(like).dtype
        )
        nll = _MultinomialNLL.apply(theta, beta, bias, batch, BufferPool())
        grads = torch.autograd.grad(nll.sum(), (theta, beta, bias))
        results.append((nll.detach(), *grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_kl_schedule():
    assert kl_schedule(0, 30, 1.0, 1 / 3) == 0.0
    assert kl_schedule(5, 30, 1.0, 1 / 3) == pytest.approx(0.5)
    assert kl_schedule(10, 30, 2.0, 1 / 3) == 2.0
    assert kl_schedule(0, 30, 0.3, 0.0) == 0.3


def test_fit_reports_steps_and_stops_early():
    rng = np.random.default_rng(4)
    X = sp.csr_matrix(_counts(rng, n=50, g=12))
    result = fit_etm(
        X, 3, emb_dim=4, hidden_sizes=(8,), max_epochs=6, batch_size=20, random_state=rng
    )
    assert result.n_steps == 6 * 2 and result.n_epochs == 6
    assert result.theta.shape == (50, 3)
    np.testing.assert_allclose(result.theta.sum(1), 1.0)
    stopped = fit_etm(
        X,
        3,
        emb_dim=4,
        hidden_sizes=(8,),
        max_epochs=30,
        lr=1e-9,
        early_stopping_patience=2,
        early_stopping_tol=0.5,
        random_state=np.random.default_rng(0),
    )
    assert stopped.stopped_early and stopped.n_epochs < 30


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
    theta = model.get_latent_representation(adata)
    np.testing.assert_allclose(theta, adata.obsm["X_etm"], rtol=0, atol=1e-12)
    # genes matched by name: shuffled columns embed the same
    order = np.random.default_rng(0).permutation(adata.n_vars)
    np.testing.assert_allclose(
        model.get_latent_representation(adata[:, order].copy()), theta, rtol=0, atol=1e-6
    )
    model.save(tmp_path / "model.pt")
    loaded = si.tl.ETMModel.load(tmp_path / "model.pt", device="cpu")
    np.testing.assert_array_equal(loaded.get_latent_representation(adata), theta)
    delta = loaded.get_latent_representation(adata, return_delta=True)
    np.testing.assert_allclose(delta, adata.obsm["etm_delta"], rtol=0, atol=1e-12)
    assert loaded.batches == ["09A", "09B", "09C"] and loaded.batch_key == "library"
    with pytest.raises(ValueError, match=r"not an scETM model|Cannot read"):
        (tmp_path / "junk.pt").write_bytes(b"not a model")
        si.tl.ETMModel.load(tmp_path / "junk.pt")


def test_embedding_refuses_unseen_batch_and_missing_genes(cortex):
    adata = cortex.copy()
    model = si.tl.etm(adata, 3, batch_key="library", return_model=True, **SMALL)
    new = adata[:50].copy()
    new.obs["library"] = "09Z"
    with pytest.raises(ValueError, match="not trained on: '09Z'"):
        model.get_latent_representation(new)
    with pytest.raises(ValueError, match="lacks 1 of the model's"):
        model.get_latent_representation(adata[:, 1:].copy())
    assert model.get_latent_representation(new, batch_key=None).shape == (50, 3)


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


def _tiny(X=None):
    X = _counts(np.random.default_rng(5), n=20, g=6) if X is None else X
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
    np.testing.assert_allclose(
        model.get_latent_representation(adata), adata.obsm["X_etm"], atol=1e-6
    )
    model.save(tmp_path / "m.pt")
    cpu = si.tl.ETMModel.load(tmp_path / "m.pt", device="cpu")
    np.testing.assert_allclose(cpu.get_latent_representation(adata), adata.obsm["X_etm"], atol=1e-4)
