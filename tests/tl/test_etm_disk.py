"""tl.etm and ETMModel.transform on data on disk (backed AnnData, h5ad paths)."""

from __future__ import annotations

import hashlib
import itertools

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from _data import cortex_three_libraries
from anndata import AnnData, read_h5ad

import scintegrate as si
from scintegrate._core.etm import epoch_plan

SMALL = {"emb_dim": 16, "hidden_sizes": (32,), "max_epochs": 3}
# 600 cells: 6 steps per epoch over windows of 5 chunks of 40 cells, mini-batches straddling them
WINDOWS = {"batch_size": 100, "chunk_size": 40, "shuffle_buffer": 200}


@pytest.fixture(scope="module")
def cortex():
    """600 SNARE-seq cortex cells from 3 libraries, the 300 genes with most counts."""
    return cortex_three_libraries(
        si.datasets.snareseq_cortex_rna(), n_cells=600, n_genes=300, seed=1
    )


@pytest.fixture
def cortex_file(cortex, tmp_path):
    path = tmp_path / "cortex.h5ad"
    cortex.write_h5ad(path)
    return path


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_epoch_plan_shuffles_by_chunk():
    rng = np.random.default_rng(0)
    order, bounds = epoch_plan(1000, 30, 200, rng)
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    assert bounds[0] == 0 and bounds[-1] == 1000 and len(bounds) == 1 + -(-34 // 6)
    for a, b in itertools.pairwise(bounds):
        chunks = np.unique(order[a:b] // 30)
        assert len(chunks) <= 6  # a window holds whole chunks
        rows = np.sort(order[a:b])
        expected = np.concatenate([np.arange(c * 30, min(c * 30 + 30, 1000)) for c in chunks])
        np.testing.assert_array_equal(rows, expected)
    assert not np.array_equal(order[:200], np.sort(order[:200]))  # shuffled within windows
    # one window: the plain permutation (the order of earlier versions)
    single, bounds = epoch_plan(150, 30, 200, np.random.default_rng(4))
    np.testing.assert_array_equal(single, np.random.default_rng(4).permutation(150))
    np.testing.assert_array_equal(bounds, [0, 150])


@pytest.mark.parametrize("windows", [WINDOWS, {"batch_size": 1000}])  # mini-batches, full batch
def test_backed_and_path_give_the_in_memory_result(cortex, cortex_file, windows):
    kwargs = {"batch_key": "library", "random_state": 3, **SMALL, **windows}
    memory = cortex.copy()
    X_before = memory.X.copy()
    model = si.tl.etm(memory, 4, return_model=True, **kwargs)
    assert (memory.X != X_before).nnz == 0
    digest = _digest(cortex_file)
    backed = read_h5ad(cortex_file, backed="r")
    out = si.tl.etm(backed, 4, copy=True, **kwargs)
    from_path = si.tl.etm(cortex_file, 4, **kwargs)
    backed.file.close()
    assert _digest(cortex_file) == digest  # the file is untouched
    for result in (out, from_path):
        assert isinstance(result, AnnData) and result.n_obs == cortex.n_obs
        assert list(result.obs_names) == list(cortex.obs_names)
        np.testing.assert_allclose(result.obsm["X_etm"], memory.obsm["X_etm"], atol=1e-10)
        np.testing.assert_allclose(result.obsm["etm_delta"], memory.obsm["etm_delta"], atol=1e-8)
        np.testing.assert_allclose(result.varm["etm_beta"], memory.varm["etm_beta"], atol=1e-10)
        params = result.uns["etm"]["params"]
        assert (
            params["from_disk"]
            and params["chunk_size"] == memory.uns["etm"]["params"]["chunk_size"]
        )
    assert not memory.uns["etm"]["params"]["from_disk"]
    # the model embeds a file in chunks, as it embeds the cells in memory
    np.testing.assert_allclose(
        model.transform(cortex_file, batch_size=64), memory.obsm["X_etm"], atol=1e-10
    )
    assert _digest(cortex_file) == digest


def test_other_seed_other_order(cortex_file):
    a = si.tl.etm(cortex_file, 3, random_state=0, **SMALL, **WINDOWS)
    b = si.tl.etm(cortex_file, 3, random_state=1, **SMALL, **WINDOWS)
    assert not np.allclose(a.obsm["X_etm"], b.obsm["X_etm"])


def test_transform_matches_genes_by_name_from_disk(cortex, tmp_path):
    model = si.tl.etm(cortex.copy(), 3, batch_key="library", return_model=True, **SMALL)
    expected = model.transform(cortex)
    # the file has the genes in another order, and more of them
    extra = AnnData(sp.csr_matrix(np.ones((cortex.n_obs, 2))), obs=cortex.obs)
    extra.var_names = ["extra1", "extra2"]
    shuffled = cortex[:, np.random.default_rng(0).permutation(cortex.n_vars)].copy()
    wider = AnnData(
        sp.hstack([extra.X, shuffled.X], format="csr"),
        obs=cortex.obs,
        var={"name": [*extra.var_names, *shuffled.var_names]},
    )
    wider.var_names = wider.var["name"].astype(str)
    path = tmp_path / "wider.h5ad"
    wider.write_h5ad(path)
    np.testing.assert_allclose(model.transform(path, batch_size=50), expected, atol=1e-10)
    backed = read_h5ad(path, backed="r")
    np.testing.assert_allclose(model.transform(backed, batch_size=50), expected, atol=1e-10)
    backed.file.close()


def test_backed_read_write_writes_the_file(cortex, cortex_file):
    backed = read_h5ad(cortex_file, backed="r+")
    assert si.tl.etm(backed, 3, **SMALL) is None
    assert backed.obsm["X_etm"].shape == (cortex.n_obs, 3)
    backed.file.close()
    back = read_h5ad(cortex_file)
    np.testing.assert_array_equal(back.obsm["X_etm"], backed.obsm["X_etm"])
    assert back.uns["etm"]["params"]["from_disk"]


def test_backed_layer_is_read_from_memory(cortex, tmp_path):
    adata = cortex.copy()
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X * 0.5  # not counts: must not be read
    path = tmp_path / "layer.h5ad"
    adata.write_h5ad(path)
    backed = read_h5ad(path, backed="r")
    out = si.tl.etm(backed, 3, layer="counts", copy=True, **SMALL)
    backed.file.close()
    reference = si.tl.etm(cortex.copy(), 3, copy=True, **SMALL)
    np.testing.assert_allclose(out.obsm["X_etm"], reference.obsm["X_etm"], atol=1e-10)
    from_path = si.tl.etm(path, 3, layer="counts", **SMALL)
    np.testing.assert_allclose(from_path.obsm["X_etm"], reference.obsm["X_etm"], atol=1e-10)


def _write(tmp_path, X, name="bad.h5ad", **kwargs):
    adata = AnnData(X, **kwargs)
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


def test_bad_inputs_on_disk(cortex, cortex_file, tmp_path):
    digest = _digest(cortex_file)
    with pytest.raises(ValueError, match="does not exist"):
        si.tl.etm(tmp_path / "missing.h5ad", 3)
    not_hdf5 = tmp_path / "text.h5ad"
    not_hdf5.write_text("not an h5ad file")
    with pytest.raises(ValueError, match="Cannot open"):
        si.tl.etm(not_hdf5, 3)
    with pytest.raises(ValueError, match="has no matrix 'layers/counts'"):
        si.tl.etm(cortex_file, 3, layer="counts")
    with pytest.raises(TypeError, match="or the path of an h5ad file"):
        si.tl.etm(cortex.X, 3)
    with pytest.raises(ValueError, match="opened read-only"):
        backed = read_h5ad(cortex_file, backed="r")
        try:
            si.tl.etm(backed, 3)
        finally:
            backed.file.close()
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        si.tl.etm(cortex_file, 3, chunk_size=0)
    with pytest.raises(ValueError, match="shuffle_buffer must be an integer >= 1"):
        si.tl.etm(cortex_file, 3, shuffle_buffer=0)
    with pytest.raises(ValueError, match="batch_key='nope' is not a column"):
        si.tl.etm(cortex_file, 3, batch_key="nope")
    assert _digest(cortex_file) == digest
    X = sp.csr_matrix(np.random.default_rng(0).poisson(2.0, (20, 8)) + 1.0)
    dense = _write(tmp_path, X.toarray(), "dense.h5ad")
    with pytest.raises(ValueError, match="is a dense array; scETM reads counts on disk as a CSR"):
        si.tl.etm(dense, 2)
    with pytest.raises(ValueError, match="non-integer values"):
        si.tl.etm(_write(tmp_path, X * 0.5), 2)
    with pytest.raises(ValueError, match="negative values"):
        si.tl.etm(_write(tmp_path, -X), 2)
    empty = X.toarray()
    empty[7] = 0
    with pytest.raises(ValueError, match="1 cells with zero counts"):
        si.tl.etm(_write(tmp_path, sp.csr_matrix(empty)), 2)
    with h5py.File(tmp_path / "broken.h5ad", "w") as f:
        f.create_group("X").attrs["encoding-type"] = "csr_matrix"
    with pytest.raises(ValueError, match="incomplete"):
        si.tl.etm(tmp_path / "broken.h5ad", 2)


def test_zarr_stores_and_dask_matrices_give_the_in_memory_result(cortex, tmp_path):
    import anndata as ad
    import zarr

    kwargs = {"batch_key": "library", "random_state": 2, **SMALL, **WINDOWS}
    memory = cortex.copy()
    model = si.tl.etm(memory, 3, return_model=True, **kwargs)
    store = tmp_path / "cortex.zarr"
    cortex.write_zarr(store)
    group = zarr.open_group(str(store), mode="r")
    lazy = AnnData(X=ad.experimental.read_elem_lazy(group["X"]), obs=cortex.obs, var=cortex.var)
    for data in (store, group, lazy):
        out = si.tl.etm(data, 3, **kwargs)
        out = lazy if out is None else out
        assert out.uns["etm"]["params"]["from_disk"]
        np.testing.assert_allclose(out.obsm["X_etm"], memory.obsm["X_etm"], atol=1e-10)
        np.testing.assert_allclose(
            model.transform(data, batch_size=128), memory.obsm["X_etm"], atol=1e-10
        )
    assert "X_etm" not in cortex.obsm
