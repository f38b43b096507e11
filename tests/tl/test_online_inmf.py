"""tl.online_inmf on h5ad files and backed AnnData, continued with init=, projected, resumed."""

from __future__ import annotations

import os

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scintegrate as si

K = 6
LIBRARIES = ["09A", "09B", "09C"]


@pytest.fixture(scope="module")
def counts(cortex):
    """Raw counts of three SNARE-seq libraries, cells grouped by library."""
    adata = cortex[cortex.obs["library"].isin(LIBRARIES)].copy()
    order = np.argsort(adata.obs["library"].to_numpy(), kind="stable")
    adata = adata[order].copy()
    adata.obs["library"] = adata.obs["library"].astype(str)
    return adata


@pytest.fixture(scope="module")
def genes(counts):
    scaled = counts.copy()
    si.pp.liger_preprocess(scaled, batch_key="library")
    return list(scaled.var_names[scaled.var["liger_highly_variable"]])


@pytest.fixture(scope="module")
def files(counts, tmp_path_factory):
    """One compressed, chunked h5ad per library (as large files are written)."""
    folder = tmp_path_factory.mktemp("libraries")
    paths = []
    for name in LIBRARIES:
        part = counts[counts.obs["library"] == name].copy()
        path = folder / f"{name}.h5ad"
        part.write_h5ad(path, compression="gzip")
        paths.append(str(path))
    return paths


def fit(data, genes, **kwargs):
    kwargs = {"batch_size": 600, "max_epochs": 2, "chunk_size": 1, "mask_var": genes, **kwargs}
    return si.tl.online_inmf(data, K, **kwargs)


def test_files_match_in_memory_preprocessing(counts, files, genes):
    scaled = counts.copy()
    si.pp.liger_preprocess(scaled, batch_key="library")
    mask = scaled.var_names.isin(genes)
    si.tl.online_inmf(scaled, K, batch_key="library", mask_var=mask, batch_size=600, max_epochs=2)
    result = fit(files, genes)
    assert list(result.obs["dataset"].cat.categories) == LIBRARIES
    assert list(result.var_names) == genes
    np.testing.assert_array_equal(result.obs_names, counts.obs_names)
    np.testing.assert_allclose(result.obsm["X_inmf"], scaled.obsm["X_inmf"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        result.varm["inmf_W"], scaled.varm["inmf_W"][mask], rtol=1e-5, atol=1e-6
    )
    assert result.uns["inmf"]["objective"] == pytest.approx(scaled.uns["inmf"]["objective"])
    # the per-mini-batch scaling equals LIGER's on the in-memory layer
    assert "cell_type" in result.obs  # the files' obs are kept


def test_chunked_reads_and_backed_input(counts, files, genes, tmp_path):
    by_path = fit(files, genes, chunk_size=100)
    backed = [ad.read_h5ad(path, backed="r") for path in files]
    by_backed = fit(dict(zip(LIBRARIES, backed, strict=True)), genes, chunk_size=100)
    np.testing.assert_array_equal(by_path.obsm["X_inmf"], by_backed.obsm["X_inmf"])
    # chunk-shuffled order: a different run of the same model, of similar quality
    full = fit(files, genes)
    assert by_path.uns["inmf"]["objective"] == pytest.approx(
        full.uns["inmf"]["objective"], rel=0.05
    )
    for a in backed:
        a.file.close()


def test_backed_single_anndata(counts, genes, tmp_path):
    path = tmp_path / "all.h5ad"
    counts.write_h5ad(path)
    read_only = ad.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match="read-only"):
        fit(read_only, genes, batch_key="library")
    result = fit(read_only, genes, batch_key="library", copy=True)
    assert result.n_obs == counts.n_obs and "X_inmf" in result.obsm
    read_only.file.close()

    writable = ad.read_h5ad(path, backed="r+")
    assert fit(writable, genes, batch_key="library") is None
    np.testing.assert_array_equal(writable.obsm["X_inmf"], result.obsm["X_inmf"])
    writable.file.close()
    back = ad.read_h5ad(path)  # the results were written into the file; the counts untouched
    np.testing.assert_array_equal(back.obsm["X_inmf"], result.obsm["X_inmf"])
    assert back.uns["inmf"]["params"]["n_components"] == K
    assert (back.X != counts.X).nnz == 0


def test_write_scaled(files, genes, tmp_path):
    on_the_fly = fit(files, genes)
    written = fit(files, genes, write_scaled=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == [
        f"{n}.liger_scaled.h5" for n in LIBRARIES
    ]
    # stored as float32: the same fit up to single precision
    np.testing.assert_allclose(
        written.varm["inmf_W"], on_the_fly.varm["inmf_W"], rtol=1e-3, atol=1e-4
    )
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="Cannot write"):
            fit(files, genes, write_scaled=locked)
    with pytest.raises(ValueError, match="not an existing directory"):
        fit(files, genes, write_scaled=tmp_path / "missing")


