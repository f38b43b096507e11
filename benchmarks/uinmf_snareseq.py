"""UINMF vs iNMF on SNARE-seq mouse cortex: do the ATAC peaks, as unshared features, help?

The bundled SNARE-seq data hold RNA and ATAC of the same 10,309 nuclei. To hide the pairing from
the methods, the nuclei are split at random (``--split-seed``) into three disjoint parts: the RNA
of one half of the training nuclei, the ATAC of the other half, and ``--n-heldout`` held-out
nuclei whose two halves are used only afterwards, to check the pairing. The ATAC dataset has the
gene activity of the RNA's genes (shared features) and its peaks (unshared features; every
bundled peak is linked to a gene, so there are no unlinked or intergenic peaks to add).

Both methods see the same cells, the same LIGER preprocessing of the mosaic AnnData
(``pp.liger_preprocess`` per modality) and the same shared genes; UINMF adds the ATAC's peaks,
either the ones ``pp.liger_unshared`` selects (LIGER's variance test, rliger's default threshold),
the ``--n-top-peaks`` peaks open in most ATAC training cells, or all of them. For each method
and fit seed:

* wall time of the tool call and its final objective;
* on the training cells, after ``pp.quantile_norm`` (reference RNA): LIGER's alignment score,
  Leiden clusters at a fixed resolution (default 1.0, 15 neighbours) of both modalities together,
  and their ARI against the 15 coarse cell types (``Mis`` excluded), overall and within each
  modality;
* on the held-out nuclei: their RNA and ATAC profiles are scaled with the training datasets'
  statistics and embedded with the learned factors (the H-step: ``W``, ``V_i``, and ``U_i`` for
  the ATAC); FOSCTTM of the pairs (0 perfect, 0.5 chance), on the raw factors and after a
  quantile normalisation of training + held-out factors together (it never sees the pairing).

Then the scIB metrics of each method's first fit seed (after quantile normalisation) and of a PCA
of the log-normalised shared genes (``metrics.scib`` on ``--scib-cells`` labelled training cells,
batches = modality; ``_scib.py``).

    python benchmarks/uinmf_snareseq.py [--k 20] [--seeds 0 1 2] [--resolution 1.0]
"""

from __future__ import annotations

import argparse
import json
import time

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _common import RESULTS
from _scib import add_scib_argument, scib_table

import scintegrate as si
from scintegrate._core.inmf import solve_h
from scintegrate._core.uinmf import solve_h_uinmf


def liger_scale(train, cells) -> sp.csr_matrix:
    """LIGER's normalise + scaleNotCenter of ``cells`` with the statistics of ``train`` (both
    counts of one dataset's features): each cell over its total, each feature over its
    root-mean-square among the training cells."""
    train = sp.csr_matrix(train, dtype=np.float64)
    normed = sp.diags(1.0 / np.asarray(train.sum(1)).ravel()) @ train
    rms = np.sqrt(np.asarray(normed.multiply(normed).sum(0)).ravel() / (train.shape[0] - 1))
    inv = np.divide(1.0, rms, out=np.zeros_like(rms), where=rms > 0)
    cells = sp.csr_matrix(cells, dtype=np.float64)
    return (sp.diags(1.0 / np.asarray(cells.sum(1)).ravel()) @ cells @ sp.diags(inv)).tocsr()


