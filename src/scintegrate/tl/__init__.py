"""Tools: integration and factorisation methods that write their results into AnnData."""

from ._nmf import nmf

__all__ = ["nmf"]
