"""``tl.etm`` and ``ETMModel.transform`` on data read from disk: inputs as row sources.

A backed AnnData (``read_h5ad(path, backed="r")``, CSR ``.X``), an h5ad or zarr path, or a zarr
group becomes a :class:`~scintegrate._core._row_sources.StoredRows` over its CSR matrix, and an
AnnData whose matrix is a Dask array a :class:`~scintegrate._core._row_sources.DaskRows`, plus
what the tool needs beside the counts (``obs``, ``var``, a ``varm`` entry). One streaming pass validates the counts
(finite, non-negative, integer, no empty cell) and gives every cell's total, the only per-cell
quantity the trainer keeps. Nothing here reads a whole matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core._row_sources import DaskRows, RowSource, StoredRows
from ._row_inputs import is_dask_array, is_zarr_group, is_zarr_path
from ._validation import check_finite_nonnegative

_PASS_BLOCK = 8192  # cells per block of the validation pass (its transient memory)


@dataclass
class DiskCounts:
    """Counts on disk: their row source, and the cells and genes they describe."""

    source: RowSource
    obs: pd.DataFrame
    var: pd.DataFrame
    where: str  # for messages
    path: str | None = None  # the h5ad file opened here (None for a backed AnnData)
    root: object = None  # the zarr group read (None for HDF5 and Dask)

    @property
    def var_names(self) -> pd.Index:
        return self.var.index

    def results_anndata(self) -> AnnData:
        """A new AnnData (no ``X``) with the cells and genes, for the results."""
        obs = self.obs.copy()
        obs.index = obs.index.astype(str)
        var = self.var.copy()
        var.index = var.index.astype(str)
        return AnnData(obs=obs, var=var)

    def varm(self, key: str):
        """``varm[key]`` of the file or zarr store (``None`` when absent)."""
        from anndata.io import read_elem

        if self.root is not None:
            root = self.root
            return read_elem(root[f"varm/{key}"]) if f"varm/{key}" in root else None
        if self.path is None:
            return None
        import h5py

        with h5py.File(self.path, "r") as f:
            return read_elem(f[f"varm/{key}"]) if f"varm/{key}" in f else None

    def close(self) -> None:
        self.source.close()


def _csr_encoding(group) -> str:
    encoding = group.attrs.get("encoding-type", "")
    return encoding.decode() if isinstance(encoding, bytes) else str(encoding)


def _check_csr(group, where: str) -> None:
    if not hasattr(group, "keys") or _csr_encoding(group) != "csr_matrix":
        what = "a dense array" if not hasattr(group, "keys") else f"a {_csr_encoding(group)}"
        raise ValueError(
            f"{where} is {what}; scETM reads counts on disk as a CSR matrix. Rewrite it with "
            "a CSR matrix (adata.X = scipy.sparse.csr_matrix(adata.X) before write_h5ad), or "
            "load it into memory."
        )
    if not all(part in group for part in ("data", "indices", "indptr")):
        raise ValueError(f"The CSR matrix {where} is incomplete (truncated file?).")


def is_path_like(data) -> bool:
    """An input read from its store by :func:`open_counts`: a path or a zarr group."""
    return isinstance(data, str | Path) or is_zarr_group(data)


def dask_matrix(adata: AnnData, layer: str | None):
    """The Dask array holding ``adata``'s counts (``.X`` or the layer), or ``None``."""
    if adata.isbacked and layer is None:
        return None
    X = adata.X if layer is None else adata.layers.get(layer)
    return X if is_dask_array(X) else None


def reads_from_store(data, layer: str | None) -> bool:
    """Whether ``data``'s counts are read in row blocks (not as one matrix in memory)."""
    if is_path_like(data):
        return True
    return (data.isbacked and layer is None) or dask_matrix(data, layer) is not None


