"""tl.scjmt and its core: gradients, blocks, biases, simplex, seeds, slots, round trip, errors."""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import scintegrate as si
from scintegrate._core.scjmt import (
    BLOCKS,
    DEFAULT_WEIGHTS,
    Objective,
    Problem,
    fit_scjmt,
    init_params,
    match_labels,
    mnn_smooth,
)

FAST = {"max_iter": 20, "n_restarts": 1}


def _tiny_problem(seed=0, center=False):
    rng = np.random.default_rng(seed)
    G = sp.random(7, 5, density=0.6, random_state=seed, format="csr")
    R = sp.random(6, 8, density=0.5, random_state=seed + 1, format="csr")
    A = sp.csr_matrix((rng.random((5, 8)) < 0.4).astype(float))
    A[0, 0] = 1.0
    problem = Problem(G, R, A, dtype=torch.float64)
    weights = {**DEFAULT_WEIGHTS, "orthogonality": 0.3, "private": 0.7}
    objective = Objective(
        problem, n_shared=1, n_rna_only=1, n_atac_only=1, weights=weights, center_couplings=center
    )
    P = init_params(problem, 3, 2, torch.Generator().manual_seed(seed))
    for name in ("b_atac", "b_rna", "b_g", "b_r"):
        P[name] = torch.randn(P[name].shape, dtype=torch.float64, generator=torch.Generator())
    return objective, P


