"""Row sources: the cells of one dataset as CSR row blocks, from memory, from a CSR matrix stored
in HDF5 or zarr (AnnData's on-disk layout), or from a Dask array of CSR chunks.

A source hands out mini-batches of rows as float64 CSR blocks restricted to the model's genes,
optionally normalised on the fly (LIGER's library-size normalisation and per-gene scaling). A
stored source reads only the rows asked for, as contiguous runs: with the chunk-shuffled epoch
order of online iNMF a mini-batch is a few runs, so each compressed chunk is decompressed
about once per epoch instead of once per cell. Memory is set by the mini-batch, never by the
number of cells (the index pointer is read run by run, not loaded whole).

Every source can hand out a *portable* part of itself (:meth:`RowSource.portable`): a picklable
source of a range of its rows, with the same genes and scaling, that reopens its file (or holds
its slice of the data) wherever it is unpickled. The Dask passes ship these to the workers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ._numba import njit
from ._sparse import as_csr


@njit(cache=True)
def _select_and_scale(
    indptr, indices, data, column_map, inv_rms, scale, out_indptr, out_indices, out_data
):
    """One pass over stored rows: keep the mapped columns and, with ``scale``, divide by the
    row's total over all stored columns and by ``inv_rms`` of the gene. Returns the number of
    entries written, or -1 at a negative or non-finite value."""
    pos = 0
    out_indptr[0] = 0
    for row in range(len(indptr) - 1):
        start, stop = indptr[row], indptr[row + 1]
        total = 0.0
        for j in range(start, stop):
            value = np.float64(data[j])
            if not (value >= 0.0 and value < np.inf):
                return -1
            total += value
        inv_total = 1.0 / total if total > 0.0 else 0.0
        for j in range(start, stop):
            column = column_map[indices[j]]
            if column >= 0:
                value = np.float64(data[j])
                if scale:
                    value = value * inv_total * inv_rms[column]
                out_indices[pos] = column
                out_data[pos] = value
                pos += 1
        out_indptr[row + 1] = pos
    return pos


def contiguous_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted row indices as ``[(start, stop), ...]`` runs of consecutive rows."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(rows)]])
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


class RowSource:
    """Rows of one dataset restricted to the model's genes (in the model's gene order).

    ``genes`` maps the model's genes to columns of the stored matrix (``None``: all columns, in
    order). With ``inv_rms`` (one value per model gene) every stored row is divided by its total
    count over *all* stored columns and each gene by its root-mean-square: LIGER's
    ``normalize`` + ``scaleNotCenter`` computed per mini-batch.
    """

    n_cells: int
    n_columns: int

    def __init__(self, genes: np.ndarray | None, inv_rms: np.ndarray | None) -> None:
        self._map: np.ndarray | None = None
        self.genes = genes
        self.inv_rms = None if inv_rms is None else np.asarray(inv_rms, dtype=np.float64)
        self.read_seconds = 0.0  # time spent reading and decoding, for the benchmarks
        self.where = "the data"  # for messages

    @property
    def genes(self) -> np.ndarray | None:
        """Stored columns of the model's genes, in the model's order (``None``: all columns)."""
        return self._genes

    @genes.setter
    def genes(self, genes: np.ndarray | None) -> None:
        self._genes = None if genes is None else np.asarray(genes, dtype=np.int64)
        self._map = None  # the column map follows the genes

    @property
    def n_genes(self) -> int:
        return self.n_columns if self.genes is None else len(self.genes)

    # -- to implement -----------------------------------------------------------------------
    def _read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``indptr, indices, data`` of the stored rows ``rows`` (sorted), all columns."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source opened (nothing for data in memory)."""

    def portable(self, start: int, stop: int) -> RowSource:
        """A picklable source of the rows ``start:stop`` with the same genes and scaling, for
        another process (stored sources reopen their file there, lazily)."""
        return RowRange(self, start, stop)

    def _copy_settings(self, other: RowSource) -> RowSource:
        other.genes = self.genes
        other.inv_rms = self.inv_rms
        other.where = self.where
        return other

    # -- shared -----------------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """The rows (sorted indices) as ``(matrix, positions)``: ``matrix[positions]`` are they."""
        start = time.perf_counter()
        block = self._finish(*self._read(np.asarray(rows, dtype=np.int64)))
        self.read_seconds += time.perf_counter() - start
        return block, np.arange(block.shape[0])

    def blocks(self, block_size: int) -> Iterator[tuple[int, int, sp.csr_matrix, np.ndarray]]:
        """Every row, in order, in blocks of ``block_size`` rows: ``(start, stop, matrix,
        positions)`` with rows ``start:stop`` at ``matrix[positions]`` (see :meth:`take`)."""
        for start in range(0, self.n_cells, block_size):
            stop = min(start + block_size, self.n_cells)
            block, positions = self.take(np.arange(start, stop))
            yield start, stop, block, positions

    def raw_blocks(self, block_size: int) -> Iterator[sp.csr_matrix]:
        """Every row, in order, as stored (all columns, no normalisation), for statistics."""
        for start in range(0, self.n_cells, block_size):
            rows = np.arange(start, min(start + block_size, self.n_cells))
            indptr, indices, data = self._read(rows)
            yield sp.csr_matrix(
                (data.astype(np.float64, copy=False), indices, indptr),
                shape=(len(rows), self.n_columns),
            )

    def _finish(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> sp.csr_matrix:
        n = len(indptr) - 1
        column_map = self._column_map()
        scale = self.inv_rms is not None
        inv_rms = self.inv_rms if scale else np.zeros(0)
        out_indptr = np.empty(n + 1, dtype=np.int64)
        out_indices = np.empty(len(indices), dtype=np.int32)
        out_data = np.empty(len(indices), dtype=np.float64)
        nnz = _select_and_scale(
            indptr, indices, data, column_map, inv_rms, scale, out_indptr, out_indices, out_data
        )
        if nnz < 0:
            raise ValueError(
                f"{self.where} has negative, NaN or infinite values; iNMF needs non-negative "
                "data: raw counts (scaled on the fly) or LIGER-scaled values, not log-scaled or "
                "centred ones."
            )
        return sp.csr_matrix(
            (out_data[:nnz], out_indices[:nnz], out_indptr), shape=(n, self.n_genes)
        )

    def _column_map(self) -> np.ndarray:
        if self._map is None:
            if self.genes is None:
                self._map = np.arange(self.n_columns, dtype=np.int64)
            else:
                column_map = np.full(self.n_columns, -1, dtype=np.int64)
                column_map[self.genes] = np.arange(len(self.genes))
                self._map = column_map
        return self._map


class MemoryRows(RowSource):
    """Rows of an in-memory matrix (CSR, CSC or dense), ``cells`` selecting a subset."""

    def __init__(
        self,
        X,
        *,
        cells: np.ndarray | None = None,
        genes: np.ndarray | None = None,
        inv_rms: np.ndarray | None = None,
    ) -> None:
        super().__init__(genes, inv_rms)
        self.X = as_csr(X)
        self.cells = None if cells is None else np.asarray(cells, dtype=np.int64)
        self.n_cells = self.X.shape[0] if cells is None else len(self.cells)
        self.n_columns = self.X.shape[1]

    def take(self, rows):
        if self.genes is None and self.inv_rms is None and self.cells is None:
            if self.X.dtype == np.float64:  # nothing to transform: hand out the matrix itself
                return self.X, np.asarray(rows, dtype=np.int64)
        return super().take(rows)

    def _read(self, rows):
        block = self.X[rows if self.cells is None else self.cells[rows]]
        return block.indptr, block.indices, block.data

    def portable(self, start, stop):
        rows = slice(start, stop) if self.cells is None else self.cells[start:stop]
        return self._copy_settings(MemoryRows(self.X[rows]))


class RowRange(RowSource):
    """The rows ``start:stop`` of another source (pickled with it: see :meth:`portable`)."""

    def __init__(self, parent: RowSource, start: int, stop: int) -> None:
        super().__init__(parent.genes, parent.inv_rms)
        self.parent, self.start = parent, int(start)
        self.n_cells = int(stop) - int(start)
        self.n_columns = parent.n_columns
        self.where = parent.where

    def _read(self, rows):
        return self.parent._read(np.asarray(rows, dtype=np.int64) + self.start)

    # close(): nothing; the parent is the caller's (an unpickled parent's file closes with it)


def store_name(group) -> str:
    """Where a stored group lives, for messages: the HDF5 file name or the zarr store."""
    file = getattr(group, "file", None)
    if file is not None and hasattr(file, "filename"):
        return str(file.filename)
    return str(getattr(group, "store", group))


def _zarr_location(group) -> tuple[str, str]:
    """``(store path, group path)`` of a zarr group in a local store; anything else (memory or
    remote stores) is pickled as the group itself."""
    root = getattr(group.store, "root", None)
    if root is None:
        raise TypeError("not a local zarr store")
    return str(root), group.path


class StoredRows(RowSource):
    """Rows of a CSR matrix stored the way AnnData writes it (``data``, ``indices``, ``indptr``
    and a ``shape`` attribute), in HDF5 (an h5py group) or zarr (a zarr group); ``cells`` selects
    a sorted subset of its rows.

    Pickled, it carries where the matrix is (file and group) and reopens it read-only on first
    use, so parts of it (:meth:`portable`) can be read by other processes.
    """

    def __init__(
        self,
        group,
        *,
        cells: np.ndarray | None = None,
        genes: np.ndarray | None = None,
        inv_rms: np.ndarray | None = None,
        owns_file: bool = False,
    ) -> None:
        super().__init__(genes, inv_rms)
        self.owns_file = owns_file  # opened for this source: closed by close()
        self._attach(group)
        n_rows, self.n_columns = (int(s) for s in group.attrs["shape"])
        self.cells = None if cells is None else np.asarray(cells, dtype=np.int64)
        self.n_cells = n_rows if cells is None else len(self.cells)
        if self._indptr.shape[0] != n_rows + 1:
            raise ValueError(
                f"The sparse matrix {group.name!r} in {store_name(group)!r} is damaged: its "
                f"index pointer has {self._indptr.shape[0]} entries for {n_rows} rows."
            )

    def _attach(self, group) -> None:
        self.group = group
        self._file = getattr(group, "file", None)  # h5py only; zarr has nothing to close
        self._data = group["data"]
        self._indices = group["indices"]
        self._indptr = group["indptr"]

    @property
    def is_hdf5(self) -> bool:
        return self._file is not None

    def close(self) -> None:
        if self.owns_file and self._file is not None and self._file.id.valid:
            self._file.close()

    # pickling: the location, reopened where it is unpickled
    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in _OPEN_HANDLES}
        if self.group is None:  # an unpickled copy not opened yet
            pass
        elif self.is_hdf5:
            state["_location"] = ("hdf5", str(self._file.filename), self.group.name)
        else:
            try:
                state["_location"] = ("zarr", *_zarr_location(self.group))
            except TypeError:
                state["_location"] = ("zarr-group", self.group)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.owns_file = True
        for name in _OPEN_HANDLES:
            setattr(self, name, None)

    def portable(self, start, stop):
        if self.cells is None:
            return RowRange(self, start, stop)
        part = copy.copy(self)  # through __getstate__: reopens its file where it is used
        part.cells = self.cells[start:stop]
        part.n_cells = len(part.cells)
        return part

    def _ensure_open(self) -> None:
        if getattr(self, "group", None) is not None:
            return
        kind, *where = self._location
        if kind == "hdf5":
            import h5py

            self._attach(h5py.File(where[0], "r")[where[1]])
        elif kind == "zarr":
            import zarr

            root = zarr.open_group(where[0], mode="r")
            self._attach(root[where[1]] if where[1] else root)
        else:
            self._attach(where[0])

    def _read(self, rows):
        self._ensure_open()
        stored = rows if self.cells is None else self.cells[rows]
        runs = contiguous_runs(stored)
        if not self.is_hdf5 and len(runs) > 1:
            return self._read_zarr_runs(runs)
        pointers, indices, data = [np.zeros(1, dtype=np.int64)], [], []
        offset = 0
        for start, stop in runs:
            ptr = np.asarray(self._indptr[start : stop + 1]).astype(np.int64)
            a, b = int(ptr[0]), int(ptr[-1])
            indices.append(np.asarray(self._indices[a:b]))
            data.append(np.asarray(self._data[a:b]))
            pointers.append(ptr[1:] - a + offset)
            offset += b - a
        if not indices:
            return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(pointers), np.concatenate(indices), np.concatenate(data)

    def _read_zarr_runs(self, runs):
        """Many runs from zarr in three calls (each zarr read has a fixed cost that per-run
        reads would pay thousands of times for a scattered sample): the index pointer at the
        runs' rows and their ends, then every stored value of the runs by coordinates."""
        starts = np.array([a for a, _ in runs], dtype=np.int64)
        stops = np.array([b for _, b in runs], dtype=np.int64)
        lengths = stops - starts
        wanted = np.concatenate([np.arange(a, b + 1) for a, b in runs])
        ptr = np.asarray(self._indptr.get_coordinate_selection(wanted)).astype(np.int64)
        bounds = np.cumsum(lengths + 1)
        pieces = np.split(ptr, bounds[:-1])
        first = np.array([p[0] for p in pieces])
        last = np.array([p[-1] for p in pieces])
        counts = last - first
        if counts.sum() == 0:
            positions = np.zeros(0, dtype=np.int64)
        else:
            positions = np.concatenate(
                [np.arange(a, b) for a, b in zip(first, last, strict=True) if b > a]
            )
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pointers = [np.zeros(1, dtype=np.int64)]
        pointers += [p[1:] - p[0] + o for p, o in zip(pieces, offsets, strict=True)]
        if len(positions) == 0:
            return np.concatenate(pointers), np.zeros(0, np.int64), np.zeros(0)
        indices = np.asarray(self._indices.get_coordinate_selection(positions))
        data = np.asarray(self._data.get_coordinate_selection(positions))
        return np.concatenate(pointers), indices, data


