"""MuData input of the iNMF tools and plots: each modality a dataset, the same factors as the
concatenated AnnData, slots on the modalities and the container."""

from __future__ import annotations

import warnings

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
from _public_calls import cortex

import scintegrate as si

warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")


def _unpaired():
    """Two disjoint halves of the real cortex subset as 'rna' and 'atac' (names made distinct)."""
    cells = cortex()
    rna, atac = cells[::2].copy(), cells[1::2].copy()  # each holds both libraries
    atac.obs_names = [f"{n}-atac" for n in atac.obs_names]
    atac = atac[:, atac.var_names[::-1]].copy()  # another feature order: matched by name
    return rna, atac


def _pair():
    rna, atac = _unpaired()
    mdata = mudata.MuData({"rna": rna.copy(), "atac": atac.copy()})
    both = ad.concat({"rna": rna, "atac": atac[:, rna.var_names]}, label="modality")
    return mdata, both


@pytest.mark.parametrize("tool", ["inmf", "online_inmf"])
def test_mudata_gives_the_factors_of_the_concatenated_anndata(tool):
    mdata, both = _pair()
    kwargs = {"max_iter": 4} if tool == "inmf" else {"max_epochs": 2, "batch_size": 40}
    if tool == "inmf":
        for name in mdata.mod:
            si.pp.liger_preprocess(mdata[name], batch_key="library", var_thresh=0.0)
        si.pp.liger_preprocess(both, batch_key="library", var_thresh=0.0)
        # the same scaled values and gene mask in both inputs
        for name, rows in (("rna", slice(0, 60)), ("atac", slice(60, 120))):
            mod = mdata[name][:, both.var_names]
            both.layers["liger_scaled"][rows] = mod.layers["liger_scaled"]
        both.var["liger_highly_variable"] = np.logical_or(
            mdata["rna"].var["liger_highly_variable"].to_numpy(),
            mdata["atac"][:, both.var_names].var["liger_highly_variable"].to_numpy(),
        )
    else:
        kwargs["preprocess"] = True
    run = getattr(si.tl, tool)
    run(mdata, 3, **kwargs)
    run(both, 3, batch_key="modality", **kwargs)
    np.testing.assert_array_equal(mdata["rna"].obsm["X_inmf"], both.obsm["X_inmf"][:60])
    np.testing.assert_array_equal(mdata["atac"].obsm["X_inmf"], both.obsm["X_inmf"][60:])
    np.testing.assert_array_equal(mdata.obsm["X_inmf"], both.obsm["X_inmf"])
    # loadings on each modality's own features, matched by name
    atac_W = mdata["atac"].varm["inmf_W"]
    order = mdata["atac"].var_names.get_indexer(both.var_names)
    np.testing.assert_array_equal(atac_W[order], both.varm["inmf_W"])
    assert list(mdata.uns["inmf"]["batches"]) == list(both.uns["inmf"]["batches"])
    slots = set(mdata.uns["inmf"]["slots"])
    assert {"obsm:X_inmf", "mod:rna:varm:inmf_V", "mod:atac:obsm:X_inmf"} <= slots


def test_quantile_norm_and_round_trip(tmp_path):
    mdata, both = _pair()
    si.tl.online_inmf(mdata, 3, preprocess=True, max_epochs=1, batch_size=40)
    si.tl.online_inmf(both, 3, batch_key="modality", preprocess=True, max_epochs=1, batch_size=40)
    before = mdata["rna"].X.copy()
    out = si.pp.quantile_norm(mdata, min_cells=5, n_neighbors=5, copy=True)
    assert "X_inmf_qn" not in mdata.obsm  # copy=True left the input alone
    si.pp.quantile_norm(both, batch_key="modality", min_cells=5, n_neighbors=5)
    np.testing.assert_array_equal(out.obsm["X_inmf_qn"], both.obsm["X_inmf_qn"])
    assert list(out.obs["inmf_qn_clusters"].astype(str)) == list(
        both.obs["inmf_qn_clusters"].astype(str)
    )
    assert (out["rna"].X != before).nnz == 0
    path = tmp_path / "m.h5mu"
    out.write_h5mu(path)
    back = mudata.read_h5mu(path)
    np.testing.assert_array_equal(back["atac"].obsm["X_inmf_qn"], out["atac"].obsm["X_inmf_qn"])
    assert back.uns["inmf_qn"]["params"]["reference"] == out.uns["inmf_qn"]["params"]["reference"]
    # a second call with the same key replaces every slot of the first
    si.pp.quantile_norm(out, use_rep="X_inmf", min_cells=5, n_neighbors=5, use_dims=[0, 1])
    assert out.uns["inmf_qn"]["params"]["use_dims"].tolist() == [0, 1]