def test_continue_with_new_dataset(files, genes, counts, tmp_path):
    first, model = fit(files[:2], genes, return_model=True)
    W_before, V_before = model.W, model.V
    steps_before = len(model.history)
    model.save(tmp_path / "model.h5")
    # scenario 2 through tl.online_inmf(init=) and through partial_fit: the same
    third = si.tl.online_inmf(files[2], init=tmp_path / "model.h5", batch_size=600, chunk_size=1)
    model.partial_fit(files[2])
    np.testing.assert_array_equal(third.varm["inmf_W"], model.W)
    assert model.datasets == LIBRARIES
    assert model.epochs == {"09A": 2, "09B": 2, "09C": 1}
    for name in LIBRARIES[:2]:  # earlier datasets keep their V_i
        np.testing.assert_array_equal(model.V[name], V_before[name])
    assert not np.allclose(model.W, W_before)
    history = model.history
    assert len(history) > steps_before and (history["delta_W"].iloc[steps_before:] > 0).all()
    assert third.uns["inmf"]["params"]["continued"]
    # scenario 3: cells solved with the model fixed
    H = model.transform(files[2], dataset="09C")
    np.testing.assert_allclose(H, third.obsm["X_inmf"])
    W_now = model.W
    projected = model.transform(ad.read_h5ad(files[0]))
    assert projected.shape == (first.n_obs - (counts.obs["library"] == "09B").sum(), K)
    np.testing.assert_array_equal(model.W, W_now)


def test_resume_from_saved_model_is_exact(files, genes, tmp_path):
    _, straight = fit(files, genes, max_epochs=4, return_model=True)
    _, first = fit(files, genes, max_epochs=2, return_model=True)
    first.save(tmp_path / "half.h5")
    resumed = si.tl.OnlineINMFModel.load(tmp_path / "half.h5")
    resumed.partial_fit(files, n_epochs=2)
    # equal up to float rounding: BLAS kernels may round differently with the arrays' memory
    # alignment (seen on an AVX-512 machine: at most 7e-16 apart); a lost state differs by far more
    np.testing.assert_allclose(resumed.W, straight.W, rtol=1e-10, atol=1e-14)
    for name in LIBRARIES:
        np.testing.assert_allclose(resumed.V[name], straight.V[name], rtol=1e-10, atol=1e-14)


def test_genes_matched_by_name(files, genes, counts, tmp_path):
    _, model = fit(files[:2], genes, return_model=True)
    part = counts[counts.obs["library"] == "09C"].copy()
    shuffled = part[:, np.random.default_rng(0).permutation(part.n_vars)].copy()
    np.testing.assert_allclose(model.transform(shuffled), model.transform(part), rtol=1e-9)
    with pytest.raises(ValueError, match=r"lacks 1 of the .* genes the model uses"):
        model.partial_fit({"09C": part[:, [g for g in part.var_names if g != genes[0]]].copy()})


def test_bad_files(files, genes, tmp_path):
    truncated = tmp_path / "truncated.h5ad"
    truncated.write_bytes(open(files[0], "rb").read()[:5000])
    with pytest.raises(ValueError, match="Cannot open"):
        fit([files[1], truncated], genes)
    with pytest.raises(ValueError, match="does not exist"):
        fit([files[1], tmp_path / "nope.h5ad"], genes)
    dense = tmp_path / "dense.h5ad"
    ad.AnnData(np.ones((20, 5), dtype=np.float32)).write_h5ad(dense)
    with pytest.raises(ValueError, match="CSR"):
        fit([files[1], dense], None)
    damaged = tmp_path / "damaged.h5ad"
    ad.read_h5ad(files[0]).write_h5ad(damaged)
    with h5py.File(damaged, "a") as f:
        del f["X/indptr"]
    with pytest.raises(ValueError, match="incomplete"):
        fit([files[1], damaged], genes)
    negative = tmp_path / "negative.h5ad"
    bad = ad.read_h5ad(files[0])
    bad.X = sp.csr_matrix(bad.X)
    bad.X.data[0] = -1
    bad.write_h5ad(negative)
    with pytest.raises(ValueError, match="negative"):
        fit([files[1], negative], genes)
    with pytest.raises(ValueError, match="two or more datasets"):
        fit(files[:1], genes)
    with pytest.raises(ValueError, match="repeat"):
        fit([files[0], files[0]], genes)


