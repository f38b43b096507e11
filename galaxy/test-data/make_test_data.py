"""Write the small real test files of the Galaxy tools (and of tests/cli) from the data bundled
with scintegrate; run from the repository root: ``python galaxy/test-data/make_test_data.py``.

Sources (see ``src/scintegrate/datasets/data/README.md``): SNARE-seq adult mouse cortex (Chen et
al. 2019, via scMoMaT's ``MOp_5batches`` batch 1) and SNARE-seq cell lines (via SCOT). The
cortex files take two disjoint sets of nuclei, one for RNA and one for ATAC, so the modalities
are unpaired as in a real integration; the cell-line file keeps the pairing (for FOSCTTM).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import anndata as ad
import h5py
import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp

import scintegrate as si

HERE = Path(__file__).resolve().parent
N_CELLS = 100  # per modality
N_GENES = 150
N_PEAK_GENES = 30  # the peak files hold the peaks linked to this many of the genes
SEED = 0


class _CompactFile(h5py.File):
    """HDF5 files in the newest format: the groups of an AnnData take a third less space."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("libver", "latest")
        super().__init__(*args, **kwargs)


def _write(data, name: str) -> None:
    """Write an AnnData or MuData in the compact format, gzip-compressed."""
    h5py.File = _CompactFile
    try:
        if name.endswith(".h5mu"):
            data.write_h5mu(HERE / name, compression="gzip")
        else:
            data.write_h5ad(HERE / name, compression="gzip")
    finally:
        h5py.File = _CompactFile.__mro__[1]


