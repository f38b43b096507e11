"""Online iNMF at atlas scale, from disk: ours vs pyplanc (libplanc's H5SpMat), memory flatness.

Builds a realistic large input without the internet: cells resampled from the real PBMC
profiles of ``../shared/data/kang2018_pbmc_ifnb`` (control and IFN-β stimulated; 2,000 genes
most often detected), each synthetic cell a Poisson draw around one real cell's counts with a
log-normal library-size factor, in four datasets of different sizes (40/30/20/10 %, alternating
control and stimulated profiles), written as chunked, compressed h5ad files (raw counts, CSR).
Files are cached under ``benchmarks/results/scale_data``.

Then, each in a fresh process (peak RSS per process):

1. ``tl.online_inmf`` on the raw-count files (k=30, lambda=5, mini-batch 5,000, 5 epochs,
   statistics pass + on-the-fly scaling, chunk-shuffled reads) for n = 100k, 300k, 1M:
   wall time, peak RSS, time reading vs computing, held-out objective (2,000 held-out cells per
   dataset, drawn the same way), and the objective-vs-time curve.
2. Like for like against ``pyplanc.oinmf`` reading the same pre-scaled CSR files through
   ``H5SpMat`` (run in ``benchmarks/.envs/pyplanc``, one thread per process as in the issue's
   reference figure, or ``--threads``), with ours reading the same files.
3. Memory flatness: the same data replicated 1x, 4x and 16x, one epoch of online iNMF from
   disk (training only) vs the batch ANLS solver in memory (2 iterations).

With ``--dask`` (instead of parts 1-3): the inputs of ``--sizes`` also written as zarr stores
(AnnData's layout, same chunks of 65,536 values, zstd), and ``tl.online_inmf`` run on the h5ad
files and on the zarr stores, in one process and with a ``LocalCluster`` of ``--dask-workers``
worker processes of one thread each: wall time per phase (statistics, training, final factors),
peak RSS of the calling process and of every worker, held-out objective, genes selected.

Usage: ``python benchmarks/inmf_scale.py [--sizes 100000 300000 1000000] [--pyplanc-sizes
100000] [--threads 2] [--skip-memory] [--dask [--dask-workers 2]]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import ENVS, RESULTS, code_version, ensure_env, run_worker, thread_env

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_inmf_scale_worker.py"
DATA = HERE.parent.parent / "shared" / "data" / "kang2018_pbmc_ifnb"
CACHE = RESULTS / "scale_data"
N_GENES = 2000
FRACTIONS = (0.4, 0.3, 0.2, 0.1)
HELDOUT = 2000
GENERATE_BLOCK = 50_000


def load_profiles() -> tuple[dict[str, sp.csr_matrix], np.ndarray]:
    import anndata as ad

    parts = {}
    for name in ("ctrl", "stim"):
        with gzip.open(DATA / f"pbmc_{name}.h5ad.gz") as handle:
            parts[name] = ad.read_h5ad(handle)
    genes = parts["ctrl"].var_names.intersection(parts["stim"].var_names)
    detected = sum(np.asarray((parts[n][:, genes].X > 0).sum(axis=0)).ravel() for n in parts)
    keep = genes[np.sort(np.argsort(-detected, kind="stable")[:N_GENES])]
    profiles = {n: sp.csr_matrix(parts[n][:, keep].X, dtype=np.float64) for n in parts}
    for n, X in profiles.items():
        profiles[n] = X[np.diff(X.indptr) > 0]
    return profiles, np.asarray(keep)


def resampled_block(profile: sp.csr_matrix, n: int, rng) -> sp.csr_matrix:
    """n cells: each a Poisson draw around a random real cell, library size jittered."""
    while True:
        picks = rng.integers(0, profile.shape[0], n)
        block = profile[picks]
        factor = rng.lognormal(0.0, 0.3, n)
        rows = np.repeat(np.arange(n), np.diff(block.indptr))
        block.data = rng.poisson(block.data * factor[rows]).astype(np.float32)
        block.eliminate_zeros()
        empty = np.diff(block.indptr) == 0
        if not empty.any():
            return block
        block = block[~empty]
        if block.shape[0] > 0:
            return sp.vstack([block, resampled_block(profile, int(empty.sum()), rng)]).tocsr()


def write_h5ad(path: Path, blocks, n_cells: int, genes: np.ndarray, prefix: str) -> None:
    """An h5ad file (obs, var, CSR X) written block by block, never whole in memory."""
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    from scintegrate._core._row_sources import write_csr_blocks

    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        write_elem(f, "obs", pd.DataFrame(index=[f"{prefix}{i}" for i in range(n_cells)]))
        write_elem(f, "var", pd.DataFrame(index=genes))
        write_csr_blocks(f, blocks, len(genes), dtype=np.float32)
    tmp.rename(path)


def dataset_files(n_total: int, profiles, genes, *, replicate: int = 1) -> tuple[list, list, list]:
    """Paths of the training and held-out files of the ``n_total``-cell input (cached)."""
    folder = CACHE / (f"n{n_total}" if replicate == 1 else f"n{n_total}_x{replicate}")
    folder.mkdir(parents=True, exist_ok=True)
    names, files, heldout = [], [], []
    for d, fraction in enumerate(FRACTIONS):
        name = f"d{d}"
        profile = profiles["ctrl" if d % 2 == 0 else "stim"]
        n = round(fraction * n_total)
        path, held = folder / f"{name}.h5ad", folder / f"{name}_heldout.h5ad"
        names.append(name)
        files.append(path)
        heldout.append(held)
        if not path.exists():
            rng = np.random.default_rng(1000 + d)
            if replicate == 1:
                blocks = (
                    resampled_block(profile, min(GENERATE_BLOCK, n - s), rng)
                    for s in range(0, n, GENERATE_BLOCK)
                )
                write_h5ad(path, blocks, n, genes, f"{name}_")
            else:  # the same cells repeated: identical statistics, replicate x the size
                base = resampled_block(profile, n, rng)
                write_h5ad(path, (base for _ in range(replicate)), n * replicate, genes, f"{name}_")
        if not held.exists() and replicate == 1:
            rng = np.random.default_rng(2000 + d)
            write_h5ad(held, iter([resampled_block(profile, HELDOUT, rng)]), HELDOUT, genes, "h")
    return names, files, heldout


def fit_in_worker(
    mode: str, python: str, files, names, args, *, heldout=(), factors=None, epochs=None
):
    """Run ``_inmf_scale_worker.py`` in a subprocess; returns the result it prints."""
    arguments = [mode, "--files", *files, "--names", *names]
    if heldout:
        arguments += ["--heldout", *heldout]
    if factors:
        arguments += ["--factors", factors]
    arguments += ["--k", args.k, "--epochs", epochs or args.epochs, "--threads", args.threads]
    stdout = run_worker(python, WORKER, arguments, env=thread_env(args.threads)).stdout
    # pyplanc writes to stdout too, without a final newline: the result is the last JSON object
    return json.loads(stdout[stdout.rfind('{"seconds"') :].splitlines()[0])


def zarr_copy(path: Path) -> Path:
    """The h5ad file as a zarr store in AnnData's layout (cached), copied slice by slice."""
    import anndata as ad
    import h5py
    import zarr
    from anndata.io import read_elem, write_elem

    target = path.with_suffix(".zarr")
    if target.exists():
        return target
    tmp = path.with_suffix(".zarr.tmp")
    root = zarr.open_group(str(tmp), mode="w")
    root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    with h5py.File(path, "r") as f, ad.settings.override(allow_write_nullable_strings=True):
        write_elem(root, "obs", read_elem(f["obs"]))
        write_elem(root, "var", read_elem(f["var"]))
        source = f["X"]
        group = root.create_group("X")
        group.attrs.update(
            {
                "encoding-type": "csr_matrix",
                "encoding-version": "0.1.0",
                "shape": [int(v) for v in source.attrs["shape"]],
            }
        )
        for name in ("data", "indices", "indptr"):
            values = source[name]
            array = group.create_array(
                name, shape=values.shape, dtype=values.dtype, chunks=(1 << 16,)
            )
            step = 1 << 24
            for start in range(0, values.shape[0], step):
                array[start : start + step] = values[start : start + step]
    tmp.rename(target)
    return target


