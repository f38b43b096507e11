"""metrics.scib: the plumbing around scib_metrics' Benchmarker (inputs, arguments, errors).

The values are checked against scib_metrics' own metric functions called directly on the same
embeddings: a small real fixture of 240 SNARE-seq cortex cells from 3 libraries (bundled data).
A first call in a process compiles pynndescent's numba code and the JAX metrics (the cheap-metric
test took 613 s on a shared 2-core machine at load 15, 820 s for the full selection), so the value
tests run with ``-m slow``; the default run checks the arguments and errors (no JAX needed), and
the executed tutorials run metrics.scib end to end (``scib_comparison`` on AnnData,
``scjmt_snareseq`` and ``mmdma_snareseq_celllines`` on a MuData).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import scintegrate as si

N_COMPS = 8  # one embedding width for all: JAX compiles each metric once


@pytest.fixture(scope="module")
def cortex():
    rna = si.datasets.snareseq_cortex_rna()
    rng = np.random.default_rng(0)
    keep = rna.obs["library"].isin(["09A", "09B", "09C"]).to_numpy() & (
        rna.obs["cell_type"].isin(["L2/3", "L4/5", "Oligo", "Astro"]).to_numpy()
    )
    rows = np.sort(rng.choice(np.flatnonzero(keep), 240, replace=False))
    adata = rna[rows].copy()
    adata.obs = adata.obs[["library", "cell_type"]].copy()
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.remove_unused_categories()
    # an "integrated" embedding: PCA of the expression centred within each library
    logn = adata.copy()
    sc.pp.normalize_total(logn, target_sum=1e4)
    sc.pp.log1p(logn)
    X = logn.X.toarray()
    for lib in np.unique(adata.obs["library"]):
        rows = (adata.obs["library"] == lib).to_numpy()
        X[rows] -= X[rows].mean(0)
    centred = ad.AnnData(X)
    sc.pp.pca(centred, n_comps=N_COMPS, random_state=0)
    adata.obsm["X_centred"] = centred.obsm["X_pca"]
    return adata


@pytest.fixture(scope="module")
def table(cortex):
    pytest.importorskip("scib_metrics")
    before = {k: v.copy() for k, v in cortex.obsm.items()}
    result = si.metrics.scib(
        cortex, "X_centred", batch_key="library", labels_key="cell_type", n_comps=N_COMPS
    )
    # nothing written to the user's object: the unintegrated PCA is not stored
    assert set(cortex.obsm) == set(before)
    assert all(np.array_equal(cortex.obsm[k], before[k]) for k in before)
    return result


def direct_scores(X, X_pre, batches, labels, *, cheap=False):
    """The scIB metrics from scib_metrics' functions, with the Benchmarker's neighbours."""
    import scib_metrics as sm
    from scib_metrics.nearest_neighbors import pynndescent

    X = np.asarray(X, dtype=np.float32)
    nn = pynndescent(X, n_neighbors=90, random_state=0, n_jobs=1)
    if cheap:
        return {
            "Silhouette label": sm.silhouette_label(X, labels),
            "cLISI": sm.clisi_knn(nn.subset_neighbors(90), labels),
            "iLISI": sm.ilisi_knn(nn.subset_neighbors(90), batches),
            "Graph connectivity": sm.graph_connectivity(nn.subset_neighbors(15), labels),
            "PCR comparison": sm.pcr_comparison(
                np.asarray(X_pre, dtype=np.float32), X, batches, categorical=True
            ),
        }
    kmeans = sm.nmi_ari_cluster_labels_kmeans(X, labels)
    return {
        "Isolated labels": sm.isolated_labels(X, labels, batches),
        "KMeans NMI": kmeans["nmi"],
        "KMeans ARI": kmeans["ari"],
        "Silhouette label": sm.silhouette_label(X, labels),
        "cLISI": sm.clisi_knn(nn.subset_neighbors(90), labels),
        "BRAS": sm.bras(X, labels, batches),
        "iLISI": sm.ilisi_knn(nn.subset_neighbors(90), batches),
        "KBET": sm.kbet_per_label(nn.subset_neighbors(50), batches, labels),
        "Graph connectivity": sm.graph_connectivity(nn.subset_neighbors(15), labels),
        "PCR comparison": sm.pcr_comparison(
            np.asarray(X_pre, dtype=np.float32), X, batches, categorical=True
        ),
    }


def baseline_pca(adata):
    """The unintegrated baseline, as the docstring of metrics.scib says it is computed."""
    counts = ad.AnnData(adata.X.copy())
    sc.pp.normalize_total(counts, target_sum=1e4)
    sc.pp.log1p(counts)
    sc.pp.pca(counts, n_comps=N_COMPS, random_state=0)
    return counts.obsm["X_pca"]


CHEAP = {
    "silhouette_label": "Silhouette label",
    "clisi_knn": "cLISI",
    "ilisi_knn": "iLISI",
    "graph_connectivity": "Graph connectivity",
    "pcr_comparison": "PCR comparison",
}


@pytest.mark.slow
def test_scib_cheap_metrics_equal_scib_metrics_functions(cortex):
    pytest.importorskip("scib_metrics")
    before = set(cortex.obsm)
    table = si.metrics.scib(
        cortex,
        "X_centred",
        batch_key="library",
        labels_key="cell_type",
        n_comps=N_COMPS,
        metrics=list(CHEAP),
    )
    assert set(cortex.obsm) == before
    assert list(table.index) == ["X_centred", "X_pca"]
    assert list(table.columns) == [*CHEAP.values(), "Batch correction", "Bio conservation", "Total"]
    pca = baseline_pca(cortex)
    batches = cortex.obs["library"].astype(str).to_numpy()
    labels = cortex.obs["cell_type"].astype(str).to_numpy()
    for key, X in (("X_centred", cortex.obsm["X_centred"]), ("X_pca", pca)):
        expected = direct_scores(X, pca, batches, labels, cheap=True)
        got = table.loc[key, list(expected)].to_numpy(float)
        np.testing.assert_allclose(got, list(expected.values()), rtol=1e-5)
    np.testing.assert_allclose(
        table["Bio conservation"], table[["Silhouette label", "cLISI"]].mean(1)
    )
    np.testing.assert_allclose(
        table["Total"], 0.4 * table["Batch correction"] + 0.6 * table["Bio conservation"]
    )
    assert table.loc["X_centred", "iLISI"] > table.loc["X_pca", "iLISI"]


@pytest.mark.slow
def test_scib_equals_scib_metrics_functions(cortex, table):
    pca = baseline_pca(cortex)
    batches = cortex.obs["library"].astype(str).to_numpy()
    labels = cortex.obs["cell_type"].astype(str).to_numpy()

    assert list(table.index) == ["X_centred", "X_pca"]
    assert table.index.name == "embedding"
    assert all(dtype == np.float64 for dtype in table.dtypes)
    for key, X in (("X_centred", cortex.obsm["X_centred"]), ("X_pca", pca)):
        expected = direct_scores(X, pca, batches, labels)
        got = table.loc[key, list(expected)]
        np.testing.assert_allclose(got.to_numpy(float), list(expected.values()), rtol=1e-5)
    assert table.loc["X_pca", "PCR comparison"] == pytest.approx(0.0, abs=1e-6)
    # the aggregates as scIB defines them
    types = table.attrs["metric_type"]
    bio = [c for c, t in types.items() if t == "Bio conservation"]
    batch = [c for c, t in types.items() if t == "Batch correction"]
    assert len(bio) == 5 and len(batch) == 5
    np.testing.assert_allclose(table["Bio conservation"], table[bio].mean(1))
    np.testing.assert_allclose(table["Batch correction"], table[batch].mean(1))
    np.testing.assert_allclose(
        table["Total"], 0.4 * table["Batch correction"] + 0.6 * table["Bio conservation"]
    )
    # centring within libraries mixes them better than the raw PCA
    assert table.loc["X_centred", "iLISI"] > table.loc["X_pca", "iLISI"]


@pytest.mark.slow
def test_scib_given_baseline_subset_of_metrics_and_scaling(cortex, table):
    adata = cortex.copy()
    adata.obsm["X_raw"] = baseline_pca(cortex)
    chosen = ["silhouette_label", "ilisi_knn", "pcr_comparison"]
    result = si.metrics.scib(
        adata,
        ["X_centred", "X_raw", "X_centred"],  # a duplicate is scored once
        batch_key="library",
        labels_key="cell_type",
        unintegrated="X_raw",
        metrics=chosen,
    )
    assert list(result.index) == ["X_centred", "X_raw"]
    assert list(result.columns) == [
        "Silhouette label",
        "iLISI",
        "PCR comparison",
        "Batch correction",
        "Bio conservation",
        "Total",
    ]
    same = ["Silhouette label", "iLISI", "PCR comparison"]
    np.testing.assert_allclose(
        result[same].to_numpy(float),
        table.loc[["X_centred", "X_pca"], same].to_numpy(float),
        rtol=1e-5,
    )
    scaled = si.metrics.scib(
        adata,
        "X_centred",
        batch_key="library",
        labels_key="cell_type",
        unintegrated="X_raw",
        metrics=["ilisi_knn"],
        min_max_scale=True,
    )
    assert "Bio conservation" not in scaled and "Total" not in scaled
    assert sorted(scaled["iLISI"]) == [0.0, 1.0]


@pytest.mark.slow
def test_scib_without_baseline(cortex, table):
    pytest.importorskip("scib_metrics")
    result = si.metrics.scib(
        cortex,
        ["X_centred"],
        batch_key="library",
        labels_key="cell_type",
        unintegrated=None,
        metrics=["graph_connectivity", "clisi_knn"],
    )
    assert list(result.index) == ["X_centred"]
    np.testing.assert_allclose(
        result[["Graph connectivity", "cLISI"]].to_numpy(float),
        table.loc[["X_centred"], ["Graph connectivity", "cLISI"]].to_numpy(float),
        rtol=1e-6,
    )


# ------------------------------------------------------------------------ errors (no JAX needed)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embeddings": "X_missing"}, r"embeddings='X_missing' is not in adata.obsm"),
        ({"embeddings": []}, "embeddings must be an obsm key"),
        ({"batch_key": "sample"}, r"batch_key='sample' is not a column of adata.obs"),
        ({"labels_key": "celltype"}, r"labels_key='celltype' is not a column of adata.obs"),
        ({"metrics": ["silhouette"]}, r"Unknown scIB metric\(s\) \['silhouette'\]"),
        ({"metrics": []}, 'metrics must be "fast", a metric name'),
        ({"unintegrated": "X_other"}, r"unintegrated='X_other' is not in adata.obsm"),
        (
            {"unintegrated": None, "metrics": ["pcr_comparison"]},
            "pcr_comparison compares with the unintegrated embedding",
        ),
        ({"layer": "counts"}, r"layer='counts' is not in adata.layers"),
        ({"n_comps": 1}, "n_comps must be an integer >= 2"),
    ],
)
def test_scib_bad_arguments(cortex, kwargs, match):
    arguments = {"embeddings": "X_centred", "batch_key": "library", "labels_key": "cell_type"}
    with pytest.raises(ValueError, match=match):
        si.metrics.scib(cortex, **(arguments | kwargs))


def test_scib_bad_data(cortex):
    args = {"batch_key": "library", "labels_key": "cell_type"}
    adata = cortex.copy()
    adata.obs["one"] = "a"
    with pytest.raises(ValueError, match="has a single value"):
        si.metrics.scib(adata, "X_centred", batch_key="one", labels_key="cell_type")
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(object)
    adata.obs.iloc[3, adata.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.raises(ValueError, match="1 missing values"):
        si.metrics.scib(adata, "X_centred", **args)
    adata = cortex.copy()
    adata.obsm["X_nan"] = adata.obsm["X_centred"].copy()
    adata.obsm["X_nan"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"adata.obsm\['X_nan'\] contains NaN"):
        si.metrics.scib(adata, "X_nan", **args)
    # the unintegrated PCA is only computed from counts
    adata = cortex.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    with pytest.raises(ValueError, match="does not hold counts"):
        si.metrics.scib(adata, "X_centred", **args)
    with pytest.raises(TypeError, match="adata must be an AnnData or a MuData"):
        si.metrics.scib(pd.DataFrame(cortex.obsm["X_centred"]), "X_centred", **args)


# ------------------------------------------------------------------------------------ MuData
def _as_mudata(cortex):
    """The fixture's cells as two modalities (first and second half) with a joint embedding."""
    import mudata

    half = cortex.n_obs // 2
    parts = {"rna": cortex[:half].copy(), "atac": cortex[half:].copy()}
    for part in parts.values():
        del part.obsm["X_centred"]
    mdata = mudata.MuData(parts)
    mdata.obsm["X_centred"] = cortex.obsm["X_centred"][
        mdata.obs_names.get_indexer(cortex.obs_names)
    ]
    return mdata