def test_batch_key_splits_modalities_and_paired_cells_stay_per_modality():
    rna, atac = _unpaired()
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    si.tl.online_inmf(mdata, 2, batch_key="library", preprocess=True, max_epochs=1)
    assert all(":" in b for b in mdata.uns["inmf"]["batches"])
    assert len(mdata.uns["inmf"]["batches"]) == 4
    paired = mudata.MuData({"rna": rna.copy(), "protein": rna.copy()})
    si.tl.online_inmf(paired, 2, preprocess=True, max_epochs=1)
    assert "X_inmf" not in paired.obsm and "X_inmf" in paired["protein"].obsm


def test_mudata_errors():
    rna, atac = _unpaired()
    other = atac.copy()
    other.var_names = [f"peak{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="share no features"):
        si.tl.online_inmf(mudata.MuData({"rna": rna, "atac": other}), 2, preprocess=True)
    mdata = mudata.MuData({"rna": rna.copy(), "atac": atac.copy()})
    mdata["rna"].layers["liger_scaled"] = mdata["rna"].X.copy()
    with pytest.raises(ValueError, match="missing in modalities"):
        si.tl.inmf(mdata, 2)
    with pytest.raises(ValueError, match="no_such"):
        si.tl.inmf(mdata, 2, batch_key="no_such", layer=None)
    with pytest.raises(ValueError, match="X_inmf"):
        si.pp.quantile_norm(mdata)
    assert "inmf" not in mdata.uns
    # an embedding of the container only (as tl.scjmt wrote it before): the error says how to
    # copy it to the modalities, and the copy it shows works
    rng = np.random.default_rng(0)
    mdata.obsm["X_joint"] = rng.uniform(size=(mdata.n_obs, 3))
    with pytest.raises(ValueError, match=r"in mdata\.obsm only") as error:
        si.pp.quantile_norm(mdata, use_rep="X_joint", reference="rna", key_added="joint_qn")
    assert "joint_qn" not in mdata.uns
    assert "get_indexer" in str(error.value)
    for name in ("rna", "atac"):
        rows = mdata.obs_names.get_indexer(mdata[name].obs_names)
        mdata[name].obsm["X_joint"] = mdata.obsm["X_joint"][rows]
    si.pp.quantile_norm(mdata, use_rep="X_joint", reference="rna", key_added="joint_qn")
    assert mdata.obsm["X_joint_qn"].shape == (mdata.n_obs, 3)


def test_joint_plots_of_a_mudata():
    mdata, _ = _pair()
    si.tl.online_inmf(mdata, 3, preprocess=True, max_epochs=1, batch_size=40)
    axes = si.pl.tsne(mdata, "inmf", color=["modality", "rna:cell_type", "cell_type"], show=False)
    assert len(axes) == 3
    assert mdata.obsm["X_inmf_tsne"].shape == (mdata.n_obs, 2)
    assert "modality" not in mdata.obs  # the plot's own column, not written into the container
    with pytest.raises(ValueError, match="X_nope"):
        si.pl.umap(mdata, "nope", color="modality", show=False)


def _uinmf_pair(n_cells: int = 80, n_peaks: int = 60):
    """A real mosaic (RNA; ATAC gene activity + peaks), preprocessed once, and the same data as a
    MuData: 'rna' (the genes) and 'atac' (the genes and its peaks)."""
    from tl.test_uinmf import mosaic_counts

    both, peaks = mosaic_counts(n_cells, n_peaks)
    si.pp.liger_preprocess(both, batch_key="modality")
    si.pp.liger_unshared(both, batch_key="modality", features={"atac": peaks})
    both.var["liger_unshared_highly_variable"] = (both.var["liger_unshared"] == "atac").to_numpy()
    genes = both.var_names[both.var["liger_unshared"].isna()]
    rna = both[(both.obs["modality"] == "rna").to_numpy(), genes].copy()
    atac = both[(both.obs["modality"] == "atac").to_numpy()].copy()
    return mudata.MuData({"rna": rna, "atac": atac}), both, peaks


def test_uinmf_mudata_gives_the_factors_of_the_mosaic(tmp_path):
    mdata, both, peaks = _uinmf_pair()
    before = mdata["atac"].layers["liger_scaled"].copy()
    out = si.tl.uinmf(mdata, 3, max_iter=4, copy=True)
    assert "uinmf" not in mdata.uns  # copy=True left the input alone
    si.tl.uinmf(both, 3, batch_key="modality", max_iter=4)
    np.testing.assert_array_equal(out.obsm["X_uinmf"], both.obsm["X_uinmf"])
    np.testing.assert_array_equal(out["atac"].obsm["X_uinmf"], both.obsm["X_uinmf"][80:])
    atac_vars = out["atac"].var_names
    for part in ("W", "V", "U"):
        np.testing.assert_array_equal(
            out["atac"].varm[f"uinmf_{part}"], both[:, atac_vars].varm[f"uinmf_{part}"]
        )
    np.testing.assert_array_equal(
        out["rna"].varm["uinmf_W"], both[:, out["rna"].var_names].varm["uinmf_W"]
    )
    assert not out["rna"].varm["uinmf_U"].any()  # the RNA has no unshared features
    assert out.uns["uinmf"]["n_unshared"].tolist() == both.uns["uinmf"]["n_unshared"].tolist()
    assert out.uns["uinmf"]["params"]["unshared"] == "liger_unshared"
    assert (out["atac"].layers["liger_scaled"] != before).nnz == 0
    # a boolean column, or a mapping of modalities to features, gives the same factors
    other = mdata.copy()
    other["atac"].var["peak"] = other["atac"].var_names.isin(peaks)
    si.tl.uinmf(other, 3, max_iter=4, unshared="peak")
    np.testing.assert_array_equal(other.obsm["X_uinmf"], both.obsm["X_uinmf"])
    si.tl.uinmf(other, 3, max_iter=4, unshared={"atac": list(peaks)}, mask_unshared=None)
    np.testing.assert_array_equal(other.obsm["X_uinmf"], both.obsm["X_uinmf"])
    path = tmp_path / "u.h5mu"
    out.write_h5mu(path)
    back = mudata.read_h5mu(path)
    np.testing.assert_array_equal(back["atac"].varm["uinmf_U"], out["atac"].varm["uinmf_U"])
    assert back.uns["uinmf"]["params"]["mask_unshared"] == "liger_unshared_highly_variable"


def test_uinmf_mudata_errors():
    mdata, _, peaks = _uinmf_pair(40, 20)
    with pytest.raises(ValueError, match="neither a modality nor a dataset"):
        si.tl.uinmf(mdata, 2, unshared={"protein": list(peaks)})
    with pytest.raises(ValueError, match="every modality has it"):
        si.tl.uinmf(mdata, 2, unshared={"atac": [mdata["rna"].var_names[0]]})
    with pytest.raises(ValueError, match=r"not in mdata\['rna'\].var_names"):
        si.tl.uinmf(mdata, 2, unshared={"rna": list(peaks[:2])})
    with pytest.raises(ValueError, match="not a var column of any modality"):
        si.tl.uinmf(mdata, 2, unshared="no_such")
    with pytest.raises(ValueError, match="a mask cannot span"):
        si.tl.uinmf(mdata, 2, mask_var=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="holds 11 datasets"):
        si.tl.uinmf(mdata, 2, batch_key="library", unshared={"atac": list(peaks)})
    negative = mdata.copy()
    negative["atac"].layers["liger_scaled"] = -negative["atac"].layers["liger_scaled"]
    with pytest.raises(ValueError, match="non-negative"):
        si.tl.uinmf(negative, 2)
    unrelated = mdata.copy()
    unrelated["rna"].var_names = [f"g{i}" for i in range(unrelated["rna"].n_vars)]
    with pytest.raises(ValueError, match="share no features"):
        si.tl.uinmf(unrelated, 2)
    with pytest.raises(ValueError, match="fewer than n_components"):
        si.tl.uinmf(mdata, 41)
    assert "uinmf" not in mdata.uns and "X_uinmf" not in mdata["rna"].obsm


def test_centroid_align_mudata_and_round_trip(tmp_path):
    mdata, both = _pair()
    si.tl.online_inmf(mdata, 3, preprocess=True, max_epochs=1, batch_size=40)
    si.tl.online_inmf(both, 3, batch_key="modality", preprocess=True, max_epochs=1, batch_size=40)
    out = si.pp.centroid_align(mdata, reference="atac", copy=True)
    assert "X_inmf_ca" not in mdata.obsm
    si.pp.centroid_align(both, batch_key="modality", reference="atac")
    np.testing.assert_array_equal(out.obsm["X_inmf_ca"], both.obsm["X_inmf_ca"])
    np.testing.assert_array_equal(out["rna"].obsm["X_inmf_ca"], both.obsm["X_inmf_ca"][:60])
    np.testing.assert_array_equal(out.uns["inmf_ca"]["offsets"], both.uns["inmf_ca"]["offsets"])
    assert list(out.obs["inmf_ca_clusters"].astype(str)) == list(
        both.obs["inmf_ca_clusters"].astype(str)
    )
    path = tmp_path / "c.h5mu"
    out.write_h5mu(path)
    back = mudata.read_h5mu(path)
    np.testing.assert_array_equal(back.obsm["X_inmf_ca"], out.obsm["X_inmf_ca"])
    assert back.uns["inmf_ca"]["params"]["reference"] == "atac"
    with pytest.raises(ValueError, match="protein"):
        si.pp.centroid_align(mdata, reference="protein")
    with pytest.raises(ValueError, match="X_nope"):
        si.pp.centroid_align(mdata, use_rep="X_nope")
    with pytest.raises(ValueError, match="batch_key must name"):
        si.pp.centroid_align(both)
    assert "inmf_ca" not in mdata.uns


def test_factor_markers_mudata_and_round_trip(tmp_path):
    mdata, both = _pair()
    si.tl.online_inmf(mdata, 3, preprocess=True, max_epochs=1, batch_size=40)
    si.tl.online_inmf(both, 3, batch_key="modality", preprocess=True, max_epochs=1, batch_size=40)
    before = mdata["rna"].X.copy()
    kwargs = {"factor_share_thresh": None, "logfc_thresh": 0.1, "pval_thresh": 0.5}
    out = si.tl.factor_markers(mdata, copy=True, **kwargs)
    assert "inmf_markers" not in mdata.uns
    si.tl.factor_markers(both, **kwargs)
    mine, theirs = out.uns["inmf_markers"], both.uns["inmf_markers"]
    for table in ("shared", "specific"):
        assert len(theirs[table]) > 0
        pd.testing.assert_frame_equal(mine[table], theirs[table])
    np.testing.assert_array_equal(mine["specificity"], theirs["specificity"])
    assert list(out.obs["inmf_markers_clusters"].astype(str)) == list(
        both.obs["inmf_markers_clusters"].astype(str)
    )
    assert "inmf_markers_clusters" in out["atac"].obs
    assert (out["rna"].X != before).nnz == 0
    path = tmp_path / "f.h5mu"
    out.write_h5mu(path)
    back = mudata.read_h5mu(path)
    pd.testing.assert_frame_equal(
        back.uns["inmf_markers"]["shared"], out.uns["inmf_markers"]["shared"]
    )
    with pytest.raises(ValueError, match="no record 'nope'"):
        si.tl.factor_markers(mdata, "nope")
    with pytest.raises(ValueError, match="protein"):
        si.tl.factor_markers(mdata, datasets=["rna", "protein"])
    assert "inmf_markers" not in mdata.uns
