"""Train one scETM implementation in a fresh process; record time, memory and the embedding.

Started by ``benchmarks/etm.py``:

* ``--impl ours`` runs in the package's environment (``scintegrate._core.etm.fit_etm``, the
  trainer behind ``tl.etm``);
* ``--impl scetm`` runs in ``benchmarks/.envs/scetm`` (scETM 0.5.0, ``scETM`` +
  ``UnsupervisedTrainer``), with small import-time shims for newer numpy / anndata / scanpy;
* ``--impl tl-memory`` / ``--impl tl-disk`` (``etm.py --from-disk``) run ``tl.etm`` on an
  h5ad file (``--data``) read into memory first (untimed), or given as a path (read from disk
  during training). Timed: the ``tl.etm`` call; per step: the training loop only (its history).
  The peak RSS is also taken when training ends, before the cells are embedded and the
  n x topics results written (``training_peak_rss_mb``).

Input (``--data``): an ``.npz`` with the raw counts (cells x genes CSR), the batch codes and the
cell-type labels. Timed, without evaluation or checkpoints: for ours the whole ``fit_etm`` call
(setup, training and the final embedding of all cells), for scETM ``trainer.train`` (its model
and trainer are built before, its embedding of all cells computed after, untimed).
Output (``--out``): ``result.json`` (seconds, steps, seconds per step, peak RSS, versions) and
``embedding.npz`` with ``theta`` and ``delta`` (cells x topics).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import Measurement, wait_for_idle


def load_inputs(path: Path):
    f = np.load(path, allow_pickle=False)
    X = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
    return X, f["batch"], f["labels"]


def run_ours(X, batch, args):
    import torch

    from scintegrate._core.etm import fit_etm

    n_batches = int(batch.max()) + 1 if args.batches else 1
    steps_per_epoch = max(X.shape[0] // args.batch_size, 1)
    epochs = max(round(args.steps / steps_per_epoch), 1)
    with Measurement() as m:
        result = fit_etm(
            X,
            args.k,
            batch_codes=batch if args.batches else None,
            n_batches=n_batches,
            max_epochs=epochs,
            batch_size=args.batch_size,
            kl_weight=args.kl_weight if args.kl_weight is not None else 1.0,
            random_state=np.random.default_rng(args.seed),
            # the core takes every hyperparameter; these are the values of earlier runs
            emb_dim=400,
            hidden_sizes=(128,),
            dropout=0.1,
            lr=5e-3,
            lr_decay=6e-5,
            kl_warmup=1 / 3,
            grad_clip=50.0,
            eval_every=10,
        )
    return m, result.n_steps, result.theta, result.mu, {"torch": torch.__version__}


def _shim_scetm() -> None:
    """scETM 0.5.0 predates numpy 2 / anndata 0.12 / scanpy 1.11: patch what it touches."""
    import pandas as pd

    if not hasattr(pd.api.types, "is_categorical_dtype"):  # pragma: no cover
        pd.api.types.is_categorical_dtype = lambda x: isinstance(
            getattr(x, "dtype", x), pd.CategoricalDtype
        )
    import scipy.sparse

    if not hasattr(scipy.sparse, "csr"):  # pragma: no cover
        scipy.sparse.csr = scipy.sparse._csr


def run_scetm(X, batch, args):
    import anndata as ad
    import pandas as pd
    import torch

    _shim_scetm()
    from scETM import UnsupervisedTrainer
    from scETM import scETM as Model

    obs = pd.DataFrame(
        {
            "batch_indices": batch.astype(int) if args.batches else np.zeros(len(batch), int),
            "cell_types": "x",
        },
        index=[str(i) for i in range(X.shape[0])],
    )
    adata = ad.AnnData(X.astype(np.float32), obs=obs)
    n_batches = int(batch.max()) + 1 if args.batches else 1
    torch.manual_seed(args.seed)
    model = Model(adata.n_vars, n_batches, n_topics=args.k)
    trainer = UnsupervisedTrainer(
        model, adata, batch_size=args.batch_size, seed=args.seed, ckpt_dir=None
    )
    # scETM's epoch advances by batch_size / n_obs per step (at least 1 per full-batch step)
    per_step = min(args.batch_size / adata.n_obs, 1.0)
    n_epochs = max(round(args.steps * per_step), 1)  # an int: scETM formats it with :d
    kwargs = {} if args.kl_weight is None else {"max_kl_weight": args.kl_weight}
    with Measurement() as m:
        trainer.train(
            n_epochs=n_epochs,
            eval_every=10**9,
            eval=False,
            save_model_ckpt=False,
            n_samplers=1,
            **kwargs,
        )
    steps = int(trainer.step) if hasattr(trainer, "step") else args.steps
    model.get_cell_embeddings_and_nll(
        adata, emb_names=["delta", "theta"], batch_col="batch_indices"
    )
    theta = np.asarray(adata.obsm["theta"], dtype=np.float64)
    delta = np.asarray(adata.obsm["delta"], dtype=np.float64)
    from importlib.metadata import version

    return m, steps, theta, delta, {"torch": torch.__version__, "scETM": version("scETM")}


class _Stop(Exception):
    """Training stopped after ``--max-steps`` (the memory benchmark on large files)."""


def run_tl(args) -> dict:
    """``tl.etm`` on an h5ad file, in memory or from disk (``--impl tl-memory`` / ``tl-disk``)."""
    import anndata as ad
    import torch
    from _common import status_mb

    import scintegrate as si
    from scintegrate._core import etm as core

    si.settings.progress_bar = False
    marks = {}
    embed = core.ETMModule.embed

    def embed_marked(self, *a, **kw):  # the first embedding is the final one (no labels_key)
        marks.setdefault("training_peak_rss_mb", status_mb("VmHWM"))
        if sources:  # seconds reading (and decoding) rows from the file during training
            marks.setdefault("training_read_seconds", sources[0].source.read_seconds)
        return embed(self, *a, **kw)

    sources = []
    init = core.SourceData.__init__

    def init_recorded(self, *a, **kw):
        init(self, *a, **kw)
        sources.append(self)

    core.ETMModule.embed = embed_marked
    core.SourceData.__init__ = init_recorded
    if args.max_steps:  # training stops after this many steps: no results, the peak so far
        batch_at = core.SourceData.batch_at
        done = []

        def batch_at_capped(self, *a, **kw):
            if len(done) == args.max_steps:
                marks["training_peak_rss_mb"] = status_mb("VmHWM")
                marks["training_read_seconds"] = self.source.read_seconds
                raise _Stop
            done.append(1)
            return batch_at(self, *a, **kw)

        core.SourceData.batch_at = batch_at_capped
    data = str(args.data) if args.impl == "tl-disk" else ad.read_h5ad(args.data)
    waited = wait_for_idle(args.wait_idle)
    with Measurement() as m:
        try:
            out = si.tl.etm(
                data,
                args.k,
                batch_key="library" if args.batches else None,
                max_epochs=args.epochs,
                batch_size=args.batch_size,
                chunk_size=args.chunk_size,
                shuffle_buffer=args.shuffle_buffer,
                kl_weight=args.kl_weight if args.kl_weight is not None else 1.0,
                random_state=args.seed,
                copy=True,
            )
        except _Stop:
            out = None
    if out is None:
        return {
            "impl": args.impl,
            "steps": args.max_steps,
            "stopped_after_steps": args.max_steps,
            "waited_for_idle_s": waited,
            **marks,
            **m.as_dict(),
        }
    history = out.uns["etm"]["history"]
    steps = int(out.uns["etm"]["params"]["n_steps"])
    per_epoch = steps // len(history)
    times = history["time"].to_numpy()
    later = (times[-1] - times[0]) / (steps - per_epoch) if len(times) > 1 else float("nan")
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "embedding.npz", theta=out.obsm["X_etm"], delta=out.obsm["etm_delta"])
    return {
        "impl": args.impl,
        "n_cells": int(out.n_obs),
        "steps": steps,
        "seconds_training": float(times[-1]),
        "seconds_per_step": float(times[-1]) / steps,
        # epochs after the first (numba compilation, first reads and allocations excluded)
        "seconds_per_step_after_first_epoch": later,
        "waited_for_idle_s": waited,
        "results_mb": (out.obsm["X_etm"].nbytes + out.obsm["etm_delta"].nbytes) / 2**20,
        "versions": {"torch": torch.__version__},
        **marks,
        **m.as_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=("ours", "scetm", "tl-memory", "tl-disk"), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--batches", action="store_true", help="use the batch codes")
    parser.add_argument("--kl-weight", type=float, default=None, help="default: each its own")
    parser.add_argument("--wait-idle", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1, help="tl-* only")
    parser.add_argument("--chunk-size", type=int, default=256, help="tl-* only")
    parser.add_argument("--shuffle-buffer", type=int, default=16_384, help="tl-* only")
    parser.add_argument("--max-steps", type=int, default=0, help="tl-disk: stop training after")
    args = parser.parse_args()
    if args.impl.startswith("tl-"):
        result = run_tl(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, indent=1))
        json.dump(result, sys.stdout)
        return
    X, batch, _ = load_inputs(args.data)
    waited = wait_for_idle(args.wait_idle)
    run = run_ours if args.impl == "ours" else run_scetm
    m, steps, theta, delta, versions = run(X, batch, args)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "embedding.npz", theta=theta, delta=delta)
    result = {
        "impl": args.impl,
        "steps": steps,
        "seconds_per_step": m.seconds / max(steps, 1),
        "waited_for_idle_s": waited,
        "python": platform.python_version(),
        "versions": versions,
        **m.as_dict(),
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
