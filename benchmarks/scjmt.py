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

``--vs-scmomat`` instead runs scJMT (ours) against scMoMaT (PyPI ``scmomat`` 0.2.2, the published
successor of scJMT, in its own virtual environment, ``--scmomat-env``), each in a fresh process
(``benchmarks/_scjmt_worker.py``) with the same thread limit (``--threads``, default 1), on the
same inputs: the two simulated scenarios above (``--datasets1``/``--datasets2`` datasets,
``--seeds`` fit seeds each), with ``--datasets3`` a third one (4 types: RNA 0-2, ATAC 1-3, so
one type only in each modality; ``n_shared=2, n_rna_only=1, n_atac_only=1``) and, with
``--snareseq``, SNARE-seq mouse cortex (all 10,309 nuclei, RNA counts vs ATAC peak counts,
pairing hidden, the bundled gene-peak links). Scores, over all scored cells (SNARE-seq: the 15
coarse types, ``Mis`` not scored) against the true types: ARI / NMI of Leiden clusters of the
joint cell factors (one graph per embedding, scanpy's kNN, 15 neighbours; ours scored three
times: ``ours`` is ``X_scjmt``, the ATAC factors after the MNN post-processing that ``smooth``
asks for, ``ours_raw`` is ``scjmt_C``, the factors without post-processing, as the paper scores
simulated data and as scMoMaT's factors are scored; ``ours_qn`` is ``X_scjmt`` followed by
``pp.quantile_norm``, RNA as the reference, the LIGER path's last step, timed as its
post-processing) at the fixed resolution
``--resolution`` (0.3) and the best over the grid ``--grid``; ARI / NMI of each method's own
clusters (ours: the argmax of the embedding scored; scMoMaT: its tutorial's post-processed graph
+ Leiden 0.9); FOSCTTM of the hidden pairs (SNARE-seq); wall time (counts in memory to cell factors,
preprocessing included) and peak RSS of the worker. On SNARE-seq, scJMT has ``--snareseq-k``
clusters (default 20) and our LIGER path (online iNMF with as many factors, or ``--liger-k``,
+ quantile normalisation, in this process, with each of
the ``--seeds``) is scored the same way for reference, and the scIB metrics
(``benchmarks/_scib.py``, batch = modality, ``--scib-cells`` labelled cells) of every method's
cell factors of the last seed are printed; with ``--skip`` a method's factors are read back from
an earlier run of the same ``--tag``.

``--snareseq-subsets equal unequal`` adds the real-data analogues of the two simulated
scenarios (``SUBSETS``): the SNARE-seq nuclei split at random into two halves, the RNA of one
half against the ATAC of the other (no nucleus in both, so no FOSCTTM), five distinct types in
both (equal) or three RNA types and two of them in the ATAC (unequal), each method and the
LIGER path scored as above.

    python benchmarks/scjmt.py --vs-scmomat --scmomat-env /work/venvs/scmomat [--datasets1 3]
        [--datasets2 3] [--seeds 0] [--snareseq] [--snareseq-subsets equal unequal]
        [--scjmt-options '{"...": ...}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _common import (
    ENVS,
    RESULTS,
    code_version,
    empty_dir,
    ensure_env,
    run_worker,
    status_mb,
    thread_env,
)
from _scib import add_scib_argument, scib_table

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


# ------------------------------------------------------------------------------------------
# scJMT (ours) against scMoMaT, each in a fresh worker process
# ------------------------------------------------------------------------------------------
WORKER = Path(__file__).resolve().parent / "_scjmt_worker.py"
SCMOMAT_CHECK = "import scmomat, torch; assert scmomat.__version__ == '0.2.2'"
GRID = (0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0)


def scmomat_python(env: Path) -> Path:
    """scMoMaT's environment: torch==2.13.0 first (the CPU wheel), then scmomat 0.2.2."""
    python = ensure_env(env, (), SCMOMAT_CHECK, create=False)
    if python is None:
        ensure_env(env, ("torch==2.13.0",), "import torch")
        python = ensure_env(env, ("scmomat==0.2.2",), SCMOMAT_CHECK)
    return python


