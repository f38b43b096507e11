"""Every command on small real data (galaxy/test-data, built from the bundled SNARE-seq data):
its output equals the Python call's, the command line is recorded, and the run is seeded."""

from __future__ import annotations

import json
import shlex
import warnings
from pathlib import Path

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scintegrate as si
from scintegrate.cli import main

DATA = Path(__file__).resolve().parents[2] / "galaxy" / "test-data"


def run(*words) -> int:
    return main([str(w) for w in words] + ["--quiet"])


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return mudata.read_h5mu(path) if str(path).endswith(".h5mu") else ad.read_h5ad(path)


def assert_arrays_equal(a, b):
    a = a.toarray() if sp.issparse(a) else np.asarray(a)
    b = b.toarray() if sp.issparse(b) else np.asarray(b)
    np.testing.assert_array_equal(a, b)


def check_recorded(obj, key, argv_head):
    params = obj.uns[key]["params"]
    line = params["command_line"]
    assert shlex.split(line)[: len(argv_head) + 1] == ["scintegrate", *map(str, argv_head)]
    assert params["scintegrate_version"] == si.__version__


def test_nmf_equals_the_python_call(tmp_path):
    out = tmp_path / "out.h5ad"
    opts = ["--n-components", 4, "--objective", "kl", "--max-iter", 5, "--random-state", 3]
    assert run("nmf", DATA / "cortex_rna.h5ad", out, *opts) == 0
    expected = read(DATA / "cortex_rna.h5ad")
    si.tl.nmf(expected, 4, objective="kl", max_iter=5, random_state=3)
    result = read(out)
    assert_arrays_equal(result.obsm["X_nmf"], expected.obsm["X_nmf"])
    assert_arrays_equal(result.varm["nmf_W"], expected.varm["nmf_W"])
    assert_arrays_equal(result.X, expected.X)
    check_recorded(result, "nmf", ["nmf"])


def test_liger_inmf_quantile_chain_equals_python(tmp_path):
    scaled, factors, aligned = (tmp_path / f"{n}.h5ad" for n in ("scaled", "inmf", "qn"))
    batch = ["--batch-key", "modality"]
    assert run("liger-preprocess", DATA / "cortex_rna_atac.h5ad", scaled, *batch) == 0
    assert run("inmf", scaled, factors, *batch, "--n-components", 4, "--max-iter", 4) == 0
    assert run("quantile-norm", factors, aligned, *batch, "--min-cells", 5) == 0
    expected = read(DATA / "cortex_rna_atac.h5ad")
    si.pp.liger_preprocess(expected, batch_key="modality")
    si.tl.inmf(expected, 4, batch_key="modality", max_iter=4)
    si.pp.quantile_norm(expected, batch_key="modality", min_cells=5)
    result = read(aligned)
    assert_arrays_equal(result.layers["liger_scaled"], expected.layers["liger_scaled"])
    assert_arrays_equal(result.obsm["X_inmf"], expected.obsm["X_inmf"])
    assert_arrays_equal(result.obsm["X_inmf_qn"], expected.obsm["X_inmf_qn"])
    pd.testing.assert_series_equal(result.obs["inmf_qn_clusters"], expected.obs["inmf_qn_clusters"])
    check_recorded(result, "inmf_qn", ["quantile-norm"])
    check_recorded(result, "inmf", ["inmf"])


def test_online_inmf_from_files_continue_and_project(tmp_path):
    rna, atac = DATA / "cortex_rna.h5ad", DATA / "cortex_atac_activity.h5ad"
    out, model = tmp_path / "out.h5ad", tmp_path / "model.h5"
    opts = ["--n-components", 4, "--max-epochs", 2, "--batch-size", 50, "--random-state", 1]
    assert run("online-inmf", rna, atac, out, *opts, "--model-out", model) == 0
    expected, expected_model = si.tl.online_inmf(
        [str(rna), str(atac)], 4, max_epochs=2, batch_size=50, random_state=1, return_model=True
    )
    result = read(out)
    assert list(result.uns["inmf"]["batches"]) == ["cortex_rna", "cortex_atac_activity"]
    assert_arrays_equal(result.obsm["X_inmf"], expected.obsm["X_inmf"])
    assert_arrays_equal(result.varm["inmf_W"], expected.varm["inmf_W"])
    saved = si.tl.OnlineINMFModel.load(model)
    assert_arrays_equal(saved.W, expected_model.W)
    check_recorded(result, "inmf", ["online-inmf"])

    # scenario 2: continue the saved model on a new dataset (here: the RNA file again, renamed)
    new = tmp_path / "new_rna.h5ad"
    new.write_bytes(rna.read_bytes())
    continued, model2 = tmp_path / "continued.h5ad", tmp_path / "model2.h5"
    assert run("online-inmf", new, continued, "--model-in", model, "--model-out", model2) == 0
    expected_cont = si.tl.online_inmf([str(new)], init=si.tl.OnlineINMFModel.load(model))
    assert_arrays_equal(read(continued).obsm["X_inmf"], expected_cont.obsm["X_inmf"])
    assert si.tl.OnlineINMFModel.load(model2).datasets == [*saved.datasets, "new_rna"]

    # scenario 3: project new cells with the model fixed
    projected = tmp_path / "projected.h5ad"
    assert run("online-inmf-project", rna, projected, "--model-in", model, "--key-added", "p") == 0
    cells = read(rna)
    result = read(projected)
    assert_arrays_equal(result.obsm["X_p"], saved.transform(cells).astype(np.float32))
    check_recorded(result, "p", ["online-inmf-project"])


