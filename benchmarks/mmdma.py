"""Benchmark our MMD-MA (``tl.mmdma``) against lsmmdma 0.1.11, and its scaling with the cells.

1. Comparison: the 'branch' simulation of LSMMD-MA (``datasets.branch_simulation``, seed 4),
   n = 1,000 cells per modality, p = 400 features, d = 10, 500 epochs, CPU. Ours with its
   defaults (primal, torch backend, full-batch Adam, n_restarts=1 and 3) and with lsmmdma's
   settings (``OURS_REFERENCE_LIKE``); lsmmdma 0.1.11
   primal without KeOps (its own advice below 5k cells) with its command-line defaults for
   lambda (1e-4), sigma (1) and init (uniform(0, 0.1)), lr 1e-3 (its dataclass default; the CLI's
   1e-5 does not move in 500 epochs), unbiased MMD, one seed. Printed: wall time of the training
   call, time per epoch, peak RSS and FOSCTTM (computed here, by one function, from the
   embeddings each worker writes back).
2. Scaling (``--scaling``): ours on the simulation with n = 1e3 ... 1e5 cells per modality
   (p = 100, d = 10), a few full-batch epochs each (fewer for large n), printing the time per
   epoch and the peak RSS of the worker process: the MMD never holds an n x n matrix, so the
   memory grows linearly with n (the data) while the time grows as n^2.

lsmmdma is not a dependency: it lives in ``benchmarks/.envs/lsmmdma`` (created with
``--create-envs``: torch 2.13.0 first, then ``lsmmdma==0.1.11 --no-deps`` and the light
dependencies it imports) and is skipped with a note when missing. Its import calls
``pykeops.clean_pykeops()``, which empties the KeOps cache of the user running it, so its
worker gets a private ``HOME`` (``benchmarks/.envs/lsmmdma_home``).

Run from the repository root::

    .venv/bin/python benchmarks/mmdma.py                 # comparison
    .venv/bin/python benchmarks/mmdma.py --scaling       # scaling run only
    .venv/bin/python benchmarks/mmdma.py --quick         # smoke run (50 epochs)
    .venv/bin/python benchmarks/mmdma.py --snareseq      # SNARE-seq cell lines, 5 seeds each
    .venv/bin/python benchmarks/mmdma.py --snareseq-oracle   # ... and from oracle starts

``--snareseq-oracle`` asks whether the MMD-MA objective itself prefers the true alignment of the
SNARE-seq cell lines: ours (defaults, 200 epochs, seeds 0-4, in this process; d = 5, or each
of ``--oracle-dims``, e.g. ``2,3,5``) from its usual random start, and from two starts that
use the true pairing, which the method never sees: CCA's maps (the best linear alignment), and the random start's trained ``W_x`` with
``W_y`` fitted to it by least squares. Printed per run: FOSCTTM and label transfer at the start
and after training, the final loss and MMD². Equal final losses with different FOSCTTM mean the
objective cannot tell the alignments apart.

Results are printed and written to ``benchmarks/results/mmdma.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from _common import ENVS, RESULTS, code_version, empty_dir, ensure_env, run_worker, thread_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "_mmdma_worker.py"
LSMMDMA_ENV = ENVS / "lsmmdma"
LSMMDMA_HOME = ENVS / "lsmmdma_home"
LSMMDMA_CHECK = "import sklearn, tensorboard, pykeops, absl, tenacity; import lsmmdma.train"
# lsmmdma's settings in our code: fixed bandwidth 1, tiny lambdas, unbiased MMD, uniform(0, 0.1)
# start, lr 1e-3 (ours is relative to the RMS of the start, 0.058 here: 0.017)
OURS_REFERENCE_LIKE = {
    "bandwidth": 1.0,
    "lambda_penalty": 1e-4,
    "lambda_distortion": 1e-4,
    "unbiased": True,
    "init": "uniform",
    "lr": 0.017,
}
LSMMDMA_OPTIONS = {
    "learning_rate": 1e-3,
    "sigmas": 1.0,
    "lambda1": 1e-4,
    "lambda2": 1e-4,
    "init": "uniform,0.,0.1",
    "keops": False,
    "use_unbiased_mmd": True,
    "window_size": 0,
}


def lsmmdma_python(create: bool) -> Path | None:
    python = LSMMDMA_ENV / "bin" / "python"
    ok = ensure_env(LSMMDMA_ENV, ("torch==2.13.0",), LSMMDMA_CHECK, create=False)
    if ok or not create:
        return ok
    # torch first (the CPU wheel), then lsmmdma without its heavy pins (tensorflow-cpu, cmake)
    ensure_env(LSMMDMA_ENV, ("torch==2.13.0",), "import torch")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "lsmmdma==0.1.11"],
        check=True,
    )
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "absl-py", "numpy", "scipy",
         "pykeops", "tenacity", "scikit-learn", "tensorboard"],
        check=True,
    )  # fmt: skip
    return ensure_env(LSMMDMA_ENV, (), LSMMDMA_CHECK, create=False)


def simulate(path: Path, n_obs: int, n_features: int, seed: int = 4) -> None:
    import scintegrate as si

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mdata = si.datasets.branch_simulation(n_obs=n_obs, n_features=n_features, random_state=seed)
    np.savez(path, X=mdata["rna"].X, Y=mdata["atac"].X)


def fit_in_worker(
    python: Path,
    impl: str,
    data: Path,
    out: Path,
    args,
    *,
    epochs: int,
    options: dict,
    n_dims: int = 10,
    seed: int = 0,
) -> dict:
    """One fresh worker process; returns its result.json (or raises with the log's tail)."""
    empty_dir(out)
    arguments = [
        "--impl", impl, "--data", data, "--out", out, "--epochs", epochs,
        "--threads", args.threads, "--options", json.dumps(options),
        "--n-dims", n_dims, "--seed", seed,
    ]  # fmt: skip
    env = thread_env(args.threads)
    if impl == "ours":
        env["PYTHONPATH"] = str(REPO / "src")
    else:
        LSMMDMA_HOME.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(LSMMDMA_HOME)
    process = run_worker(
        python, WORKER, arguments, env=env, cwd=out, log=out / "log.txt", timeout=args.timeout
    )
    result = json.loads((out / "result.json").read_text())
    result["process_s"] = process.seconds
    with np.load(out / "embeddings.npz") as emb:
        zx, zy = emb["zx"], emb["zy"]
    finite = np.isfinite(zx).all() and np.isfinite(zy).all()
    result["foscttm"] = foscttm(zx, zy) if finite else None
    result["embeddings"] = (zx, zy)
    return result


def foscttm(zx, zy) -> float:
    from scintegrate.metrics import foscttm as _foscttm

    return _foscttm(zx, zy)


def comparison(args, work: Path) -> list[dict]:
    data = work / "branch_n1000_p400.npz"
    simulate(data, 1000, 400)
    rows = []
    runs = [("ours", {}), ("ours", {"n_restarts": 3}), ("ours", OURS_REFERENCE_LIKE)]
    ls_python = lsmmdma_python(args.create_envs)
    if ls_python is None:
        print("lsmmdma: no environment (run with --create-envs); skipped", flush=True)
    else:
        runs.append(("lsmmdma", LSMMDMA_OPTIONS))
    for impl, options in runs:
        python = Path(sys.executable) if impl == "ours" else ls_python
        result = fit_in_worker(python, impl, data, work / f"{impl}_{len(rows)}", args,
                               epochs=args.epochs, options=options)  # fmt: skip
        result.pop("embeddings")
        rows.append(result)
        fos = result["foscttm"]
        print(
            f"{impl:8s} {json.dumps(options)[:60]:60s} {result['seconds']:8.2f} s  "
            f"{1e3 * result['seconds_per_epoch']:7.1f} ms/epoch  peak RSS "
            f"{result['peak_rss_mb']:7.1f} MB  FOSCTTM {fos if fos is None else round(fos, 4)}",
            flush=True,
        )
    ours = rows[0]["seconds"]
    for r in rows[1:]:
        if r["impl"] == "lsmmdma":
            print(f"speed-up of ours (1 restart) over lsmmdma primal: {r['seconds'] / ours:.1f}x")
    return rows


def snareseq(args, work: Path) -> list[dict]:
    """Both implementations on the SNARE-seq cell lines, seeds 0-4: FOSCTTM and label transfer."""
    # the tutorial's preprocessing: standardised RNA PCs, ATAC topic proportions standardised
    X, Y, labels = _snareseq_features()
    import scintegrate as si

    data = work / "snareseq.npz"
    np.savez(data, X=X, Y=Y)
    runs = [("ours", {}, 200)]
    ls_python = lsmmdma_python(args.create_envs)
    if ls_python is None:
        print("lsmmdma: no environment (run with --create-envs); skipped", flush=True)
    else:
        runs.append(("lsmmdma", LSMMDMA_OPTIONS, 500))
    rows = []
    for impl, options, epochs in runs:
        python = Path(sys.executable) if impl == "ours" else ls_python
        scores = []
        for seed in range(5):
            result = fit_in_worker(python, impl, data, work / f"snare_{impl}_{seed}", args,
                                   epochs=epochs, options=options, n_dims=5, seed=seed)  # fmt: skip
            zx, zy = result.pop("embeddings")
            result["label_transfer"] = si.metrics.label_transfer_accuracy(
                zx, zy, labels_x=labels, labels_y=labels
            )
            result["seed"] = seed
            rows.append(result)
            scores.append(result["foscttm"])
            print(
                f"SNARE-seq {impl:8s} seed {seed}: {epochs} epochs {result['seconds']:6.2f} s  "
                f"FOSCTTM {result['foscttm']:.3f}  label transfer {result['label_transfer']:.2f}",
                flush=True,
            )
        print(
            f"SNARE-seq {impl:8s} FOSCTTM mean {np.mean(scores):.3f} "
            f"[{min(scores):.3f}, {max(scores):.3f}] (target: mean < 0.15)",
            flush=True,
        )
    return rows


def _snareseq_features():
    """The tutorial's preprocessing of the SNARE-seq cell lines, and the cell-line labels."""
    from sklearn.preprocessing import normalize, scale

    import scintegrate as si

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mdata = si.datasets.snareseq_celllines()
    labels = mdata["rna"].obs["cell_type"].to_numpy()
    X = scale(np.asarray(mdata["rna"].X)).astype(np.float32)
    Y = scale(normalize(np.asarray(mdata["atac"].X), norm="l1")).astype(np.float32)
    return X, Y, labels


def _cca_maps(X, Y, n_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical correlation maps with the true pairing (row i of X with row i of Y).

    Each side is whitened by its SVD, dropping directions with singular values below 1e-6 of
    the largest (the ATAC features have one exact linear dependency, which makes sklearn's CCA
    return maps with entries ~1e6); the maps give canonical variates of unit variance.
    """

    def whiten(M):
        M = np.asarray(M, dtype=np.float64)
        U, S, Vt = np.linalg.svd(M - M.mean(0), full_matrices=False)
        keep = S > 1e-6 * S[0]
        return U[:, keep], Vt[keep].T / S[keep]

    Ux, Bx = whiten(X)
    Uy, By = whiten(Y)
    P, _, Qt = np.linalg.svd(Ux.T @ Uy)
    scale = np.sqrt(X.shape[0])
    return scale * Bx @ P[:, :n_dims], scale * By @ Qt.T[:, :n_dims]


def snareseq_oracle(args) -> list[dict]:
    """Ours on the SNARE-seq cell lines from random starts and from starts that know the pairing."""
    X, Y, labels = _snareseq_features()
    import anndata as ad
    import torch

    import scintegrate as si

    torch.set_num_threads(args.threads)
    si.settings.progress_bar = False
    epochs = 200

    def scores(zx, zy) -> dict:
        return {
            "foscttm": si.metrics.foscttm(zx, zy),
            "label_transfer": si.metrics.label_transfer_accuracy(
                zx, zy, labels_x=labels, labels_y=labels
            ),
        }

    def fit(seed: int, init, n_dims: int) -> tuple[dict, list[np.ndarray]]:
        rna, atac = ad.AnnData(X), ad.AnnData(Y)
        si.tl.mmdma((rna, atac), n_dims=n_dims, max_epochs=epochs, init=init, random_state=seed)
        history = rna.uns["mmdma"]["history"]
        out = scores(rna.obsm["X_mmdma"], atac.obsm["X_mmdma"]) | {
            "loss": float(history["loss"].iloc[-1]),
            "mmd2": float(history["mmd"].iloc[-1]),
        }
        return out, [rna.varm["mmdma_W"], atac.varm["mmdma_W"]]

    rows = []
    for n_dims in args.oracle_dims:
        cca_maps = _cca_maps(X, Y, n_dims)
        cca_start = scores(X @ cca_maps[0], Y @ cca_maps[1])  # the same for every seed
        print(f"d = {n_dims}", flush=True)
        for seed in range(5):
            random_run, (wx, _) = fit(seed, "random", n_dims)
            # the ATAC features have one exact linear dependency (standardised proportions):
            # the minimum-norm solution, singular values below 1e-6 of the largest cut off
            wy_lstsq = np.linalg.lstsq(Y.astype(np.float64), X @ wx, rcond=1e-6)[0]
            starts = {
                "random": ("random", None),
                "lstsq W_y (pairing)": ((wx, wy_lstsq), scores(X @ wx, Y @ wy_lstsq)),
                "CCA (pairing)": (cca_maps, cca_start),
            }
            for name, (init, at_start) in starts.items():
                result = random_run if name == "random" else fit(seed, init, n_dims)[0]
                row = {"n_dims": n_dims, "seed": seed, "start": name, "at_start": at_start}
                rows.append(row | result)
                begin = (
                    "       -      -"
                    if at_start is None
                    else f"{at_start['foscttm']:7.3f} {at_start['label_transfer']:6.2f}"
                )
                print(
                    f"seed {seed}  {name:20s} start FOSCTTM/transfer {begin}  ->  final loss "
                    f"{result['loss']:.4f}  MMD² {result['mmd2']:.5f}  FOSCTTM "
                    f"{result['foscttm']:.3f}  transfer {result['label_transfer']:.2f}",
                    flush=True,
                )
        for name in ("random", "lstsq W_y (pairing)", "CCA (pairing)"):
            sel = [r for r in rows if r["start"] == name and r["n_dims"] == n_dims]
            losses = [r["loss"] for r in sel]
            fos = [r["foscttm"] for r in sel]
            print(
                f"d = {n_dims} {name:20s} final loss {min(losses):.4f}-{max(losses):.4f} "
                f"(mean {np.mean(losses):.4f})  FOSCTTM mean {np.mean(fos):.3f} "
                f"[{min(fos):.3f}, {max(fos):.3f}]",
                flush=True,
            )
    return rows


def scaling(args, work: Path) -> list[dict]:
    rows = []
    plan = [(1000, 50), (3000, 20), (10_000, 5), (30_000, 2), (100_000, 1)]
    if args.quick:
        plan = plan[:2]
    for n, epochs in plan:
        data = work / f"branch_n{n}_p100.npz"
        simulate(data, n, 100)
        result = fit_in_worker(Path(sys.executable), "ours", data, work / f"scale_{n}", args,
                               epochs=epochs, options={"bandwidth": 4.0})  # fmt: skip
        data.unlink()
        result.pop("embeddings")
        rows.append(result)
        print(
            f"n = {n:>7d}: {epochs:3d} epochs, {result['seconds_per_epoch']:9.3f} s/epoch, "
            f"peak RSS {result['peak_rss_mb']:8.1f} MB (increase during the fit "
            f"{result['rss_increase_mb']:7.1f} MB)",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scaling", action="store_true", help="run the scaling study only")
    parser.add_argument("--with-scaling", action="store_true", help="comparison, then scaling")
    parser.add_argument(
        "--snareseq", action="store_true", help="SNARE-seq cell lines, 5 seeds each, only"
    )
    parser.add_argument(
        "--snareseq-oracle", action="store_true",
        help="SNARE-seq cell lines: ours from random starts and from starts that know the pairing",
    )  # fmt: skip
    parser.add_argument(
        "--oracle-dims", type=lambda text: [int(v) for v in text.split(",")], default=[5],
        help="embedding dimensions for --snareseq-oracle, comma-separated (default 5)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 epochs")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--create-envs", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 50
    work = RESULTS / "mmdma_work"
    work.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
    }
    if args.snareseq_oracle:
        report["snareseq_oracle"] = snareseq_oracle(args)
    elif args.snareseq:
        report["snareseq"] = snareseq(args, work)
    elif not args.scaling:
        report["comparison"] = comparison(args, work)
    if args.scaling or args.with_scaling:
        report["scaling"] = scaling(args, work)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mmdma.json").write_text(json.dumps(report, indent=2))
    print(f"written {RESULTS / 'mmdma.json'}")


if __name__ == "__main__":
    main()
