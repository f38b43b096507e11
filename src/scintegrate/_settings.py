"""Package-wide settings (progress bars, verbosity)."""

from __future__ import annotations

import logging

from ._logging import logger


class Settings:
    """Global settings of scintegrate.

    Attributes
    ----------
    progress_bar
        Show `tqdm` progress bars during training (default ``True``).
    verbosity
        Logging level of the ``"scintegrate"`` logger, as a :mod:`logging` level name or number.
    """

    def __init__(self) -> None:
        self.progress_bar: bool = True

    @property
    def verbosity(self) -> int:
        return logger.level

    @verbosity.setter
    def verbosity(self, level: int | str) -> None:
        if isinstance(level, str):
            numeric = logging.getLevelName(level.upper())
            if not isinstance(numeric, int):
                raise ValueError(
                    f"Unknown verbosity {level!r}: use one of 'debug', 'info', 'warning', 'error'."
                )
            level = numeric
        logger.setLevel(level)

    def __repr__(self) -> str:
        return (
            f"scintegrate settings: progress_bar={self.progress_bar}, "
            f"verbosity={logging.getLevelName(self.verbosity)}"
        )


settings = Settings()
