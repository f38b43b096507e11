"""Real single-cell data shipped with the package (no downloads at run time)."""

from ._datasets import snareseq_cortex_atac_gene_activity, snareseq_cortex_rna

__all__ = ["snareseq_cortex_atac_gene_activity", "snareseq_cortex_rna"]
