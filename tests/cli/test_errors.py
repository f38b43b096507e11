"""Bad input gives exit status 2 and one line on stderr, writes nothing and changes nothing; a
run that fails or is killed in the middle leaves no partial output."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import mudata
import pytest

from scintegrate.cli import main

DATA = Path(__file__).resolve().parents[2] / "galaxy" / "test-data"

# a valid call of each command: (command words, inputs, options), and an option naming something
# that is not in the input
CALLS = {
    "nmf": (["nmf"], ["cortex_rna.h5ad"], ["--n-components", "2", "--max-iter", "2"]),
    "inmf": (["inmf"], ["cortex_liger.h5ad"], ["--batch-key", "modality", "--max-iter", "2"]),
    "online-inmf": (
        ["online-inmf"],
        ["cortex_rna.h5ad", "cortex_atac_activity.h5ad"],
        ["--n-components", "2", "--max-epochs", "1"],
    ),
    "online-inmf-project": (
        ["online-inmf-project"],
        ["cortex_rna.h5ad"],
        ["--model-in", str(DATA / "online_inmf_model.h5")],
    ),
    "etm": (["etm"], ["cortex_rna.h5ad"], ["--n-topics", "2", "--max-epochs", "1"]),
    "etm-embed": (["etm-embed"], ["cortex_rna.h5ad"], ["--model-in", str(DATA / "etm_model.pt")]),
    "mmdma": (["mmdma"], ["celllines.h5mu"], ["--max-epochs", "2", "--backend", "torch"]),
    "scjmt": (["scjmt"], ["cortex_rna_peaks_links.h5mu"], ["--n-clusters", "2", "--max-iter", "2"]),
    "liger-preprocess": (["liger-preprocess"], ["cortex_rna_atac.h5ad"], ["--batch-key", "modality"]),
    "quantile-norm": (["quantile-norm"], ["cortex_inmf.h5ad"], ["--batch-key", "modality"]),
    "gene-activity": (
        ["gene-activity"],
        ["cortex_peaks.h5ad"],
        ["--links", str(DATA / "links.npz"), "--genes", f"@{DATA / 'link_genes.txt'}"],
    ),
    "plot": (["plot", "factor-heatmap"], ["cortex_inmf.h5ad"], ["--key", "inmf", "--groupby", "cell_type"]),
    "metrics": (
        ["metrics", "alignment-score"],
        ["cortex_inmf.h5ad"],
        ["--batches", "modality", "--use-rep", "X_inmf"],
    ),
}  # fmt: skip
UNKNOWN_KEY = {
    "nmf": ["--labels-key", "no_such_column"],
    "inmf": ["--batch-key", "no_such_column"],
    "online-inmf": ["--mask-var", "no_such_column"],
    "online-inmf-project": ["--layer", "no_such_layer", "--no-preprocess"],
    "etm": ["--batch-key", "no_such_column"],
    "etm-embed": ["--layer", "no_such_layer"],
    "mmdma": ["--use-rep", "X_no_such_rep"],
    "scjmt": ["--gene-activity", "no_such_links"],
    "liger-preprocess": ["--batch-key", "no_such_column"],
    "quantile-norm": ["--use-rep", "X_no_such_rep"],
    "gene-activity": ["--layer", "no_such_layer"],
    "plot": ["--groupby", "no_such_column"],
    "metrics": ["--use-rep", "X_no_such_rep"],
}
WRONG_MODALITY = {
    "mmdma": ["--mods", "rna", "protein"],
    "scjmt": ["--mods", "rna", "protein"],
    "gene-activity": ["--mod", "protein"],
}
COUNTS = ["nmf", "online-inmf", "online-inmf-project", "etm", "etm-embed", "liger-preprocess",
          "gene-activity", "scjmt"]  # fmt: skip


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage(tmp_path: Path, name: str) -> list[Path]:
    """Copies of the command's inputs in tmp_path (so that any change to them would show)."""
    _, inputs, _ = CALLS[name]
    staged = []
    for file in inputs:
        shutil.copy(DATA / file, tmp_path / file)
        staged.append(tmp_path / file)
    return staged