_OPEN_HANDLES = ("group", "_file", "_data", "_indices", "_indptr")
H5Rows = StoredRows  # the name it had when only HDF5 was read


class DaskRows(RowSource):
    """Rows of a Dask array of CSR (or dense) chunks, such as anndata's lazy readers return
    (``anndata.experimental.read_elem_lazy``); ``cells`` selects a sorted subset of its rows.

    Rows are read as contiguous runs, all computed in one call with Dask's synchronous scheduler
    in the process that reads them (a mini-batch is never sent to a cluster and back).
    """

    def __init__(
        self,
        X,
        *,
        cells: np.ndarray | None = None,
        genes: np.ndarray | None = None,
        inv_rms: np.ndarray | None = None,
    ) -> None:
        super().__init__(genes, inv_rms)
        if X.ndim != 2:
            raise ValueError(f"A cells x genes matrix is needed; the Dask array has {X.ndim} axes.")
        self.X = X
        self.cells = None if cells is None else np.asarray(cells, dtype=np.int64)
        self.n_cells = X.shape[0] if cells is None else len(self.cells)
        self.n_columns = int(X.shape[1])

    def _read(self, rows):
        import dask

        stored = rows if self.cells is None else self.cells[rows]
        runs = contiguous_runs(stored)
        if not runs:
            return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0)
        parts = dask.compute(*[self.X[a:b] for a, b in runs], scheduler="sync")
        block = sp.vstack([as_csr(part) for part in parts], format="csr")
        return block.indptr, block.indices, block.data

    def portable(self, start, stop):
        if self.cells is None:
            return self._copy_settings(DaskRows(self.X[start:stop]))
        return self._copy_settings(DaskRows(self.X, cells=self.cells[start:stop]))