def test_etm_saves_a_model_that_embeds_new_cells(tmp_path):
    out, model, embedded = tmp_path / "out.h5ad", tmp_path / "etm.pt", tmp_path / "emb.h5ad"
    opts = ["--n-topics", 3, "--emb-dim", 4, "--hidden-sizes", 8, "--max-epochs", 2]
    opts += ["--device", "cpu", "--random-state", 2]
    assert run("etm", DATA / "cortex_rna.h5ad", out, *opts, "--model-out", model) == 0
    expected = read(DATA / "cortex_rna.h5ad")
    si.tl.etm(expected, 3, emb_dim=4, hidden_sizes=(8,), max_epochs=2, device="cpu",
              random_state=2)  # fmt: skip
    result = read(out)
    assert_arrays_equal(result.obsm["X_etm"], expected.obsm["X_etm"])
    assert run("etm-embed", DATA / "cortex_rna.h5ad", embedded, "--model-in", model) == 0
    theta = read(embedded).obsm["X_etm"]
    np.testing.assert_allclose(theta, result.obsm["X_etm"], rtol=1e-5, atol=1e-6)


def test_mmdma_on_h5mu_and_foscttm(tmp_path):
    out, table = tmp_path / "out.h5mu", tmp_path / "scores.json"
    opts = ["--n-dims", 2, "--max-epochs", 5, "--backend", "torch", "--device", "cpu"]
    assert run("mmdma", DATA / "celllines.h5mu", out, *opts) == 0
    expected = read(DATA / "celllines.h5mu")
    si.tl.mmdma(expected, 2, max_epochs=5, backend="torch", device="cpu")
    result = read(out)
    assert_arrays_equal(result.obsm["X_mmdma"], expected.obsm["X_mmdma"])
    check_recorded(result, "mmdma", ["mmdma"])
    pairs = ["--use-rep", "X_mmdma", "--parts", "rna", "atac", "--pair-key", "barcode"]
    assert run("metrics", "foscttm", out, table, *pairs) == 0
    score = json.loads(table.read_text())
    rna, atac = expected["rna"], expected["atac"]
    order = pd.Index(atac.obs["barcode"]).get_indexer(rna.obs["barcode"])
    value = si.metrics.foscttm(rna.obsm["X_mmdma"], atac.obsm["X_mmdma"][order])
    assert score["results"][0]["value"] == pytest.approx(value, abs=1e-12)
    assert score["metric"] == "foscttm" and "--pair-key" in score["command_line"]


def test_scjmt_on_h5mu(tmp_path):
    out = tmp_path / "out.h5mu"
    opts = ["--n-clusters", 3, "--max-iter", 4, "--n-restarts", 1, "--device", "cpu"]
    assert run("scjmt", DATA / "cortex_rna_peaks_links.h5mu", out, *opts) == 0
    expected = read(DATA / "cortex_rna_peaks_links.h5mu")
    si.tl.scjmt(expected, 3, max_iter=4, n_restarts=1, device="cpu")
    result = read(out)
    assert_arrays_equal(result.obsm["X_scjmt"], expected.obsm["X_scjmt"])
    check_recorded(result, "scjmt", ["scjmt"])
    # the next pipeline step, LIGER's quantile normalisation, reads the factors of each modality
    aligned = tmp_path / "aligned.h5mu"
    opts = ["--use-rep", "X_scjmt", "--reference", "rna", "--min-cells", 5]
    assert run("quantile-norm", out, aligned, *opts, "--key-added", "scjmt_qn") == 0
    si.pp.quantile_norm(
        expected, use_rep="X_scjmt", reference="rna", min_cells=5, key_added="scjmt_qn"
    )
    assert_arrays_equal(read(aligned).obsm["X_scjmt_qn"], expected.obsm["X_scjmt_qn"])


@pytest.mark.parametrize("kind", ["h5ad", "h5mu"])
def test_gene_activity_from_links(tmp_path, kind):
    genes = [g for g in (DATA / "link_genes.txt").read_text().split() if g]
    links = sp.load_npz(DATA / "links.npz")
    peaks = read(DATA / "cortex_peaks.h5ad")
    source = DATA / "cortex_peaks.h5ad"
    if kind == "h5mu":
        source = tmp_path / "in.h5mu"
        mudata.MuData({"atac": peaks.copy()}).write_h5mu(source)
    out = tmp_path / f"out.{kind}"
    argv = ["gene-activity", source, out, "--links", DATA / "links.npz"]
    assert run(*argv, "--genes", f"@{DATA / 'link_genes.txt'}") == 0
    expected = si.pp.gene_activity(peaks, links=links, genes=genes, copy=True)
    result = read(out)
    if kind == "h5mu":
        assert result["atac"].varm["gene_activity"].shape == (peaks.n_vars, len(genes))
        result = result["gene_activity"]
    assert_arrays_equal(result.X, expected.X)
    assert list(result.var_names) == genes
    check_recorded(result, "gene_activity", ["gene-activity"])


