"""``scintegrate demo`` (``run_demo``): files, summary, results, same seed same numbers."""

from __future__ import annotations

import inspect
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scintegrate._demo import _ROWS, _integration_demo, _nmf_demo, run_demo

FILES = ("summary.txt", "demo.h5ad", "umap.png", "training_curve.png")
COLUMNS = ("alignment", "ARI", "NMI", "clusters", "FOSCTTM")
NUMBER = r"(-?\d+(?:\.\d+)?)"


def score_table(summary: str) -> pd.DataFrame:
    """The summary's score table: one row per embedding, parsed from the text."""
    rows = {}
    for label in _ROWS.values():
        pattern = rf"^{re.escape(label)}\s+" + r"\s+".join([NUMBER] * len(COLUMNS)) + r"\s*$"
        found = re.search(pattern, summary, flags=re.MULTILINE)
        assert found, f"no score row {label!r} in the summary:\n{summary}"
        rows[label] = [float(value) for value in found.groups()]
    return pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)


SMALL = 2000  # nuclei of the smaller runs of the default test suite (the demo uses 10,309)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The default demo on 2,000 of the nuclei (same code and settings otherwise), run once."""
    out = tmp_path_factory.mktemp("demo") / "scintegrate_demo"
    assert _integration_demo(out, n_nuclei=SMALL) == out
    return out


def test_signature_the_command_line_calls():
    parameters = inspect.signature(run_demo).parameters
    assert list(parameters) == ["out_dir", "nmf", "random_state"]
    assert parameters["out_dir"].default == "scintegrate_demo"
    assert parameters["nmf"].default is False and parameters["random_state"].default == 0
    assert parameters["nmf"].kind is inspect.Parameter.KEYWORD_ONLY


def test_demo_writes_its_files(demo):
    for name in FILES:
        assert (demo / name).stat().st_size > 0, name


def test_demo_summary(demo):
    summary = (demo / "summary.txt").read_text()
    scores = score_table(summary)
    before, control, after = (scores.loc[label] for label in _ROWS.values())
    assert after["alignment"] > before["alignment"]
    assert control["alignment"] > before["alignment"]
    assert (
        (scores[["alignment", "FOSCTTM"]] >= 0) & (scores[["alignment", "FOSCTTM"]] <= 1.1)
    ).all(axis=None)
    assert (scores["ARI"].between(-1, 1) & (scores["clusters"] >= 2)).all()
    # integration and quantile norm beat chance (0.5) at the pairing of the evaluation nuclei
    assert after["FOSCTTM"] < 0.45
    assert "2,000 nuclei" in summary and "400 nuclei go into both datasets" in summary
    assert "resolution 1, fixed in advance" in summary
    for step in ("online iNMF", "quantile norm", "UMAPs", "write demo.h5ad", "total (run_demo)"):
        assert re.search(rf"^{re.escape(step)}\s+{NUMBER}", summary, flags=re.MULTILINE), step


def test_demo_h5ad(demo):
    result = ad.read_h5ad(demo / "demo.h5ad")
    assert {"X_inmf", "X_inmf_qn", "X_nmf", "X_nmf_qn", "X_nmf_umap", "X_inmf_qn_umap"} <= set(
        result.obsm
    )
    assert {"inmf_W", "inmf_V", "nmf_W"} <= set(result.varm)
    obs = result.obs
    assert list(obs["modality"].cat.categories) == ["RNA", "ATAC"]
    # disjoint halves plus the evaluation nuclei, which appear once per modality
    per_nucleus = obs.groupby("nucleus", observed=True)["modality"].nunique()
    assert set(per_nucleus[per_nucleus == 2].index) == set(obs.loc[obs["paired"], "nucleus"])
    assert obs["paired"].sum() == 2 * 400
    assert obs["nucleus"].nunique() == SMALL
    assert result.obsm["X_inmf_qn_umap"].shape == (result.n_obs, 2)
    assert np.isfinite(result.obsm["X_inmf_qn_umap"][obs["umap_sample"].to_numpy()]).all()
    # the numbers of uns["demo"] are those of the summary
    stored = result.uns["demo"]["scores"].set_index("embedding")
    printed = score_table((demo / "summary.txt").read_text())
    for key, label in _ROWS.items():
        assert stored.loc[key, "alignment"] == pytest.approx(
            printed.loc[label, "alignment"], abs=5e-4
        )
        assert stored.loc[key, "FOSCTTM"] == pytest.approx(printed.loc[label, "FOSCTTM"], abs=5e-4)


def test_same_seed_same_numbers(demo, tmp_path):
    again = _integration_demo(tmp_path / "again", n_nuclei=SMALL)
    first, second = ((out / "summary.txt").read_text() for out in (demo, again))
    pd.testing.assert_frame_equal(score_table(first), score_table(second))
    first, second = (ad.read_h5ad(out / "demo.h5ad") for out in (demo, again))
    pd.testing.assert_frame_equal(first.uns["demo"]["scores"], second.uns["demo"]["scores"])
    for key in ("X_inmf_qn", "X_nmf_umap", "X_inmf_qn_umap"):  # the factors and both layouts
        np.testing.assert_array_equal(first.obsm[key], second.obsm[key], err_msg=key)


def test_nmf_demo_small(tmp_path):
    out = _nmf_demo(tmp_path / "nmf", n_cells=600, max_iter=4, track_every=2)
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.txt").read_text()
    assert re.search(rf"^nmf_poisson\s+kl\s+{NUMBER}", summary, flags=re.MULTILINE)
    result = ad.read_h5ad(out / "demo.h5ad")
    assert {"X_nmf_sse", "X_nmf_poisson", "X_nmf_poisson_umap"} <= set(result.obsm)
    assert result.uns["nmf_sse"]["history"]["ari"].notna().sum() >= 2


@pytest.mark.slow
def test_run_demo(tmp_path):
    """The demo as ``scintegrate demo`` runs it: all 10,309 nuclei."""
    out = run_demo(tmp_path / "demo")
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.txt").read_text()
    scores = score_table(summary)
    before, _, after = (scores.loc[label] for label in _ROWS.values())
    assert after["alignment"] > before["alignment"] and after["FOSCTTM"] < before["FOSCTTM"]
    assert "10,309 nuclei" in summary and "1,000 nuclei go into both datasets" in summary
    result = ad.read_h5ad(out / "demo.h5ad")
    assert result.obs["nucleus"].nunique() == 10309 and result.obs["paired"].sum() == 2000


@pytest.mark.slow
def test_run_demo_nmf(tmp_path):
    out = run_demo(tmp_path / "nmf", nmf=True)
    summary = (out / "summary.txt").read_text()
    assert "nmf_sse" in summary and "nmf_poisson" in summary
    assert ad.read_h5ad(out / "demo.h5ad").n_obs == 10309


def test_umaps_computed_here_when_their_process_fails(caplog):
    """A UMAP process that dies leaves a warning and the same layouts, drawn in-process."""
    import subprocess
    import sys

    from scintegrate._demo import _umap_coordinates

    embedding = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    failing = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit('broken')"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with caplog.at_level("WARNING", logger="scintegrate"):
        coords = _umap_coordinates({"emb": embedding}, failing, random_state=0)
    assert "The UMAP process failed (broken)" in caplog.text
    assert coords["emb"].shape == (40, 2) and np.isfinite(coords["emb"]).all()
    again = _umap_coordinates({"emb": embedding}, None, random_state=0)
    np.testing.assert_array_equal(coords["emb"], again["emb"])
