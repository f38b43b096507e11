"""Real single-cell data shipped with the package (no downloads at run time), and simulators."""

from ._branch_simulation import branch_simulation
from ._datasets import (
    kang2018_pbmc_subset,
    snareseq_celllines,
    snareseq_cortex_atac_gene_activity,
    snareseq_cortex_atac_peaks,
    snareseq_cortex_rna,
)
from ._rna_atac_simulation import simulate_rna_atac

__all__ = [
    "branch_simulation",
    "kang2018_pbmc_subset",
    "simulate_rna_atac",
    "snareseq_celllines",
    "snareseq_cortex_atac_gene_activity",
    "snareseq_cortex_atac_peaks",
    "snareseq_cortex_rna",
]
