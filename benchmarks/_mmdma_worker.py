"""Run one MMD-MA implementation in a fresh process; record time, memory and the embeddings.

Started by ``benchmarks/mmdma.py``:

* ``--impl ours`` runs in the package's virtual environment (``scintegrate.tl.mmdma`` on a pair
  of AnnData, primal, torch backend);
* ``--impl lsmmdma`` runs in ``benchmarks/.envs/lsmmdma`` (lsmmdma 0.1.11,
  ``lsmmdma.train.train_and_evaluate``, primal, with or without KeOps).

Only numpy and ``_common`` (standard library) are imported at module level. Input (``--data``):
an ``.npz`` with ``X`` and ``Y`` (cells x features, float32). Timed: the training call only
(data already in memory; for lsmmdma the tensors already built). Output (``--out``):
``result.json`` (time, memory, versions) and ``embeddings.npz`` (``zx``, ``zy``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from _common import Measurement, status_mb, wait_for_idle


def run_ours(X, Y, args) -> tuple[np.ndarray, np.ndarray, dict]:
    import anndata as ad
    import torch

    import scintegrate as si

    torch.set_num_threads(args.threads)
    si.settings.progress_bar = False
    rna, atac = ad.AnnData(X), ad.AnnData(Y)
    kwargs = {"random_state": args.seed} | json.loads(args.options)
    wait_for_idle(5.0)
    with Measurement() as m:
        si.tl.mmdma((rna, atac), n_dims=args.n_dims, max_epochs=args.epochs, **kwargs)
    info = {
        "version": si.__version__,
        "torch": torch.__version__,
        "options": kwargs,
        "final_loss": float(rna.uns["mmdma"]["loss"]),
    }
    return rna.obsm["X_mmdma"], atac.obsm["X_mmdma"], m.as_dict() | info


def run_lsmmdma(X, Y, args) -> tuple[np.ndarray, np.ndarray, dict]:
    # lsmmdma calls pykeops.clean_pykeops() when imported, which empties the KeOps cache: the
    # harness gives this process its own HOME, so only a private cache is ever cleaned
    import torch
    from lsmmdma import train as lstrain
    from lsmmdma.version import __version__

    torch.set_num_threads(args.threads)
    options = json.loads(args.options)
    cfg = lstrain.ModelGetterConfig(
        seed=args.seed,
        mode="primal",
        low_dim=args.n_dims,
        n_iter=args.epochs,
        n_record=0,
        n_eval=0,
        pca=0,
        **options,
    )
    device = torch.device("cpu")
    first = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    second = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float32))
    wait_for_idle(5.0)
    with Measurement() as m:
        _, model, *_ = lstrain.train_and_evaluate(cfg, first, second, None, "", device)
    w1, w2 = list(model.parameters())
    with torch.no_grad():
        zx = (first @ w1).numpy()
        zy = (second @ w2).numpy()
    info = {"version": __version__, "torch": torch.__version__, "options": options}
    return zx, zy, m.as_dict() | info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("ours", "lsmmdma"), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--n-dims", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--options", default="{}", help="JSON keyword arguments")
    args = parser.parse_args()
    with np.load(args.data) as data:
        X, Y = data["X"], data["Y"]
    baseline = status_mb("VmRSS")
    run = run_ours if args.impl == "ours" else run_lsmmdma
    zx, zy, info = run(X, Y, args)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "embeddings.npz", zx=zx, zy=zy)
    info.update(
        impl=args.impl,
        n_obs=[len(X), len(Y)],
        n_features=[X.shape[1], Y.shape[1]],
        epochs=args.epochs,
        seconds_per_epoch=info["seconds"] / args.epochs,
        process_rss_before_data_mb=baseline,
        python=platform.python_version(),
        threads=args.threads,
        pid=os.getpid(),
    )
    (args.out / "result.json").write_text(json.dumps(info, indent=2))
    print(json.dumps({k: info[k] for k in ("impl", "seconds", "peak_rss_mb")}), file=sys.stderr)


if __name__ == "__main__":
    main()
