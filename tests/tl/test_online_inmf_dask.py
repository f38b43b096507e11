"""tl.online_inmf on zarr stores, Dask-backed AnnData and a Dask cluster (2 worker processes).

The cluster is started once for the module (a LocalCluster takes seconds to start); the data is
three SNARE-seq libraries written as h5ad and zarr. The statistics pass is split into blocks of
256 cells here so that even these small datasets make several tasks per pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import anndata as ad
import numpy as np
import pytest
import zarr

import scintegrate as si
from scintegrate._core._row_sources import StoredRows
from scintegrate._utils import _row_inputs

distributed = pytest.importorskip("distributed")

K = 5
LIBRARIES = ["09A", "09B", "09C"]
SETTINGS = {"batch_size": 400, "max_epochs": 1, "chunk_size": 50}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        c.run(__import__, "scintegrate._core.online_inmf")  # the workers' imports, once
        yield c
    cluster.close()


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    monkeypatch.setattr(_row_inputs, "_STATS_BLOCK", 256)


@pytest.fixture(scope="module")
def stores(cortex, tmp_path_factory):
    """Each library as h5ad and as zarr (raw counts, CSR)."""
    folder = tmp_path_factory.mktemp("stores")
    h5ad, zarrs = {}, {}
    for name in LIBRARIES:
        part = cortex[cortex.obs["library"] == name].copy()
        part.obs["library"] = part.obs["library"].astype(str)
        h5ad[name] = str(folder / f"{name}.h5ad")
        zarrs[name] = str(folder / f"{name}.zarr")
        part.write_h5ad(h5ad[name], compression="gzip")
        with warnings.catch_warnings():  # anndata 0.12 announces its change to zarr v3
            warnings.filterwarnings("ignore", "Writing zarr v2", UserWarning)
            part.write_zarr(zarrs[name])
    return h5ad, zarrs


def _lazy(path: str) -> ad.AnnData:
    """An AnnData whose .X is a Dask array of CSR chunks read lazily from a zarr store."""
    from anndata.experimental import read_elem_lazy
    from anndata.io import read_elem

    group = zarr.open_group(path, mode="r")
    X = read_elem_lazy(group["X"], chunks=(300, -1))
    return ad.AnnData(X=X, obs=read_elem(group["obs"]), var=read_elem(group["var"]))


def test_inputs_zarr_and_dask_arrays_match_h5ad(stores):
    h5ad, zarrs = stores
    by_h5ad, model = si.tl.online_inmf(h5ad, K, **SETTINGS, client=False, return_model=True)
    by_zarr = si.tl.online_inmf(zarrs, K, **SETTINGS, client=False)
    groups = {n: zarr.open_group(p, mode="r") for n, p in zarrs.items()}
    by_group = si.tl.online_inmf(groups, K, **SETTINGS, client=False)
    by_dask = si.tl.online_inmf({n: _lazy(p) for n, p in zarrs.items()}, K, **SETTINGS)
    for other in (by_zarr, by_group, by_dask):
        assert list(other.var_names) == list(by_h5ad.var_names)
        np.testing.assert_array_equal(other.obsm["X_inmf"], by_h5ad.obsm["X_inmf"])
        np.testing.assert_array_equal(other.obs_names, by_h5ad.obs_names)
    assert list(by_zarr.obs["dataset"].cat.categories) == LIBRARIES
    assert "cell_type" in by_group.obs  # obs read from the zarr group
    # a single Dask-backed AnnData split by batch_key, results written into it
    single = ad.concat([_lazy(zarrs[n]) for n in LIBRARIES])
    single.obs_names_make_unique()
    si.tl.online_inmf(single, K, batch_key="library", **SETTINGS)
    np.testing.assert_array_equal(single.obsm["X_inmf"], by_h5ad.obsm["X_inmf"])
    # projection of a zarr store and of a Dask array
    np.testing.assert_array_equal(
        model.transform(zarrs["09A"], dataset="09A"), model.transform(h5ad["09A"], dataset="09A")
    )
    np.testing.assert_array_equal(
        model.transform(_lazy(zarrs["09B"])), model.transform(h5ad["09B"])
    )


def test_zarr_errors(stores, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        si.tl.online_inmf([str(tmp_path / "missing.zarr"), stores[1]["09A"]], K)
    dense = ad.AnnData(np.ones((20, 10), dtype=np.float32))
    dense.write_zarr(tmp_path / "dense.zarr")
    with pytest.raises(ValueError, match="dense array"):
        si.tl.online_inmf([str(tmp_path / "dense.zarr"), stores[1]["09A"]], K)


def test_cluster_matches_one_process(stores, client):
    h5ad, zarrs = stores
    alone, m_alone = si.tl.online_inmf(h5ad, K, **SETTINGS, client=False, return_model=True)
    assert alone.uns["inmf"]["params"]["dask_workers"] == 0
    on_cluster, m_cluster = si.tl.online_inmf(
        zarrs, K, **SETTINGS, client=client, return_model=True
    )
    assert on_cluster.uns["inmf"]["params"]["dask_workers"] == 2
    # statistics and genes: exactly the same numbers
    assert list(on_cluster.var_names) == list(alone.var_names)
    for name in LIBRARIES:
        np.testing.assert_array_equal(m_cluster._scaling[name], m_alone._scaling[name])
    dataset = _row_inputs._from_path(zarrs["09B"], "09B", None)
    single = _row_inputs.streaming_stats(dataset)
    spread = _row_inputs.streaming_stats(dataset, client)
    for key, value in single.items():
        np.testing.assert_array_equal(spread[key], value)
    # training ran here on the same data: the same factors; every cell's factors to tolerance
    np.testing.assert_array_equal(m_cluster.W, m_alone.W)
    np.testing.assert_allclose(
        on_cluster.obsm["X_inmf"], alone.obsm["X_inmf"], rtol=1e-9, atol=1e-12
    )
    assert on_cluster.uns["inmf"]["objective"] == pytest.approx(
        alone.uns["inmf"]["objective"], rel=1e-12
    )
    # the active client is used by default; projections of a Dask-backed AnnData on it
    lazy = _lazy(zarrs["09C"])
    np.testing.assert_allclose(
        m_alone.transform(lazy, dataset="09C"),
        m_alone.transform(h5ad["09C"], dataset="09C", client=False),
        rtol=1e-9,
        atol=1e-12,
    )
    assert m_alone.objective(lazy) == pytest.approx(
        m_alone.objective(lazy, client=False), rel=1e-12
    )


def test_killed_worker_does_not_lose_the_run(stores, client, tmp_path, monkeypatch):
    from _dask_helpers import DiesOnce  # tests/ is on the workers' path too

    h5ad, _ = stores
    expected = si.tl.online_inmf(h5ad, K, **SETTINGS, client=False)
    marker = str(tmp_path / "killed")
    portable = StoredRows.portable
    monkeypatch.setattr(
        StoredRows, "portable", lambda self, a, b: DiesOnce(portable(self, a, b), marker)
    )
    result = si.tl.online_inmf(h5ad, K, **SETTINGS, client=client)
    assert os.path.exists(marker)  # a worker did die, and its task was run again
    assert list(result.var_names) == list(expected.var_names)
    np.testing.assert_allclose(
        result.obsm["X_inmf"], expected.obsm["X_inmf"], rtol=1e-9, atol=1e-12
    )


def test_no_dask_cluster_code_without_a_client(stores):
    """Without a client, distributed (the cluster code) is not imported; anndata itself imports
    dask.array whenever dask is installed, so that one is not checked."""
    code = (
        "import sys, scintegrate as si\n"
        "si.settings.progress_bar = False\n"
        f"si.tl.online_inmf({list(stores[0].values())!r}, 3, batch_size=400, max_epochs=1)\n"
        "print(sorted(m for m in ('distributed',) if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
