"""Progress bars for the numerical cores, which take ``progress: bool`` (never global settings)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np


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


class IterationLog:
    """The per-iteration record of a batch solver (iNMF, UINMF): objective, time net of the
    callback's, the callback's extra columns, the progress bar and the relative-tolerance stop.

    ``history`` starts with iteration 0 (the starting objective, timed from ``start_time``).
    """

    def __init__(
        self,
        initial_objective: float,
        *,
        start_time: float,
        max_iter: int,
        tol: float,
        callback,
        desc: str,
        progress: bool,
    ) -> None:
        self.start_time, self.tol, self.callback = start_time, tol, callback
        self.callback_time = 0.0
        self.converged = False
        self.history: dict[str, list] = {
            "iteration": [0],
            "objective": [initial_objective],
            "time": [time.perf_counter() - start_time],
        }
        self.bar = progress_bar(total=max_iter, desc=desc, disable=not progress)

    def record(self, iteration: int, value: float, result) -> bool:
        """Log one iteration (``result()`` builds what the callback receives); True to stop."""
        history = self.history
        history["iteration"].append(iteration)
        history["objective"].append(value)
        history["time"].append(time.perf_counter() - self.start_time - self.callback_time)
        self.bar.set_postfix(objective=f"{value:.6g}", refresh=False)
        self.bar.update()
        if self.callback is not None:
            tic = time.perf_counter()
            extra = self.callback(iteration, result()) or {}
            for name, item in extra.items():
                history.setdefault(name, [None] * (len(history["iteration"]) - 1)).append(item)
            self.callback_time += time.perf_counter() - tic
        previous = history["objective"][-2]
        floor = self.tol * max(abs(previous), float(np.finfo(float).tiny))
        if self.tol > 0 and previous - value <= floor:
            self.converged = True
        return self.converged

    def close(self) -> None:
        self.bar.close()
