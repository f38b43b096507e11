"""Benchmark our scETM (``tl.etm``) against scETM 0.5.0 on CPU.

1. **SNARE-seq mouse cortex RNA** (bundled ``datasets.snareseq_cortex_rna()``: 10,309 cells x
   1,677 genes, raw counts, 12 libraries as batches, 15 coarse cell types): both
   implementations train 16 topics with batch intercepts, mini-batches of 2000 cells, the same
   number of gradient steps (default 515 = scETM's 100 epochs), each with its own defaults
   otherwise (Adam 5e-3, decay 6e-5, clipping 50; KL weight: ours 1, scETM 1e-7; pass
   ``--kl-weight`` to force one value on both). Printed: seconds per step, peak RSS, and the
   ARI / NMI of Leiden clusters of the embedding against the cell types, at a fixed resolution
   and the best over scETM's own resolution grid (an optimistic, label-peeking selection, shown
   because it is what scETM reports).
2. **The course assignment's setting**: 16 topics, 1000 full-batch steps on ~2,000 cells x
   ~4,000 genes (2,000 random PBMC 3k cells, the 4,000 most variable genes), ours only unless
   ``--assignment-scetm``.

scETM is not a dependency: it lives in ``benchmarks/.envs/scetm`` (created with
``--create-envs``: ``pip install torch==2.13.0`` first, then ``scetm tensorboard``), and is
skipped with a note when missing. Each run is a fresh subprocess (``_etm_worker.py``) limited
to ``--threads`` threads that times the training loop only and reports its peak RSS.

Run from the repository root::

    .venv/bin/python benchmarks/etm.py            # both parts
    .venv/bin/python benchmarks/etm.py --quick    # fewer steps

Results are printed and written to ``benchmarks/results/etm.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import ENVS, RESULTS, code_version, ensure_env, run_worker, thread_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "_etm_worker.py"
PBMC = REPO.parent / "shared" / "data" / "pbmc3k_10x" / "pbmc3k_raw.h5ad.gz"
SCETM_PACKAGES = ("torch==2.13.0", "scetm==0.5.0", "tensorboard")
SCETM_CHECK = "import scETM"
# scETM's evaluate() grid
RESOLUTIONS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
FIXED_RESOLUTION = 0.5


def save_inputs(path: Path, X, batch, labels) -> None:
    X = sp.csr_matrix(X, dtype=np.float64)
    np.savez(
        path,
        data=X.data,
        indices=X.indices,
        indptr=X.indptr,
        shape=np.asarray(X.shape),
        batch=np.asarray(batch, dtype=np.int64),
        labels=np.asarray(labels, dtype=str),
    )


def snareseq():
    import scintegrate as si

    adata = si.datasets.snareseq_cortex_rna()
    batch = adata.obs["library"].astype("category").cat.codes.to_numpy()
    return adata.X, batch, adata.obs["cell_type"].astype(str).to_numpy()


def pbmc_assignment(path: Path, n_cells: int = 2000, n_genes: int = 4000):
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(path) if path.suffix != ".gz" else _read_gz(path)
    sc.pp.filter_genes(adata, min_cells=1)
    adata = adata[np.random.default_rng(0).choice(adata.n_obs, n_cells, replace=False)].copy()
    sc.pp.filter_genes(adata, min_cells=1)
    log = adata.copy()
    sc.pp.normalize_total(log, target_sum=1e4)
    sc.pp.log1p(log)
    sc.pp.highly_variable_genes(log, n_top_genes=n_genes, flavor="seurat")
    X = adata[:, log.var["highly_variable"].to_numpy()].X
    return X, np.zeros(X.shape[0], dtype=np.int64), np.full(X.shape[0], "x")


def _read_gz(path: Path):
    import gzip
    import shutil

    import anndata as ad

    with tempfile.NamedTemporaryFile(suffix=".h5ad") as tmp:
        with gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, tmp)
        tmp.flush()
        return ad.read_h5ad(tmp.name)


def fit_in_worker(python, impl, data, out, args, *, steps, batch_size, batches, threads, seed=0):
    """Run ``_etm_worker.py`` in a subprocess; returns its JSON result, theta and delta."""
    arguments = [
        "--impl", impl, "--data", data, "--out", out, "--k", args.k, "--steps", steps,
        "--batch-size", batch_size, "--wait-idle", args.wait_idle, "--seed", seed,
    ]  # fmt: skip
    if batches:
        arguments.append("--batches")
    if args.kl_weight is not None:
        arguments += ["--kl-weight", args.kl_weight]
    env = thread_env(threads)
    # --omp-wait-policy passive: idle OpenMP threads sleep instead of spinning; on a busy shared
    # machine spinning threads of a 2-thread pool wait on each other several-fold (measured 4x
    # for ours). "default" leaves OpenMP as users get it. The same for both sides.
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    env["PYTHONPATH"] = str(REPO / "src") + ":" + str(HERE)
    stdout = run_worker(python, WORKER, arguments, env=env, cwd=HERE).stdout
    result = json.loads(stdout.strip().splitlines()[-1])
    embedding = np.load(out / "embedding.npz")
    return result, embedding["theta"], embedding["delta"]


def print_run(impl: str, result: dict) -> None:
    print(
        f"  {impl:6s} {result['steps']} steps {result['seconds']:7.1f} s  "
        f"{1000 * result['seconds_per_step']:7.1f} ms/step  peak RSS "
        f"{result['peak_rss_mb']:7.0f} MiB  (other processes: "
        f"{result['other_cores']:.1f} cores)"
    )


def clustering_scores(embedding, labels) -> dict:
    from scintegrate.metrics import cluster_agreement

    grid = cluster_agreement(embedding, labels, resolution=list(RESOLUTIONS))
    fixed = cluster_agreement(embedding, labels, resolution=FIXED_RESOLUTION)
    return {
        f"ari_res{FIXED_RESOLUTION}": float(fixed["ari"].iloc[0]),
        f"nmi_res{FIXED_RESOLUTION}": float(fixed["nmi"].iloc[0]),
        "ari_best_of_grid": float(grid["ari"].max()),
        "nmi_best_of_grid": float(grid["nmi"].max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=515, help="SNARE-seq gradient steps")
    parser.add_argument("--assignment-steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--omp-wait-policy",
        choices=("default", "passive", "active"),
        default="default",
        help="OMP_WAIT_POLICY of both workers ('default': unset, as users run)",
    )
    parser.add_argument("--kl-weight", type=float, default=None)
    parser.add_argument("--wait-idle", type=float, default=30.0)
    parser.add_argument("--create-envs", action="store_true")
    parser.add_argument("--skip-scetm", action="store_true")
    parser.add_argument("--skip-assignment", action="store_true")
    parser.add_argument("--skip-snareseq", action="store_true")
    parser.add_argument("--assignment-scetm", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100 and 200 steps")
    parser.add_argument(
        "--seeds", type=int, default=1, help="SNARE-seq runs per implementation (seeds 0, 1, ...)"
    )
    parser.add_argument("--pbmc", type=Path, default=PBMC, help="PBMC 3k raw .h5ad(.gz)")
    parser.add_argument("--results", type=Path, default=RESULTS / "etm.json")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.assignment_steps = 100, 200

    scetm_python = None
    if not args.skip_scetm:
        scetm_python = ensure_env(
            ENVS / "scetm", SCETM_PACKAGES, SCETM_CHECK, create=args.create_envs
        )
        if scetm_python is None:
            print("scETM environment missing (benchmarks/.envs/scetm); run with --create-envs.")
    ours_python = Path(sys.executable)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy,
        "k": args.k,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_snareseq:
            X, batch, labels = snareseq()
            save_inputs(tmp / "snare.npz", X, batch, labels)
            print(
                f"SNARE-seq RNA {X.shape[0]} cells x {X.shape[1]} genes, {batch.max() + 1} batches; "
                f"k={args.k}, batch 2000, {args.steps} steps, {args.threads} threads, "
                f"OMP_WAIT_POLICY {args.omp_wait_policy}"
            )
            rows = {}
            impls = [("ours", ours_python)] + ([("scetm", scetm_python)] if scetm_python else [])
            for seed in range(args.seeds):
                for impl, python in impls:  # alternated, so that both see the same load
                    result, theta, delta = fit_in_worker(
                        python,
                        impl,
                        tmp / "snare.npz",
                        tmp / impl,
                        args,
                        steps=args.steps,
                        batch_size=2000,
                        batches=True,
                        threads=args.threads,
                        seed=seed,
                    )
                    result["seed"] = seed
                    result["theta"] = clustering_scores(theta, labels)
                    result["delta"] = clustering_scores(delta, labels)
                    rows.setdefault(impl, []).append(result)
                    print(f"  seed {seed}")
                    print_run(impl, result)
                    for rep in ("theta", "delta"):
                        s = result[rep]
                        print(
                            f"         {rep:5s} ARI {s[f'ari_res{FIXED_RESOLUTION}']:.3f} / NMI "
                            f"{s[f'nmi_res{FIXED_RESOLUTION}']:.3f} at resolution "
                            f"{FIXED_RESOLUTION}; best over grid ARI "
                            f"{s['ari_best_of_grid']:.3f} NMI {s['nmi_best_of_grid']:.3f}"
                        )
            summary = {}
            for impl, runs in rows.items():
                per_step = float(np.median([r["seconds_per_step"] for r in runs]))
                aris = [r["theta"][f"ari_res{FIXED_RESOLUTION}"] for r in runs]
                summary[impl] = {"median_seconds_per_step": per_step, "theta_ari": aris}
                print(
                    f"  {impl:6s} median {1000 * per_step:.1f} ms/step over {len(runs)} run(s); "
                    f"theta ARI at resolution {FIXED_RESOLUTION}: mean {np.mean(aris):.3f} "
                    f"[{min(aris):.3f}, {max(aris):.3f}]"
                )
            if "scetm" in summary:
                ratio = (
                    summary["scetm"]["median_seconds_per_step"]
                    / summary["ours"]["median_seconds_per_step"]
                )
                print(f"  speed-up per step (scETM / ours, medians): {ratio:.1f}x")
                summary["speedup_per_step"] = ratio
            rows["summary"] = summary
            report["snareseq"] = rows

        if not args.skip_assignment and not args.pbmc.exists():
            print(f"assignment setting skipped: {args.pbmc} not found (see --pbmc)")
        elif not args.skip_assignment:
            X, batch, labels = pbmc_assignment(args.pbmc)
            save_inputs(tmp / "pbmc.npz", X, batch, labels)
            print(
                f"assignment setting: PBMC 3k {X.shape[0]} cells x {X.shape[1]} genes, "
                f"k={args.k}, {args.assignment_steps} full-batch steps, {args.threads} threads"
            )
            rows = {}
            impls = [("ours", ours_python)]
            if args.assignment_scetm and scetm_python:
                impls.append(("scetm", scetm_python))
            for impl, python in impls:
                result, _, _ = fit_in_worker(
                    python,
                    impl,
                    tmp / "pbmc.npz",
                    tmp / f"pbmc_{impl}",
                    args,
                    steps=args.assignment_steps,
                    batch_size=X.shape[0],
                    batches=False,
                    threads=args.threads,
                )
                rows[impl] = result
                print_run(impl, result)
            report["assignment"] = rows
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=1))
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