def _cells(n_total: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    chosen = rng.choice(n_total, 2 * N_CELLS, replace=False)
    return np.sort(chosen[:N_CELLS]), np.sort(chosen[N_CELLS:])


def _slim(adata: ad.AnnData, keep_obs: tuple[str, ...]) -> ad.AnnData:
    adata.obs = adata.obs[list(keep_obs)].copy()
    for column in keep_obs:
        adata.obs[column] = adata.obs[column].astype(str).astype("category")
    adata.uns = {}
    return adata


def main() -> None:
    rng = np.random.default_rng(SEED)
    rna_all = si.datasets.snareseq_cortex_rna()
    activity_all = si.datasets.snareseq_cortex_atac_gene_activity()
    peaks_all = si.datasets.snareseq_cortex_atac_peaks()
    rna_cells, atac_cells = _cells(rna_all.n_obs, rng)
    # the genes most detected in both modalities, so that every small dataset has signal
    detected = (
        np.asarray((rna_all.X > 0).sum(0)).ravel() + np.asarray((activity_all.X > 0).sum(0)).ravel()
    )
    genes = np.sort(np.argsort(-detected, kind="stable")[:N_GENES])

    rna = _slim(rna_all[rna_cells, genes].copy(), ("cell_type",))
    rna.obs["modality"] = "rna"
    atac = _slim(activity_all[atac_cells, genes].copy(), ("cell_type",))
    atac.obs["modality"] = "atac"
    atac.obs_names = [f"{name}-atac" for name in atac.obs_names]
    _write(rna, "cortex_rna.h5ad")
    _write(atac, "cortex_atac_activity.h5ad")

    both = ad.concat([rna, atac])
    both.obs["modality"] = both.obs["modality"].astype("category")
    _write(both, "cortex_rna_atac.h5ad")
    si.pp.liger_preprocess(both, batch_key="modality", var_thresh=0.0)
    _write(both, "cortex_liger.h5ad")
    si.tl.inmf(both, 5, batch_key="modality", max_iter=10)
    _write(both, "cortex_inmf.h5ad")

    # peaks of the ATAC nuclei, restricted to the peaks linked to the chosen genes
    links = peaks_all.varm["gene_activity"][:, genes].tocsc()
    links[:, N_PEAK_GENES:] = 0  # keep the files small: peaks of the first genes only
    links.eliminate_zeros()
    linked = np.flatnonzero(np.asarray(links.sum(1)).ravel() > 0)
    peaks = peaks_all[atac_cells, linked].copy()
    peaks.obs_names = atac.obs_names
    peaks = _slim(peaks, ("cell_type",))
    gene_names = np.asarray(rna_all.var_names[genes])
    peaks.varm = {}
    sp.save_npz(HERE / "links.npz", sp.csr_matrix(links[linked].T), compressed=True)
    (HERE / "link_genes.txt").write_text("\n".join(gene_names) + "\n")
    _write(peaks, "cortex_peaks.h5ad")
    unpaired = mudata.MuData({"rna": rna.copy(), "atac": peaks.copy()})
    si.pp.gene_activity(unpaired, links=sp.csr_matrix(links[linked].T), genes=gene_names)
    _write(unpaired, "cortex_rna_peaks_links.h5mu")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        lines = si.datasets.snareseq_celllines()
        keep = np.sort(rng.choice(lines.n_mod and lines["rna"].n_obs, N_CELLS, replace=False))
        paired = mudata.MuData({m: lines[m][keep].copy() for m in ("rna", "atac")})
    _write(paired, "celllines.h5mu")

    # models for the commands that embed new cells
    _, model = si.tl.online_inmf(
        [HERE / "cortex_rna.h5ad", HERE / "cortex_atac_activity.h5ad"],
        5,
        max_epochs=2,
        batch_size=60,
        return_model=True,
    )
    model.save(HERE / "online_inmf_model.h5")
    model_etm = si.tl.etm(
        rna.copy(),
        4,
        emb_dim=8,
        hidden_sizes=(16,),
        max_epochs=5,
        batch_size=60,
        device="cpu",
        return_model=True,
        copy=False,
    )
    model_etm.save(HERE / "etm_model.pt")
    galaxy_extras()
    mosaic_files()
    for path in sorted(HERE.iterdir()):
        print(f"{path.name:<32} {path.stat().st_size / 1024:8.1f} KiB")


def galaxy_extras() -> None:
    """Two files for the Galaxy tools' tests, built from the files above (so that ``--extras``
    can add them without rewriting the others):

    * ``celllines_mmdma.h5ad``: the paired cell-line nuclei of ``celllines.h5mu`` embedded by
      MMD-MA, both modalities stacked in one AnnData (obs ``modality``, ``barcode`` pairing the
      two profiles of a nucleus, ``cell_type``; ``obsm["X_mmdma"]``; no matrix), for the pairing
      metrics with ``--batch-key``/``--pair-key``;
    * ``linked_genes.bed``: a BED6 annotation of the genes of ``links.npz`` that have linked
      peaks, each gene spanning its linked peaks (coordinates derived from the link matrix and
      the peak names ``chrom_start_end``, not from a genome annotation), for
      ``gene-activity --annotation``.
    """
    paired = mudata.read_h5mu(HERE / "celllines.h5mu")
    si.tl.mmdma(paired, 5, max_epochs=300, backend="torch", device="cpu", random_state=SEED)
    parts = []
    for name in ("rna", "atac"):
        part = ad.AnnData(
            obs=paired[name].obs[["barcode", "cell_type"]].copy(),
            obsm={"X_mmdma": np.asarray(paired[name].obsm["X_mmdma"], dtype=np.float32)},
        )
        part.obs["modality"] = name
        part.obs_names = [f"{cell}-{name}" for cell in part.obs_names]
        parts.append(part)
    stacked = ad.concat(parts)
    for column in ("barcode", "cell_type", "modality"):
        stacked.obs[column] = stacked.obs[column].astype(str).astype("category")
    _write(stacked, "celllines_mmdma.h5ad")

    links = sp.load_npz(HERE / "links.npz").tocsr()  # genes x peaks
    genes = (HERE / "link_genes.txt").read_text().split()
    peaks = ad.read_h5ad(HERE / "cortex_peaks.h5ad", backed="r").var_names
    lines = []
    for row, gene in enumerate(genes):
        linked = links.indices[links.indptr[row] : links.indptr[row + 1]]
        if linked.size == 0:
            continue
        coords = [peaks[p].rsplit("_", 2) for p in linked]
        chroms = {c[0] for c in coords}
        if len(chroms) != 1:
            continue
        start = min(int(c[1]) for c in coords)
        end = max(int(c[2]) for c in coords)
        lines.append(f"{chroms.pop()}\t{start}\t{end}\t{gene}\t0\t+")
    (HERE / "linked_genes.bed").write_text("\n".join(lines) + "\n")


def mosaic_files() -> None:
    """A mosaic for UINMF, from the files above (``--mosaic`` adds only these):

    * ``cortex_mosaic.h5ad``: ``cortex_rna_atac.h5ad`` (raw counts of the shared genes) plus the
      60 peaks most often open in the ATAC nuclei of ``cortex_peaks.h5ad``, as features only the
      ATAC dataset has (zero for the RNA nuclei; ``var["measured_in"]`` names the owner);
    * ``cortex_mosaic_scaled.h5ad``: the same after ``pp.liger_preprocess`` and
      ``pp.liger_unshared`` (the input of ``tl.uinmf``).
    """
    both = ad.read_h5ad(HERE / "cortex_rna_atac.h5ad")
    peaks = ad.read_h5ad(HERE / "cortex_peaks.h5ad")
    detected = np.asarray((peaks.X > 0).sum(0)).ravel()
    chosen = np.sort(np.argsort(-detected, kind="stable")[:60])
    block = sp.csr_matrix((both.n_obs, len(chosen)), dtype=np.float32).tolil()
    rows = both.obs_names.get_indexer(peaks.obs_names)
    block[rows] = peaks.X[:, chosen]
    owner = np.full(both.n_vars + len(chosen), None, dtype=object)
    owner[both.n_vars :] = "atac"
    var = pd.DataFrame(index=[*both.var_names, *peaks.var_names[chosen]])
    var["measured_in"] = pd.Categorical(owner)
    X = sp.hstack([sp.csr_matrix(both.X), block.tocsr()], format="csr").astype(np.float32)
    mosaic = ad.AnnData(X, obs=both.obs.copy(), var=var)
    _write(mosaic, "cortex_mosaic.h5ad")
    si.pp.liger_preprocess(mosaic, batch_key="modality", var_thresh=0.0)
    si.pp.liger_unshared(mosaic, batch_key="modality", features="measured_in", var_thresh=0.0)
    _write(mosaic, "cortex_mosaic_scaled.h5ad")


if __name__ == "__main__":
    if sys.argv[1:] == ["--mosaic"]:
        mosaic_files()
    elif sys.argv[1:] == ["--extras"]:
        galaxy_extras()
    else:
        main()