@pytest.mark.parametrize("center", [False, True])
def test_gradients_match_finite_differences(center):
    objective, P = _tiny_problem(center=center)
    names = sorted(P)

    def f(*tensors):
        return objective.full(dict(zip(names, tensors, strict=True)))[0]

    inputs = tuple(P[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("block", BLOCKS)
def test_block_losses_have_the_full_gradient(block, center):
    objective, P = _tiny_problem(1, center=center)
    cache: dict = {}
    stage = "cells" if block in BLOCKS[:4] else "features"
    objective.fill_cache(stage, P, cache)
    with torch.no_grad():
        cache["c_g"] = objective.simplex(P["C_g"])
        cache["a_cr"] = torch.sparse.mm(objective.p.A, objective.simplex(P["C_r"]))
    x = P[block].detach().clone().requires_grad_(True)
    full_grad = torch.autograd.grad(objective.full({**P, block: x})[0], x)[0]
    block_grad = torch.autograd.grad(objective.block_loss(block, {**P, block: x}, cache), x)[0]
    torch.testing.assert_close(block_grad, full_grad)


def test_closed_form_biases_zero_the_gradient():
    objective, P = _tiny_problem(2)
    objective.update_biases(P)
    biases = ("b_atac", "b_r", "b_rna", "b_g")
    xs = {b: P[b].detach().clone().requires_grad_(True) for b in biases}
    grads = torch.autograd.grad(objective.full({**P, **xs})[0], list(xs.values()))
    for g in grads:
        assert float(g.abs().max()) < 1e-10


def _data(seed=0, **kwargs):
    # clear types (a k-means of either modality alone finds them): the test is about joining them
    options = {
        "n_rna": 150,
        "n_atac": 150,
        "n_types": 3,
        "n_genes": 150,
        "de_fraction": 0.4,
        "atac_effect": 2.5,
        "atac_depth": 0.3,
        "random_state": seed,
    }
    return si.datasets.simulate_rna_atac(**{**options, **kwargs})


def test_loss_decreases_and_simplex():
    m = _data()
    G, R = sp.csr_matrix(m["rna"].X), sp.csr_matrix(m["atac"].X)
    A = sp.csr_matrix(m["atac"].varm["gene_activity"].T)
    res = fit_scjmt(np.log1p(G), R.sign(), A, n_shared=3, max_iter=40, n_restarts=2)
    loss = np.asarray(res.history["loss"])
    assert loss[-1] < loss[0] - 0.1
    assert np.all(np.diff(loss) < 1e-3)  # recorded every 10 iterations: never up
    assert len(res.restart_losses) == 2 and res.loss == pytest.approx(min(res.restart_losses))
    for C in (res.C_rna, res.C_atac, res.C_g, res.C_r):
        assert np.all(C >= 0)
        np.testing.assert_allclose(C.sum(1), 1.0, atol=1e-6)


def _label(mdata):
    rna = mdata["rna"].obs["cell_type"].astype(str)
    atac = mdata["atac"].obs["cell_type"].astype(str)
    return pd.concat([rna, atac]).reindex(mdata.obs_names).to_numpy()


def test_slots_params_round_trip_and_planted_clusters(tmp_path):
    m = _data()
    X_before = m["rna"].X.copy()
    si.tl.scjmt(m, 3, max_iter=60, n_restarts=2)
    emb = m.obsm["X_scjmt"]
    assert emb.shape == (m.n_obs, 3) and not np.isnan(emb).any()
    np.testing.assert_allclose(emb.sum(1), 1.0, atol=1e-6)
    assert m.obsm["scjmt_C"].shape == (m.n_obs, 3)
    assert isinstance(m.obs["scjmt_clusters"].dtype, pd.CategoricalDtype)
    assert m["rna"].varm["scjmt_C_g"].shape == (m["rna"].n_vars, 12)
    assert m["atac"].varm["scjmt_C_r"].shape == (m["atac"].n_vars, 12)
    assert "scjmt_clusters" in m["rna"].var and "scjmt_clusters" in m["atac"].var
    uns = m.uns["scjmt"]
    assert uns["Sigma_g"].shape == uns["Sigma_r"].shape == (3, 12)
    assert uns["params"]["device"] == "cpu" and uns["params"]["n_shared"] == 3
    assert "scintegrate_version" in uns["params"]
    assert list(uns["cluster_roles"]) == ["shared"] * 3
    assert {"loss", "rna", "atac", "sigma", "features"} <= set(uns["history"].columns)
    assert (m["rna"].X != X_before).nnz == 0
    # planted structure: both modalities' cells of a type end in the same joint cluster
    ari = si.metrics.adjusted_rand_index(_label(m), m.obs["scjmt_clusters"].astype(str))
    assert ari > 0.9, ari
    path = tmp_path / "m.h5mu"
    m.write(path)
    back = mudata.read_h5mu(path)
    np.testing.assert_allclose(back.obsm["X_scjmt"], emb)
    np.testing.assert_allclose(back.uns["scjmt"]["Sigma_r"], uns["Sigma_r"])
    assert back.obs["scjmt_clusters"].equals(m.obs["scjmt_clusters"])
    pd.testing.assert_frame_equal(back.uns["scjmt"]["history"], uns["history"])


def test_seed_copy_key_dense_and_unembedded_cells():
    m = _data(1, n_rna=60, n_atac=60, n_genes=40)
    first = si.tl.scjmt(m, 3, **FAST, copy=True, key_added="a")
    second = si.tl.scjmt(m, 3, **FAST, copy=True, key_added="a")
    other = si.tl.scjmt(m, 3, **FAST, copy=True, random_state=1)
    paper_start = si.tl.scjmt(m, 3, **FAST, copy=True, init="random")
    assert first.uns["a"]["params"]["init"] == "matched"
    assert paper_start.uns["scjmt"]["params"]["init"] == "random"
    assert not np.allclose(first.obsm["X_a"], paper_start.obsm["X_scjmt"])
    assert "X_a" not in m.obsm and "X_scjmt" not in m.obsm  # copy leaves mdata alone
    np.testing.assert_array_equal(first.obsm["X_a"], second.obsm["X_a"])
    assert not np.allclose(first.obsm["X_a"], other.obsm["X_scjmt"])
    assert "a" in first.uns and "a_C_g" in first["rna"].varm
    dense = m.copy()
    for mod in ("rna", "atac"):
        dense[mod].X = dense[mod].X.toarray()
    dense_out = si.tl.scjmt(dense, 3, **FAST, copy=True, key_added="a")
    np.testing.assert_allclose(dense_out.obsm["X_a"], first.obsm["X_a"], atol=1e-5)
    # cells of a third modality are not embedded: NaN rows and no cluster
    third = ad.AnnData(np.ones((4, 2)), obs=pd.DataFrame(index=[f"x{i}" for i in range(4)]))
    bigger = mudata.MuData({"rna": m["rna"].copy(), "atac": m["atac"].copy(), "other": third})
    si.tl.scjmt(bigger, 3, **FAST)
    rows = bigger.obs_names.get_indexer(third.obs_names)
    assert np.isnan(bigger.obsm["X_scjmt"][rows]).all()
    assert bigger.obs["scjmt_clusters"].iloc[rows].isna().all()


def test_unequal_composition_keeps_atac_out_of_rna_only_cluster():
    m = _data(0, rna_types=[0, 1, 2], atac_types=[1, 2])
    si.tl.scjmt(m, n_shared=2, n_rna_only=1, max_iter=60, n_restarts=2, smooth=False)
    assert list(m.uns["scjmt"]["cluster_roles"]) == ["shared", "shared", "rna_only"]
    atac_rows = m.obs_names.get_indexer(m["atac"].obs_names)
    atac_factor = m.obsm["X_scjmt"][atac_rows]
    # the regulariser keeps ATAC cells out of the RNA-only cluster ...
    assert atac_factor[:, 2].mean() < 0.05
    assert np.mean(np.argmax(atac_factor, 1) == 2) == 0
    # ... which the RNA cells of the RNA-only type fill
    rna_rows = m.obs_names.get_indexer(m["rna"].obs_names)
    only = m["rna"].obs["cell_type"].to_numpy() == "0"
    assert np.mean(np.argmax(m.obsm["X_scjmt"][rna_rows][only], 1) == 2) > 0.9


def test_match_labels_recovers_planted_pairs_and_private_clusters():
    # RNA clusters 0..3 with distinct gene programs; ATAC clusters are RNA clusters 2, 0 and a new
    # one (ATAC-only), seen through a gene activity map with 2 regions per gene
    rng = np.random.default_rng(0)
    n_genes = 60
    programs = rng.random((5, n_genes)) < 0.3
    A = sp.csr_matrix(np.kron(np.eye(n_genes), np.ones((1, 2))))
    lab_rna = np.repeat(np.arange(4), 30)
    G = programs[lab_rna].astype(float) + 0.3 * rng.random((120, n_genes))
    lab_atac = np.repeat(np.arange(3), 25)
    atac_types = np.array([2, 0, 4])
    R = np.repeat(programs[atac_types[lab_atac]], 2, axis=1) * (rng.random((75, 120)) < 0.6)
    dim_rna, dim_atac = match_labels(G, R, A, lab_rna, lab_atac, 2, 2, 1)
    # shared dims 0, 1 hold the pairs (RNA 0, ATAC 1) and (RNA 2, ATAC 0), in RNA order
    np.testing.assert_array_equal(dim_rna, [0, 2, 1, 3])
    np.testing.assert_array_equal(dim_atac, [1, 0, 4])


def test_unequal_composition_benchmark_dataset_is_joined():
    # benchmarks/scjmt.py's unequal scenario (dataset 1, here with half the cells): on the full
    # dataset, tl.scjmt with the paper's start (init="random") reaches a joint ARI of 0.27 only
    m = si.datasets.simulate_rna_atac(
        n_rna=300, n_atac=300, n_types=3, rna_types=[0, 1, 2], atac_types=[1, 2], random_state=1
    )
    si.tl.scjmt(m, n_shared=2, n_rna_only=1, max_iter=20, n_restarts=1, smooth=False)
    ari = si.metrics.adjusted_rand_index(_label(m), m.obs["scjmt_clusters"].astype(str))
    assert ari > 0.95, ari


def test_mnn_smoothing_matches_dense_reference():
    rng = np.random.default_rng(0)
    c_atac = rng.dirichlet(np.ones(3), 40)
    c_rna = rng.dirichlet(np.ones(3), 50)
    c_atac[0] = [0.999, 0.0005, 0.0005]
    c_rna[np.argmax(c_rna[:, 0])] = [0.3, 0.4, 0.3]  # nothing near the ATAC cell 0
    out, moved = mnn_smooth(c_atac, c_rna, n_neighbors=5)
    d = ((c_atac[:, None, :] - c_rna[None, :, :]) ** 2).sum(-1)
    knn_a = np.argsort(d, axis=1)[:, :5]
    knn_r = np.argsort(d.T, axis=1)[:, :5]
    for p in range(40):
        mutual = [q for q in knn_a[p] if p in knn_r[q]]
        if not mutual:
            np.testing.assert_array_equal(out[p], c_atac[p])
            assert not moved[p]
            continue
        w = np.exp(-d[p, mutual])
        np.testing.assert_allclose(out[p], w @ c_rna[mutual] / w.sum())
    assert moved.sum() > 10


def test_bad_input():
    m = _data(0, n_rna=30, n_atac=30, n_genes=20)
    atac_peaks = m["atac"].var_names
    with pytest.raises(TypeError, match="MuData"):
        si.tl.scjmt(m["rna"], 3)
    frame = pd.DataFrame(
        m["atac"].varm["gene_activity"].T.toarray(),
        index=[f"other{i}" for i in range(20)],
        columns=atac_peaks,
    )
    with pytest.raises(ValueError, match="do not match the RNA genes"):
        si.tl.scjmt(m, 3, gene_activity=frame, **FAST)
    with pytest.raises(ValueError, match="regions of gene_activity do not match"):
        si.tl.scjmt(m, 3, gene_activity=frame.iloc[:, :-1], **FAST)
    with pytest.raises(ValueError, match="genes x regions"):
        si.tl.scjmt(m, 3, gene_activity=sp.eye(20, 5, format="csr"), **FAST)
    with pytest.raises(ValueError, match="not in the ATAC varm"):
        si.tl.scjmt(m, 3, gene_activity="nope", **FAST)
    with pytest.raises(ValueError, match="larger than n_clusters"):
        si.tl.scjmt(m, 3, n_shared=4, **FAST)
    with pytest.raises(ValueError, match="must equal"):
        si.tl.scjmt(m, 3, n_shared=2, n_rna_only=2, **FAST)
    with pytest.raises(ValueError, match="init must be"):
        si.tl.scjmt(m, 3, init="kmeans", **FAST)
    with pytest.raises(ValueError, match="Unknown weights"):
        si.tl.scjmt(m, 3, weights={"cosine": 1.0}, **FAST)
    with pytest.raises(ValueError, match="not in mdata"):
        si.tl.scjmt(m, 3, mods=("rna", "chromatin"), **FAST)
    empty = mudata.MuData({"rna": m["rna"][:0].copy(), "atac": m["atac"].copy()})
    with pytest.raises(ValueError, match="empty"):
        si.tl.scjmt(empty, 3, **FAST)
    paired = m["atac"].copy()
    paired.obs_names = m["rna"].obs_names
    with pytest.raises(ValueError, match="in both modalities"):
        si.tl.scjmt(mudata.MuData({"rna": m["rna"].copy(), "atac": paired}), 3, **FAST)
    negative = m.copy()
    negative["rna"].X = negative["rna"].X.toarray() - 1
    with pytest.raises(ValueError, match="negative"):
        si.tl.scjmt(negative, 3, **FAST)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            si.tl.scjmt(m, 3, device="cuda", **FAST)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    m = _data(0, n_rna=80, n_atac=80, n_genes=40)
    cpu = si.tl.scjmt(m, 3, **FAST, device="cpu", copy=True)
    gpu = si.tl.scjmt(m, 3, **FAST, device="cuda", copy=True)
    assert gpu.uns["scjmt"]["params"]["device"] == "cuda"
    np.testing.assert_allclose(gpu.obsm["scjmt_C"], cpu.obsm["scjmt_C"], atol=1e-3)
