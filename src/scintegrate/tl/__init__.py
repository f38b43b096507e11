"""Tools: integration and factorisation methods that write their results into AnnData."""

from ._inmf import inmf, online_inmf
from ._nmf import nmf
from ._scjmt import scjmt

__all__ = ["inmf", "nmf", "online_inmf", "scjmt"]