class _Stop(Exception):
    pass


@pytest.fixture
def benchmarker_calls(monkeypatch):
    """The Benchmarker replaced by a recorder (no JAX needed): the returned dict gets the
    ``data`` and the keyword arguments it is built with; ``benchmark()`` raises ``_Stop``."""
    from types import SimpleNamespace

    from scintegrate.metrics import _scib

    given = {}

    class Recorder:
        def __init__(self, data, **kwargs):
            given["data"], given["kwargs"] = data, kwargs

        def benchmark(self):
            raise _Stop

    fake = SimpleNamespace(Benchmarker=Recorder, BioConservation=dict, BatchCorrection=dict)
    monkeypatch.setattr(_scib, "_import_benchmark", lambda: fake)
    return given


def test_scib_of_a_mudata_scores_the_container_cells(cortex, benchmarker_calls):
    given = benchmarker_calls
    mdata = _as_mudata(cortex)
    with pytest.raises(_Stop):
        si.metrics.scib(
            mdata, "X_centred", batch_key="modality", labels_key="cell_type", unintegrated=None
        )
    data = given["data"]
    assert list(data.obs_names) == list(mdata.obs_names)
    modality = np.where(data.obs_names.isin(mdata["rna"].obs_names), "rna", "atac")
    np.testing.assert_array_equal(data.obs["batch"].astype(str), modality)
    labels = cortex.obs["cell_type"].reindex(data.obs_names).astype(str)
    np.testing.assert_array_equal(data.obs["labels"].astype(str), labels)
    np.testing.assert_allclose(data.obsm["X_centred"], mdata.obsm["X_centred"], rtol=1e-6)
    assert "modality" not in mdata.obs.columns  # the user's MuData is not changed


