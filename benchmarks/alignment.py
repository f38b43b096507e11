"""Aligning iNMF factors: ``pp.centroid_align`` (rliger 2.1) vs ``pp.quantile_norm`` (LIGER).

Two integrations, each factorised once with ``tl.inmf`` (ANLS, k = 20, lambda = 5, 30
iterations), then aligned by both methods from the same factors:

* **SNARE-seq cortex**: RNA and ATAC gene activity of the same 10,309 nuclei (bundled), the
  pairing hidden; scored against the 15 coarse cell types ('Mis' excluded) and by FOSCTTM
  (fraction of the other modality closer than the true partner; 0 is perfect, 0.5 chance).
* **Kang 2018 PBMC**: control vs IFN-beta stimulated (``../shared/data/kang2018_pbmc_ifnb``).
  The data ship no cell types, so the ARI is against *proxy* labels: every condition is
  clustered on its own (log-normalised expression, PCA, Leiden) and each cluster gets the
  PBMC type whose canonical markers it expresses most (see ``MARKERS``).

For each alignment: the median wall time of ``--repeats`` calls after a warm-up call
(``_common.Measurement``, with the cores other processes used meanwhile), the LIGER alignment
score between the datasets, and the ARI of Leiden clusters of the aligned embedding against the
labels: at one fixed resolution (``--resolution``), and the best over ``RESOLUTIONS``
(optimistic: it peeks at the labels). The unaligned factors are the reference point. Then the
scIB metrics of every embedding and of a PCA of the log-normalised counts (``metrics.scib``, on
``--scib-cells`` labelled cells; ``benchmarks/_scib.py``).

    python benchmarks/alignment.py [--resolution 1.0] [--k 20] [--kang ../shared/data/...]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
from _common import REPO, RESULTS, Measurement, code_version, wait_for_idle
from _scib import add_scib_argument, scib_table

import scintegrate as si

# canonical PBMC markers (Seurat's ifnb tutorial and the Kang et al. annotation); coarse types
MARKERS = {
    "CD14 Mono": ["CD14", "LYZ", "S100A8", "S100A9"],
    "CD16 Mono": ["FCGR3A", "MS4A7", "VMO1"],
    "B": ["MS4A1", "CD79A", "CD79B"],
    "T": ["CD3D", "CD3E", "IL7R", "CCR7"],
    "CD8 T": ["CD8A", "CD8B"],
    "NK": ["GNLY", "NKG7", "KLRD1"],
    "DC": ["FCER1A", "CLEC10A"],
    "pDC": ["LILRA4", "IL3RA", "PLD4"],
    "Mk": ["PPBP", "PF4"],
    "Eryth": ["HBB", "HBA2"],
}


RESOLUTIONS = (0.25, 0.5, 1.0, 2.0)


def proxy_labels(adata: ad.AnnData, batch_key: str, seed: int) -> np.ndarray:
    """Marker-based cell types per cluster of each condition clustered on its own."""
    import scanpy as sc

    labels = np.empty(adata.n_obs, dtype=object)
    for name in adata.obs[batch_key].cat.categories:
        rows = np.flatnonzero((adata.obs[batch_key] == name).to_numpy())
        part = ad.AnnData(sp.csr_matrix(adata.X[rows], dtype=np.float32), var=adata.var[[]])
        sc.pp.normalize_total(part, target_sum=1e4)
        sc.pp.log1p(part)
        sc.pp.highly_variable_genes(part, n_top_genes=2000)
        sc.pp.pca(part, n_comps=30, mask_var="highly_variable", random_state=seed)
        sc.pp.neighbors(part, n_neighbors=15, random_state=seed)
        sc.tl.leiden(
            part, resolution=1.0, random_state=seed, flavor="igraph", n_iterations=2, directed=False
        )
        clusters = part.obs["leiden"].to_numpy()
        # mean log-expression of every marker set per cluster, z-scored across clusters
        names = list(MARKERS)
        scores = []
        for markers in MARKERS.values():
            genes = [g for g in markers if g in part.var_names]
            expr = np.asarray(part[:, genes].X.mean(axis=1)).ravel()
            scores.append([expr[clusters == c].mean() for c in np.unique(clusters)])
        scores = np.asarray(scores)  # types x clusters
        z = (scores - scores.mean(1, keepdims=True)) / scores.std(1, keepdims=True)
        best = dict(zip(np.unique(clusters), np.asarray(names)[z.argmax(0)], strict=True))
        labels[rows] = [best[c] for c in clusters]
    return labels.astype(str)


def load_snareseq() -> tuple[ad.AnnData, str, np.ndarray, np.ndarray]:
    rna = si.datasets.snareseq_cortex_rna()
    atac = si.datasets.snareseq_cortex_atac_gene_activity()
    both = ad.concat({"RNA": rna, "ATAC": atac}, label="modality", index_unique="-")
    labels = both.obs["cell_type"].to_numpy().astype(str)
    return both, "modality", labels, labels != "Mis"


def load_kang(path: Path, seed: int) -> tuple[ad.AnnData, str, np.ndarray, np.ndarray]:
    parts = {}
    for name in ("ctrl", "stim"):
        with gzip.open(path / f"pbmc_{name}.h5ad.gz") as handle:
            parts[name] = ad.read_h5ad(handle)
    adata = ad.concat(parts, label="condition", index_unique="-")
    adata.X = sp.csr_matrix(adata.X, dtype=np.float64)
    labels = proxy_labels(adata, "condition", seed)
    return adata, "condition", labels, np.ones(adata.n_obs, dtype=bool)


def scores(adata, rep, batch_key, labels, keep, resolution, paired) -> dict:
    embedding = adata.obsm[rep]
    clusters = si.metrics.leiden_clusters(embedding[keep], resolution=resolution)
    out = {
        "alignment": si.metrics.alignment_score(adata, batches=batch_key, use_rep=rep),
        "ari": si.metrics.adjusted_rand_index(labels[keep], clusters),
        "n_clusters": len(np.unique(clusters)),
        # best over a grid of resolutions: optimistic (it peeks at the labels), but fair to
        # embeddings whose natural cluster count differs
        "ari_best": si.metrics.ari(embedding[keep], labels[keep], resolution=RESOLUTIONS),
    }
    if paired:
        n = adata.n_obs // 2
        out["foscttm"] = si.metrics.foscttm(embedding[:n], embedding[n:])
    return out


def run(name, adata, batch_key, labels, keep, args, *, paired: bool) -> dict:
    si.pp.liger_preprocess(adata, batch_key=batch_key)
    with Measurement() as fit:
        si.tl.inmf(
            adata,
            args.k,
            batch_key=batch_key,
            lambda_=5.0,
            solver="anls",
            max_iter=30,
            tol=0,
            random_state=args.seed,
        )
    rows = {"unaligned iNMF factors": {"seconds": float("nan"), "other_cores": float("nan")}}
    rows["unaligned iNMF factors"] |= scores(
        adata, "X_inmf", batch_key, labels, keep, args.resolution, paired
    )
    calls = {
        "quantile_norm": lambda: si.pp.quantile_norm(adata, batch_key=batch_key),
        "centroid_align": lambda: si.pp.centroid_align(adata, batch_key=batch_key),
        "centroid_align (reference)": lambda: si.pp.centroid_align(
            adata, batch_key=batch_key, reference=args_reference(adata, batch_key), key_added="ref"
        ),
    }
    reps = {
        "quantile_norm": "X_inmf_qn",
        "centroid_align": "X_inmf_ca",
        "centroid_align (reference)": "X_ref",
    }
    for label, call in calls.items():
        call()  # warm-up: imports and first-call costs are not the method's
        times = []
        for _ in range(args.repeats):
            wait_for_idle(args.wait_idle)
            with Measurement() as m:
                call()
            times.append(m)
        rows[label] = {
            "seconds": float(np.median([m.seconds for m in times])),
            "all_seconds": [m.seconds for m in times],
            "other_cores": float(np.median([m.other_cores for m in times])),
            **scores(adata, reps[label], batch_key, labels, keep, args.resolution, paired),
        }
    scib = scib_table(
        adata,
        {"unaligned iNMF factors": "X_inmf"} | {label: reps[label] for label in calls},
        batch_key=batch_key,
        labels=labels,
        keep=keep,
        args=args,
    )
    if scib is not None:
        for label in rows:
            rows[label]["scib"] = scib.loc[label].to_dict()
    sizes = adata.obs[batch_key].value_counts()
    header = (
        f"{name}: {' + '.join(f'{n} {b}' for b, n in sizes.items())} cells, "
        f"{int(adata.var['liger_highly_variable'].sum())} LIGER genes, k={args.k}, lambda=5, "
        f"tl.inmf ANLS 30 it ({fit.seconds:.1f} s); Leiden resolution {args.resolution}; "
        f"{int(keep.sum())} cells scored against {len(np.unique(labels[keep]))} labels"
    )
    return {"header": header, "rows": rows}


def args_reference(adata, batch_key) -> str:
    """The largest batch, as quantile_norm's default reference."""
    return str(adata.obs[batch_key].value_counts().idxmax())