def write_inputs(path: Path, rna, atac, links) -> None:
    arrays = {}
    for name, X in (("rna", rna), ("atac", atac), ("links", links)):
        X = sp.csr_matrix(X)
        arrays |= {
            f"{name}_data": X.data.astype(np.float32),
            f"{name}_indices": X.indices,
            f"{name}_indptr": X.indptr,
            f"{name}_shape": np.array(X.shape),
        }
    np.savez(path, **arrays)


def score(z_rna, z_atac, labels, truth, keep, paired, args) -> dict:
    """Leiden grid and fixed resolution on the joint factors, own clusters, FOSCTTM."""
    z = np.vstack([z_rna, z_atac])
    resolutions = sorted(set(args.grid) | {args.resolution})
    table = si.metrics.cluster_agreement(z[keep], truth[keep], resolution=resolutions)
    fixed = table[np.isclose(table["resolution"], args.resolution)].iloc[0]
    best_ari = table.loc[table["ari"].idxmax()]
    out = {
        "ari_fixed": float(fixed["ari"]),
        "nmi_fixed": float(fixed["nmi"]),
        "n_clusters_fixed": int(fixed["n_clusters"]),
        "ari_best": float(table["ari"].max()),
        "nmi_best": float(table["nmi"].max()),
        "best_resolution": float(best_ari["resolution"]),
        "ari_own": si.metrics.adjusted_rand_index(truth[keep], labels[keep]),
        "nmi_own": si.metrics.normalized_mutual_info(truth[keep], labels[keep]),
        "grid": table.to_dict(orient="list"),
    }
    if paired:
        out["foscttm"] = si.metrics.foscttm(z_rna, z_atac)
    n_rna = len(z_rna)
    for part, rows in (("rna", slice(0, n_rna)), ("atac", slice(n_rna, None))):
        k = keep[rows]
        out[f"ari_own_{part}"] = si.metrics.adjusted_rand_index(truth[rows][k], labels[rows][k])
    return out


