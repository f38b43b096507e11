"""Real single-cell data shipped with the package (no downloads at run time), and simulations."""

from ._datasets import snareseq_celllines, snareseq_cortex_atac_gene_activity, snareseq_cortex_rna
from ._simulation import branch_simulation

__all__ = [
    "branch_simulation",
    "snareseq_celllines",
    "snareseq_cortex_atac_gene_activity",
    "snareseq_cortex_rna",
]
