"""Progress bars that follow ``scintegrate.settings.progress_bar``."""

from __future__ import annotations

import warnings
from typing import Any


def progress_bar(*, total: int | None = None, desc: str = "", unit: str = "it", **kwargs: Any):
    """A :mod:`tqdm.auto` bar, disabled when ``settings.progress_bar`` is off.

    tqdm.auto falls back to the text bar in notebooks without ipywidgets and warns about it on
    every import; the text bar is fine, so that warning is silenced.
    """
    from .._settings import settings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm

    kwargs.setdefault("disable", not settings.progress_bar)
    return tqdm(total=total, desc=desc, unit=unit, **kwargs)
