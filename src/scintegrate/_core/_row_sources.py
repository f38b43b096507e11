"""Row sources: the cells of one dataset as CSR row blocks, from memory or an HDF5 CSR matrix.

A source hands out mini-batches of rows as float64 CSR blocks restricted to the model's genes,
optionally normalised on the fly (LIGER's library-size normalisation and per-gene scaling). An
HDF5 source reads only the rows asked for, as contiguous runs: with the chunk-shuffled epoch
order of online iNMF a mini-batch is a few runs, so each compressed HDF5 chunk is decompressed
about once per epoch instead of once per cell. Memory is set by the mini-batch, never by the
number of cells (the index pointer is read run by run, not loaded whole).
"""

from __future__ import annotations

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


class H5Rows(RowSource):
    """Rows of a CSR matrix stored in HDF5 the way AnnData writes it (``data``, ``indices``,
    ``indptr``); ``cells`` selects a sorted subset of its rows."""

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
        self.group = group
        self.owns_file = owns_file  # opened for this source: closed by close()
        self._file = group.file
        self._data = group["data"]
        self._indices = group["indices"]
        self._indptr = group["indptr"]
        n_rows, self.n_columns = (int(s) for s in group.attrs["shape"])
        self.cells = None if cells is None else np.asarray(cells, dtype=np.int64)
        self.n_cells = n_rows if cells is None else len(self.cells)
        if len(self._indptr) != n_rows + 1:
            raise ValueError(
                f"The sparse matrix {group.name!r} in {group.file.filename!r} is damaged: its "
                f"index pointer has {len(self._indptr)} entries for {n_rows} rows."
            )

    def close(self) -> None:
        if self.owns_file and self._file.id.valid:
            self._file.close()

    def _read(self, rows):
        stored = rows if self.cells is None else self.cells[rows]
        pointers, indices, data = [np.zeros(1, dtype=np.int64)], [], []
        offset = 0
        for start, stop in contiguous_runs(stored):
            ptr = self._indptr[start : stop + 1].astype(np.int64)
            a, b = int(ptr[0]), int(ptr[-1])
            indices.append(self._indices[a:b])
            data.append(self._data[a:b])
            pointers.append(ptr[1:] - a + offset)
            offset += b - a
        if not indices:
            return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(pointers), np.concatenate(indices), np.concatenate(data)


def csr_group(file, key: str):
    """The HDF5 group of a CSR matrix at ``key`` (``"X"`` or ``"layers/<name>"``) of an open
    h5ad file (an h5py File, or its root group), with clear errors for anything else."""
    name = file.file.filename
    if key not in file:
        raise ValueError(f"{name!r} has no matrix {key!r}.")
    group = file[key]
    encoding = group.attrs.get("encoding-type", "")
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
