"""scintegrate: integration of single-cell datasets and modalities, scanpy style.

Namespaces follow scanpy: :mod:`~scintegrate.pp` (preprocessing), :mod:`~scintegrate.tl` (tools),
:mod:`~scintegrate.pl` (plots), :mod:`~scintegrate.metrics` and :mod:`~scintegrate.datasets`.
"""

from . import datasets, metrics, pl, pp, tl
from ._settings import settings
from ._version import __version__

__all__ = ["__version__", "datasets", "metrics", "pl", "pp", "settings", "tl"]
