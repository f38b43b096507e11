"""Preprocessing: LIGER's per-batch normalisation and scaling, and quantile normalisation."""

from ._liger import liger_preprocess

__all__: list[str] = ["liger_preprocess"]
