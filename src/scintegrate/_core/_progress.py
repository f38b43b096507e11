"""Progress bars for the numerical cores, which take ``progress: bool`` (never global settings)."""

from __future__ import annotations

import warnings
from typing import Any


def progress_bar(
    *, total: int | None = None, desc: str = "", unit: str = "it", disable: bool, **kwargs: Any
):
    """A :mod:`tqdm.auto` bar, shown unless ``disable``.

    tqdm.auto falls back to the text bar in notebooks without ipywidgets and warns about it on
    every import; the text bar is fine, so that warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=disable, **kwargs)
