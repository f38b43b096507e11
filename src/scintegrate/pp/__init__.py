"""Preprocessing: LIGER's per-batch normalisation and scaling, quantile normalisation and centroid
alignment of factors, and gene activity scores from ATAC peaks."""

from ._centroid_align import centroid_align
from ._gene_activity import gene_activity
from ._liger import liger_preprocess
from ._liger_unshared import liger_unshared
from ._quantile_norm import quantile_norm

__all__: list[str] = [
    "centroid_align",
    "gene_activity",
    "liger_preprocess",
    "liger_unshared",
    "quantile_norm",
]
