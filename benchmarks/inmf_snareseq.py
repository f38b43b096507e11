"""Table 1 of Gao & Welch on SNARE-seq mouse cortex: RNA and ATAC gene activity as two datasets.

The two modalities of the same 10,309 nuclei (bundled with the package) are integrated with the
pairing hidden. For each solver: wall time, objective (1), and on the quantile-normalised
embedding the LIGER alignment score, cluster purity, ARI and NMI of Leiden clusters (one fixed
resolution) against the 15 coarse cell types, plus how well the hidden pairing is recovered
(FOSCTTM: fraction of cells of the other modality closer than the true partner; 0 is perfect,
0.5 is chance). A baseline without integration (plain NMF of the concatenation) gives the
reference point for alignment.

    python benchmarks/inmf_snareseq.py [--resolution 1.0] [--k 20]
"""

from __future__ import annotations

import argparse
import json
import time

import anndata as ad
import numpy as np
from _common import RESULTS
from _scib import add_scib_argument, scib_table

import scintegrate as si


def scores(adata, rep: str, resolution: float, labels: np.ndarray, keep: np.ndarray) -> dict:
    embedding = adata.obsm[rep]
    clusters = si.metrics.leiden_clusters(embedding[keep], resolution=resolution)
    n = adata.n_obs // 2
    return {
        "alignment": si.metrics.alignment_score(adata, batches="modality", use_rep=rep),
        "purity": si.metrics.purity(labels[keep], clusters),
        "ari": si.metrics.adjusted_rand_index(labels[keep], clusters),
        "nmi": si.metrics.normalized_mutual_info(labels[keep], clusters),
        "n_clusters": len(np.unique(clusters)),
        "foscttm": si.metrics.foscttm(embedding[:n], embedding[n:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    add_scib_argument(parser)
    args = parser.parse_args()
    si.settings.progress_bar = False

    rna = si.datasets.snareseq_cortex_rna()
    atac = si.datasets.snareseq_cortex_atac_gene_activity()
    both = ad.concat({"rna": rna, "atac": atac}, label="modality", index_unique="-")
    si.pp.liger_preprocess(both, batch_key="modality")
    labels = both.obs["cell_type"].to_numpy().astype(str)
    keep = labels != "Mis"  # cells the authors left unassigned are not scored
    print(
        f"SNARE-seq cortex: {rna.n_obs} nuclei x 2 modalities, "
        f"{int(both.var['liger_highly_variable'].sum())} LIGER genes, k={args.k}, lambda=5; "
        f"Leiden resolution {args.resolution} (fixed), {int(keep.sum())} labelled cells scored "
        "('Mis' excluded)"
    )

    rows = {}
    runs = {
        "online iNMF (5 epochs)": (si.tl.online_inmf, {"max_epochs": 5}),
        "iNMF ANLS (30 it)": (si.tl.inmf, {"solver": "anls", "max_iter": 30, "tol": 0}),
        "iNMF HALS (30 it)": (si.tl.inmf, {"solver": "hals", "max_iter": 30, "tol": 0}),
        "iNMF MU (30 it)": (si.tl.inmf, {"solver": "mu", "max_iter": 30, "tol": 0}),
    }
    for name, (tool, options) in runs.items():
        tic = time.perf_counter()
        tool(both, args.k, batch_key="modality", random_state=args.seed, **options)
        seconds = time.perf_counter() - tic
        si.pp.quantile_norm(both, batch_key="modality")
        both.obsm[f"X_scib{len(rows)}"] = both.obsm["X_inmf_qn"].copy()  # for the scIB table
        rows[name] = {
            "seconds": seconds,
            "objective": both.uns["inmf"]["objective"],
            **scores(both, "X_inmf_qn", args.resolution, labels, keep),
        }

    # baseline: NMF of the concatenated scaled data, no dataset-specific factors, no alignment
    plain = ad.AnnData(both.layers["liger_scaled"][:, both.var["liger_highly_variable"].to_numpy()])
    tic = time.perf_counter()
    si.tl.nmf(plain, args.k, max_iter=200, random_state=args.seed)
    seconds = time.perf_counter() - tic
    plain.obs["modality"] = both.obs["modality"].to_numpy()
    rows["NMF of the concatenation (no integration)"] = {
        "seconds": seconds,
        "objective": float("nan"),
        **scores(plain, "X_nmf", args.resolution, labels, keep),
    }

    header = f"{'method':44s} {'time s':>7s} {'alignment':>9s} {'purity':>7s} {'ARI':>6s}"
    header += f" {'NMI':>6s} {'clusters':>8s} {'FOSCTTM':>8s}"
    print(header)
    for name, r in rows.items():
        print(
            f"{name:44s} {r['seconds']:7.2f} {r['alignment']:9.3f} {r['purity']:7.3f} "
            f"{r['ari']:6.3f} {r['nmi']:6.3f} {r['n_clusters']:8d} {r['foscttm']:8.3f}"
        )
    print()
    both.obsm["X_nmf_concat"] = plain.obsm["X_nmf"]
    embeddings = {name: f"X_scib{i}" for i, name in enumerate(runs)}
    embeddings["NMF of the concatenation (no integration)"] = "X_nmf_concat"
    scib = scib_table(both, embeddings, batch_key="modality", labels=labels, keep=keep, args=args)
    if scib is not None:
        for name in rows:
            rows[name]["scib"] = scib.loc[name].to_dict()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "inmf_snareseq.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
