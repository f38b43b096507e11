"""Progress bars that follow ``scintegrate.settings.progress_bar``."""

from __future__ import annotations

from typing import Any

from .._core._progress import progress_bar as _progress_bar


def progress_bar(*, total: int | None = None, desc: str = "", unit: str = "it", **kwargs: Any):
    """A :mod:`tqdm.auto` bar, disabled when ``settings.progress_bar`` is off (or ``disable``)."""
    from .._settings import settings

    kwargs.setdefault("disable", not settings.progress_bar)
    return _progress_bar(total=total, desc=desc, unit=unit, **kwargs)
