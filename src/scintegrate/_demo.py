"""``scintegrate demo``: unpaired integration of SNARE-seq RNA and ATAC gene activity, offline.

By default the demo integrates the bundled SNARE-seq mouse cortex RNA with the ATAC gene activity
of *other* nuclei (online iNMF, then quantile normalisation) and compares the result with the same
data without integration. ``run_demo(nmf=True)`` runs the earlier demo instead: NMF-SSE vs
NMF-Poisson on the RNA alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from ._logging import logger

# Settings of the integration demo, fixed before any score was seen: those of the tutorial
# tutorials/inmf_rna_atac.ipynb, which discusses them.
_N_COMPONENTS = 20
_LAMBDA = 5.0
_MAX_EPOCHS = 5
_BATCH_SIZE = 5000
_N_PAIRED = 1000  # nuclei in both datasets, whose pairing only FOSCTTM reads
_RESOLUTION = 1.0  # Leiden resolution of the ARI
_UMAP_CELLS = 3000  # cells drawn in each UMAP, half per modality (the scores use all cells)
_UMAP_EPOCHS = 200

_ROWS = {  # the embeddings scored, obsm["X_<key>"], and their names in the summary
    "nmf": "no integration (NMF)",
    "nmf_qn": "no integration (NMF) + quantile norm",
    "inmf_qn": "online iNMF + quantile norm",
}


def run_demo(
    out_dir: str | Path = "scintegrate_demo",
    *,
    nmf: bool = False,
    random_state: int = 0,
) -> Path:
    """Run the demo, write its outputs into ``out_dir`` and print its summary; returns the folder.

    By default: the RNA of one half of the bundled SNARE-seq cortex nuclei and the ATAC gene
    activity of the other half (plus 1,000 nuclei in both, to score the pairing), integrated by
    :func:`~scintegrate.tl.online_inmf` and :func:`~scintegrate.pp.quantile_norm` and compared with
    an NMF of the same data without integration. Writes ``summary.txt`` (alignment, ARI, FOSCTTM,
    wall time per step), ``umap.png``, ``training_curve.png`` and ``demo.h5ad`` (all results).

    With ``nmf=True``: NMF-SSE vs NMF-Poisson on the RNA alone (the earlier demo), into files of
    the same names. The same ``random_state`` gives the same numbers.

    Parameters
    ----------
    out_dir
        Folder for the demo's files (created if needed).
    nmf
        Run the earlier demo instead: NMF-SSE vs NMF-Poisson on the RNA alone.
    random_state
        Seed of the split of the nuclei and of every tool; the same seed gives the same numbers.
    """
    if nmf:
        return _nmf_demo(out_dir, random_state=random_state)
    return _integration_demo(out_dir, random_state=random_state)


class _Steps:
    """The demo's progress bar (stderr) and the wall and CPU time of every step.

    CPU time counts every thread of the process; wall time well above it means the process
    waited for a CPU (a busy machine).
    """

    def __init__(self, names: list[str]) -> None:
        from ._utils._progress import progress_bar

        self.bar = progress_bar(total=len(names), desc="scintegrate demo", unit="step")
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        self.bar.set_postfix_str(name)
        start, cpu = time.perf_counter(), time.process_time()
        yield
        self.seconds[name] = time.perf_counter() - start
        self.cpu_seconds[name] = time.process_time() - cpu
        self.bar.update()

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "step": list(self.seconds),
                "wall_s": list(self.seconds.values()),
                "cpu_s": list(self.cpu_seconds.values()),
            }
        )

    def close(self) -> None:
        self.bar.close()


@contextmanager
def _tool_bars_off():
    """Only the demo's own bar: the tools' bars are switched off while it runs."""
    from ._settings import settings

    shown = settings.progress_bar
    settings.progress_bar = False
    try:
        yield
    finally:
        settings.progress_bar = shown


def _split_nuclei(n_nuclei: int, n_paired: int, rng: np.random.Generator):
    """Seeded split: ``n_paired`` nuclei in both datasets, each other one in one of two halves.

    Returns the nuclei of the RNA dataset, of the ATAC dataset and the paired ones, each sorted.
    """
    order = rng.permutation(n_nuclei)
    paired, rest = order[:n_paired], order[n_paired:]
    half = len(rest) // 2
    rna = np.sort(np.concatenate([paired, rest[:half]]))
    atac = np.sort(np.concatenate([paired, rest[half:]]))
    return rna, atac, np.sort(paired)


def _load_unpaired(random_state: int, n_nuclei: int | None):
    """RNA of one half of the nuclei and ATAC gene activity of the other, in one AnnData.

    ``obs["modality"]`` names the dataset; ``obs["nucleus"]`` and ``obs["paired"]`` are read by
    FOSCTTM only. ``n_nuclei`` draws fewer nuclei first (smaller runs for tests). Returns the
    AnnData, the number of nuclei and the number of paired ones.
    """
    import anndata as ad

    from . import datasets

    rna = datasets.snareseq_cortex_rna()
    atac = datasets.snareseq_cortex_atac_gene_activity()
    if not (rna.obs_names.equals(atac.obs_names) and rna.var_names.equals(atac.var_names)):
        raise RuntimeError(
            "The bundled RNA and ATAC data no longer hold the same nuclei and genes."
        )
    rng = np.random.default_rng(random_state)
    if n_nuclei is not None and n_nuclei < rna.n_obs:
        keep = np.sort(rng.choice(rna.n_obs, n_nuclei, replace=False))
        rna, atac = rna[keep], atac[keep]
    n_nuclei = rna.n_obs
    n_paired = min(_N_PAIRED, n_nuclei // 5)
    rna_cells, atac_cells, paired = _split_nuclei(n_nuclei, n_paired, rng)
    parts = {}
    for name, data, cells in (("RNA", rna, rna_cells), ("ATAC", atac, atac_cells)):
        part = data[cells].copy()
        part.obs["nucleus"] = part.obs_names.astype(str)
        part.obs["paired"] = np.isin(cells, paired)
        parts[name] = part
    # the cell names get the modality appended, so the two halves of a nucleus differ
    adata = ad.concat(parts, label="modality", index_unique="-", merge="same")
    adata.obs["modality"] = pd.Categorical(adata.obs["modality"], categories=list(parts))
    return adata, n_nuclei, n_paired


def _scores(adata, key: str, random_state: int) -> dict:
    """Alignment, Leiden ARI / NMI against the cell types, FOSCTTM of the paired nuclei."""
    from . import metrics

    rep = f"X_{key}"
    embedding = np.asarray(adata.obsm[rep], dtype=np.float64)
    clusters = metrics.leiden_clusters(embedding, resolution=_RESOLUTION, random_state=random_state)
    adata.obs[f"{key}_leiden"] = pd.Categorical(clusters)
    cell_type = adata.obs["cell_type"].astype(str).to_numpy()
    labelled = cell_type != "Mis"
    obs = adata.obs
    paired = obs["paired"].to_numpy()
    is_rna = (obs["modality"] == "RNA").to_numpy()
    rna = obs.index[paired & is_rna]
    atac = obs.index[paired & ~is_rna]
    # the same nuclei in the same order on both sides (the pairing is read only here)
    rna = rna[np.argsort(obs.loc[rna, "nucleus"].to_numpy())]
    atac = atac[np.argsort(obs.loc[atac, "nucleus"].to_numpy())]
    position = pd.Series(np.arange(adata.n_obs), index=obs.index)
    return {
        "alignment": metrics.alignment_score(
            adata, batches="modality", use_rep=rep, random_state=random_state
        ),
        "ARI": metrics.adjusted_rand_index(cell_type[labelled], clusters[labelled]),
        "NMI": metrics.normalized_mutual_info(cell_type[labelled], clusters[labelled]),
        "clusters": len(np.unique(clusters)),
        "FOSCTTM": metrics.foscttm(
            embedding[position[rna].to_numpy()], embedding[position[atac].to_numpy()]
        ),
    }


def _start_umap_worker() -> subprocess.Popen | None:
    """Start the process that will draw the UMAPs (:mod:`scintegrate._demo_umap_worker`).

    It imports umap-learn, whose import compiles for 20-40 s in every new process, on the other
    core while this process trains. ``None`` when it cannot start (the layouts are then computed
    here, later).
    """
    worker = Path(__file__).with_name("_demo_umap_worker.py")
    try:
        return subprocess.Popen(
            [sys.executable, str(worker)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError:
        return None


def _stop(worker: subprocess.Popen | None) -> None:
    """End the UMAP process if it still runs (the demo failed or was interrupted)."""
    if worker is not None and worker.poll() is None:
        worker.kill()
        worker.communicate()


def _umap_coordinates(
    embeddings: dict[str, np.ndarray], worker: subprocess.Popen | None, random_state: int
) -> dict[str, np.ndarray]:
    """2-D UMAP of each embedding (its 15-NN graph built here): by the worker, or here if it
    failed."""
    import json
    import tempfile

    from ._demo_umap_worker import _layouts
    from ._utils._clustering import neighbors_graph

    with tempfile.TemporaryDirectory(prefix="scintegrate-demo-") as folder:
        request = {
            "graphs": {},
            "output": str(Path(folder) / "coords.npz"),
            "epochs": _UMAP_EPOCHS,
            "random_state": random_state,
        }
        for name, embedding in embeddings.items():
            graph = neighbors_graph(
                embedding, n_neighbors=15, metric="euclidean", random_state=random_state
            )
            request["graphs"][name] = str(Path(folder) / f"{name}.h5ad")
            graph.write_h5ad(request["graphs"][name])
        if worker is not None:
            try:
                _, errors = worker.communicate(json.dumps(request) + "\n", timeout=900)
            except subprocess.TimeoutExpired:
                _stop(worker)
                errors = "no answer in 900 s"
            if worker.returncode != 0:
                last = errors.strip().splitlines()[-1:] if errors else []
                logger.warning(
                    "The UMAP process failed (%s); computing the UMAPs here.",
                    last[0] if last else f"exit status {worker.returncode}",
                )
                worker = None
        if worker is None:
            _layouts(request)
        with np.load(request["output"]) as coords:
            return {name: coords[name] for name in coords.files}


def _umap_sample(adata, random_state: int) -> np.ndarray:
    """Positions of the cells drawn in the UMAPs: at most ``_UMAP_CELLS // 2`` per modality."""
    rng = np.random.default_rng(random_state)
    modality = adata.obs["modality"].to_numpy()
    chosen = []
    for name in ("RNA", "ATAC"):
        cells = np.flatnonzero(modality == name)
        chosen.append(rng.choice(cells, min(len(cells), _UMAP_CELLS // 2), replace=False))
    return np.sort(np.concatenate(chosen))


def _umaps(
    adata, keys: dict[str, str], random_state: int, path: Path, worker: subprocess.Popen | None
) -> None:
    """UMAPs (scanpy) of a sample of cells per embedding, coloured by modality and cell type.

    The coordinates go to ``obsm[f"X_{key}_umap"]`` (NaN for cells not drawn) and the drawn
    cells to ``obs["umap_sample"]``.
    """
    import anndata as ad
    import matplotlib.pyplot as plt
    import scanpy as sc

    sample = _umap_sample(adata, random_state)
    adata.obs["umap_sample"] = np.isin(np.arange(adata.n_obs), sample)
    layouts = _umap_coordinates(
        {key: np.asarray(adata.obsm[f"X_{key}"][sample], dtype=np.float32) for key in keys},
        worker,
        random_state,
    )
    fig, axes = plt.subplots(len(keys), 2, figsize=(11, 4.3 * len(keys)))
    for (key, title), row in zip(keys.items(), axes, strict=True):
        drawn = ad.AnnData(
            obs=adata.obs.iloc[sample][["modality", "cell_type"]].copy(),
            obsm={"X_umap": layouts[key]},
        )
        coords = np.full((adata.n_obs, 2), np.nan)
        coords[sample] = layouts[key]
        adata.obsm[f"X_{key}_umap"] = coords
        for ax, color in zip(row, ("modality", "cell_type"), strict=True):
            sc.pl.embedding(
                drawn,
                basis="umap",
                color=color,
                ax=ax,
                show=False,
                size=10,
                frameon=False,
                title=f"{title}\n(coloured by {color.replace('_', ' ')})",
            )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _training_figure(adata, key: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    from . import pl

    fig, ax = plt.subplots(figsize=(6.5, 4))
    pl.training_curve(
        adata,
        key,
        y="objective",
        y2="delta_W",
        x="time",
        label="mini-batch estimate",
        ax=ax,
        show=False,
    )
    history = adata.uns[key]["history"]
    ax.plot(
        history["time"].iloc[-1],
        adata.uns[key]["objective"],
        "x",
        color="k",
        markersize=9,
        label="final objective, all cells",
    )
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("iNMF objective (1), mini-batch estimate", color="C0")
    fig.axes[-1].set_ylabel("relative change of W in the step", color="C3")
    ax.set_title(f"online iNMF: {_MAX_EPOCHS} epochs, {len(history)} mini-batch steps")
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _integration_demo(
    out_dir: str | Path, *, random_state: int = 0, n_nuclei: int | None = None
) -> Path:
    """The default demo; ``n_nuclei`` draws that many nuclei first (a smaller run, for tests)."""
    clock = time.perf_counter()
    matplotlib.use("Agg")
    from . import pp, tl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [
        "load and split",
        "LIGER preprocessing",
        "online iNMF",
        "quantile norm",
        "NMF, no integration",
        "scores",
        "UMAPs",
        "training curve",
        "write demo.h5ad",
    ]
    step = _Steps(names)
    worker = _start_umap_worker()
    try:
        with _tool_bars_off():
            with step("load and split"):
                adata, n_nuclei, n_paired = _load_unpaired(random_state, n_nuclei)
            with step("LIGER preprocessing"):
                pp.liger_preprocess(adata, batch_key="modality")
            with step("online iNMF"):
                tl.online_inmf(
                    adata,
                    _N_COMPONENTS,
                    batch_key="modality",
                    lambda_=_LAMBDA,
                    batch_size=_BATCH_SIZE,
                    max_epochs=_MAX_EPOCHS,
                    random_state=random_state,
                    key_added="inmf",
                )
            with step("quantile norm"):
                pp.quantile_norm(
                    adata,
                    use_rep="X_inmf",
                    batch_key="modality",
                    reference="RNA",
                    random_state=random_state,
                    key_added="inmf_qn",
                )
            with step("NMF, no integration"):
                _nmf_without_integration(adata, random_state)
            with step("scores"):
                scores = pd.DataFrame({key: _scores(adata, key, random_state) for key in _ROWS}).T
            with step("UMAPs"):
                _umaps(
                    adata,
                    {"nmf": _ROWS["nmf"], "inmf_qn": _ROWS["inmf_qn"]},
                    random_state,
                    out / "umap.png",
                    worker,
                )
            with step("training curve"):
                _training_figure(adata, "inmf", out / "training_curve.png")
            with step("write demo.h5ad"):
                adata.uns["demo"] = {
                    "scores": scores.rename_axis("embedding").reset_index(),
                    "steps": step.table(),  # up to the step before this one
                    "random_state": random_state,
                }
                adata.write_h5ad(out / "demo.h5ad", compression="gzip")
    finally:
        _stop(worker)
        step.close()
    summary = _integration_summary(adata, scores, step, n_nuclei, n_paired, random_state)
    summary += f"{'total (run_demo)':<28} {time.perf_counter() - clock:>7.1f}\n"
    (out / "summary.txt").write_text(summary)
    print(summary, end="")
    print(f"\nOutputs written to {out.resolve()}")
    return out


def _nmf_without_integration(adata, random_state: int) -> None:
    """NMF of the stacked scaled data (same genes, one W for both modalities), with and without
    quantile normalisation: ``obsm["X_nmf"]``, ``varm["nmf_W"]``, ``obsm["X_nmf_qn"]``."""
    from . import pp, tl

    genes = adata.var["liger_highly_variable"].to_numpy()
    joint = adata[:, genes].copy()
    tl.nmf(joint, _N_COMPONENTS, layer="liger_scaled", random_state=random_state, key_added="nmf")
    adata.obsm["X_nmf"] = joint.obsm["X_nmf"]
    adata.varm["nmf_W"] = np.zeros((adata.n_vars, _N_COMPONENTS))  # zero for genes not used
    adata.varm["nmf_W"][genes] = joint.varm["nmf_W"]
    adata.uns["nmf"] = joint.uns["nmf"]
    pp.quantile_norm(
        adata,
        use_rep="X_nmf",
        batch_key="modality",
        reference="RNA",
        random_state=random_state,
        key_added="nmf_qn",
    )


def _integration_summary(adata, scores, step, n_nuclei, n_paired, random_state) -> str:
    n_cells = adata.n_obs
    n_rna = int((adata.obs["modality"] == "RNA").sum())
    n_atac = n_cells - n_rna
    n_genes = int(adata.var["liger_highly_variable"].sum())
    n_steps = len(adata.uns["inmf"]["history"])
    n_umap = int(adata.obs["umap_sample"].sum())
    before, control, after = (scores.loc[key] for key in _ROWS)
    lines = [
        "scintegrate demo: integrating RNA with the chromatin accessibility of OTHER cells",
        "SNARE-seq adult mouse cortex, bundled with the package (nothing is downloaded)",
        "",
        f"Data: {n_nuclei:,} nuclei, RNA and ATAC measured in each, split at random "
        f"(random_state = {random_state}):",
        f"  {n_paired:,} nuclei go into both datasets (the evaluation set), the other "
        f"{n_nuclei - n_paired:,} into one each:",
        f"  RNA counts of {n_rna:,} nuclei, ATAC gene activity (ATAC counts summed over each "
        f"gene's peaks) of {n_atac:,};",
        f"  {adata.n_vars:,} genes, {n_genes} used (LIGER's variable genes per modality, union). "
        "The two halves of a",
        "  shared nucleus have different cell names; their pairing is read by FOSCTTM only.",
        "",
        f"Methods, k = {_N_COMPONENTS} factors:",
        f"  online iNMF        tl.online_inmf (lambda = {_LAMBDA:g}, {_MAX_EPOCHS} epochs, "
        f"mini-batches of {_BATCH_SIZE:,} cells, {n_steps} steps)",
        "  no integration     tl.nmf (squared error) of the two datasets' scaled data stacked: "
        "one set of",
        "                     loadings for both, no dataset-specific part (the cheapest honest "
        "baseline)",
        "  + quantile norm    pp.quantile_norm of the cell factors, reference RNA",
        "",
        f"Scores, on all {n_cells:,} cells unless said:",
        "  alignment  LIGER's alignment score: 1 = the modalities mix among neighbours, 0 = apart",
        f"  ARI, NMI   Leiden clusters (metrics.leiden_clusters: resolution {_RESOLUTION:g}, "
        "fixed in advance;",
        "             UMAP-weighted 15-NN Euclidean graph) against obs['cell_type'], over the "
        "cells",
        "             with a cell type (not 'Mis')",
        f"  FOSCTTM    the {n_paired:,} evaluation nuclei: fraction of the other modality's "
        f"{n_paired:,} profiles",
        "             closer than the nucleus's own (0 = perfect, 0.5 = chance), both directions",
        "",
        f"{'embedding':<38} {'alignment':>9} {'ARI':>6} {'NMI':>6} {'clusters':>8} {'FOSCTTM':>8}",
    ]
    for key, label in _ROWS.items():
        row = scores.loc[key]
        lines.append(
            f"{label:<38} {row['alignment']:>9.3f} {row['ARI']:>6.3f} {row['NMI']:>6.3f} "
            f"{int(row['clusters']):>8d} {row['FOSCTTM']:>8.3f}"
        )
    lines += [
        "",
        f"Without integration the alignment is {before['alignment']:.3f}; online iNMF + quantile "
        f"norm reaches {after['alignment']:.3f},",
        f"but quantile norm alone reaches {control['alignment']:.3f}: alignment measures mixing, "
        "not whether the right",
        f"cells meet. FOSCTTM does: {before['FOSCTTM']:.3f} without integration, "
        f"{after['FOSCTTM']:.3f} integrated ({control['FOSCTTM']:.3f} with",
        "quantile norm alone). See tutorials/inmf_rna_atac.ipynb for more.",
        "",
        f"umap.png: UMAPs (scanpy, 15-NN, {_UMAP_EPOCHS} epochs) of {n_umap:,} cells drawn at "
        "random, half per",
        "modality, without integration and integrated. training_curve.png: the online iNMF "
        "objective.",
        "demo.h5ad: the data and every result (obsm X_inmf, X_inmf_qn, X_nmf, X_nmf_qn, UMAPs; "
        "uns['demo']).",
        "",
        f"{'step':<28} {'wall s':>7} {'CPU s':>7}",
    ]
    lines += [
        f"{name:<28} {wall:>7.1f} {step.cpu_seconds[name]:>7.1f}"
        for name, wall in step.seconds.items()
    ]
    return "\n".join(lines) + "\n"


def _nmf_demo(
    out_dir: str | Path,
    *,
    random_state: int = 0,
    n_components: int = 20,
    max_iter: int = 200,
    track_every: int = 50,
    n_cells: int | None = None,
) -> Path:
    """The earlier demo: NMF-SSE vs NMF-Poisson on the bundled SNARE-seq cortex RNA.

    The ARI is tracked every ``track_every`` iterations (each a Leiden clustering of all cells);
    ``n_cells`` draws that many cells first (a smaller run, for tests).
    """
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import datasets, metrics, pl, tl
    from ._utils._progress import progress_bar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"nmf_sse": "frobenius", "nmf_poisson": "kl"}
    steps = progress_bar(total=len(runs) + 3, desc="scintegrate demo", unit="step")

    steps.set_postfix_str("loading data")
    adata = datasets.snareseq_cortex_rna()
    if n_cells is not None and n_cells < adata.n_obs:
        rng = np.random.default_rng(random_state)
        adata = adata[np.sort(rng.choice(adata.n_obs, n_cells, replace=False))].copy()
    steps.update()
    for key, objective in runs.items():
        steps.set_postfix_str(f"{key} ({objective})")
        with _tool_bars_off():
            tl.nmf(
                adata,
                n_components,
                objective=objective,
                max_iter=max_iter,
                tol=0,
                labels_key="cell_type",
                track_every=track_every,
                random_state=random_state,
                key_added=key,
            )
        steps.update()

    steps.set_postfix_str("plots")
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    pl.training_curve(adata, "nmf_sse", y="loss", y2="ari", ax=axes[0], show=False)
    pl.training_curve(adata, "nmf_poisson", y="poisson_loglik", y2="ari", ax=axes[1], show=False)
    for key, color in zip(runs, ("C0", "C3"), strict=True):
        pl.training_curve(
            adata, key, y="ari", y2=None, label=key, color=color, ax=axes[2], show=False
        )
    axes[2].set_title("ARI during training")
    axes[2].legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out / "training_curve.png", dpi=120)
    plt.close(fig)
    fig = pl.umap(
        adata,
        "nmf_poisson",
        color=["cell_type", "library"],
        random_state=random_state,
        show=False,
        return_fig=True,
        wspace=0.35,
    )
    fig.savefig(out / "umap.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    steps.update()

    steps.set_postfix_str("metrics and files")
    lines = [
        "scintegrate demo (nmf=True): NMF of SNARE-seq mouse cortex RNA "
        f"({adata.n_obs:,} cells x {adata.n_vars:,} genes, raw counts)",
        f"k = {n_components}, {max_iter} iterations, random_state = {random_state}, "
        f"ARI tracked every {track_every} iterations",
        "ARI / NMI: Leiden (resolution 1.0) on a 15-NN cosine graph of the cell factors, against the",
        "15 coarse cell types (obs['cell_type']); one fixed resolution, not the best of a grid.",
        "",
        f"{'model':<12} {'objective':<10} {'final loss':>11} {'train s':>8} {'ARI':>6} {'NMI':>6}",
    ]
    for key, objective in runs.items():
        history = adata.uns[key]["history"]
        table = metrics.cluster_agreement(
            adata, "cell_type", use_rep=f"X_{key}", metric="cosine", random_state=random_state
        )
        lines.append(
            f"{key:<12} {objective:<10} {history['loss'].iloc[-1]:>11.5f} "
            f"{history['time'].iloc[-1]:>8.2f} {table['ari'].iloc[0]:>6.3f} {table['nmi'].iloc[0]:>6.3f}"
        )
    lines += ["", "Files: demo.h5ad, training_curve.png, umap.png, summary.txt"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    adata.write_h5ad(out / "demo.h5ad", compression="gzip")
    steps.update()
    steps.close()
    print("\n".join(lines))
    print(f"\nOutputs written to {out.resolve()}")
    return out