def build(split_seed: int, n_heldout: int):
    rna = si.datasets.snareseq_cortex_rna()
    activity = si.datasets.snareseq_cortex_atac_gene_activity()
    peaks = si.datasets.snareseq_cortex_atac_peaks()
    order = np.random.default_rng(split_seed).permutation(rna.n_obs)
    heldout, rest = np.sort(order[:n_heldout]), order[n_heldout:]
    rna_cells, atac_cells = np.sort(rest[: len(rest) // 2]), np.sort(rest[len(rest) // 2 :])

    atac_counts = sp.hstack([activity.X, peaks.X], format="csr")
    atac_names = pd.Index(list(activity.var_names) + list(peaks.var_names))
    atac = ad.AnnData(atac_counts[atac_cells], obs=activity.obs.iloc[atac_cells].copy())
    atac.var_names = atac_names
    adata = ad.concat(
        {"RNA": rna[rna_cells].copy(), "ATAC": atac},
        join="outer",
        label="modality",
        index_unique="-",
    )
    si.pp.liger_preprocess(adata, batch_key="modality")
    si.pp.liger_unshared(adata, batch_key="modality", features={"ATAC": peaks.var_names})
    # held-out nuclei, both modalities, in the columns of each dataset's own features
    rna_cols = rna.var_names.get_indexer(adata.var_names)
    atac_cols = atac_names.get_indexer(adata.var_names)
    scaled = {
        "RNA": liger_scale(rna.X[rna_cells], rna.X[heldout]),
        "ATAC": liger_scale(atac_counts[atac_cells], atac_counts[heldout]),
    }
    # check: the same function reproduces liger_preprocess on the training cells
    is_atac = (adata.obs["modality"] == "ATAC").to_numpy()
    used = np.flatnonzero(adata.var["liger_highly_variable"].to_numpy())[:200]
    mine = liger_scale(atac_counts[atac_cells], atac_counts[atac_cells])[:, atac_cols[used]]
    theirs = adata.layers["liger_scaled"][is_atac][:, used]
    assert abs(mine - theirs).max() < 1e-6 * max(abs(theirs).max(), 1)
    return adata, scaled, {"RNA": rna_cols, "ATAC": atac_cols}, heldout


def pca_of_counts(counts, n_comps: int = 50) -> np.ndarray:
    """PCA of log-normalised counts (10,000 per cell, log1p), the usual unintegrated baseline."""
    import scanpy as sc

    part = ad.AnnData(sp.csr_matrix(counts, dtype=np.float32, copy=True))
    sc.pp.normalize_total(part, target_sum=1e4)
    sc.pp.log1p(part)
    sc.pp.pca(part, n_comps=n_comps, random_state=0)
    return part.obsm["X_pca"]


def embed_heldout(adata, key, scaled, cols, lambda_, shared, own):
    """The held-out nuclei's factors in both modalities, from the fit's slots: W and V_i on the
    ``shared`` genes, and for UINMF U_ATAC on the ATAC's unshared features ``own``."""
    batches = list(adata.uns[key]["batches"])
    shared = np.flatnonzero(shared)
    W = adata.varm[f"{key}_W"][shared]
    out = {}
    for modality in ("RNA", "ATAC"):
        i = batches.index(modality)
        X = scaled[modality][:, cols[modality][shared]]
        V = adata.varm[f"{key}_V"][shared, :, i]
        if own is None:
            out[modality] = solve_h(X, W, V, lambda_)[0]
        elif modality == "ATAC":
            features = np.flatnonzero(own)
            Y = scaled[modality][:, cols[modality][features]]
            U = adata.varm[f"{key}_U"][features, :, i]
            out[modality] = solve_h_uinmf(X, Y, W, V, U, lambda_)[0]
        else:
            out[modality] = solve_h_uinmf(X, None, W, V, None, lambda_)[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--lambda", dest="lambda_", type=float, default=5.0)
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--n-heldout", type=int, default=1000)
    parser.add_argument("--n-top-peaks", type=int, default=2000)
    add_scib_argument(parser)
    args = parser.parse_args()
    si.settings.progress_bar = False

    adata, scaled, cols, heldout = build(args.split_seed, args.n_heldout)
    owner = adata.var["liger_unshared"]
    shared = adata.var["liger_highly_variable"].to_numpy() & owner.isna().to_numpy()
    peaks = (owner == "ATAC").to_numpy()
    selected = adata.var["liger_unshared_highly_variable"].to_numpy()
    modality = adata.obs["modality"].to_numpy().astype(str)
    labels = adata.obs["cell_type"].to_numpy().astype(str)
    keep = labels != "Mis"
    print(
        f"SNARE-seq cortex, disjoint nuclei: {int((modality == 'RNA').sum())} RNA + "
        f"{int((modality == 'ATAC').sum())} ATAC training cells, {len(heldout)} held-out pairs; "
        f"{int(shared.sum())} shared genes (LIGER selection), ATAC peaks: {int(selected.sum())} "
        f"selected by pp.liger_unshared of {int(peaks.sum())}; k={args.k}, lambda={args.lambda_}, "
        f"{args.max_iter} iterations (tol=0), Leiden resolution {args.resolution} (fixed), "
        f"fit seeds {args.seeds}; 'Mis' cells excluded from the ARI"
    )
    # a middle ground: the peaks open in the most ATAC training cells
    detected = np.asarray((adata.X[modality == "ATAC"] > 0).sum(0)).ravel()
    top = np.zeros(adata.n_vars, dtype=bool)
    top[np.argsort(-np.where(peaks, detected, -1), kind="stable")[: args.n_top_peaks]] = True
    methods = {
        "iNMF (shared genes)": (si.tl.inmf, {"mask_var": shared}, None),
        "UINMF (+ selected peaks)": (si.tl.uinmf, {}, selected & peaks),
        f"UINMF (+ {args.n_top_peaks} most open peaks)": (
            si.tl.uinmf,
            {"mask_unshared": top},
            top,
        ),
        "UINMF (+ all peaks)": (si.tl.uinmf, {"mask_unshared": None}, peaks),
    }
    rows = []
    for name, (tool, options, own) in methods.items():
        for seed in args.seeds:
            key = "fit"
            tic = time.perf_counter()
            tool(
                adata,
                args.k,
                batch_key="modality",
                lambda_=args.lambda_,
                max_iter=args.max_iter,
                tol=0,
                random_state=seed,
                key_added=key,
                **options,
            )
            seconds = time.perf_counter() - tic
            uns = adata.uns[key]
            if own is not None:  # the tool used exactly these unshared features
                assert uns["n_unshared"][list(uns["batches"]).index("ATAC")] == own.sum()
            si.pp.quantile_norm(
                adata, use_rep=f"X_{key}", batch_key="modality", reference="RNA", key_added="qn"
            )
            embedding = adata.obsm["X_qn"]
            if seed == args.seeds[0]:  # the scIB table scores the first fit seed of each method
                adata.obsm[f"X_scib{len(rows) // len(args.seeds)}"] = embedding.copy()
            clusters = si.metrics.leiden_clusters(embedding, resolution=args.resolution)

            def ari(mask, clusters=clusters):
                return si.metrics.adjusted_rand_index(labels[mask], clusters[mask])

            held = embed_heldout(adata, key, scaled, cols, args.lambda_, shared, own)
            labels_all = np.r_[modality, ["RNA"] * len(heldout), ["ATAC"] * len(heldout)]
            both = ad.AnnData(
                sp.csr_matrix((len(labels_all), 1)),  # quantile_norm reads only obsm and obs
                obs=pd.DataFrame({"modality": labels_all}, index=map(str, range(len(labels_all)))),
            )
            both.obsm["H"] = np.vstack([adata.obsm[f"X_{key}"], held["RNA"], held["ATAC"]])
            si.pp.quantile_norm(both, use_rep="H", batch_key="modality", reference="RNA")
            n = adata.n_obs
            qn = both.obsm["X_inmf_qn"]
            rows.append(
                {
                    "method": name,
                    "seed": seed,
                    "seconds": seconds,
                    "objective": float(uns["objective"]),
                    "alignment": si.metrics.alignment_score(
                        adata, batches="modality", use_rep="X_qn"
                    ),
                    "ari": ari(keep),
                    "ari_rna": ari(keep & (modality == "RNA")),
                    "ari_atac": ari(keep & (modality == "ATAC")),
                    "clusters": len(np.unique(clusters)),
                    "foscttm": si.metrics.foscttm(held["RNA"], held["ATAC"]),
                    "foscttm_qn": si.metrics.foscttm(
                        qn[n : n + len(heldout)], qn[n + len(heldout) :]
                    ),
                }
            )
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()})
    table = pd.DataFrame(rows)
    columns = ["seconds", "alignment", "ari", "ari_rna", "ari_atac", "foscttm", "foscttm_qn"]
    summary = table.groupby("method", sort=False)[columns].agg(["mean", "min", "max"])
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))
        print(summary.round(3))
    # scIB baseline: PCA of the log-normalised shared genes (RNA counts, ATAC gene activity)
    adata.obsm["X_pca_shared"] = pca_of_counts(adata[:, shared].X)
    scib = scib_table(
        adata,
        {name: f"X_scib{i}" for i, name in enumerate(methods)},
        batch_key="modality",
        labels=labels,
        keep=keep,
        args=args,
        unintegrated="X_pca_shared",
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "uinmf_snareseq.json"
    record = {"args": vars(args), "rows": rows}
    if scib is not None:
        record["scib_first_seed"] = scib.to_dict(orient="index")
    out.write_text(json.dumps(record, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
