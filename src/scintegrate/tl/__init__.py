"""Tools: integration and factorisation methods that write their results into AnnData."""

from ._etm import ETMModel, etm
from ._factor_markers import factor_markers
from ._inmf import inmf
from ._mmdma import mmdma
from ._nmf import nmf
from ._online_inmf import online_inmf
from ._online_inmf_model import OnlineINMFModel
from ._scjmt import scjmt
from ._uinmf import uinmf

__all__ = [
    "ETMModel",
    "OnlineINMFModel",
    "etm",
    "factor_markers",
    "inmf",
    "mmdma",
    "nmf",
    "online_inmf",
    "scjmt",
    "uinmf",
]