def _open_zarr_counts(data, layer: str | None) -> DiskCounts:
    from ._row_inputs import _open_zarr, read_h5ad_frame

    root = data if is_zarr_group(data) else _open_zarr(data)
    name = str(data) if not is_zarr_group(data) else str(getattr(root, "store", root))
    key = "X" if layer is None else f"layers/{layer}"
    where = f"{name!r}[{key!r}]"
    if key not in root:
        raise ValueError(f"{name!r} has no matrix {key!r}. Pass layer=None to use X.")
    _check_csr(root[key], where)
    obs = read_h5ad_frame(root, "obs")
    var = read_h5ad_frame(root, "var")
    return DiskCounts(StoredRows(root[key]), obs, var, where, root=root)


def open_counts(data, layer: str | None) -> DiskCounts:
    """The counts of a backed AnnData (``.X``), of an AnnData with a Dask matrix, or of an h5ad
    or zarr store (a path or a zarr group; ``X`` or ``layers/<layer>``) as a row source over all
    stored genes."""
    if isinstance(data, AnnData):
        dask = dask_matrix(data, layer)
        if dask is not None:
            where = f"the Dask array adata.{'X' if layer is None else f'layers[{layer!r}]'}"
            return DiskCounts(DaskRows(dask), data.obs, data.var, where)
        if layer is not None:  # anndata holds the layers of a backed AnnData in memory
            raise ValueError("open_counts reads the .X of a backed AnnData only.")
        where = f"{str(data.filename)!r}['X']"
        _check_csr(data.file["X"], where)
        return DiskCounts(StoredRows(data.file["X"]), data.obs, data.var, where)
    if is_zarr_group(data) or is_zarr_path(data):
        return _open_zarr_counts(data, layer)
    import h5py

    from ._row_inputs import read_h5ad_frame

    path = Path(data)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} does not exist (or is not a file); pass an h5ad path.")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"Cannot open {str(path)!r} as HDF5 ({error}); is it an h5ad file, and complete?"
        ) from None
    try:
        key = "X" if layer is None else f"layers/{layer}"
        where = f"{str(path)!r}[{key!r}]"
        if key not in f:
            layers = sorted(f["layers"].keys()) if "layers" in f else []
            raise ValueError(
                f"{str(path)!r} has no matrix {key!r} (layers: "
                f"{', '.join(map(repr, layers)) or 'none'}). Pass layer=None to use X."
            )
        _check_csr(f[key], where)
        obs = read_h5ad_frame(f, "obs")
        var = read_h5ad_frame(f, "var")
        source = StoredRows(f[key], owns_file=True)
    except BaseException:
        f.close()
        raise
    return DiskCounts(source, obs, var, where, path=str(path))


def count_totals(source: RowSource, where: str, genes: np.ndarray | None = None) -> np.ndarray:
    """Every cell's count total (over ``genes``, stored columns; ``None``: all), in one pass
    over the rows that also checks the counts as ``tl.etm`` does for data in memory."""
    totals = np.empty(source.n_cells, dtype=np.float64)
    fix = "scETM models raw counts: pass the unnormalised counts (e.g. layer='counts')."
    start = 0
    for block in source.raw_blocks(_PASS_BLOCK):
        if genes is not None:
            block = block[:, genes]
        check_finite_nonnegative(block, what=where, fix=fix)
        values = block.data
        if not np.array_equal(values, np.round(values)):
            raise ValueError(
                f"{where} contains non-integer values; scETM's multinomial likelihood needs raw "
                "counts. Pass the unnormalised counts (e.g. layer='counts'), not normalised or "
                "log-transformed data."
            )
        stop = start + block.shape[0]
        totals[start:stop] = np.asarray(block.sum(axis=1)).ravel()
        start = stop
    empty = int(np.count_nonzero(totals == 0))
    if empty:
        raise ValueError(
            f"{where} has {empty} cells with zero counts; their topic mixture is undefined. "
            "Remove them first, e.g. sc.pp.filter_cells(adata, min_counts=1), and write the file "
            "again."
        )
    return totals