def expect_user_error(capsys, tmp_path, words, inputs, options, match=None):
    before = {p: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    out = tmp_path / ("out" + Path(str(inputs[0])).suffix if inputs else "out.h5ad")
    if words[0] == "plot":
        out = tmp_path / "figure.png"
    elif words[0] == "metrics":
        out = tmp_path / "scores.tsv"
    capsys.readouterr()
    status = main([*words, *map(str, inputs), str(out), *options, "--quiet"])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"scintegrate {' '.join(words)}: error: ")
    if match:
        assert match in lines[0], lines[0]
    assert captured.out == ""
    after = {p: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    assert after == before, "a file was written or changed"
    return lines[0]


@pytest.mark.parametrize("name", CALLS)
def test_missing_input(capsys, tmp_path, name):
    words, inputs, options = CALLS[name]
    missing = [tmp_path / f"missing{Path(f).suffix}" for f in inputs]
    expect_user_error(capsys, tmp_path, words, missing, options, "does not exist")


@pytest.mark.parametrize("name", CALLS)
def test_truncated_input(capsys, tmp_path, name):
    words, _, options = CALLS[name]
    inputs = stage(tmp_path, name)
    data = inputs[0].read_bytes()
    inputs[0].write_bytes(data[: len(data) // 2])
    expect_user_error(capsys, tmp_path, words, inputs, options, "cannot read")


@pytest.mark.parametrize("name", CALLS)
def test_unknown_key(capsys, tmp_path, name):
    words, _, options = CALLS[name]
    inputs = stage(tmp_path, name)
    line = expect_user_error(capsys, tmp_path, words, inputs, options + UNKNOWN_KEY[name])
    assert "no_such" in line


@pytest.mark.parametrize("name", CALLS)
def test_wrong_modality(capsys, tmp_path, name):
    words, _, options = CALLS[name]
    inputs = stage(tmp_path, name)
    extra = WRONG_MODALITY.get(name, ["--mod", "protein"])
    if name == "metrics":  # a pairing metric: the parts are modalities
        words, options = ["metrics", "foscttm"], ["--use-rep", "X", "--parts", "rna", "protein"]
        shutil.copy(DATA / "celllines.h5mu", tmp_path / "celllines.h5mu")
        inputs, extra = [tmp_path / "celllines.h5mu"], []
    if name == "gene-activity":  # its own --mod picks the peaks of an .h5mu
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            mudata.MuData({"atac": ad.read_h5ad(inputs[0])}).write_h5mu(tmp_path / "peaks.h5mu")
        inputs[0].unlink()
        inputs = [tmp_path / "peaks.h5mu"]
    line = expect_user_error(capsys, tmp_path, words, inputs, options + extra)
    assert "protein" in line or "--mod needs" in line


@pytest.mark.parametrize("name", COUNTS)
def test_negative_counts(capsys, tmp_path, name):
    words, _, options = CALLS[name]
    inputs = stage(tmp_path, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if inputs[0].suffix == ".h5mu":
            data = mudata.read_h5mu(inputs[0])
            target = data["rna"]
        else:
            data = target = ad.read_h5ad(inputs[0])
    target.X = target.X.copy()
    target.X.data[:5] = -target.X.data[:5]
    bad = tmp_path / f"negative{inputs[0].suffix}"
    data.write(bad) if hasattr(data, "mod") else data.write_h5ad(bad)
    line = expect_user_error(capsys, tmp_path, words, [bad, *inputs[1:]], options)
    assert "negative" in line.lower(), line


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="no_such_column"):
        main(["nmf", str(DATA / "cortex_rna.h5ad"), str(tmp_path / "o.h5ad"), "--labels-key",
              "no_such_column", "--quiet", "--debug"])  # fmt: skip


def test_bad_option_value_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["nmf", str(DATA / "cortex_rna.h5ad"), str(tmp_path / "o.h5ad"), "--objective", "l2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scintegrate nmf: error: argument --objective")


def test_output_kind_must_match(capsys, tmp_path):
    (path,) = stage(tmp_path, "nmf")
    status = main(["nmf", str(path), str(tmp_path / "out.h5mu"), "--max-iter", "1", "--quiet"])
    assert status == 2
    assert "name the output" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_failure_while_writing_leaves_the_input_that_is_also_the_output(tmp_path, monkeypatch):
    (path,) = stage(tmp_path, "nmf")
    before = digest(path)

    def write_half_then_fail(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x89HDF partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        main(["nmf", str(path), str(path), "--n-components", "2", "--max-iter", "2", "--quiet"])
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left
    monkeypatch.undo()
    assert (
        main(["nmf", str(path), str(path), "--n-components", "2", "--max-iter", "2", "--quiet"])
        == 0
    )
    assert "X_nmf" in ad.read_h5ad(path).obsm  # fmt: skip


def test_killed_run_leaves_no_output_and_stdout_stays_clean(tmp_path):
    (path,) = stage(tmp_path, "nmf")
    before = digest(path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "scintegrate.cli"]
    # a normal run: nothing on stdout, progress and logs on stderr
    done = subprocess.run([*cli, "nmf", str(path), str(tmp_path / "ok.h5ad"), "--max-iter", "3"],
                          capture_output=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b""
    # a long run, terminated as a pipeline cancels a job
    out = tmp_path / "out.h5ad"
    argv = [*cli, "nmf", str(path), str(out), "--max-iter", "1000000", "--tol", "0"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    seen = b""
    deadline = time.monotonic() + 300
    while b"NMF" not in seen and time.monotonic() < deadline:  # training has started
        seen += os.read(process.stderr.fileno(), 256)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    assert "scintegrate nmf: terminated" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert stdout == b""
    assert not out.exists()
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "ok.h5ad"])
