"""tl.scjmt: slots, params, seeds, copy, round trip, planted clusters, bad input."""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _public_calls import joinable_rna_atac as _data

import scintegrate as si

FAST = {"max_iter": 20, "n_restarts": 1}


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
    for mod in ("rna", "atac"):  # each modality holds its own cells' rows
        rows = m.obs_names.get_indexer(m[mod].obs_names)
        np.testing.assert_array_equal(m[mod].obsm["X_scjmt"], emb[rows])
        np.testing.assert_array_equal(m[mod].obsm["scjmt_C"], m.obsm["scjmt_C"][rows])
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
    np.testing.assert_allclose(back["atac"].obsm["X_scjmt"], m["atac"].obsm["X_scjmt"])
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


def test_rerun_replaces_every_slot_of_the_key():
    """A second call with the same key removes the first call's slots, on every modality."""
    m = _data(1, n_rna=40, n_atac=40, n_genes=30)
    bigger = mudata.MuData(
        {"rna": m["rna"].copy(), "atac": m["atac"].copy(), "atac2": m["atac"].copy()}
    )
    bigger["atac2"].obs_names = [f"{name}-2" for name in bigger["atac2"].obs_names]
    bigger.update()
    si.tl.scjmt(bigger, 3, max_iter=2, n_restarts=1, smooth=False)
    assert "scjmt_C_r" in bigger["atac"].varm and "scjmt_clusters" in bigger["atac"].var
    si.tl.scjmt(bigger, 3, mods=("rna", "atac2"), max_iter=2, n_restarts=1, smooth=False)
    assert "scjmt_C_r" not in bigger["atac"].varm and "scjmt_clusters" not in bigger["atac"].var
    assert "X_scjmt" not in bigger["atac"].obsm and "X_scjmt" in bigger["atac2"].obsm
    assert "scjmt_C_r" in bigger["atac2"].varm and "scjmt_C_g" in bigger["rna"].varm
    assert list(bigger.uns["scjmt"]["params"]["mods"]) == ["rna", "atac2"]


def test_quantile_norm_runs_on_the_output_as_on_inmf_output():
    """The LIGER path's last step reads tl.scjmt's factors from each modality of the MuData."""
    m = _data(1, n_rna=60, n_atac=60, n_genes=40)
    si.tl.scjmt(m, 3, **FAST)
    before = m.obsm["X_scjmt"].copy()
    si.pp.quantile_norm(m, use_rep="X_scjmt", reference="rna", min_cells=5, key_added="scjmt_qn")
    aligned = m.obsm["X_scjmt_qn"]
    assert aligned.shape == before.shape and not np.isnan(aligned).any()
    np.testing.assert_array_equal(m.obsm["X_scjmt"], before)
    atac = m.obs_names.get_indexer(m["atac"].obs_names)
    assert not np.allclose(aligned[atac], before[atac])
    assert m.uns["scjmt_qn"]["params"]["reference"] == "rna"


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


def test_smooth_modes_and_the_automatic_choice():
    from scintegrate._core.scjmt import mnn_shift, mnn_smooth

    m = _data(0, n_rna=60, n_atac=50, rna_types=[0, 1, 2], atac_types=[1, 2])
    rows_rna = m.obs_names.get_indexer(m["rna"].obs_names)
    rows_atac = m.obs_names.get_indexer(m["atac"].obs_names)
    expected = {"auto": "shift", "shift": "shift", "mean": "mean", True: "mean", False: "none"}
    for smooth, mode in expected.items():
        si.tl.scjmt(m, n_shared=2, n_rna_only=1, smooth=smooth, n_neighbors=5, **FAST)
        assert m.uns["scjmt"]["params"]["smoothing"] == mode
        raw = m.obsm["scjmt_C"]
        z = m.obsm["X_scjmt"]
        np.testing.assert_array_equal(z[rows_rna], raw[rows_rna])  # RNA cells never move
        if mode == "none":
            np.testing.assert_array_equal(z[rows_atac], raw[rows_atac])
            continue
        smoother = mnn_shift if mode == "shift" else mnn_smooth
        want, _ = smoother(raw[rows_atac], raw[rows_rna], n_neighbors=5)
        np.testing.assert_allclose(z[rows_atac], want)
        assert not np.allclose(want, raw[rows_atac])
    # every cluster shared: the automatic choice is the paper's mean
    si.tl.scjmt(m, 3, **FAST)
    assert m.uns["scjmt"]["params"]["smoothing"] == "mean"


