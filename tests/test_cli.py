"""The command line."""

from __future__ import annotations

import anndata as ad

import scintegrate as si
from scintegrate.cli import main


def test_cli_nmf(cortex_small, tmp_path):
    src = tmp_path / "in.h5ad"
    cortex_small.write_h5ad(src)
    dst = tmp_path / "out.h5ad"
    assert (
        main(
            [
                "nmf",
                str(src),
                str(dst),
                "--n-components",
                "4",
                "--objective",
                "kl",
                "--max-iter",
                "5",
            ]
        )
        == 0
    )
    out = ad.read_h5ad(dst)
    assert out.obsm["X_nmf"].shape == (cortex_small.n_obs, 4)
    assert out.uns["nmf"]["params"]["objective"] == "kl"


def test_cli_demo_writes_outputs(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-iter", "4", "--track-every", "2"]) == 0
    for name in ("demo.h5ad", "training_curve.png", "umap.png", "summary.txt"):
        assert (out / name).stat().st_size > 0
    summary = (out / "summary.txt").read_text()
    assert "nmf_poisson" in summary and "ARI" in summary
    result = ad.read_h5ad(out / "demo.h5ad")
    assert {"X_nmf_sse", "X_nmf_poisson", "X_nmf_poisson_umap"} <= set(result.obsm)
    assert si.__version__
