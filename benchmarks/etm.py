"""Benchmark our scETM (``tl.etm``) against scETM 0.5.0 on CPU.

1. **SNARE-seq mouse cortex RNA** (bundled ``datasets.snareseq_cortex_rna()``: 10,309 cells x
   1,677 genes, raw counts, 12 libraries as batches, 15 coarse cell types): both
   implementations train 16 topics with batch intercepts, mini-batches of 2000 cells, the same
   number of gradient steps (default 515 = scETM's 100 epochs), each with its own defaults
   otherwise (Adam 5e-3, decay 6e-5, clipping 50; KL weight: ours 1, scETM 1e-7; pass
   ``--kl-weight`` to force one value on both). Printed: seconds per step, peak RSS, and the
   ARI / NMI of Leiden clusters of the embedding against the cell types, at a fixed resolution
   and the best over scETM's own resolution grid (an optimistic, label-peeking selection, shown
   because it is what scETM reports). Then the scIB metrics (``benchmarks/_scib.py``, batch =
   library) of both implementations' theta from seed 0 and of the unintegrated PCA.
2. **The course assignment's setting**: 16 topics, 1000 full-batch steps on ~2,000 cells x
   ~4,000 genes (2,000 random PBMC 3k cells, the 4,000 most variable genes), ours only unless
   ``--assignment-scetm``.

scETM is not a dependency: it lives in ``benchmarks/.envs/scetm`` (created with
``--create-envs``: ``pip install torch==2.13.0`` first, then ``scetm tensorboard``), and is
skipped with a note when missing. Each run is a fresh subprocess (``_etm_worker.py``) limited
to ``--threads`` threads that times the training loop only and reports its peak RSS.

3. **From disk** (``--from-disk``, instead of 1 and 2): ``tl.etm`` on an h5ad file read into
   memory vs given as a path (mini-batches read from the file, see ``tl.etm``'s *Data on
   disk*): (a) seconds per training step on the SNARE-seq data (written uncompressed, as
   ``write_h5ad`` does by default, and gzip-compressed; the default shuffling window, which
   holds all 10,309 cells, and a 4,096-cell window that makes each epoch read three windows),
   runs alternated; (b) peak RSS training from disk on n = 100k and 1M cells resampled from
   the Kang et al. PBMC profiles as ``inmf_scale.py`` does (2,000 genes, Poisson draws around
   real cells, log-normal depth; one chunked gzip h5ad per n, cached under
   ``benchmarks/results/etm_scale_data``), ``--rss-epochs`` epochs each.

Run from the repository root::

    .venv/bin/python benchmarks/etm.py            # both parts
    .venv/bin/python benchmarks/etm.py --quick    # fewer steps
    .venv/bin/python benchmarks/etm.py --from-disk [--rss-sizes 100000 1000000]

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
from _scib import add_scib_argument, scib_table

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


def snareseq_scib(X, batch, labels, thetas: dict, args) -> None:
    """scIB table of each implementation's theta (seed 0); batches = libraries."""
    import anndata as ad
    import pandas as pd

    adata = ad.AnnData(
        sp.csr_matrix(X),
        obs=pd.DataFrame({"library": batch.astype(str)}, index=np.arange(len(batch)).astype(str)),
        obsm={f"X_{impl}": np.asarray(theta) for impl, theta in thetas.items()},
    )
    names = {"ours": "tl.etm theta (seed 0)", "scetm": "scETM theta (seed 0)"}
    embeddings = {names.get(impl, impl): f"X_{impl}" for impl in thetas}
    scib_table(adata, embeddings, batch_key="library", labels=labels, args=args)


def tl_in_worker(impl, data, out, args, *, epochs, batches, shuffle_buffer, max_steps=0) -> dict:
    """``tl.etm`` in a fresh ``_etm_worker.py`` process (``impl``: tl-memory or tl-disk)."""
    arguments = [
        "--impl", impl, "--data", data, "--out", out, "--k", args.k, "--epochs", epochs,
        "--batch-size", 2000, "--wait-idle", args.wait_idle, "--shuffle-buffer", shuffle_buffer,
    ]  # fmt: skip
    if batches:
        arguments.append("--batches")
    if max_steps:
        arguments += ["--max-steps", max_steps]
    if args.kl_weight is not None:
        arguments += ["--kl-weight", args.kl_weight]
    env = thread_env(args.threads)
    env["PYTHONPATH"] = str(REPO / "src") + ":" + str(HERE)
    stdout = run_worker(sys.executable, WORKER, arguments, env=env, cwd=HERE).stdout
    return json.loads(stdout.strip().splitlines()[-1])


