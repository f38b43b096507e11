"""One measured run of benchmarks/inmf_scale.py, in a fresh process (peak RSS is per process).

Modes (the first argument):

* ``ours`` (package venv): ``tl.online_inmf`` on the raw-count h5ad files, scaled on the fly;
  prints timing, peak RSS, the training history and the held-out objective.
* ``ours-train`` (package venv): the same up to the end of training only (no final factors of
  every cell, whose n x k output grows with n): the memory-flatness check.
* ``ours-scaled`` (package venv): online iNMF core on the pre-scaled CSR files (the input
  pyplanc reads), for a like-for-like comparison.
* ``batch`` (package venv): the batch ANLS solver in memory (reads the files whole).
* ``pyplanc`` (pyplanc venv): ``pyplanc.oinmf`` on ``H5SpMat`` views of the pre-scaled files.
* ``ours-dask`` (package venv): ``tl.online_inmf`` on the files (h5ad or zarr) in this process
  (``--workers 0``) or with a ``LocalCluster`` of ``--workers`` processes of one thread each
  started here; prints the phases, the peak RSS of this process and of every worker process, and
  the held-out objective.

The result is one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import Measurement, status_mb


def _ours_model(args):
    import scintegrate as si

    files = dict(zip(args.names, args.files, strict=True))
    with Measurement() as m:
        result, model = si.tl.online_inmf(
            files,
            args.k,
            lambda_=args.lambda_,
            batch_size=args.batch_size,
            max_epochs=args.epochs,
            random_state=args.seed,
            return_model=True,
        )
    out = m.as_dict()
    out["timing"] = {k: float(v) for k, v in result.uns["inmf"]["timing"].items()}
    out["n_genes"] = int(result.n_vars)
    out["n_cells"] = int(result.n_obs)
    out["history"] = {
        "time": model.history["time"].tolist(),
        "epoch": model.history["epoch"].tolist(),
        "objective": model.history["objective"].tolist(),
    }
    out["heldout_objective"] = sum(
        model.objective(path, dataset=name)
        for name, path in zip(args.names, args.heldout, strict=True)
    )
    return out


def _ours_train(args):
    from scintegrate._utils import _row_inputs as io
    from scintegrate.tl import _online_inmf_model as online

    files = dict(zip(args.names, args.files, strict=True))
    with Measurement() as m:
        datasets = io.collect_datasets(files, batch_key=None, layer=io.LIGER_LAYER)
        for d in datasets:
            d.stats = io.streaming_stats(d)
        genes = io.select_genes(datasets, io.LIGER_MASK, True)
        model = online.new_model(
            args.k,
            lambda_=args.lambda_,
            batch_size=args.batch_size,
            hals_iter=1,
            chunk_size=1000,
            random_state=args.seed,
            var_names=genes,
        )
        sources = online.prepare_sources(model, datasets, None, None)
        online.train(model, datasets, sources, args.epochs)
    out = m.as_dict()
    out["n_cells"] = int(sum(s.n_cells for s in sources))
    return out


def _scaled_sources(paths, n_genes):
    import h5py

    from scintegrate._core._row_sources import H5Rows

    return [H5Rows(h5py.File(p, "r")["X"]) for p in paths]


def _ours_scaled(args):
    from scintegrate._core.online_inmf import OnlineINMF

    with Measurement() as m:
        sources = _scaled_sources(args.files, None)
        model = OnlineINMF(
            args.k,
            lambda_=args.lambda_,
            batch_size=args.batch_size,
            chunk_size=1000,
            rng=np.random.default_rng(args.seed),
        )
        active = model.add_datasets(sources, args.names)
        model.train(sources, active, args.epochs)
    out = m.as_dict()
    np.savez(args.factors, W=model.W, V=np.stack(model.V))
    out["training_reading"] = sum(s.read_seconds for s in sources)
    return out


def _batch(args):
    import anndata as ad

    import scintegrate as si

    with Measurement() as m:
        parts = [ad.read_h5ad(p) for p in args.files]
        for name, part in zip(args.names, parts, strict=True):
            part.obs["dataset"] = name
        adata = ad.concat(parts, index_unique="-")
        del parts
        si.pp.liger_preprocess(adata, batch_key="dataset")
        si.tl.inmf(adata, args.k, batch_key="dataset", lambda_=args.lambda_, max_iter=args.epochs)
    out = m.as_dict()
    out["n_cells"] = int(adata.n_obs)
    return out


def _pyplanc(args):
    import h5py
    import pyplanc

    shapes = []
    for p in args.files:
        with h5py.File(p, "r") as f:
            shapes.append(tuple(int(s) for s in f["X"].attrs["shape"]))
    with Measurement() as m:
        # our cells x genes CSR is libplanc's genes x cells CSC; H5SpMat takes (genes, cells)
        mats = [
            pyplanc.H5SpMat(p, "X/indices", "X/indptr", "X/data", n_genes, n_cells)
            for p, (n_cells, n_genes) in zip(args.files, shapes, strict=True)
        ]
        out_ = pyplanc.oinmf(
            mats,
            args.k,
            nCores=args.threads,
            **{"lambda": args.lambda_},
            maxEpoch=args.epochs,
            minibatchSize=args.batch_size,
            maxHALSIter=1,
            permuteChunkSize=1000,
            verbose=False,
        )
    out = m.as_dict()
    np.savez(args.factors, W=np.asarray(out_.W), V=np.stack([np.asarray(v) for v in out_.VList]))
    return out


def _ours_dask(args):
    import scintegrate as si

    files = dict(zip(args.names, args.files, strict=True))
    client = cluster = None
    out = {}
    if args.workers:
        from distributed import Client, LocalCluster

        clock = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        # the workers import the package once (a fixed cost of a cluster, not of a pass)
        client.run(__import__, "scintegrate._core.online_inmf")
        out["cluster_start_seconds"] = time.perf_counter() - clock
    try:
        with Measurement() as m:
            result, model = si.tl.online_inmf(
                files,
                args.k,
                lambda_=args.lambda_,
                batch_size=args.batch_size,
                max_epochs=args.epochs,
                random_state=args.seed,
                return_model=True,
                client=client if client is not None else False,
            )
        out.update(m.as_dict())
        clock = time.perf_counter()
        out["heldout_objective"] = sum(
            model.objective(path, dataset=name, client=client if client is not None else False)
            for name, path in zip(args.names, args.heldout, strict=True)
        )
        out["heldout_seconds"] = time.perf_counter() - clock
        if client is not None:
            peaks = client.run(lambda: status_mb("VmHWM"))
            out["worker_peak_rss_mb"] = sorted(float(v) for v in peaks.values())
    finally:
        if client is not None:
            client.close()
            cluster.close()
    out["timing"] = {k: float(v) for k, v in result.uns["inmf"]["timing"].items()}
    out["n_genes"] = int(result.n_vars)
    out["n_cells"] = int(result.n_obs)
    out["genes"] = list(map(str, result.var_names))
    return out


MODES = {
    "ours-dask": _ours_dask,
    "ours": _ours_model,
    "ours-train": _ours_train,
    "ours-scaled": _ours_scaled,
    "batch": _batch,
    "pyplanc": _pyplanc,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--files", nargs="+", required=True)
    parser.add_argument("--names", nargs="+", required=True)
    parser.add_argument("--heldout", nargs="*", default=[])
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--lambda_", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="ours-dask: Dask worker processes")
    parser.add_argument("--factors", default=None, help="npz to write W and V to")
    args = parser.parse_args()
    start_rss = status_mb("VmRSS")
    clock = time.perf_counter()
    out = MODES[args.mode](args)
    out["process_seconds"] = time.perf_counter() - clock
    out["rss_after_imports_mb"] = start_rss
    print(json.dumps(out))


if __name__ == "__main__":
    main()