def quantile_normalised(z_rna: np.ndarray, z_atac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LIGER's quantile normalisation (``pp.quantile_norm``, defaults, RNA as the reference) of
    the joint cell factors: what ``pp.quantile_norm(mdata, use_rep="X_scjmt", reference="rna")``
    computes after ``tl.scjmt``."""
    n = len(z_rna)
    both = ad.AnnData(
        sp.csr_matrix((n + len(z_atac), 1), dtype=np.float32),
        obs=pd.DataFrame({"modality": ["rna"] * n + ["atac"] * len(z_atac)}),
    )
    both.obs_names = both.obs_names.astype(str)
    both.obsm["X"] = np.vstack([z_rna, z_atac]).astype(np.float64)
    si.pp.quantile_norm(both, use_rep="X", batch_key="modality", reference="rna")
    z = both.obsm["X_inmf_qn"]
    return z[:n], z[n:]


def run_both(name, rna, atac, links, truth, keep, paired, ours_options, seed, args) -> dict:
    # a skipped method's folder is kept: its factors from an earlier run are read back
    work = RESULTS / "scjmt_vs_scmomat_work" / (name + args.tag)
    work.mkdir(parents=True, exist_ok=True)
    write_inputs(work / "inputs.npz", rna, atac, links)
    env = thread_env(args.threads)
    row = {}
    for impl, python, options in (
        ("ours", sys.executable, ours_options),
        ("scmomat", args.scmomat_python, json.loads(args.scmomat_options)),
    ):
        if impl in args.skip:
            continue
        out = empty_dir(work / impl)
        run = run_worker(
            python,
            WORKER,
            [
                "--impl", impl, "--data", work / "inputs.npz", "--out", out, "--seed", seed,
                "--threads", args.threads, "--options", json.dumps(options),
            ],
            env=env,
            log=work / f"{impl}.log",
        )  # fmt: skip
        info = json.loads((out / "result.json").read_text())
        with np.load(out / "factors.npz", allow_pickle=False) as f:
            embeddings = {impl: (f["z_rna"], f["z_atac"], f["labels"].astype(str))}
            if "z_rna_raw" in f:  # ours: also the factors before the MNN smoothing
                z_rna, z_atac = f["z_rna_raw"], f["z_atac_raw"]
                argmax = np.argmax(np.vstack([z_rna, z_atac]), 1).astype(str)
                embeddings["ours_raw"] = (z_rna, z_atac, argmax)
                # and the smoothed factors quantile-normalised, the LIGER path's last step
                tic = time.perf_counter()
                z_rna, z_atac = quantile_normalised(f["z_rna"], f["z_atac"])
                qn_seconds = time.perf_counter() - tic
                argmax = np.argmax(np.vstack([z_rna, z_atac]), 1).astype(str)
                embeddings["ours_qn"] = (z_rna, z_atac, argmax)
        peak = max(info["fit"]["peak_rss_mb"], info.get("post", {}).get("peak_rss_mb", 0.0))
        for key, (z_rna, z_atac, labels) in embeddings.items():
            post = qn_seconds if key == "ours_qn" else info.get("post", {}).get("seconds", 0.0)
            row[key] = score(z_rna, z_atac, labels, truth, keep, paired, args) | {
                "seconds": info["fit"]["seconds"],
                "seconds_post": post,
                "seconds_process": run.seconds,
                "peak_rss_mb": peak,
                "other_cores": info["fit"]["other_cores"],
                "options": info["options"],
            }
            r = row[key]
            print(
                f"    {name} {key:8s} seed {seed}: ARI Leiden {args.resolution} "
                f"{r['ari_fixed']:.3f} (NMI {r['nmi_fixed']:.3f}), best {r['ari_best']:.3f} (NMI "
                f"{r['nmi_best']:.3f}, res {r['best_resolution']}), own clusters "
                f"{r['ari_own']:.3f}"
                + (f", FOSCTTM {r['foscttm']:.3f}" if paired else "")
                + f" | fit {r['seconds']:.1f} s (+ {r['seconds_post']:.1f} s post-processing), "
                f"peak RSS {r['peak_rss_mb']:.0f} MB, other processes {r['other_cores']:.1f} "
                "cores",
                flush=True,
            )
    return row


def simulated_inputs(number: int, dataset: int):
    if number == 1:
        m = si.datasets.simulate_rna_atac(n_types=5, random_state=dataset)
        sizes = {"n_clusters": 5}
    elif number == 3:  # a type private to each modality
        m = si.datasets.simulate_rna_atac(
            n_types=4, rna_types=[0, 1, 2], atac_types=[1, 2, 3], random_state=dataset
        )
        sizes = {"n_shared": 2, "n_rna_only": 1, "n_atac_only": 1}
    else:
        m = si.datasets.simulate_rna_atac(
            n_types=3, rna_types=[0, 1, 2], atac_types=[1, 2], random_state=dataset
        )
        sizes = {"n_shared": 2, "n_rna_only": 1}
    rna, atac = m["rna"], m["atac"]
    genes = pd.Index(np.asarray(atac.uns["gene_activity"]["genes"]).astype(str))
    links = sp.csr_matrix(atac.varm["gene_activity"]).T.tocsr()[genes.get_indexer(rna.var_names)]
    truth = np.concatenate([rna.obs["cell_type"].astype(str), atac.obs["cell_type"].astype(str)])
    return rna.X, atac.X, links, truth, sizes


def snareseq_inputs():
    rna = si.datasets.snareseq_cortex_rna()
    atac = si.datasets.snareseq_cortex_atac_peaks()
    genes = pd.Index(np.asarray(atac.uns["gene_activity"]["genes"]).astype(str))
    links = sp.csr_matrix(atac.varm["gene_activity"]).T.tocsr()[genes.get_indexer(rna.var_names)]
    truth = np.concatenate([rna.obs["cell_type"].astype(str), atac.obs["cell_type"].astype(str)])
    return rna, atac, links, truth


def liger_snareseq(rna, atac, truth, keep, args, seed: int = 0, activity=None, name="snareseq"):
    """Our LIGER path on the same nuclei: RNA and ATAC gene activity, online iNMF
    (k = ``--liger-k``, by default ``--snareseq-k``, 20) + QN. ``activity``: the ATAC cells'
    gene activity (all nuclei by default); FOSCTTM only when the RNA and ATAC cells are the
    same nuclei."""
    if activity is None:
        activity = si.datasets.snareseq_cortex_atac_gene_activity()
    paired = activity.n_obs == rna.n_obs and bool(np.all(activity.obs_names == rna.obs_names))
    both = ad.concat({"rna": rna, "atac": activity}, label="modality", index_unique="-")
    tic = time.perf_counter()
    si.pp.liger_preprocess(both, batch_key="modality")
    si.tl.online_inmf(both, args.liger_k, batch_key="modality", random_state=seed)
    si.pp.quantile_norm(both, batch_key="modality")
    seconds = time.perf_counter() - tic
    z = both.obsm["X_inmf_qn"]
    n = rna.n_obs
    labels = both.obs["inmf_qn_clusters"].astype(str).to_numpy()
    out = score(z[:n], z[n:], labels, truth, keep, paired, args) | {"seconds": seconds}
    out["embedding"] = z
    print(
        f"    {name} LIGER (online iNMF k={args.liger_k} + QN, in-process) seed {seed}: "
        f"ARI Leiden {args.resolution} "
        f"{out['ari_fixed']:.3f} (NMI {out['nmi_fixed']:.3f}), best {out['ari_best']:.3f}, QN "
        f"clusters {out['ari_own']:.3f}"
        + (f", FOSCTTM {out['foscttm']:.3f}" if paired else "")
        + f" | {seconds:.1f} s",
        flush=True,
    )
    return out


# Real-data analogues of the two simulated scenarios: the SNARE-seq cortex nuclei are split at
# random into two halves, the RNA of one half and the ATAC of the other are kept (no nucleus is
# in both, as in the simulations), restricted to distinct coarse types. Equal: five types in
# both. Unequal: three RNA types, the ATAC two of them (oligodendrocytes only in the RNA), the
# cluster sizes of simulated scenario 2.
SUBSETS = {
    "equal": (
        ("L2/3", "L6", "Astro", "Oligo", "Pvalb"),
        ("L2/3", "L6", "Astro", "Oligo", "Pvalb"),
        {"n_clusters": 20},
    ),
    "unequal": (("L2/3", "Astro", "Oligo"), ("L2/3", "Astro"), {"n_shared": 14, "n_rna_only": 6}),
}


def snareseq_subset(rna, atac, activity, name: str):
    """The RNA and ATAC cells of one :data:`SUBSETS` design (split seed 0)."""
    rna_types, atac_types, sizes = SUBSETS[name]
    types = rna.obs["cell_type"].astype(str).to_numpy()
    half = np.random.default_rng(0).permutation(rna.n_obs) % 2 == 0
    on_rna = half & np.isin(types, rna_types)
    on_atac = ~half & np.isin(types, atac_types)
    truth = np.concatenate([types[on_rna], types[on_atac]])
    return rna[on_rna].copy(), atac[on_atac].copy(), activity[on_atac].copy(), truth, sizes


def vs_summary(rows: list[dict], title: str) -> dict:
    out = {}
    print(f"  {title}: median over {len(rows)} runs [min, max]")
    for impl in ("ours", "ours_raw", "ours_qn", "scmomat", "liger"):
        if not all(impl in r for r in rows):
            continue
        out[impl] = {}
        for key in ("ari_fixed", "nmi_fixed", "ari_best", "nmi_best", "ari_own", "nmi_own",
                    "foscttm", "seconds", "seconds_post", "peak_rss_mb"):  # fmt: skip
            if key not in rows[0][impl]:
                continue
            v = np.array([r[impl][key] for r in rows])
            out[impl][key] = {"median": float(np.median(v)), "min": float(v.min()),
                              "max": float(v.max())}  # fmt: skip
            print(f"    {impl:8s} {key:13s} {np.median(v):9.3f} [{v.min():.3f}, {v.max():.3f}]")
    if "ours" in out and "scmomat" in out:
        ratio = out["scmomat"]["seconds"]["median"] / out["ours"]["seconds"]["median"]
        out["speed_ratio"] = ratio
        print(f"    scMoMaT / ours median fit time: {ratio:.1f}x")
    return out


def vs_scmomat(args) -> dict:
    args.scmomat_python = scmomat_python(args.scmomat_env) if "scmomat" not in args.skip else None
    ours_options = json.loads(args.scjmt_options)
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "code": code_version()}
    design = {1: "", 2: ", an RNA-only type", 3: ", a type only in each modality"}
    for number, n in ((1, args.datasets1), (2, args.datasets2), (3, args.datasets3)):
        if n == 0:
            continue
        rows = []
        equal = "equal" if number == 1 else "unequal"
        print(f"Scenario {number} ({equal} compositions{design[number]}):")
        for dataset in range(n):
            rna, atac, links, truth, sizes = simulated_inputs(number, dataset)
            keep = np.ones(len(truth), dtype=bool)
            for seed in args.seeds:
                row = run_both(
                    f"s{number}_d{dataset}", rna, atac, links, truth, keep, False,
                    sizes | ours_options, seed, args,
                )  # fmt: skip
                rows.append({"dataset": dataset, "seed": seed} | row)
        if rows:
            out[f"scenario{number}"] = {"rows": rows, "summary": vs_summary(rows, "summary")}
    if args.snareseq_subsets:
        rna_all, atac_all, links, _ = snareseq_inputs()
        activity_all = si.datasets.snareseq_cortex_atac_gene_activity()
        for name in args.snareseq_subsets:
            rna, atac, activity, truth, sizes = snareseq_subset(
                rna_all, atac_all, activity_all, name
            )
            keep = np.ones(len(truth), dtype=bool)
            print(
                f"SNARE-seq subset '{name}': {rna.n_obs} RNA nuclei "
                f"({', '.join(SUBSETS[name][0])}), {atac.n_obs} other ATAC nuclei "
                f"({', '.join(SUBSETS[name][1])}):"
            )
            rows = []
            for seed in args.seeds:
                row = run_both(
                    f"snare_{name}", rna.X, atac.X, links, truth, keep, False,
                    sizes | ours_options, seed, args,
                )  # fmt: skip
                if not args.skip_liger:
                    liger = liger_snareseq(
                        rna, atac, truth, keep, args, seed, activity, f"snare_{name}"
                    )
                    row["liger"] = {k: v for k, v in liger.items() if k != "embedding"}
                rows.append({"seed": seed} | row)
            out[f"snare_{name}"] = {"rows": rows, "summary": vs_summary(rows, name)}
    if args.snareseq:
        print("SNARE-seq mouse cortex, 10,309 nuclei, RNA vs ATAC peaks, pairing hidden:")
        rna, atac, links, truth = snareseq_inputs()
        keep = truth != "Mis"
        sizes = {"n_clusters": args.snareseq_k}
        rows = []
        for seed in args.seeds:
            row = run_both(
                "snareseq", rna.X, atac.X, links, truth, keep, True, sizes | ours_options,
                seed, args,
            )  # fmt: skip
            rows.append({"seed": seed} | row)
        out["snareseq"] = {"rows": rows, "summary": vs_summary(rows, "SNARE-seq")}
        liger = None
        if not args.skip_liger:
            # the last seed's embedding goes into the scIB table, as ours (read back) is the last
            runs = [liger_snareseq(rna, atac, truth, keep, args, seed) for seed in args.seeds]
            liger = runs[-1]
            out["snareseq"]["liger"] = {k: v for k, v in liger.items() if k != "embedding"}
            out["snareseq"]["liger_seeds"] = [
                {"seed": seed} | {k: v for k, v in run.items() if k != "embedding"}
                for seed, run in zip(args.seeds, runs, strict=True)
            ]
        table = snareseq_scib(rna, truth, keep, liger, args)
        if table is not None:
            out["snareseq"]["scib"] = table.to_dict(orient="index")
    return out


def snareseq_scib(rna, truth, keep, liger, args):
    """scIB metrics (batch: modality) of the cell factors of the last fit seed of each method
    (read back from the work folders, so ``--skip`` reuses an earlier run's) and of the LIGER
    path; the unintegrated baseline is a PCA of RNA counts and ATAC gene activity together."""
    activity = si.datasets.snareseq_cortex_atac_gene_activity()
    both = ad.AnnData(
        sp.vstack([rna.X, activity[:, rna.var_names].X], format="csr"),
        obs=pd.DataFrame({"modality": ["RNA"] * rna.n_obs + ["ATAC"] * rna.n_obs}),
    )
    names = {}
    for impl, name in (("ours", "scJMT (ours)"), ("scmomat", "scMoMaT")):
        path = RESULTS / "scjmt_vs_scmomat_work" / ("snareseq" + args.tag) / impl / "factors.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as f:
                both.obsm[f"X_{impl}"] = np.vstack([f["z_rna"], f["z_atac"]])
                if impl == "ours":
                    both.obsm["X_ours_qn"] = np.vstack(quantile_normalised(f["z_rna"], f["z_atac"]))
            names[name] = f"X_{impl}"
            if impl == "ours":
                names["scJMT (ours) + QN"] = "X_ours_qn"
    if liger is not None:
        both.obsm["X_liger"] = liger["embedding"]
        names["LIGER (online iNMF + QN)"] = "X_liger"
    if not names:
        return None
    return scib_table(both, names, batch_key="modality", labels=truth, keep=keep, args=args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets1", type=int, default=6)
    parser.add_argument("--datasets2", type=int, default=12)
    parser.add_argument(
        "--datasets3", type=int, default=0, help="--vs-scmomat: datasets of scenario 3"
    )
    parser.add_argument("--skip-links", action="store_true")
    parser.add_argument(
        "--center-couplings",
        action="store_true",
        help="scJMT with center_couplings=True and weights sigma = features = 1 (not the paper's)",
    )
    parser.add_argument(
        "--random-init", action="store_true", help="scJMT with the paper's init='random'"
    )
    parser.add_argument("--vs-scmomat", action="store_true", help="ours against scMoMaT 0.2.2")
    parser.add_argument("--scmomat-env", type=Path, default=ENVS / "scmomat")
    parser.add_argument("--snareseq", action="store_true", help="also SNARE-seq cortex")
    parser.add_argument(
        "--snareseq-subsets",
        nargs="*",
        default=[],
        choices=tuple(SUBSETS),
        help="also the real-data analogues of the simulated scenarios (SNARE-seq subsets)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=0.3, help="fixed Leiden resolution")
    parser.add_argument("--grid", type=float, nargs="+", default=list(GRID))
    parser.add_argument("--scjmt-options", default="{}", help="JSON options of tl.scjmt")
    parser.add_argument("--scmomat-options", default="{}", help="JSON settings of scMoMaT")
    parser.add_argument("--skip", nargs="*", default=[], choices=("ours", "scmomat"))
    parser.add_argument("--skip-liger", action="store_true")
    parser.add_argument(
        "--snareseq-k",
        type=int,
        default=20,
        help="factors on SNARE-seq cortex: scJMT's n_clusters and the LIGER path's k "
        "(20, tl.online_inmf's default)",
    )
    parser.add_argument(
        "--liger-k", type=int, default=None, help="the LIGER path's k alone (default: --snareseq-k)"
    )
    parser.add_argument("--tag", default="", help="suffix of the results file")
    add_scib_argument(parser)
    args = parser.parse_args()
    if args.liger_k is None:
        args.liger_k = args.snareseq_k
    if args.vs_scmomat:
        si.settings.progress_bar = False
        out = vs_scmomat(args)
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"scjmt_vs_scmomat{args.tag}.json"
        path.write_text(json.dumps(out, indent=1, default=float))
        print(f"saved {path}")
        return
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