def test_unequal_composition_benchmark_dataset_is_joined():
    # benchmarks/scjmt.py's unequal scenario (dataset 1, here with half the cells): on the full
    # dataset, tl.scjmt with the paper's start (init="random") reaches a joint ARI of 0.27 only
    m = si.datasets.simulate_rna_atac(
        n_rna=300, n_atac=300, n_types=3, rna_types=[0, 1, 2], atac_types=[1, 2], random_state=1
    )
    si.tl.scjmt(m, n_shared=2, n_rna_only=1, max_iter=20, n_restarts=1, smooth=False)
    ari = si.metrics.adjusted_rand_index(_label(m), m.obs["scjmt_clusters"].astype(str))
    assert ari > 0.95, ari


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
    with pytest.raises(
        ValueError, match="n_clusters=1000000000 is larger than the number of cells"
    ):
        si.tl.scjmt(m, 10**9, **FAST)
    with pytest.raises(ValueError, match="n_feature_clusters=1000 is larger"):
        si.tl.scjmt(m, 3, n_feature_clusters=1000, **FAST)
    duplicated = m.copy()
    names = duplicated["rna"].obs_names.to_numpy().copy()
    names[1] = names[0]
    duplicated["rna"].obs_names = names
    with pytest.raises(ValueError, match="duplicated cell names"):
        si.tl.scjmt(duplicated, 3, **FAST)
    with pytest.raises(ValueError, match="must equal"):
        si.tl.scjmt(m, 3, n_shared=2, n_rna_only=2, **FAST)
    with pytest.raises(ValueError, match="init='kmeans' is not supported"):
        si.tl.scjmt(m, 3, init="kmeans", **FAST)
    with pytest.raises(ValueError, match="smooth='median' is not supported"):
        si.tl.scjmt(m, 3, smooth="median", **FAST)
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


def test_activity_term_is_on_by_default_and_uses_binarised_gene_activity():
    """weights["activity"] (default 1) adds the ATAC cells' binarised gene activity, R_bin Aᵀ
    != 0; 0 gives the paper's objective."""
    from scintegrate.tl._scjmt import _activity_scores

    m = _data(1, n_rna=50, n_atac=50, n_genes=30)
    R = sp.csr_matrix(m["atac"].X)
    A = sp.csr_matrix(m["atac"].varm["gene_activity"].T)  # genes x regions
    P = _activity_scores(R, A, binarise=True)
    expected = ((R.sign() @ A.T).toarray() != 0).astype(float)
    np.testing.assert_array_equal(P.toarray(), expected)
    assert (R != sp.csr_matrix(m["atac"].X)).nnz == 0  # the input is not modified
    off = si.tl.scjmt(m, 3, **FAST, copy=True, weights={"activity": 0.0})
    on = si.tl.scjmt(m, 3, **FAST, copy=True)
    assert on.uns["scjmt"]["params"]["weights"]["activity"] == 1.0
    assert off.uns["scjmt"]["terms"]["activity"] == 0.0
    assert off.uns["scjmt"]["params"]["weights"]["activity"] == 0.0
    assert 0 < on.uns["scjmt"]["terms"]["activity"] < 2
    assert (on.uns["scjmt"]["history"]["activity"] > 0).all()
    assert not np.allclose(on.obsm["X_scjmt"], off.obsm["X_scjmt"])


def test_preprocess_scales_every_gene_to_its_maximum_and_leaves_the_input_alone():
    """RNA: median library size, log1p, each gene divided by its maximum (a slow dense
    reference); ATAC: binarised; sparse in, sparse out, the caller's matrix untouched."""
    from scintegrate.tl._scjmt import _preprocess

    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.5, 2.0, size=(40, 12)))
    counts[:, 3] = 0  # an empty gene stays empty
    counts[5] = 0  # an empty cell too
    X = sp.csr_matrix(counts.astype(np.float32))
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    totals = counts.sum(1)
    target = np.median(totals[totals > 0])
    dense = np.log1p(
        counts * np.divide(target, totals, out=np.zeros(40), where=totals > 0)[:, None]
    )
    expected = dense / np.where(dense.max(0) > 0, dense.max(0), 1.0)
    got = _preprocess(X, "rna")
    assert sp.issparse(got)
    np.testing.assert_allclose(got.toarray(), expected, rtol=1e-12)
    np.testing.assert_allclose(got.toarray().max(0), (counts.sum(0) > 0).astype(float))
    np.testing.assert_array_equal(_preprocess(X, "atac").toarray(), (counts > 0).astype(float))
    for kept, now in zip(before, (X.data, X.indices, X.indptr), strict=True):
        np.testing.assert_array_equal(kept, now)
