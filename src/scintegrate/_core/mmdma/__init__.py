"""MMD-MA numerics (kernel sums, modalities, symmetry search, the fit)."""

from ._fit import *  # noqa: F403 (temporary: the module is split in the next commit)
from ._fit import (  # noqa: F401
    _lower_median,
    _Modality,
    _sym_power,
    _symmetry_search,
)