def heldout_objective(factors: Path, scaled_heldout, names) -> float:
    """Objective (1) of the held-out cells with W and V_i fixed (same evaluation for all)."""
    import h5py

    from scintegrate._core._row_sources import H5Rows
    from scintegrate._core.online_inmf import OnlineINMF

    saved = np.load(factors)
    model = OnlineINMF(saved["W"].shape[1], rng=np.random.default_rng(0))
    model.W, model.V, model.names = saved["W"], list(saved["V"]), list(names)
    total = 0.0
    for i, path in enumerate(scaled_heldout):
        with h5py.File(path, "r") as f:
            total += model.solve(H5Rows(f["X"]), i)[1]
    return total


def scaled_copies(names, files, heldout, folder: Path):
    """The LIGER-scaled CSR files both implementations read in the like-for-like run (our
    streaming statistics, variable genes and scaling; held-out cells scaled like their
    dataset)."""
    from scintegrate._utils import _row_inputs as io

    out = [folder / f"{n}.scaled.h5" for n in names]
    out_held = [folder / f"{n}_heldout.scaled.h5" for n in names]
    if all(p.exists() for p in out + out_held):
        return out, out_held
    datasets = io.collect_datasets(dict(zip(names, files, strict=True)), batch_key=None, layer=None)
    for d in datasets:
        d.stats = io.streaming_stats(d)
    genes = io.select_genes(datasets, io.LIGER_MASK, True)
    held = io.collect_datasets(dict(zip(names, heldout, strict=True)), batch_key=None, layer=None)
    for d, h, p, q in zip(datasets, held, out, out_held, strict=True):
        source = io.prepare(d, genes, preprocess=True)
        io.write_scaled(source, p, 20_000)
        target = io.prepare(h, genes, preprocess=False)
        target.inv_rms = source.inv_rms
        io.write_scaled(target, q, 20_000)
    return out, out_held


