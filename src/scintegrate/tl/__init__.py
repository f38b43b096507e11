"""Tools: integration and factorisation methods that write their results into AnnData."""

from ._etm import ETMModel as ETMModel  # the model class, not a tool
from ._etm import etm
from ._inmf import inmf, online_inmf
from ._nmf import nmf

__all__ = ["etm", "inmf", "nmf", "online_inmf"]