def test_plot_writes_the_figure(tmp_path):
    for name, suffix, extra in [
        ("top-features", "png", ["--key", "inmf", "--n-top", "3"]),
        ("factor-heatmap", "svg", ["--key", "inmf", "--groupby", "cell_type"]),
    ]:
        figure = tmp_path / f"figure.{suffix}"
        assert run("plot", name, DATA / "cortex_inmf.h5ad", figure, *extra) == 0
        head = figure.read_bytes()[:64]
        assert head.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in figure.read_bytes()


@pytest.mark.parametrize("suffix", ["tsv", "json"])
def test_metrics_equal_the_python_functions(tmp_path, suffix):
    table = tmp_path / f"scores.{suffix}"
    factors = DATA / "cortex_inmf.h5ad"
    adata = read(factors)
    cases = [
        (["alignment-score", "--batches", "modality", "--use-rep", "X_inmf"],
         si.metrics.alignment_score(adata, batches="modality", use_rep="X_inmf")),
        (["ari", "--labels", "cell_type", "--use-rep", "X_inmf", "--resolution", "0.5", "1"],
         si.metrics.ari(adata, "cell_type", use_rep="X_inmf", resolution=[0.5, 1.0])),
        (["purity", "--labels-true", "cell_type", "--labels-pred", "modality"],
         si.metrics.purity("cell_type", "modality", adata=adata)),
        (["adjusted-rand-index", "--labels-true", "cell_type", "--labels-pred", "modality"],
         si.metrics.adjusted_rand_index(adata.obs["cell_type"], adata.obs["modality"])),
    ]  # fmt: skip
    for words, value in cases:
        assert run("metrics", words[0], factors, table, *words[1:]) == 0
        if suffix == "tsv":
            frame = pd.read_csv(table, sep="\t")
            assert list(frame.columns) == ["metric", "value"] and frame["metric"][0] == words[0]
            assert frame["value"][0] == pytest.approx(value, abs=1e-12)
        else:
            assert json.loads(table.read_text())["results"][0]["value"] == pytest.approx(value)


def test_same_seed_same_arrays(tmp_path):
    outputs = []
    for i in range(2):
        out = tmp_path / f"out{i}.h5ad"
        argv = ["online-inmf", DATA / "cortex_rna.h5ad", DATA / "cortex_atac_activity.h5ad", out]
        assert run(*argv, "--n-components", 3, "--max-epochs", 1, "--random-state", 7) == 0
        outputs.append(read(out))
    assert_arrays_equal(outputs[0].obsm["X_inmf"], outputs[1].obsm["X_inmf"])
    assert_arrays_equal(outputs[0].varm["inmf_V"], outputs[1].varm["inmf_V"])


def test_modality_of_an_h5mu(tmp_path):
    out = tmp_path / "out.h5mu"
    assert run("nmf", DATA / "celllines.h5mu", out, "--mod", "atac", "--n-components", 2) == 0
    result = read(out)
    assert result["atac"].obsm["X_nmf"].shape == (result["atac"].n_obs, 2)
    assert "X_nmf" not in result["rna"].obsm


def test_a_whole_mudata_is_integrated_and_plotted(tmp_path):
    source, out, aligned = tmp_path / "in.h5mu", tmp_path / "out.h5mu", tmp_path / "qn.h5mu"
    rna, atac = read(DATA / "cortex_rna.h5ad"), read(DATA / "cortex_atac_activity.h5ad")
    mudata.MuData({"rna": rna, "atac": atac}).write_h5mu(source)
    opts = ["--preprocess", "--n-components", 3, "--max-epochs", 1, "--batch-size", 50]
    assert run("online-inmf", source, out, *opts) == 0
    assert run("quantile-norm", out, aligned, "--min-cells", 5) == 0
    expected = read(source)
    si.tl.online_inmf(expected, 3, preprocess=True, max_epochs=1, batch_size=50)
    si.pp.quantile_norm(expected, min_cells=5)
    result = read(aligned)
    assert_arrays_equal(result.obsm["X_inmf_qn"], expected.obsm["X_inmf_qn"])
    assert_arrays_equal(result["atac"].obsm["X_inmf"], expected["atac"].obsm["X_inmf"])
    check_recorded(result, "inmf_qn", ["quantile-norm"])
    figure = tmp_path / "joint.png"
    assert run("plot", "factor-heatmap", DATA / "cortex_inmf.h5ad", figure, "--key", "inmf",
               "--groupby", "modality") == 0  # fmt: skip
