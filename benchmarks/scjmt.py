"""scJMT vs LIGER (our online iNMF) on the two simulated experiments of Zhang et al. (2021),
and the speed of pp.gene_activity.

1. ``pp.gene_activity`` link building: 200,000 random peaks x 60,000 random genes on 20
   chromosomes, each rule; wall time and links found.
2. Scenario 1 (equal compositions): 6 datasets, 5 cell types shared by RNA and ATAC.
3. Scenario 2 (unequal): 12 datasets, RNA with 3 types, ATAC with 2 of them (2 shared).

Each dataset comes from ``datasets.simulate_rna_atac`` (seed = dataset index). scJMT
(``tl.scjmt`` with default settings: 100 iterations, 3 restarts, matched initialisation;
``n_clusters=5`` or
``n_shared=2, n_rna_only=1``) is scored by the ARI of its argmax clusters (the paper's
evaluation: no post-processing), after the MNN smoothing, and after LIGER's quantile
normalisation of its cell factors. LIGER: ATAC gene activity (ATAC counts summed over the true
linked regions) and RNA as two datasets, ``pp.liger_preprocess`` -> ``tl.online_inmf``
(k = number of cell types) -> ARI of the argmax of H ("no QN") and of ``pp.quantile_norm``'s
clusters ("QN"). ARI is computed over all RNA and ATAC cells against the true types.

``--center-couplings`` runs scJMT with the (non-paper) centred cosine couplings and coupling
weights 1 instead; ``--random-init`` the paper's N(0, 1) initialisation (``init="random"``).

    python benchmarks/scjmt.py [--datasets1 6] [--datasets2 12] [--skip-links] [--center-couplings]
        [--random-init]
"""

from __future__ import annotations

import argparse
import json
import time

import anndata as ad
import mudata
import numpy as np
import scipy.sparse as sp
from _common import RESULTS, status_mb

import scintegrate as si
from scintegrate._core.gene_activity import Genes, Intervals, link_matrix

mudata.set_options(pull_on_update=False)


def link_timing() -> dict:
    rng = np.random.default_rng(0)
    chroms = np.array([f"chr{i}" for i in range(1, 21)], dtype=object)
    n_peaks, n_genes = 200_000, 60_000
    p_start = rng.integers(0, 200_000_000, n_peaks)
    peaks = Intervals(
        rng.choice(chroms, n_peaks), p_start, p_start + rng.integers(200, 1500, n_peaks)
    )
    g_start = rng.integers(0, 200_000_000, n_genes)
    genes = Genes(
        rng.choice(chroms, n_genes),
        g_start,
        g_start + rng.integers(500, 100_000, n_genes),
        rng.choice(np.array([1, -1], dtype=np.int8), n_genes),
        np.array([f"g{i}" for i in range(n_genes)], dtype=object),
    )
    out = {}
    for rule in ("gene_body", "promoter", "distance"):
        tic = time.perf_counter()
        links = link_matrix(peaks, genes, rule=rule)
        out[rule] = {"seconds": time.perf_counter() - tic, "links": int(links.nnz)}
        print(
            f"  gene_activity links, rule={rule:9s}: {out[rule]['seconds']:.2f} s, "
            f"{links.nnz:,} links (200,000 peaks x 60,000 genes)",
            flush=True,
        )
    return out


def labels_of(m) -> np.ndarray:
    lab = np.empty(m.n_obs, dtype=object)
    for mod in ("rna", "atac"):
        lab[m.obs_names.get_indexer(m[mod].obs_names)] = m[mod].obs["cell_type"].astype(str)
    return lab.astype(str)


SCJMT_OPTIONS: dict = {}


def run_scjmt(m, scenario: int, seed: int) -> dict:
    sizes = {"n_clusters": 5} if scenario == 1 else {"n_shared": 2, "n_rna_only": 1}
    tic = time.perf_counter()
    si.tl.scjmt(m, **sizes, random_state=seed, **SCJMT_OPTIONS)
    seconds = time.perf_counter() - tic
    truth = labels_of(m)
    raw = np.argmax(m.obsm["scjmt_C"], 1).astype(str)
    smooth = m.obs["scjmt_clusters"].astype(str).to_numpy()
    # LIGER's quantile normalisation applied to the scJMT cell factors
    qn = ad.AnnData(np.zeros((m.n_obs, 1)), obs={"modality": _modality(m)})
    qn.obsm["X_scjmt"] = m.obsm["scjmt_C"]
    qn.obs_names = m.obs_names
    si.pp.quantile_norm(qn, use_rep="X_scjmt", batch_key="modality", key_added="qn")
    return {
        "seconds": seconds,
        "ari_no_qn": si.metrics.adjusted_rand_index(truth, raw),
        "ari_mnn": si.metrics.adjusted_rand_index(truth, smooth),
        "ari_qn": si.metrics.adjusted_rand_index(truth, qn.obs["qn_clusters"].astype(str)),
    }


def _modality(m) -> np.ndarray:
    out = np.empty(m.n_obs, dtype=object)
    for mod in ("rna", "atac"):
        out[m.obs_names.get_indexer(m[mod].obs_names)] = mod
    return out


