"""A row source that kills the Dask worker reading it, once: tests/tl/test_online_inmf_dask.py.

In a module of its own so that the workers import it by name (``tests/`` is on the path of the
test process, which the workers inherit) instead of receiving a class pickled by value.
"""

from __future__ import annotations

import os

from scintegrate._core._row_sources import RowSource


class DiesOnce(RowSource):
    """A part of a source whose first read, anywhere, kills the process reading it."""

    def __init__(self, inner: RowSource, marker: str) -> None:
        super().__init__(inner.genes, inner.inv_rms)
        self.inner, self.marker = inner, marker
        self.n_cells, self.n_columns = inner.n_cells, inner.n_columns

    def _read(self, rows):
        if not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os._exit(1)  # the worker process dies mid-pass
        return self.inner._read(rows)