def test_scib_of_a_mudata_errors(cortex):
    mdata = _as_mudata(cortex)
    args = {"batch_key": "modality", "labels_key": "cell_type"}
    with pytest.raises(ValueError, match="no joint count matrix"):
        si.metrics.scib(mdata, "X_centred", **args)
    with pytest.raises(ValueError, match="a MuData has no joint layers"):
        si.metrics.scib(mdata, "X_centred", unintegrated=None, layer="counts", **args)
    mdata["atac"].obs = mdata["atac"].obs.drop(columns="cell_type")
    with pytest.raises(ValueError, match="missing values"):
        si.metrics.scib(mdata, "X_centred", unintegrated=None, **args)


@pytest.mark.parametrize("unintegrated", ["X_pca", None])
def test_scib_fast_preset_leaves_out_kbet_and_bras(cortex, benchmarker_calls, unintegrated):
    # the switches the Benchmarker gets for metrics="fast"
    with pytest.raises(_Stop):
        si.metrics.scib(
            cortex, "X_centred", batch_key="library", labels_key="cell_type",
            unintegrated=unintegrated, metrics="fast",
        )  # fmt: skip
    given = benchmarker_calls["kwargs"]
    switches = given["bio_conservation_metrics"] | given["batch_correction_metrics"]
    off = {"kbet_per_label", "bras", "nmi_ari_cluster_labels_leiden"}
    if unintegrated is None:  # as with the default selection, nothing to compare with
        off.add("pcr_comparison")
    assert {name for name, on in switches.items() if not on} == off