def csr_group(file, key: str):
    """The group of a CSR matrix at ``key`` (``"X"`` or ``"layers/<name>"``) of an open h5ad
    file (an h5py File, or its root group) or zarr store (its root group), with clear errors for
    anything else."""
    name = store_name(file)
    if key not in file:
        raise ValueError(f"{name!r} has no matrix {key!r}.")
    group = file[key]
    attrs = group.attrs
    encoding = attrs.get("encoding-type", "") if hasattr(attrs, "get") else ""
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    if encoding != "csr_matrix":
        what = "a dense array" if not hasattr(group, "keys") else f"a {encoding or 'group'}"
        raise ValueError(
            f"{key!r} in {name!r} is {what}; out-of-core online iNMF reads CSR matrices. "
            "Convert it, e.g. adata.X = scipy.sparse.csr_matrix(adata.X) before write_h5ad."
        )
    if not all(part in group for part in ("data", "indices", "indptr")):
        raise ValueError(f"The CSR matrix {key!r} in {name!r} is incomplete (truncated file?).")
    return group


_CHUNK_VALUES = 1 << 16  # stored values per HDF5 chunk (256 KiB of float32)


def write_csr_blocks(
    target, blocks: Iterator[sp.csr_matrix], n_columns: int, *, dtype=np.float32
) -> None:
    """Write CSR row blocks as one chunked, deflate-compressed CSR matrix in AnnData's layout
    at ``X`` of ``target`` (a path, or an open writable h5py File), growing as blocks arrive.

    The same bytes read as a genes x cells CSC matrix (the 10x layout HDF5 readers such as
    libplanc's ``H5SpMat`` expect); deflate rather than LZF so that any HDF5 library reads it.
    """
    import h5py

    f = h5py.File(target, "w") if isinstance(target, str | Path) else target
    try:
        group = f.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        options = {"maxshape": (None,), "compression": "gzip", "compression_opts": 1}
        chunks = (_CHUNK_VALUES,)
        data = group.create_dataset("data", (0,), dtype=dtype, chunks=chunks, **options)
        indices = group.create_dataset("indices", (0,), dtype=np.int32, chunks=chunks, **options)
        pointers = [np.zeros(1, dtype=np.int64)]
        n_rows = 0
        for block in blocks:
            nnz = len(data)
            data.resize((nnz + block.nnz,))
            indices.resize((nnz + block.nnz,))
            data[nnz:] = block.data.astype(dtype)
            indices[nnz:] = block.indices
            pointers.append(block.indptr[1:].astype(np.int64) + nnz)
            n_rows += block.shape[0]
        indptr = np.concatenate(pointers)
        group.create_dataset(
            "indptr", data=indptr, chunks=(min(len(indptr), _CHUNK_VALUES),), **options
        )
        group.attrs["shape"] = np.array([n_rows, n_columns], dtype=np.int64)
    finally:
        if isinstance(target, str | Path):
            f.close()
