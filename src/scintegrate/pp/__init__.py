"""Preprocessing. Gene activity, LIGER preprocessing and quantile normalisation land here."""

__all__: list[str] = []
