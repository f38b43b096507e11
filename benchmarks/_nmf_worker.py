"""Run one NMF implementation in a fresh process and record time, memory and factors.

Started by ``benchmarks/nmf.py``, once per configuration and implementation:

* ``--impl ours`` runs in the package's virtual environment (``scintegrate`` importable);
* ``--impl sklearn`` runs in ``benchmarks/.envs/sklearn`` (scikit-learn, numpy, scipy only).

This file imports only numpy and scipy at module level, so the same measuring code serves both
sides. Each side gets its own process so that peak-RSS numbers are comparable and one
implementation's allocations do not inflate the other's.

Protocol: the first fit is timed separately (for ours it includes loading or compiling the numba
kernels), then ``--repeats`` further fits are timed. Around every fit the process peak RSS is
reset (``/proc/self/clear_refs``), so ``VmHWM`` afterwards is the peak reached during that fit;
``VmRSS`` right before the fit is the baseline. Results go to ``OUT/result.json`` and the factors
of the last fit to ``OUT/H.npy`` (cells x k) and ``OUT/W.npy`` (genes x k), in our orientation
``X ~ H @ W.T``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import cpu_seconds, reset_peak_rss, status_mb, wait_for_idle


def _make_fit(args, X, init):
    """A zero-argument function running one fit; returns ``(H, W, n_iter)`` in our orientation."""
    if args.impl == "ours":
        from scintegrate._core.nmf import fit_nmf

        def fit():
            result = fit_nmf(
                X,
                args.k,
                objective=args.objective,
                solver=args.solver,
                max_iter=args.max_iter,
                tol=0.0,
                init="nndsvda" if init is None else init,
                random_state=0,
            )
            return result.H, result.W, result.n_iter

        return fit

    from sklearn.decomposition import NMF

    if init is None:
        raise SystemExit("the scikit-learn side needs --init-h and --init-w")
    beta_loss = "frobenius" if args.objective == "frobenius" else "kullback-leibler"

    def fit():
        model = NMF(
            n_components=args.k,
            init="custom",
            solver=args.solver,
            beta_loss=beta_loss,
            max_iter=args.max_iter,
            tol=0.0,  # allowed (tol >= 0) and disables every early stop
            random_state=0,
        )
        # fit_transform may modify its initial factors in place: hand it copies
        W_sk = model.fit_transform(X, W=init[0].copy(), H=init[1].T.copy())
        return W_sk, model.components_.T, int(model.n_iter_)

    return fit


def _versions(impl: str) -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    import scipy

    versions["scipy"] = scipy.__version__
    if impl == "ours":
        import numba

        versions["numba"] = numba.__version__
        versions["numba_threads"] = numba.get_num_threads()
    else:
        import sklearn

        versions["scikit-learn"] = sklearn.__version__
    try:
        from threadpoolctl import threadpool_info

        versions["blas"] = [
            f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('num_threads')} threads)"
            for pool in threadpool_info()
        ]
    except ImportError:
        pass
    return versions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("ours", "sklearn"), required=True)
    parser.add_argument("--objective", choices=("frobenius", "kl"), required=True)
    parser.add_argument("--solver", required=True, help="'hals'/'mu' (ours), 'cd'/'mu' (sklearn)")
    parser.add_argument("--data", type=Path, required=True, help="scipy .npz of X (cells x genes)")
    parser.add_argument("--init-h", type=Path, help=".npy, cells x k (ours: H; sklearn: W)")
    parser.add_argument("--init-w", type=Path, help=".npy, genes x k (ours: W; sklearn: H.T)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed fits after the first one")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--wait-idle", type=float, default=0.0, help="max seconds to wait for an idle machine"
    )
    args = parser.parse_args(argv)

    X = sp.load_npz(args.data).tocsr()
    init = None
    if args.init_h is not None and args.init_w is not None:
        init = (np.load(args.init_h), np.load(args.init_w))
    fit = _make_fit(args, X, init)

    # peak so far (imports, data): later resets of VmHWM would hide it. Not ru_maxrss: after
    # subprocess's vfork + exec that starts at the *parent's* peak RSS
    startup_peak = status_mb("VmHWM")
    runs = []
    H = W = None
    n_iter = -1
    for run in range(1 + args.repeats):
        H = W = None  # free the previous factors before measuring the baseline
        gc.collect()
        waited = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
        peak_reset = reset_peak_rss()
        baseline = status_mb("VmRSS")
        busy_before, own_before = cpu_seconds()
        start = time.perf_counter()
        H, W, n_iter = fit()
        seconds = time.perf_counter() - start
        peak = status_mb("VmHWM")
        busy_after, own_after = cpu_seconds()
        own_cpu = own_after - own_before
        runs.append(
            {
                "run": run,
                "first_call": run == 0,
                "seconds": seconds,
                "n_iter": n_iter,
                "baseline_rss_mb": baseline,
                # without the reset, VmHWM is the peak of the whole process so far
                "peak_rss_mb": peak,
                "peak_is_per_fit": peak_reset,
                # mean number of cores busy with this process / with other processes
                "own_cores": own_cpu / seconds,
                "other_cores": max(busy_after - busy_before - own_cpu, 0.0) / seconds,
                "waited_for_idle_s": waited,
            }
        )

    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "H.npy", np.asarray(H, dtype=np.float64))
    np.save(args.out / "W.npy", np.asarray(W, dtype=np.float64))
    result = {
        "impl": args.impl,
        "objective": args.objective,
        "solver": args.solver,
        "k": args.k,
        "max_iter": args.max_iter,
        "shape": list(X.shape),
        "nnz": int(X.nnz),
        "dtype": str(X.dtype),
        "runs": runs,
        "startup_peak_rss_mb": startup_peak,
        # lifetime peak of this process: imports and data loading, or one of the fits
        "process_peak_rss_mb": max([startup_peak] + [run["peak_rss_mb"] for run in runs]),
        "cpu_count": os.cpu_count(),
        "versions": _versions(args.impl),
        "executable": sys.executable,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