def print_table(result: dict) -> None:
    print(result["header"])
    paired = any("foscttm" in r for r in result["rows"].values())
    line = f"{'alignment method':28s} {'time s':>7s} {'others':>6s} {'alignment':>9s} {'ARI':>6s}"
    line += f" {'clusters':>8s} {'best ARI':>8s}" + (f" {'FOSCTTM':>8s}" if paired else "")
    print(line)
    for name, r in result["rows"].items():
        line = (
            f"{name:28s} {r['seconds']:7.3f} {r['other_cores']:6.2f} {r['alignment']:9.3f} "
            f"{r['ari']:6.3f} {r['n_clusters']:8d} {r['ari_best']:8.3f}"
        )
        print(line + (f" {r['foscttm']:8.3f}" if paired else ""))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=20.0,
        help="before each timed call, wait up to this many seconds for other processes to idle",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kang", type=Path, default=REPO.parent / "shared" / "data" / "kang2018_pbmc_ifnb"
    )
    parser.add_argument("--skip-kang", action="store_true")
    add_scib_argument(parser)
    args = parser.parse_args()
    si.settings.progress_bar = False

    results = {}
    both, key, labels, keep = load_snareseq()
    results["snareseq"] = run(
        "SNARE-seq cortex RNA vs ATAC", both, key, labels, keep, args, paired=True
    )
    print_table(results["snareseq"])
    if not args.skip_kang:
        kang, key, labels, keep = load_kang(args.kang, args.seed)
        results["kang"] = run("Kang PBMC ctrl vs stim", kang, key, labels, keep, args, paired=False)
        print_table(results["kang"])
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "alignment.json"
    out.write_text(
        json.dumps(
            {"args": {**vars(args), "kang": str(args.kang)}, "code": code_version(), **results},
            indent=1,
        )
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
