"""Writing results into AnnData in a form that survives write_h5ad / read_h5ad."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def h5ad_safe(value: Any) -> Any:
    """Convert a params value to something h5ad can store; ``None`` entries are dropped upstream."""
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        if all(isinstance(v, str) for v in value):
            return np.asarray(value, dtype=object)
        return {str(i): h5ad_safe(v) for i, v in enumerate(value)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def record_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters for ``uns[key]["params"]``: None dropped, tuples as arrays, plus the version."""
    from .. import __version__

    out = h5ad_safe(dict(params))
    out["scintegrate_version"] = __version__
    return out


def history_frame(history: Mapping[str, list]) -> pd.DataFrame:
    """Training history as a DataFrame, one row per recorded iteration."""
    frame = pd.DataFrame({k: np.asarray(v) for k, v in history.items()})
    frame.index = frame.index.astype(str)  # h5ad needs string indices
    return frame
