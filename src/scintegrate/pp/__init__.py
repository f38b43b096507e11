"""Preprocessing: LIGER's per-batch normalisation and scaling, and quantile normalisation."""

from ._liger import liger_preprocess
from ._quantile_norm import quantile_norm

__all__: list[str] = ["liger_preprocess", "quantile_norm"]