def test_in_memory_counts_scaled_on_the_fly(counts, files, genes):
    adata = counts.copy()
    fit(adata, genes, batch_key="library", layer=None, preprocess=True)
    from_files = fit(files, genes)
    np.testing.assert_allclose(
        adata.obsm["X_inmf"], from_files.obsm["X_inmf"], rtol=1e-9, atol=1e-12
    )
    W = adata.varm["inmf_W"][adata.var_names.isin(genes)]
    np.testing.assert_allclose(W, from_files.varm["inmf_W"], rtol=1e-9, atol=1e-12)
    assert (adata.X != counts.X).nnz == 0 and "liger_scaled" not in adata.layers


def test_files_are_closed_after_use(files, genes):
    import gc

    _, model = fit(files[:2], genes, return_model=True)
    model.transform(files[2])
    gc.collect()
    # no handle is left open: every file can be opened for writing again
    for path in files:
        with h5py.File(path, "r+"):
            pass


def test_model_vocabulary(files, genes):
    _, model = fit(files[:2], genes, return_model=True)
    assert isinstance(model.var_names, pd.Index) and list(model.var_names) == genes
    assert model.n_components == K and isinstance(model.history, pd.DataFrame)
    with pytest.warns(FutureWarning, match=r"genes is deprecated; use OnlineINMFModel\.var_names"):
        old = model.genes
    assert old.equals(model.var_names)


def test_model_file_records_the_version_and_refuses_other_files(files, genes, tmp_path):
    _, model = fit(files[:2], genes, return_model=True)
    path = tmp_path / "model.h5"
    model.save(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["scintegrate_version"] == si.__version__
        assert f.attrs["format"] == "scintegrate.online_inmf"

    def copy_with(name, edit):
        target = tmp_path / name
        target.write_bytes(path.read_bytes())
        with h5py.File(target, "a") as f:
            edit(f)
        return target

    # a file written before the version was recorded reads the same
    old = si.tl.OnlineINMFModel.load(
        copy_with("old.h5", lambda f: f.attrs.pop("scintegrate_version"))
    )
    np.testing.assert_array_equal(old.W, model.W)
    assert old.var_names.equals(model.var_names) and old.datasets == model.datasets

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:2000])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1

    def newer(f):
        f.attrs["format_version"] = 2

    cases = [
        (tmp_path / "missing.h5", "Cannot read an online iNMF model"),
        (garbage, "Cannot read an online iNMF model"),
        (truncated, "Cannot read an online iNMF model"),
        (foreign, "not an online iNMF model saved by scintegrate"),
        (files[0], "not an online iNMF model saved by scintegrate"),  # an h5ad file
        (copy_with("newer.h5", newer), "format version 2"),
        (copy_with("no_b.h5", lambda f: f.__delitem__("B")), "incomplete or damaged"),
        (copy_with("no_genes.h5", lambda f: f.__delitem__("genes")), "incomplete or damaged"),
        (copy_with("bad_json.h5", lambda f: f.attrs.__setitem__("names", "[")), "damaged"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            si.tl.OnlineINMFModel.load(bad)
        with pytest.raises(ValueError, match=match):
            si.tl.online_inmf(files[2], init=bad)
    with pytest.raises(ValueError, match="Cannot write the model"):
        model.save(tmp_path / "no_such_folder" / "model.h5")


def test_backed_file_gets_the_second_call(counts, genes, tmp_path):
    path = tmp_path / "all.h5ad"
    counts.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r+")
    fit(backed, genes, batch_key="library")
    backed.file.close()  # reopened in its mode, as anndata does when .X is read
    fit(backed, genes, batch_key="library", random_state=1, max_epochs=1)
    second = backed.obsm["X_inmf"].copy()
    backed.file.close()
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_inmf"], second)
    assert back.uns["inmf"]["params"]["max_epochs"] == 1
    assert set(back.uns["inmf"]["slots"]) == {"obsm:X_inmf", "varm:inmf_W", "varm:inmf_V"}


def test_dense_float16_is_read_as_float32():
    from _public_calls import preprocessed

    half, single = preprocessed(), preprocessed()
    half.layers["liger_scaled"] = half.layers["liger_scaled"].toarray().astype(np.float16)
    single.layers["liger_scaled"] = half.layers["liger_scaled"].astype(np.float32)
    kwargs = {"batch_key": "library", "max_epochs": 1, "copy": True, "return_model": True}
    out_half, model = si.tl.online_inmf(half, 3, **kwargs)
    out_single, _ = si.tl.online_inmf(single, 3, **kwargs)
    np.testing.assert_array_equal(out_half.obsm["X_inmf"], out_single.obsm["X_inmf"])
    np.testing.assert_array_equal(model.transform(half), model.transform(single))
