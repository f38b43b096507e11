"""Benchmark our integrative NMF (``tl.online_inmf``, ``tl.inmf``) against pyliger and pyplanc.

Data: Kang et al. 2018 PBMC, control vs IFN-beta stimulated (13,999 cells, two datasets),
LIGER preprocessing with ``scintegrate.pp.liger_preprocess`` (per-dataset normalisation, the
union of the variable genes, scaling without centring), done once here; every implementation
factorises the same scaled matrices (float64), k = 20, lambda = 5:

* online iNMF, 5 epochs, mini-batches of 5000 cells: ours ``tl.online_inmf``, pyliger 0.2.4
  ``online_iNMF``, pyplanc 0.0.2 ``oinmf`` (the engine of rliger 2.x ``runOnlineINMF``);
* batch iNMF by ANLS, 30 iterations: ours ``tl.inmf(solver="anls", tol=0)``, pyplanc ``bppinmf``
  (rliger 2.x ``runINMF``); optionally pyliger ``optimize_ALS`` (slow, not run by default).

pyliger and pyplanc are not dependencies of the package: they live in their own virtual
environments (``benchmarks/.envs/pyliger``, ``benchmarks/.envs/pyplanc``; ``--create-envs``
creates missing ones) and are skipped with a note when those are missing. Every
implementation, ours included, runs in a fresh subprocess (``benchmarks/_inmf_worker.py``) that
times the factorisation call only and reports its peak RSS; the objective (1) and the alignment
score are computed here, by one function each, from the factors the workers write back.

Run from the repository root::

    .venv/bin/python benchmarks/inmf.py            # full benchmark
    .venv/bin/python benchmarks/inmf.py --quick    # smoke run on a subsample

Results are printed and written to ``benchmarks/results/inmf.json``.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import ENVS, RESULTS, code_version, empty_dir, ensure_env, run_worker, thread_env
from _inmf_worker import load_inputs, save_inputs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "_inmf_worker.py"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kang2018_pbmc_ifnb"
DATASETS = ("ctrl", "stim")  # pbmc_<name>.h5ad.gz, in this order
BATCH_KEY = "dataset"

# reference environments: packages to install, and the import a worker needs
ENV_SPECS = {
    "pyliger": (("pyliger==0.2.4", "setuptools<81"), "import pyliger"),
    "pyplanc": (("pyplanc==0.0.2", "numpy", "scipy"), "import pyplanc"),
}


@dataclass(frozen=True)
class Run:
    name: str
    impl: str  # ours / pyliger / pyplanc
    method: str  # online / anls
    call: str  # what is timed
    default: bool = True


RUNS = (
    Run("ours-online", "ours", "online", "scintegrate.tl.online_inmf"),
    Run("pyliger-online", "pyliger", "online", "pyliger.online_iNMF"),
    Run("pyplanc-online", "pyplanc", "online", "pyplanc.oinmf"),
    Run("ours-anls", "ours", "anls", 'scintegrate.tl.inmf(solver="anls")'),
    Run("pyplanc-anls", "pyplanc", "anls", "pyplanc.bppinmf"),
    Run("pyliger-anls", "pyliger", "anls", "pyliger.optimize_ALS", default=False),
)
REFERENCE = {"online": "pyplanc-online", "anls": "pyplanc-anls"}  # the baseline of each method
# targets from our issue: (minimum speed-up over pyplanc, maximum objective excess over pyplanc)
TARGETS = {"ours-online": (2.0, 0.002), "ours-anls": (2.0, 0.001)}
CONTENTION_WARNING = 0.2  # cores used by other processes during a call before we warn


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def prepare_inputs(data_dir: Path, out: Path, *, quick_cells: int | None, seed: int = 0) -> dict:
    """Load both datasets, LIGER-preprocess them with our code, save the scaled matrices."""
    import anndata as ad

    import scintegrate

    started = time.perf_counter()
    parts = {}
    for name in DATASETS:
        with gzip.open(data_dir / f"pbmc_{name}.h5ad.gz") as handle:
            parts[name] = ad.read_h5ad(handle)
    adata = ad.concat(parts, label=BATCH_KEY, index_unique="-")
    loaded = time.perf_counter() - started
    if quick_cells is not None:
        rng = np.random.default_rng(seed)
        keep = np.concatenate(
            [
                np.sort(
                    rng.choice(
                        np.flatnonzero(adata.obs[BATCH_KEY] == name), quick_cells, replace=False
                    )
                )
                for name in DATASETS
            ]
        )
        adata = adata[keep].copy()
    # float64 counts, so the scaled layer is float64: the matrix every implementation gets
    adata.X = sp.csr_matrix(adata.X, dtype=np.float64)

    started = time.perf_counter()
    scintegrate.pp.liger_preprocess(
        adata,
        batch_key=BATCH_KEY,
        layer_added="liger_scaled",
        key_added="liger_highly_variable",
    )
    preprocess_s = time.perf_counter() - started
    selected = adata.var["liger_highly_variable"].to_numpy()
    scaled = sp.csr_matrix(adata.layers["liger_scaled"])[:, selected]
    matrices, cells = [], []
    for name in DATASETS:
        rows = np.flatnonzero((adata.obs[BATCH_KEY] == name).to_numpy())
        matrices.append(sp.csr_matrix(scaled[rows], dtype=np.float64))
        cells.append(adata.obs_names[rows].to_numpy())
    save_inputs(out, matrices, DATASETS, adata.var_names[selected].to_numpy(), cells)
    return {
        "path": str(data_dir),
        "datasets": {
            name: {"n_cells": m.shape[0], "nnz": int(m.nnz)}
            for name, m in zip(DATASETS, matrices, strict=True)
        },
        "n_genes_total": int(adata.n_vars),
        "n_genes_selected": int(selected.sum()),
        "n_selected_per_dataset": [
            int(n) for n in adata.uns["liger_highly_variable"].get("n_selected", [])
        ],
        "preprocessing": "scintegrate.pp.liger_preprocess(var_thresh=0.1, alpha_thresh=0.99, "
        "combine='union')",
        "load_s": loaded,
        "preprocess_s": preprocess_s,
        "quick_cells_per_dataset": quick_cells,
    }


# --------------------------------------------------------------------------------------------
# quality: one function each, for every implementation
# --------------------------------------------------------------------------------------------


def inmf_objective(matrices, W, V, H, lambda_: float) -> dict[str, float]:
    """Objective (1), ``sum_i ||E_i - H_i L_i^T||^2 + lambda sum_i ||H_i V_i^T||^2``, L_i = W + V_i.

    ``E_i`` cells x genes (sparse), ``H_i`` cells x k, ``W``/``V_i`` genes x k. Trace trick, no
    dense residual: ``||E - H L^T||^2 = ||E||^2 - 2 tr(H^T E L) + tr((L^T L)(H^T H))`` and
    ``||H V^T||^2 = tr((V^T V)(H^T H))``.
    """
    reconstruction = penalty = 0.0
    for E, v, h in zip(matrices, V, H, strict=True):
        if h.shape != (E.shape[0], W.shape[1]) or v.shape != W.shape or W.shape[0] != E.shape[1]:
            raise ValueError(
                f"factor shapes do not fit E {E.shape}: W {W.shape}, V {v.shape}, H {h.shape}"
            )
        L = W + v
        gram_h = h.T @ h
        reconstruction += (
            float(E.data @ E.data)
            - 2.0 * float(np.sum(h * (E @ L)))
            + float(np.sum((L.T @ L) * gram_h))
        )
        penalty += float(np.sum((v.T @ v) * gram_h))
    return {
        "objective": reconstruction + lambda_ * penalty,
        "reconstruction": reconstruction,
        "penalty": penalty,
    }


def quantile_normalised(H: list[np.ndarray], names) -> np.ndarray:
    """Our ``pp.quantile_norm`` (LIGER's defaults, reference = the largest dataset) of the H."""
    import anndata as ad
    import pandas as pd

    from scintegrate.pp import quantile_norm

    labels = np.concatenate([np.full(h.shape[0], name) for h, name in zip(H, names, strict=True)])
    # X only because an AnnData without variables counts as empty; quantile_norm reads obsm
    adata = ad.AnnData(
        X=np.vstack(H),
        obs=pd.DataFrame(
            {BATCH_KEY: pd.Categorical(labels, categories=list(names))},
            index=[str(i) for i in range(len(labels))],
        ),
        obsm={"X_inmf": np.vstack(H)},
    )
    quantile_norm(adata, use_rep="X_inmf", batch_key=BATCH_KEY, random_state=0)
    return np.asarray(adata.obsm["X_inmf_qn"])


def quality(matrices, names, W, V, H, lambda_: float) -> dict:
    """Objective (1), and LIGER's alignment score on the quantile-normalised and on the raw H."""
    from scintegrate.metrics import alignment_score

    out = inmf_objective(matrices, W, V, H, lambda_)
    labels = np.concatenate([np.full(h.shape[0], name) for h, name in zip(H, names, strict=True)])
    # rliger's calcAlignment, with its default number of neighbours; the same subsample of
    # cells (seed 0) for every implementation
    out["alignment"] = alignment_score(
        quantile_normalised(H, names), batches=labels, random_state=0
    )
    out["alignment_raw_H"] = alignment_score(np.vstack(H), batches=labels, random_state=0)
    sizes = [h.shape[0] for h in H]
    out["alignment_k"] = min(max(int(np.floor(0.01 * sum(sizes))), 10), len(sizes) * min(sizes) - 1)
    return out


# --------------------------------------------------------------------------------------------
# running the workers
# --------------------------------------------------------------------------------------------


def available_pythons(runs, envs: Path, create: bool) -> tuple[dict[str, Path], list[str]]:
    """The Python of every implementation that can run, and notes on those that cannot."""
    pythons: dict[str, Path] = {}
    notes: list[str] = []
    for impl in sorted({run.impl for run in runs}):
        if impl == "ours":
            try:
                import scintegrate.tl as tl
            except ImportError as error:
                notes.append(f"ours: skipped, scintegrate not importable ({error})")
                continue
            missing = [name for name in ("online_inmf", "inmf") if not hasattr(tl, name)]
            if missing:
                notes.append(f"ours: skipped, scintegrate.tl has no {', '.join(missing)} yet")
                continue
            pythons[impl] = Path(sys.executable)
            continue
        packages, check = ENV_SPECS[impl]
        env = envs / impl
        try:
            python = ensure_env(env, packages, check, create=create)
        except subprocess.CalledProcessError as error:
            python = None
            notes.append(f"{impl}: creating {env} failed ({error})")
        if python is None:
            shown = os.path.relpath(env) if env.resolve().is_relative_to(Path.cwd()) else env
            notes.append(
                f"{impl}: skipped, no usable environment at {shown} (create it with "
                f"--create-envs, or: python3 -m venv {shown} && {shown}/bin/pip install "
                f"{' '.join(repr(p) for p in packages)})"
            )
        else:
            pythons[impl] = python
    return pythons, notes


def fit_in_worker(python: Path, run: Run, data: Path, out: Path, args) -> dict:
    """One fresh worker process; returns its result.json (or raises with the log's tail)."""
    empty_dir(out)
    arguments = [
        "--impl", run.impl, "--method", run.method, "--data", data, "--out", out,
        "--k", args.k, "--lambda", args.lambda_, "--epochs", args.epochs,
        "--batch-size", args.batch_size, "--max-iter", args.max_iter,
        "--threads", args.threads, "--wait-idle", args.wait_idle,
        "--warmup-cells", args.warmup_cells,
    ]  # fmt: skip
    if args.seed is not None:
        arguments += ["--seed", args.seed]
    env = thread_env(args.threads)
    if run.impl == "pyplanc" and args.pyplanc_blas_threads is not None:
        # pyplanc's own (static) OpenBLAS, called from inside its OpenMP regions
        env["OPENBLAS_NUM_THREADS"] = str(args.pyplanc_blas_threads)
    # pyplanc prints a progress bar whatever ``verbose`` says: into the log with the rest;
    # pyliger may write ./results/... relative to the working directory: the run's own
    process = run_worker(
        python, WORKER, arguments, env=env, cwd=out, log=out / "log.txt", timeout=args.timeout
    )
    result = json.loads((out / "result.json").read_text())
    result["process_s"] = process.seconds
    return result


def load_factors(path: Path, n_datasets: int):
    with np.load(path) as stored:
        W = stored["W"]
        V = [stored[f"V{i}"] for i in range(n_datasets)]
        H = [stored[f"H{i}"] for i in range(n_datasets)]
    return W, V, H


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------


def method_label(method: str, args) -> str:
    if method == "online":
        return f"online {args.epochs} ep"
    return f"ANLS {args.max_iter} it"


def print_table(rows: list[dict], args) -> None:
    header = (
        f"{'implementation':<15} {'call':<34} {'method':<13} {'wall (s)':>9} {'runs':>4} "
        f"{'cores':>5} {'others':>6} {'peak RSS':>9} {'+RSS':>8} {'objective':>14} "
        f"{'vs ref':>9} {'speed-up':>8} {'align.':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        rel = f"{row['rel_objective']:+.4%}" if row.get("rel_objective") is not None else ""
        speed = f"{row['speedup']:.2f}x" if row.get("speedup") is not None else ""
        print(
            f"{row['name']:<15} {row['call']:<34} {method_label(row['method'], args):<13} "
            f"{row['median_s']:>9.2f} {len(row['times_s']):>4} {row['own_cores']:>5.2f} "
            f"{row['other_cores']:>6.2f} {row['peak_rss_mb']:>6.0f} MB "
            f"{row['rss_increase_mb']:>5.0f} MB {row['objective']:>14.8g} {rel:>9} {speed:>8} "
            f"{row['alignment']:>6.3f}"
        )


def print_legend(rows: list[dict]) -> None:
    print(
        "wall = median over the runs (each a fresh process) of the factorisation call only; "
        "cores / others = cores busy with the call / with other processes meanwhile;\n"
        "peak RSS = process peak during the call, +RSS = that minus the RSS before it; "
        "objective = (1) computed here from the returned factors;\n"
        "vs ref = objective relative to pyplanc's for the same method; speed-up = pyplanc's "
        f"time / this time; align. = LIGER alignment (k = {rows[0]['alignment_k']}, "
        "scintegrate.metrics.alignment_score) of the H after scintegrate.pp.quantile_norm"
    )


def summarise(results: list[dict]) -> dict:
    """Median over the repeats (separate processes) of one run."""
    return {
        "median_s": statistics.median(r["seconds"] for r in results),
        "times_s": [r["seconds"] for r in results],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "baseline_rss_mb": statistics.median(r["baseline_rss_mb"] for r in results),
        "rss_increase_mb": statistics.median(r["rss_increase_mb"] for r in results),
        "peak_is_per_call": all(r["peak_is_per_call"] for r in results),
        "own_cores": statistics.median(r["own_cores"] for r in results),
        "other_cores": statistics.median(r["other_cores"] for r in results),
        "max_other_cores": max(r["other_cores"] for r in results),
        "process_s": [r["process_s"] for r in results],
        "warmup_s": [r.get("warmup_s") for r in results],
        "versions": results[-1]["versions"],
        "own_objective": results[-1].get("own_objective"),
        "params": results[-1].get("params"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Compare scintegrate's integrative NMF with pyliger and pyplanc on PBMC "
        "control vs IFN-beta."
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the .h5ad.gz")
    parser.add_argument(
        "--only",
        help="comma-separated runs (default: all but pyliger-anls): "
        + ", ".join(run.name for run in RUNS)
        + "; or an implementation (ours, pyliger, pyplanc) or a method (online, anls)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run on a small subsample")
    parser.add_argument("--repeats", type=int, default=1, help="worker processes per run")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--lambda", dest="lambda_", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=None, help="online (default 5)")
    parser.add_argument("--batch-size", type=int, default=None, help="online (default 5000)")
    parser.add_argument("--max-iter", type=int, default=None, help="batch ANLS (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="ours 0, pyliger 1 by default")
    parser.add_argument("--threads", type=int, default=2, help="thread limit for everyone")
    parser.add_argument(
        "--pyplanc-blas-threads",
        type=int,
        default=None,
        help="OPENBLAS_NUM_THREADS for pyplanc only (default: --threads); 1 is faster for it, "
        "its BLAS being called inside its OpenMP regions",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=30.0,
        help="before each call, wait up to this many seconds until other processes are idle",
    )
    parser.add_argument(
        "--warmup-cells",
        type=int,
        default=300,
        help="untimed warm-up fit on this many cells per dataset before the timed call, in "
        "every worker (0: none, the timed call then includes one-off costs such as loading "
        "our compiled kernels)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="per worker process (s)")
    parser.add_argument(
        "--envs", type=Path, default=ENVS, help="folder of the reference environments"
    )
    parser.add_argument(
        "--create-envs", action="store_true", help="create missing reference environments"
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON output")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="inputs, factors and worker logs (default benchmarks/results/inmf[-quick]/)",
    )
    args = parser.parse_args(argv)
    quick_cells = 1500 if args.quick else None
    if args.epochs is None:
        args.epochs = 2 if args.quick else 5
    if args.batch_size is None:
        args.batch_size = 1000 if args.quick else 5000
    if args.max_iter is None:
        args.max_iter = 5 if args.quick else 30
    suffix = "-quick" if args.quick else ""
    args.results = (args.results or RESULTS / f"inmf{suffix}.json").resolve()
    # absolute: the workers run in their own output folders
    args.work_dir = (args.work_dir or RESULTS / f"inmf{suffix}").resolve()

    runs = [run for run in RUNS if run.default]
    if args.only:
        wanted = {item.strip() for item in args.only.split(",") if item.strip()}
        runs = [r for r in RUNS if r.name in wanted or r.impl in wanted or r.method in wanted]
        unknown = wanted - {x for r in RUNS for x in (r.name, r.impl, r.method)}
        if unknown or not runs:
            parser.error(f"--only: unknown run(s) {sorted(unknown)}")
    pythons, notes = available_pythons(runs, args.envs, args.create_envs)
    for note in notes:
        print("NOTE: " + note, flush=True)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    data = args.work_dir / "inputs.npz"
    print("preparing the input (our LIGER preprocessing) ...", flush=True)
    data_info = prepare_inputs(args.data, data, quick_cells=quick_cells)
    matrices, names, genes, _ = load_inputs(data)
    shape_text = " + ".join(f"{m.shape[0]} {n}" for m, n in zip(matrices, names, strict=True))
    print(
        f"{shape_text} cells x {len(genes)} genes (union of the variable genes of "
        f"{data_info['n_genes_total']}), nnz {sum(m.nnz for m in matrices)}; loaded in "
        f"{data_info['load_s']:.1f} s, preprocessed in {data_info['preprocess_s']:.1f} s",
        flush=True,
    )

    report: dict = {
        "date": datetime.date.today().isoformat(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "thread_env": {k: str(args.threads) for k in ("OMP", "OPENBLAS", "MKL", "NUMBA")},
        "code": code_version(),
        "data": data_info,
        "settings": {
            "k": args.k,
            "lambda": args.lambda_,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "max_iter": args.max_iter,
            "seed": args.seed,
            "pyplanc_blas_threads": args.pyplanc_blas_threads,
            "repeats": args.repeats,
            "quick": args.quick,
        },
        "notes": notes,
        "runs": {},
    }
    rows: list[dict] = []
    for run in runs:
        if run.impl not in pythons:
            continue
        results = []
        for repeat in range(args.repeats):
            print(f"[{run.name}] {run.call}, run {repeat + 1}/{args.repeats} ...", flush=True)
            out = args.work_dir / run.name / f"run{repeat}"
            try:
                results.append(fit_in_worker(pythons[run.impl], run, data, out, args))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"NOTE: {run.name}: failed ({error})", flush=True)
                notes.append(f"{run.name}: failed, see {out / 'log.txt'}")
                break
            print(f"[{run.name}]   {results[-1]['seconds']:.2f} s", flush=True)
        if len(results) < args.repeats:
            continue
        summary = summarise(results)
        W, V, H = load_factors(out / "factors.npz", len(names))
        scores = quality(matrices, names, W, V, H, args.lambda_)
        own = summary["own_objective"]
        if own is not None:
            # the implementation's own value of (1): a check of our formula and orientations
            scores["own_objective_rel_diff"] = (own - scores["objective"]) / scores["objective"]
        row = {"name": run.name, "impl": run.impl, "method": run.method, "call": run.call}
        row.update(summary)
        row.update(scores)
        rows.append(row)

    by_name = {row["name"]: row for row in rows}
    verdicts: list[str] = []
    for row in rows:
        reference = by_name.get(REFERENCE[row["method"]])
        if reference is not None and reference is not row:
            row["rel_objective"] = (row["objective"] - reference["objective"]) / reference[
                "objective"
            ]
            row["speedup"] = reference["median_s"] / row["median_s"]
        if row["name"] in TARGETS:
            min_speedup, max_excess = TARGETS[row["name"]]
            if reference is None:
                verdicts.append(f"{row['name']}: no {REFERENCE[row['method']]} result to compare")
                continue
            verdicts += [
                f"{row['name']}: {row['speedup']:.2f}x faster than {reference['call']} "
                f"(target >= {min_speedup:g}x): {'PASS' if row['speedup'] >= min_speedup else 'FAIL'}",
                f"{row['name']}: objective {row['rel_objective']:+.4%} vs {reference['call']} "
                f"(target <= +{max_excess:.1%}): "
                f"{'PASS' if row['rel_objective'] <= max_excess else 'FAIL'}",
            ]
        report["runs"][row["name"]] = {
            key: value for key, value in row.items() if key not in ("name",)
        }

    print(
        f"\nPBMC ctrl vs IFN-beta: {shape_text} cells x {len(genes)} genes, k = {args.k}, "
        f"lambda = {args.lambda_:g}; online: {args.epochs} epochs, mini-batch {args.batch_size}; "
        f"ANLS: {args.max_iter} iterations; {os.cpu_count()} CPU cores, "
        f"OMP/OPENBLAS/MKL/NUMBA threads = {args.threads} for every implementation"
        + (
            f" (pyplanc: OPENBLAS_NUM_THREADS={args.pyplanc_blas_threads})"
            if args.pyplanc_blas_threads is not None
            else ""
        )
        + (" (QUICK smoke run on a subsample)" if args.quick else "")
    )
    if not rows:
        print("nothing was run")
    else:
        print_table(rows, args)
        print_legend(rows)
    for row in rows:
        if row.get("own_objective") is not None:
            print(
                f"{row['name']}: its own final objective {row['own_objective']:.8g} "
                f"({row['own_objective_rel_diff']:+.2e} relative to the value computed here)"
            )
    contended = max((row["max_other_cores"] for row in rows), default=0.0)
    if contended > CONTENTION_WARNING:
        print(
            f"WARNING: other processes kept up to {contended:.2f} cores busy during the calls: "
            "the timings are contended (shared machine) and not those of an idle one."
        )
    for note in notes:
        print("NOTE: " + note)
    if verdicts:
        print("\nTargets (from our issue):")
        for verdict in verdicts:
            print("  " + verdict)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresults written to {args.results}")


if __name__ == "__main__":
    main()