def curve(history: dict, n_cells: int) -> list[tuple[float, float, float]]:
    """(epoch, seconds, per-cell objective estimate averaged over the last 5 steps)."""
    objective = np.asarray(history["objective"]) / n_cells
    times, epochs = np.asarray(history["time"]), np.asarray(history["epoch"])
    points = []
    for target in (0.25, 0.5, 1, 2, 3, 4, 5):
        i = int(np.searchsorted(epochs, target - 1e-9))
        if i < len(epochs):
            points.append((target, times[i], float(np.mean(objective[max(0, i - 4) : i + 1]))))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--pyplanc-sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--memory-base", type=int, default=20_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dask", action="store_true", help="one process vs a LocalCluster")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument(
        "--dask-inputs", nargs="+", default=["h5ad", "zarr"], choices=("h5ad", "zarr")
    )
    args = parser.parse_args()
    print(json.dumps(code_version()))
    ours_python = sys.executable
    started = time.perf_counter()
    profiles, genes = load_profiles()
    print(
        f"profiles: {', '.join(f'{n} {X.shape[0]} cells' for n, X in profiles.items())}; "
        f"{len(genes)} genes"
    )

    if args.dask:
        run_dask(args, profiles, genes)
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
        return

    print("\n== 1. tl.online_inmf from raw-count h5ad files (on-the-fly scaling)")
    print(
        f"{'cells':>9} {'wall s':>7} {'prep s':>7} {'train s':>8} {'read s':>7} "
        f"{'final H s':>9} {'peak MB':>8} {'held-out obj/cell':>18} {'other cores':>11}"
    )
    curves = {}
    for n in args.sizes:
        t = time.perf_counter()
        names, files, heldout = dataset_files(n, profiles, genes)
        made = time.perf_counter() - t
        r = fit_in_worker("ours", ours_python, files, names, args, heldout=heldout)
        tm = r["timing"]
        print(
            f"{r['n_cells']:>9} {r['seconds']:>7.1f} {tm['preparation']:>7.1f} "
            f"{tm['training']:>8.1f} {tm['training_reading']:>7.1f} {tm['final_factors']:>9.1f} "
            f"{r['peak_rss_mb']:>8.0f} {r['heldout_objective'] / (HELDOUT * 4):>18.6g}"
            f" {r['other_cores']:>11.2f}   (input made/cached in {made:.0f} s; {r['n_genes']} genes)",
            flush=True,
        )
        curves[n] = curve(r["history"], r["n_cells"])

    print("\n   objective estimate per cell vs time (s) during training")
    for n, points in curves.items():
        print(f"   n={n:>9}: " + "  ".join(f"ep {e:g}: {s:.1f}s {o:.5g}" for e, s, o in points))
    print("   time to the end of epoch 1 and 5:")
    for n, points in curves.items():
        ends = {e: s for e, s, _ in points}
        print(
            f"   n={n:>9}: epoch 1 at {ends.get(1, float('nan')):.1f} s, "
            f"epoch 5 at {ends.get(5, float('nan')):.1f} s"
        )

    if args.pyplanc_sizes:
        print(f"\n== 2. like for like on pre-scaled CSR files, {args.threads} thread(s) each")
        env = ensure_env(
            ENVS / "pyplanc", ("pyplanc==0.0.2", "numpy", "scipy", "h5py"), "import pyplanc, h5py"
        )
        print(
            f"{'cells':>9} {'impl':>8} {'seconds':>8} {'peak MB':>8} {'held-out obj/cell':>18} "
            f"{'other cores':>11}"
        )
        for n in args.pyplanc_sizes:
            names, files, heldout = dataset_files(n, profiles, genes)
            folder = CACHE / f"n{n}"
            scaled, scaled_held = scaled_copies(names, files, heldout, folder)
            rows = {}
            for impl, python in (("ours", ours_python), ("pyplanc", str(env))):
                mode = "ours-scaled" if impl == "ours" else "pyplanc"
                factors = folder / f"factors_{impl}.npz"
                r = fit_in_worker(mode, python, scaled, names, args, factors=factors)
                r["heldout"] = heldout_objective(factors, scaled_held, names)
                rows[impl] = r
                print(
                    f"{n:>9} {impl:>8} {r['seconds']:>8.1f} {r['peak_rss_mb']:>8.0f} "
                    f"{r['heldout'] / (HELDOUT * 4):>18.6g} {r['other_cores']:>11.2f}",
                    flush=True,
                )
            o, p = rows["ours"], rows["pyplanc"]
            print(
                f"{'':>9} {'ratio':>8} {p['seconds'] / o['seconds']:>7.2f}x "
                f"{p['peak_rss_mb'] / o['peak_rss_mb']:>7.2f}x "
                f"held-out objective ours/pyplanc - 1 = {o['heldout'] / p['heldout'] - 1:+.3%}"
            )

    if not args.skip_memory:
        print("\n== 3. peak RSS vs data size (same cells replicated), 1 epoch / 2 iterations")
        print(
            f"{'copies':>6} {'cells':>9} {'online MB':>10} {'online s':>9} "
            f"{'batch MB':>9} {'batch s':>8}"
        )
        for copies in (1, 4, 16):
            names, files, _ = dataset_files(args.memory_base, profiles, genes, replicate=copies)
            online = fit_in_worker("ours-train", ours_python, files, names, args, epochs=1)
            batch = fit_in_worker("batch", ours_python, files, names, args, epochs=2)
            print(
                f"{copies:>6} {online['n_cells']:>9} {online['peak_rss_mb']:>10.0f} "
                f"{online['seconds']:>9.1f} {batch['peak_rss_mb']:>9.0f} "
                f"{batch['seconds']:>8.1f}",
                flush=True,
            )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def run_dask(args, profiles, genes) -> None:
    """``--dask``: one process vs a LocalCluster, on h5ad and zarr inputs."""
    print(
        f"\n== tl.online_inmf in one process vs LocalCluster({args.dask_workers} workers x 1 "
        f"thread), k={args.k}, {args.epochs} epoch(s)"
    )
    print(
        f"{'cells':>9} {'input':>5} {'workers':>7} {'wall s':>7} {'stats s':>7} {'train s':>8} "
        f"{'read s':>7} {'final H s':>9} {'main MB':>8} {'worker MB':>13} "
        f"{'held-out obj/cell':>18} {'other cores':>11}"
    )
    for n in args.sizes:
        t = time.perf_counter()
        names, files, heldout = dataset_files(n, profiles, genes)
        zarrs = [zarr_copy(p) for p in files]
        made = time.perf_counter() - t
        rows = {}
        for kind, inputs in (("h5ad", files), ("zarr", zarrs)):
            if kind not in args.dask_inputs:
                continue
            for workers in (0, args.dask_workers):
                arguments = ["ours-dask", "--files", *inputs, "--names", *names]
                arguments += ["--heldout", *heldout, "--k", args.k, "--epochs", args.epochs]
                arguments += ["--workers", workers, "--threads", 1]
                stdout = run_worker(sys.executable, WORKER, arguments, env=thread_env(1)).stdout
                r = json.loads(stdout.strip().splitlines()[-1])
                rows[kind, workers] = r
                tm = r["timing"]
                peaks = "/".join(f"{v:.0f}" for v in r.get("worker_peak_rss_mb", [])) or "-"
                print(
                    f"{n:>9} {kind:>5} {workers:>7} {r['seconds']:>7.1f} "
                    f"{tm['preparation']:>7.1f} {tm['training']:>8.1f} "
                    f"{tm['training_reading']:>7.1f} {tm['final_factors']:>9.1f} "
                    f"{r['peak_rss_mb']:>8.0f} {peaks:>13} "
                    f"{r['heldout_objective'] / (HELDOUT * len(names)):>18.8g} "
                    f"{r['other_cores']:>11.2f}",
                    flush=True,
                )
        base = next(iter(rows.values()))
        same = all(r["genes"] == base["genes"] for r in rows.values())
        spread = max(
            abs(r["heldout_objective"] / base["heldout_objective"] - 1) for r in rows.values()
        )
        print(
            f"   inputs made/cached in {made:.0f} s; same genes in every run: {same}; largest "
            f"relative held-out objective difference: {spread:.2e}"
        )
        print("   json: " + json.dumps({f"{k}-{w}": _summary(r) for (k, w), r in rows.items()}))


def _summary(r: dict) -> dict:
    keep = ("seconds", "peak_rss_mb", "worker_peak_rss_mb", "heldout_objective", "other_cores")
    out = {k: r[k] for k in keep if k in r}
    out["timing"] = r["timing"]
    out["cluster_start_seconds"] = r.get("cluster_start_seconds")
    out["heldout_seconds"] = r.get("heldout_seconds")
    return out


if __name__ == "__main__":
    main()