def run_liger(m, k: int, seed: int) -> dict:
    rna, atac = m["rna"], m["atac"]
    activity = sp.csr_matrix(atac.X @ atac.varm["gene_activity"])
    genes = np.asarray(atac.uns["gene_activity"]["genes"]).astype(str)
    both = ad.concat(
        {
            "rna": ad.AnnData(rna.X, obs=rna.obs[["cell_type"]], var={"_": np.zeros(rna.n_vars)}),
            "atac": ad.AnnData(activity, obs=atac.obs[["cell_type"]]),
        },
        label="modality",
        index_unique="-",
        join="outer",
    )
    both.var_names = genes
    tic = time.perf_counter()
    si.pp.liger_preprocess(both, batch_key="modality")
    si.tl.online_inmf(both, k, batch_key="modality", random_state=seed)
    seconds_inmf = time.perf_counter() - tic
    si.pp.quantile_norm(both, batch_key="modality")
    seconds = time.perf_counter() - tic
    truth = both.obs["cell_type"].astype(str).to_numpy()
    return {
        "seconds": seconds,
        "seconds_inmf": seconds_inmf,
        "ari_no_qn": si.metrics.adjusted_rand_index(truth, np.argmax(both.obsm["X_inmf"], 1)),
        "ari_qn": si.metrics.adjusted_rand_index(truth, both.obs["inmf_qn_clusters"].astype(str)),
    }


def scenario(number: int, n_datasets: int) -> list[dict]:
    rows = []
    for seed in range(n_datasets):
        if number == 1:
            m = si.datasets.simulate_rna_atac(n_types=5, random_state=seed)
            k = 5
        else:
            m = si.datasets.simulate_rna_atac(
                n_types=3, rna_types=[0, 1, 2], atac_types=[1, 2], random_state=seed
            )
            k = 3
        row = {"dataset": seed, "scjmt": run_scjmt(m, number, seed), "liger": run_liger(m, k, seed)}
        s, lg = row["scjmt"], row["liger"]
        print(
            f"  scenario {number} dataset {seed:2d}: scJMT ARI {s['ari_no_qn']:.3f} (MNN "
            f"{s['ari_mnn']:.3f}, QN {s['ari_qn']:.3f}) {s['seconds']:.1f} s | LIGER ARI "
            f"{lg['ari_no_qn']:.3f} (QN {lg['ari_qn']:.3f}) {lg['seconds']:.1f} s",
            flush=True,
        )
        rows.append(row)
    return rows


def summary(rows: list[dict], number: int) -> dict:
    def col(method, key):
        return np.array([r[method][key] for r in rows])

    table = {
        "scJMT (no post-processing)": col("scjmt", "ari_no_qn"),
        "scJMT + MNN smoothing": col("scjmt", "ari_mnn"),
        "scJMT + quantile norm": col("scjmt", "ari_qn"),
        "LIGER online iNMF (no QN)": col("liger", "ari_no_qn"),
        "LIGER online iNMF + QN": col("liger", "ari_qn"),
    }
    times = {"scJMT": col("scjmt", "seconds"), "LIGER": col("liger", "seconds")}
    print(f"Scenario {number} ({len(rows)} datasets): ARI median [min, max], mean")
    for name, v in table.items():
        print(
            f"  {name:28s} {np.median(v):.3f} [{v.min():.3f}, {v.max():.3f}]  mean {v.mean():.3f}"
        )
    wins = np.sum(table["scJMT (no post-processing)"] > table["LIGER online iNMF + QN"])
    print(f"  scJMT (no post-processing) above LIGER + QN on {wins} of {len(rows)} datasets")
    for name, v in times.items():
        print(f"  {name} wall time per dataset: median {np.median(v):.1f} s")
    return {
        "ari": {k: v.tolist() for k, v in table.items()},
        "seconds": {k: v.tolist() for k, v in times.items()},
        "scjmt_wins_vs_liger_qn": int(wins),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets1", type=int, default=6)
    parser.add_argument("--datasets2", type=int, default=12)
    parser.add_argument("--skip-links", action="store_true")
    parser.add_argument(
        "--center-couplings",
        action="store_true",
        help="scJMT with center_couplings=True and weights sigma = features = 1 (not the paper's)",
    )
    parser.add_argument(
        "--random-init", action="store_true", help="scJMT with the paper's init='random'"
    )
    args = parser.parse_args()
    if args.random_init:
        SCJMT_OPTIONS.update(init="random")
    if args.center_couplings:
        SCJMT_OPTIONS.update(center_couplings=True, weights={"sigma": 1.0, "features": 1.0})
    si.settings.progress_bar = False
    out: dict = {"args": vars(args)}
    if not args.skip_links:
        print("pp.gene_activity link building:")
        out["links"] = link_timing()
    for number, n in ((1, args.datasets1), (2, args.datasets2)):
        if n:
            print(f"Scenario {number}:", flush=True)
            rows = scenario(number, n)
            out[f"scenario{number}"] = {"rows": rows, "summary": summary(rows, number)}
    out["peak_rss_mb"] = status_mb("VmHWM")  # never reset: the peak of the whole run
    print(f"peak RSS of the whole run: {out['peak_rss_mb']:.0f} MB")
    RESULTS.mkdir(exist_ok=True)
    name = (
        "scjmt"
        + ("_centered" if args.center_couplings else "")
        + ("_random" if args.random_init else "")
    )
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
