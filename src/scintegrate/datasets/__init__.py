"""Real single-cell data shipped with the package (no downloads at run time)."""

from ._datasets import (
    snareseq_cortex_atac_gene_activity,
    snareseq_cortex_atac_peaks,
    snareseq_cortex_rna,
)
from ._simulate import simulate_rna_atac

__all__ = [
    "simulate_rna_atac",
    "snareseq_cortex_atac_gene_activity",
    "snareseq_cortex_atac_peaks",
    "snareseq_cortex_rna",
]
