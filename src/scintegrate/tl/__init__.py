"""Tools: integration and factorisation methods that write their results into AnnData."""

from ._inmf import inmf, online_inmf
from ._mmdma import mmdma
from ._nmf import nmf

__all__ = ["inmf", "mmdma", "nmf", "online_inmf"]
