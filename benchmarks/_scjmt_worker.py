"""Run scJMT (ours) or scMoMaT in a fresh process on unpaired RNA + ATAC; time, memory, factors.

Started by ``benchmarks/scjmt.py --vs-scmomat``:

* ``--impl ours`` runs in the package's virtual environment: ``scintegrate.tl.scjmt`` on a MuData
  of the RNA and the ATAC cells (raw counts; the tool preprocesses), options from ``--options``.
* ``--impl scmomat`` runs in scMoMaT's own environment (PyPI ``scmomat`` 0.2.2) and follows the
  authors' tutorial (``demo_scmomat.ipynb``, MOp data): RNA ``scmomat.preprocess(...,
  modality="RNA", log=False)`` (per-gene quantile normalisation, divided by the maximum), ATAC
  ``scmomat.preprocess(..., modality="ATAC")`` (binarised), the ATAC batch's pseudo-RNA
  ``(ATAC_binary @ A.T != 0)`` (binarised gene activity; computed with a sparse product, the
  same numbers as the tutorial's dense one), two batches (RNA only; ATAC + pseudo-RNA),
  ``scmomat_model(K=30, batch_size=0.1, lr=1e-2, lamb=0.001, interval=1000)``,
  ``train_func(T=4000)``, ``extract_cell_factors()``, then the tutorial's post-processing
  ``calc_post_graph(zs, n_neighbors=100, r=None)`` and ``leiden_cluster(resolution=0.9)``.
  Settings can be changed with ``--options`` (JSON: ``K``, ``T``, ``lamb``, ``lr``,
  ``batch_size``, ``n_neighbors``, ``resolution``).

Only numpy, scipy and ``_common`` (standard library) are imported at module level. Input
(``--data``): an ``.npz`` with the CSR parts of ``rna`` (cells x genes counts), ``atac`` (cells x
regions counts) and ``links`` (genes x regions, binary). Timed: from the counts in memory to the
cell factors (preprocessing included) and, separately, the method's own clustering step. Output
(``--out``): ``result.json`` and ``factors.npz`` (``z_rna``, ``z_atac``: the cell factors the
method reports; ``labels``: its own clusters of the RNA cells then the ATAC cells; ours also
``z_rna_raw``, ``z_atac_raw``: ``obsm["scjmt_C"]``, the cell factors before the MNN smoothing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import Measurement, status_mb, wait_for_idle


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        out = {}
        for name in ("rna", "atac", "links"):
            out[name] = sp.csr_matrix(
                (data[f"{name}_data"], data[f"{name}_indices"], data[f"{name}_indptr"]),
                shape=tuple(data[f"{name}_shape"]),
            )
    return out


def run_ours(data: dict, args) -> tuple[dict, dict]:
    import anndata as ad
    import mudata
    import torch

    import scintegrate as si

    torch.set_num_threads(args.threads)
    si.settings.progress_bar = False
    mudata.set_options(pull_on_update=False)
    rna = ad.AnnData(data["rna"])
    atac = ad.AnnData(data["atac"])
    rna.obs_names = [f"r{i}" for i in range(rna.n_obs)]
    atac.obs_names = [f"a{i}" for i in range(atac.n_obs)]
    rna.var_names = [f"g{i}" for i in range(rna.n_vars)]
    atac.var_names = [f"p{i}" for i in range(atac.n_vars)]
    m = mudata.MuData({"rna": rna, "atac": atac})
    options = json.loads(args.options)
    wait_for_idle(5.0)
    with Measurement() as fit:
        si.tl.scjmt(m, gene_activity=data["links"], random_state=args.seed, **options)
    z = m.obsm["X_scjmt"]
    rows_rna = m.obs_names.get_indexer(rna.obs_names)
    rows_atac = m.obs_names.get_indexer(atac.obs_names)
    labels = m.obs["scjmt_clusters"].astype(str).to_numpy()
    info = {
        "version": si.__version__,
        "torch": torch.__version__,
        "options": options,
        "fit": fit.as_dict(),
        "objective": float(m.uns["scjmt"]["objective"]),
        "n_iter": int(m.uns["scjmt"]["params"]["n_iter"]),
        "own_clusters": "argmax of X_scjmt (after the MNN smoothing)",
    }
    # the cell factors before the MNN smoothing are scored as well (the paper's protocol on
    # simulated data, and what scMoMaT's factors are scored as)
    raw = m.obsm["scjmt_C"]
    arrays = {
        "z_rna": z[rows_rna],
        "z_atac": z[rows_atac],
        "labels": np.concatenate([labels[rows_rna], labels[rows_atac]]),
        "z_rna_raw": raw[rows_rna],
        "z_atac_raw": raw[rows_atac],
    }
    return arrays, info


SCMOMAT_DEFAULTS = {
    "K": 30,
    "T": 4000,
    "lamb": 0.001,
    "lr": 1e-2,
    "batch_size": 0.1,
    "interval": 1000,
    "n_neighbors": 100,
    "resolution": 0.9,
}


class _Tee(io.TextIOBase):
    """A text stream that writes to a buffer and, stamped with the time, to another stream."""

    def __init__(self, kept: io.StringIO, stream) -> None:
        self.kept, self.stream, self.started = kept, stream, time.perf_counter()

    def write(self, text: str) -> int:
        self.kept.write(text)
        if text.strip():
            self.stream.write(f"[{time.perf_counter() - self.started:8.1f} s] {text.rstrip()}\n")
            self.stream.flush()
        return len(text)


def run_scmomat(data: dict, args) -> tuple[dict, dict]:
    import scmomat
    import torch

    torch.set_num_threads(args.threads)
    settings = SCMOMAT_DEFAULTS | json.loads(args.options)
    # scMoMaT prints its loss every `interval` iterations: kept for result.json and also passed
    # to standard error (the harness's log), so that a long run shows how far it has got
    log = _Tee(io.StringIO(), sys.stderr)
    wait_for_idle(5.0)
    with Measurement() as fit:
        tic = time.perf_counter()
        rna = scmomat.preprocess(data["rna"].toarray(), modality="RNA", log=False)
        atac = scmomat.preprocess(data["atac"].toarray(), modality="ATAC")
        # pseudo-RNA of the ATAC cells: binarised gene activity, as in the tutorial
        pseudo = (sp.csr_matrix(atac) @ data["links"].T).toarray()
        pseudo = (pseudo != 0).astype(int)
        seconds_preprocess = time.perf_counter() - tic
        counts = {
            "feats_name": {
                "rna": np.array([f"g{i}" for i in range(rna.shape[1])], dtype=object),
                "atac": np.array([f"p{i}" for i in range(atac.shape[1])], dtype=object),
            },
            "nbatches": 2,
            "rna": [rna, pseudo],
            "atac": [None, atac],
        }
        with contextlib.redirect_stdout(log):
            model = scmomat.scmomat_model(
                counts=counts,
                K=settings["K"],
                batch_size=settings["batch_size"],
                interval=settings["interval"],
                lr=settings["lr"],
                lamb=settings["lamb"],
                seed=args.seed,
                device=torch.device("cpu"),
            )
            losses = model.train_func(T=settings["T"])
        zs = model.extract_cell_factors()
    del counts, rna, atac, pseudo, model
    with Measurement() as post, contextlib.redirect_stdout(log):
        knn_indices, knn_dists = scmomat.calc_post_graph(
            zs, settings["n_neighbors"], njobs=args.threads, r=None
        )
        labels = scmomat.leiden_cluster(
            X=None,
            knn_indices=knn_indices,
            knn_dists=knn_dists,
            resolution=settings["resolution"],
        )
    info = {
        "version": scmomat.__version__,
        "torch": torch.__version__,
        "options": settings,
        "fit": fit.as_dict(),
        "seconds_preprocess": seconds_preprocess,
        "post": post.as_dict(),
        "losses": losses,
        "own_clusters": "Leiden of the tutorial's post-processed graph (calc_post_graph, "
        f"n_neighbors={settings['n_neighbors']}, resolution={settings['resolution']})",
        "log_tail": log.kept.getvalue()[-2000:],
    }
    return {"z_rna": zs[0], "z_atac": zs[1], "labels": np.asarray(labels)}, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("ours", "scmomat"), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--options", default="{}", help="JSON keyword arguments")
    args = parser.parse_args()
    data = load(args.data)
    baseline = status_mb("VmRSS")
    run = run_ours if args.impl == "ours" else run_scmomat
    arrays, info = run(data, args)
    args.out.mkdir(parents=True, exist_ok=True)
    arrays["labels"] = np.asarray(arrays["labels"]).astype(str)
    np.savez(args.out / "factors.npz", **arrays)
    info.update(
        impl=args.impl,
        n_obs=[data["rna"].shape[0], data["atac"].shape[0]],
        n_features=[data["rna"].shape[1], data["atac"].shape[1]],
        process_rss_before_data_mb=baseline,
        python=platform.python_version(),
        threads=args.threads,
        seed=args.seed,
        pid=os.getpid(),
    )
    (args.out / "result.json").write_text(json.dumps(info, indent=2, default=float))
    print(
        json.dumps({"impl": args.impl, "seconds": info["fit"]["seconds"]}),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