def scale_file(n: int) -> Path:
    """An h5ad of ``n`` raw-count cells resampled as ``inmf_scale.py`` does (cached): blocks of
    50,000 cells alternating control and stimulated profiles, no batches."""
    from inmf_scale import GENERATE_BLOCK, load_profiles, resampled_block, write_h5ad

    path = RESULTS / "etm_scale_data" / f"n{n}.h5ad"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    profiles, genes = load_profiles()
    rng = np.random.default_rng(3000 + n % 997)
    names = ("ctrl", "stim")
    blocks = (
        resampled_block(profiles[names[(s // GENERATE_BLOCK) % 2]], min(GENERATE_BLOCK, n - s), rng)
        for s in range(0, n, GENERATE_BLOCK)
    )
    write_h5ad(path, blocks, n, genes, "c")
    return path


def from_disk(args, report: dict) -> None:
    import scintegrate as si

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        adata = si.datasets.snareseq_cortex_rna()
        files = {"h5ad": tmp / "snare.h5ad", "h5ad-gzip": tmp / "snare_gzip.h5ad"}
        adata.write_h5ad(files["h5ad"])
        adata.write_h5ad(files["h5ad-gzip"], compression="gzip")
        print(
            f"from disk: SNARE-seq RNA {adata.n_obs} cells x {adata.n_vars} genes, k={args.k}, "
            f"batch 2000, {args.disk_epochs} epochs ({5 * args.disk_epochs} steps), "
            f"{args.threads} threads, {args.repeats} alternated repeats"
        )
        settings = (
            []
            if args.skip_steps
            else [
                ("memory", "h5ad", 16_384),
                ("disk", "h5ad", 16_384),
                ("disk", "h5ad-gzip", 16_384),
                ("memory", "h5ad", 4096),
                ("disk", "h5ad-gzip", 4096),
            ]
        )
        thetas = {}
        for repeat in range(args.repeats):
            for where, kind, buffer in settings:
                result = tl_in_worker(
                    f"tl-{where}", files[kind], tmp / "out", args, epochs=args.disk_epochs,
                    batches=True, shuffle_buffer=buffer,
                )  # fmt: skip
                theta = np.load(tmp / "out" / "embedding.npz")["theta"]
                ref = thetas.setdefault(buffer, theta)
                result.update(
                    repeat=repeat, source=where, file=kind, shuffle_buffer=buffer,
                    max_abs_theta_difference_to_memory=float(np.abs(theta - ref).max()),
                )  # fmt: skip
                rows.append(result)
                print(
                    f"  {where:6s} {kind:9s} window {buffer:6d}: "
                    f"{1000 * result['seconds_per_step']:6.1f} ms/step "
                    f"({1000 * result['seconds_per_step_after_first_epoch']:6.1f} after epoch 1), "
                    f"call {result['seconds']:5.1f} s, peak RSS {result['peak_rss_mb']:5.0f} MiB, "
                    f"|theta - memory| {result['max_abs_theta_difference_to_memory']:.1e}, "
                    f"other processes {result['other_cores']:.1f} cores"
                )
        summary = {}
        for where, kind, buffer in settings:
            picked = [
                r["seconds_per_step"]
                for r in rows
                if (r["source"], r["file"], r["shuffle_buffer"]) == (where, kind, buffer)
            ]
            summary[f"{where}/{kind}/{buffer}"] = float(np.median(picked))
        for buffer in (16_384, 4096) if settings else ():
            base = summary[f"memory/h5ad/{buffer}"]
            for key, value in summary.items():
                if key.endswith(f"/{buffer}") and key.startswith("disk"):
                    print(f"  {key}: {value / base:.2f}x the in-memory time per step (medians)")
        if settings:
            report["snareseq_steps"] = {"runs": rows, "median_seconds_per_step": summary}

        scale = []
        for n in args.rss_sizes:
            path = scale_file(n)
            result = tl_in_worker(
                "tl-disk", path, tmp / "scale", args, epochs=args.rss_epochs, batches=False,
                shuffle_buffer=16_384, max_steps=args.rss_max_steps,
            )  # fmt: skip
            result["n_cells"] = n
            result["file_mb"] = path.stat().st_size / 2**20
            scale.append(result)
            overall = (
                f"training stopped after {args.rss_max_steps} steps"
                if args.rss_max_steps
                else f"overall {result['peak_rss_mb']:.0f} MiB (results theta + delta "
                f"{result['results_mb']:.0f} MiB)"
            )
            print(
                f"  n={n:>8d} from disk ({result['file_mb']:.0f} MiB file): {result['steps']} "
                f"steps, call {result['seconds']:.0f} s (validation pass included); peak RSS in "
                f"training {result['training_peak_rss_mb']:.0f} MiB, {overall}; reading in "
                f"training {result.get('training_read_seconds', float('nan')):.1f} s; other "
                f"processes {result['other_cores']:.1f} cores"
            )
        if len(scale) > 1:
            a, b = scale[0], scale[-1]
            print(
                f"  peak RSS in training, n={b['n_cells']} / n={a['n_cells']}: "
                f"{b['training_peak_rss_mb'] / a['training_peak_rss_mb']:.2f}"
            )
        report["scale"] = scale


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
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--from-disk", action="store_true", help="part 3 only")
    parser.add_argument("--disk-epochs", type=int, default=20, help="SNARE-seq epochs (5 steps)")
    parser.add_argument("--repeats", type=int, default=2, help="alternated runs per setting")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--rss-epochs", type=int, default=1)
    parser.add_argument(
        "--rss-max-steps", type=int, default=0, help="stop training after (0: the epochs)"
    )
    parser.add_argument("--skip-steps", action="store_true", help="only the RSS part of 3")
    add_scib_argument(parser)
    args = parser.parse_args()
    if args.from_disk:
        args.results = args.results or RESULTS / "etm_from_disk.json"
        report = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "code": code_version(),
            "threads": args.threads,
            "k": args.k,
        }
        from_disk(args, report)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=1))
        print(f"written to {args.results}")
        return
    args.results = args.results or RESULTS / "etm.json"
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
            rows, thetas = {}, {}
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
                    if seed == 0:
                        thetas[impl] = theta
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
            snareseq_scib(X, batch, labels, thetas, args)

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
