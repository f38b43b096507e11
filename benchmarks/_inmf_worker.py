"""Run one integrative NMF implementation in a fresh process; record time, memory and factors.

Started by ``benchmarks/inmf.py``, once per implementation, method and repeat:

* ``--impl ours`` runs in the package's virtual environment (``scintegrate.tl.online_inmf`` /
  ``scintegrate.tl.inmf``);
* ``--impl pyliger`` runs in ``benchmarks/.envs/pyliger`` (pyliger 0.2.4: ``online_iNMF``,
  ``optimize_ALS``);
* ``--impl pyplanc`` runs in ``benchmarks/.envs/pyplanc`` (pyplanc 0.0.2: ``oinmf``,
  ``bppinmf``).

This file imports only numpy, scipy and ``_common`` (standard library) at module level; each
implementation's own imports happen inside its branch, so the same measuring code serves every
environment.

Input (``--data``): the ``.npz`` written by ``inmf.py`` with the LIGER-preprocessed, scaled
matrices of every dataset (cells x selected genes, float64 CSR), see :func:`save_inputs`. All
conversions an implementation needs (AnnData and a ``Liger`` object for pyliger, genes x cells
CSC for pyplanc) are done *before* the timed call. Timed: the factorisation call only, with its
own final pass over the cells (H for all cells) and, where the implementation computes one, its
final objective.

Output (``--out``): ``result.json`` (time, memory, versions, the implementation's own objective
where it reports one) and ``factors.npz`` with ``W`` (genes x k), ``V0``, ``V1``, ... (genes x k)
and ``H0``, ``H1``, ... (cells x k), in the order of the datasets in the input file, so that
``E_i ~ H_i (W + V_i)^T`` for every implementation.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import Measurement, status_mb, wait_for_idle

# --------------------------------------------------------------------------------------------
# the shared input file (written by inmf.py, read here)
# --------------------------------------------------------------------------------------------


def save_inputs(path: Path, matrices, names, genes, cells) -> None:
    """Write the per-dataset matrices (cells x genes CSR) and their labels to one ``.npz``."""
    arrays = {
        "names": np.asarray(names, dtype=str),
        "genes": np.asarray(genes, dtype=str),
    }
    for i, (matrix, barcodes) in enumerate(zip(matrices, cells, strict=True)):
        matrix = sp.csr_matrix(matrix, dtype=np.float64)
        arrays[f"E{i}_data"] = matrix.data
        arrays[f"E{i}_indices"] = matrix.indices
        arrays[f"E{i}_indptr"] = matrix.indptr
        arrays[f"E{i}_shape"] = np.asarray(matrix.shape)
        arrays[f"cells{i}"] = np.asarray(barcodes, dtype=str)
    np.savez(path, **arrays)


def load_inputs(path: Path) -> tuple[list[sp.csr_matrix], list[str], np.ndarray, list]:
    """The per-dataset matrices (cells x genes, float64 CSR), dataset names, genes and cells."""
    with np.load(path) as stored:
        names = [str(name) for name in stored["names"]]
        matrices = [
            sp.csr_matrix(
                (stored[f"E{i}_data"], stored[f"E{i}_indices"], stored[f"E{i}_indptr"]),
                shape=tuple(stored[f"E{i}_shape"]),
            )
            for i in range(len(names))
        ]
        cells = [stored[f"cells{i}"] for i in range(len(names))]
        genes = stored["genes"]
    return matrices, names, genes, cells


# --------------------------------------------------------------------------------------------
# one function per implementation: prepare (untimed), then return the call to time
# --------------------------------------------------------------------------------------------


def _prepare_ours(args, matrices, names, genes, cells):
    import anndata as ad
    import pandas as pd

    import scintegrate

    # one AnnData holding the scaled matrices in the layer tl.inmf reads by default; every gene
    # of the file is a selected gene
    batch = np.concatenate(
        [np.full(m.shape[0], name) for m, name in zip(matrices, names, strict=True)]
    )
    obs = pd.DataFrame(
        {"dataset": pd.Categorical(batch, categories=names)},
        index=np.concatenate(cells).astype(str),
    )
    var = pd.DataFrame({"liger_highly_variable": True}, index=genes.astype(str))
    adata = ad.AnnData(obs=obs, var=var, layers={"liger_scaled": sp.vstack(matrices).tocsr()})
    common = {
        "batch_key": "dataset",
        "layer": "liger_scaled",
        "lambda_": args.lambda_,
        "random_state": 0 if args.seed is None else args.seed,
        "key_added": "inmf",
    }

    if args.method == "online":

        def fit():
            scintegrate.tl.online_inmf(
                adata,
                args.k,
                batch_size=args.batch_size,
                max_epochs=args.epochs,
                **common,
            )
    else:

        def fit():
            scintegrate.tl.inmf(
                adata, args.k, solver="anls", max_iter=args.max_iter, tol=0, **common
            )

    def collect():
        order = [str(b) for b in adata.uns["inmf"]["batches"]]
        W = adata.varm["inmf_W"]
        V = [adata.varm["inmf_V"][:, :, order.index(name)] for name in names]
        H = [adata.obsm["X_inmf"][(adata.obs["dataset"] == name).to_numpy()] for name in names]
        extra = {"own_objective": float(adata.uns["inmf"]["objective"])}
        params = adata.uns["inmf"].get("params", {})
        extra["params"] = {key: _plain(value) for key, value in dict(params).items()}
        return W, V, H, extra

    versions = {"scintegrate": scintegrate.__version__}
    with contextlib.suppress(ImportError):
        import numba

        versions["numba"] = numba.__version__
        versions["numba_threads"] = numba.get_num_threads()
    return fit, collect, versions


def _prepare_pyliger(args, matrices, names, genes, cells):
    import anndata as ad
    import pandas as pd
    import pyliger

    # pyliger reads adata.layers["scale_data"] (cells x var_genes, CSR; online_iNMF slices rows
    # of it, optimize_ALS densifies it) and liger.var_genes; results go to obsm/varm
    adatas = []
    for matrix, name, barcodes in zip(matrices, names, cells, strict=True):
        adata = ad.AnnData(
            obs=pd.DataFrame(index=barcodes.astype(str)),
            var=pd.DataFrame(index=genes.astype(str)),
            layers={"scale_data": matrix},
        )
        adata.uns["sample_name"] = name
        adatas.append(adata)
    liger = pyliger.Liger(adatas)
    liger.var_genes = list(genes.astype(str))

    if args.method == "online":

        def fit():
            pyliger.online_iNMF(
                liger,
                k=args.k,
                value_lambda=args.lambda_,
                max_epochs=args.epochs,
                miniBatch_size=args.batch_size,
                rand_seed=1 if args.seed is None else args.seed,
                verbose=False,
            )
    else:

        def fit():
            # thresh < 0: the convergence test |delta obj| / mean(obj) > thresh never stops early
            pyliger.optimize_ALS(
                liger,
                k=args.k,
                value_lambda=args.lambda_,
                thresh=-1.0,
                max_iters=args.max_iter,
                rand_seed=1 if args.seed is None else args.seed,
            )

    def collect():
        # obsm["H"]: cells x k; varm["W"], varm["V"]: genes x k (both methods)
        W = np.asarray(liger.adata_list[0].varm["W"])
        V = [np.asarray(adata.varm["V"]) for adata in liger.adata_list]
        H = [np.asarray(adata.obsm["H"]) for adata in liger.adata_list]
        return W, V, H, {}

    from importlib.metadata import version

    return fit, collect, {"pyliger": version("pyliger"), "anndata": ad.__version__}


def _prepare_pyplanc(args, matrices, names, genes, cells):
    import pyplanc

    # planc's orientation: E_i genes x cells (CSC, as rliger passes its dgCMatrix); the transpose
    # of our cells x genes CSR is exactly that, without copying
    objects = [sp.csc_matrix(m.T, dtype=np.float64) for m in matrices]
    result = {}

    if args.method == "online":

        def fit():
            result["out"] = pyplanc.oinmf(
                objects,
                args.k,
                nCores=args.threads,
                **{"lambda": args.lambda_},
                maxEpoch=args.epochs,
                minibatchSize=args.batch_size,
                maxHALSIter=1,
                permuteChunkSize=1000,
                verbose=False,
            )
    else:

        def fit():
            result["out"] = pyplanc.bppinmf(
                objects,
                args.k,
                **{"lambda": args.lambda_},
                niter=args.max_iter,
                ncores=args.threads,
            )

    def collect():
        out = result["out"]
        # W, V_i: genes x k; H_i: cells x k; objErr: planc's own value of objective (1)
        extra = {"own_objective": float(out.objErr)}
        return np.asarray(out.W), list(out.VList), list(out.HList), extra

    from importlib.metadata import version

    return fit, collect, {"pyplanc": version("pyplanc")}


PREPARE = {"ours": _prepare_ours, "pyliger": _prepare_pyliger, "pyplanc": _prepare_pyplanc}


def _plain(value):
    """A JSON-friendly version of a recorded parameter."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _blas_info() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('num_threads')} threads, "
        f"{os.path.basename(pool.get('filepath', ''))})"
        for pool in threadpool_info()
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=sorted(PREPARE), required=True)
    parser.add_argument("--method", choices=("online", "anls"), required=True)
    parser.add_argument("--data", type=Path, required=True, help=".npz written by inmf.py")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--lambda", dest="lambda_", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=5, help="online: passes over the data")
    parser.add_argument("--batch-size", type=int, default=5000, help="online: mini-batch size")
    parser.add_argument("--max-iter", type=int, default=30, help="batch ANLS: iterations")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="ours (default 0) and pyliger (default 1, its own); pyplanc takes no seed",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wait-idle", type=float, default=0.0)
    parser.add_argument(
        "--warmup-cells",
        type=int,
        default=0,
        help="before the timed call, fit the first N cells of every dataset once (untimed)",
    )
    args = parser.parse_args(argv)

    matrices, names, genes, cells = load_inputs(args.data)
    fit, collect, versions = PREPARE[args.impl](args, matrices, names, genes, cells)
    versions.update(
        {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": __import__("scipy").__version__,
        }
    )

    warmup_s = None
    if args.warmup_cells > 0:
        # an untimed small fit first, the same for every implementation: it takes one-off costs
        # out of the timed call (ours: compiling or loading the numba kernels; everyone: lazy
        # imports, BLAS and OpenMP thread start-up)
        small = [m[: args.warmup_cells] for m in matrices]
        small_args = argparse.Namespace(**vars(args))
        small_args.epochs, small_args.max_iter = 1, 2
        small_args.batch_size = min(args.batch_size, sum(m.shape[0] for m in small) // 2)
        small_cells = [c[: args.warmup_cells] for c in cells]
        warmup_fit, _, _ = PREPARE[args.impl](small_args, small, names, genes, small_cells)
        with Measurement() as warmup:
            warmup_fit()
        warmup_s = warmup.seconds
        del warmup_fit

    startup_peak = status_mb("VmHWM")
    gc.collect()
    waited = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
    with Measurement() as measured:
        fit()
    W, V, H, extra = collect()
    # after the call: pyplanc's BLAS is only loaded (and visible to threadpoolctl) by then
    versions["blas"] = _blas_info()

    args.out.mkdir(parents=True, exist_ok=True)
    factors = {"W": np.asarray(W, dtype=np.float64)}
    for i, (v, h) in enumerate(zip(V, H, strict=True)):
        factors[f"V{i}"] = np.asarray(v, dtype=np.float64)
        factors[f"H{i}"] = np.asarray(h, dtype=np.float64)
    np.savez(args.out / "factors.npz", **factors)
    result = {
        "impl": args.impl,
        "method": args.method,
        **measured.as_dict(),
        "waited_for_idle_s": waited,
        "warmup_s": warmup_s,
        "warmup_cells_per_dataset": args.warmup_cells,
        "startup_peak_rss_mb": startup_peak,
        "shapes": {key: list(value.shape) for key, value in factors.items()},
        "versions": versions,
        "threads_env": {
            key: os.environ.get(key)
            for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "executable": sys.executable,
        **extra,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
