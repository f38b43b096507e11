"""Numerical cores: arrays in, arrays out. Nothing here imports AnnData."""
