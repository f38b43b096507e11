"""User inputs as row sources: AnnData in memory, backed or with a Dask ``.X``, h5ad and zarr
paths, zarr groups, lists or dicts of them.

Everything here turns what the user passed into one
:class:`~scintegrate._core._row_sources.RowSource` per dataset, restricted to the model's genes
and, for raw counts, LIGER-normalised and scaled on the fly from statistics gathered in one
streaming pass (on a Dask cluster when a client is given, see :mod:`._dask`). Nothing reads a
whole matrix into memory. Used by ``tl.online_inmf`` and its model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core._row_sources import (
    DaskRows,
    MemoryRows,
    RowSource,
    StoredRows,
    csr_group,
    store_name,
    write_csr_blocks,
)
from .._core.liger import liger_variable_genes
from .._logging import logger
from ._validation import get_matrix, matrix_label, obs_batch_codes

# what pp.liger_preprocess writes: the scaled layer and the variable-gene column
LIGER_LAYER = "liger_scaled"
LIGER_MASK = "liger_highly_variable"
_STATS_BLOCK = 4096  # cells per block of the statistics pass (its transient memory)


@dataclass
class Dataset:
    """One dataset: where its rows are and what is known about it."""

    name: str
    var_names: pd.Index
    source: RowSource  # all stored columns, no normalisation (until prepared)
    obs: pd.DataFrame | None  # None: read from `path` when results are written
    where: str  # for messages
    path: str | None = None
    var: pd.DataFrame | None = None
    group: object = None  # the zarr group given (obs is read from it when results are written)
    counts: bool = False  # the scaled layer was absent, so the matrix holds raw counts
    stats: dict | None = field(default=None, repr=False)


def read_h5ad_frame(file, key: str) -> pd.DataFrame:
    """The data frame ``key`` (``"obs"`` or ``"var"``) of an open h5ad file or zarr group."""
    from anndata.io import read_elem

    try:
        return read_elem(file[key])
    except Exception as error:
        raise ValueError(
            f"Cannot read {key!r} of {store_name(file)!r} ({type(error).__name__}: {error}); it "
            "is damaged or not an AnnData file (h5ad or zarr)."
        ) from None


def is_zarr_group(entry) -> bool:
    """A zarr group (checked without importing zarr when it is not loaded)."""
    return type(entry).__module__.startswith("zarr.") and hasattr(entry, "attrs")


def is_dask_array(X) -> bool:
    """A Dask array (checked without importing Dask)."""
    return type(X).__module__.startswith("dask.") and hasattr(X, "chunks")


def is_zarr_path(path: str | Path) -> bool:
    """A path to a zarr store: a directory (AnnData's ``write_zarr``) or a ``.zarr`` name."""
    path = Path(path)
    return path.is_dir() or path.suffix == ".zarr"


def _open_zarr(path: str | Path):
    import zarr

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist.")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise ValueError(
            f"Cannot open {str(path)!r} as a zarr store ({type(error).__name__}: {error}); is it "
            "an AnnData zarr store (adata.write_zarr), and complete?"
        ) from None


def _open_h5ad(path: str | Path):
    import h5py

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist.")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"Cannot open {str(path)!r} as HDF5 ({error}); is it an h5ad file, and complete?"
        ) from None


def _matrix_key(layer: str | None) -> str:
    return "X" if layer is None else f"layers/{layer}"


def _from_path(path, name: str, layer: str | None) -> Dataset:
    """A dataset of an h5ad file or zarr store (a path), or of an open zarr group."""
    zarr_group = is_zarr_group(path)
    if zarr_group:
        f, where = path, store_name(path)
    elif is_zarr_path(path):
        f, where = _open_zarr(path), str(path)
    else:
        f, where = _open_h5ad(path), str(path)
    hdf5 = hasattr(f, "close")
    try:
        var = read_h5ad_frame(f, "var")
        key = _matrix_key(layer)
        counts = layer == LIGER_LAYER and key not in f
        if counts:
            key = "X"
        group = csr_group(f, key)
    except ValueError:
        if hdf5:
            f.close()
        raise
    return Dataset(
        counts=counts,
        name=name,
        var_names=var.index,
        source=StoredRows(group, owns_file=hdf5),
        obs=None,
        where=f"{where!r}[{key!r}]",
        path=None if zarr_group else str(path),
        var=var,
        group=f if zarr_group else None,
    )


def from_anndata(adata: AnnData, name: str, layer: str | None, cells=None) -> Dataset:
    """One dataset of an AnnData (in memory or backed: then its CSR ``.X`` is read from the
    file), ``cells`` selecting rows; with the default ``layer`` absent, ``.X`` as raw counts."""
    obs = adata.obs if cells is None else adata.obs.iloc[cells]
    counts = layer == LIGER_LAYER and layer not in adata.layers
    if counts:
        layer = None
    if adata.isbacked and layer is None:
        if getattr(adata.X, "format", None) != "csr":
            raise ValueError(
                f"The backed matrix of {adata.filename!r} is not CSR; online iNMF reads backed "
                "data as CSR. Rewrite it with a CSR .X, or load it into memory."
            )
        source = StoredRows(adata.file["X"], cells=cells)
        where = f"{str(adata.filename)!r}['X']"
    elif is_dask_array(adata.X if layer is None else adata.layers.get(layer)):
        source = DaskRows(adata.X if layer is None else adata.layers[layer], cells=cells)
        where = f"the Dask array {matrix_label(layer)}"
    else:
        source = MemoryRows(get_matrix(adata, layer), cells=cells)
        where = matrix_label(layer)
    return Dataset(name, adata.var_names, source, obs, where, var=adata.var, counts=counts)


def collect_datasets(data, *, batch_key: str | None, layer: str | None) -> list[Dataset]:
    """One :class:`Dataset` per batch (single AnnData) or per entry (list/dict of AnnData, h5ad
    or zarr paths, zarr groups)."""
    if isinstance(data, AnnData):
        if batch_key is None:
            raise ValueError(
                "Pass batch_key, the adata.obs column naming each cell's dataset (or pass a list "
                "of AnnData objects / h5ad paths, one per dataset)."
            )
        codes, names = obs_batch_codes(data, batch_key, param="batch_key", order="sorted")
        return [
            from_anndata(data, name, layer, np.flatnonzero(codes == code))
            for code, name in enumerate(names)
        ]
    if isinstance(data, str | Path) or is_zarr_group(data):
        data = [data]
    if isinstance(data, Mapping):
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, Sequence) and not isinstance(data, str):
        items = []
        for i, entry in enumerate(data):
            if isinstance(entry, str | Path):
                stem = Path(entry).name.removesuffix(".h5ad").removesuffix(".zarr")
                items.append((stem, entry))
            else:
                items.append((f"dataset_{i}", entry))
    else:
        raise ValueError(
            "data must be an AnnData, an h5ad or zarr path, a zarr group, or a list/dict of them "
            f"(one per dataset); got {type(data).__name__}."
        )
    if not items:
        raise ValueError("No datasets were given.")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(
            f"Dataset names repeat ({names}); pass a dict {{name: data}} with unique names."
        )
    datasets = []
    try:
        for name, entry in items:
            if isinstance(entry, AnnData):
                datasets.append(from_anndata(entry, name, layer))
            elif isinstance(entry, str | Path) or is_zarr_group(entry):
                datasets.append(_from_path(entry, name, layer))
            else:
                raise ValueError(
                    f"Dataset {name!r} is a {type(entry).__name__}; pass AnnData objects, h5ad or "
                    "zarr paths, or zarr groups."
                )
    except ValueError:
        close_all(datasets)
        raise
    return datasets


# ------------------------------------------------------------------------- streaming statistics
def block_stats(block, m: int) -> tuple[np.ndarray, np.ndarray, float, int, int, bool]:
    """One raw block's part of the statistics: per-gene sums and sums of squares of its
    library-size-normalised counts, the sum of its ``1 / total``, its cells, its empty cells, and
    whether it holds a negative or non-finite value (then nothing else is computed)."""
    data = block.data
    if not np.isfinite(data).all() or (data < 0).any():
        return np.zeros(0), np.zeros(0), 0.0, 0, 0, True
    totals = np.asarray(block.sum(axis=1)).ravel()
    n_empty = int(np.sum(totals <= 0))
    if n_empty:
        return np.zeros(0), np.zeros(0), 0.0, block.shape[0], n_empty, False
    inv_t = 1.0 / totals
    rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    values = data * inv_t[rows]
    sums = np.bincount(block.indices, weights=values, minlength=m)
    sum_sq = np.bincount(block.indices, weights=values * values, minlength=m)
    return sums, sum_sq, float(inv_t.sum()), block.shape[0], 0, False


def source_block_stats(source: RowSource, block_size: int = _STATS_BLOCK) -> list[tuple]:
    """:func:`block_stats` of every block of ``block_size`` rows of a source, in order (one
    task of the Dask statistics pass; stops at the first block with bad values)."""
    parts = []
    for block in source.raw_blocks(block_size):
        parts.append(block_stats(block, source.n_columns))
        if parts[-1][5]:
            break
    return parts


def fold_stats(dataset: Dataset, parts) -> dict:
    """The dataset's statistics from its blocks' parts, added in row order (the same sums in
    the same order however the blocks were computed); refuses bad values and empty cells."""
    m = dataset.source.n_columns
    sums, sum_sq = np.zeros(m), np.zeros(m)
    inv_total_sum, n_cells, n_empty = 0.0, 0, 0
    for part_sums, part_sq, inv_total, cells, empty, bad in parts:
        if bad:
            raise ValueError(
                f"{dataset.where} (dataset {dataset.name!r}) has negative, NaN or infinite values; "
                "preprocess=True needs raw counts. Pass preprocess=False if the data is already "
                "scaled, or the layer with counts."
            )
        n_empty += empty
        if n_empty:
            continue
        sums += part_sums
        sum_sq += part_sq
        inv_total_sum += inv_total
        n_cells += cells
    if n_empty:
        raise ValueError(
            f"Dataset {dataset.name!r} ({dataset.where}) has {n_empty} cells with zero total counts; "
            "they cannot be library-size normalised. Remove them first (e.g. "
            "sc.pp.filter_cells(adata, min_counts=1) before writing the file)."
        )
    if n_cells < 2:
        raise ValueError(f"Dataset {dataset.name!r} has fewer than 2 cells.")
    mean = sums / n_cells
    var = np.maximum(sum_sq - n_cells * mean * mean, 0.0) / (n_cells - 1)
    return {
        "n_cells": n_cells,
        "mean": mean,
        "var": var,
        "sum_sq": sum_sq,
        "inv_umi_mean": inv_total_sum / n_cells,
    }


def streaming_stats(dataset: Dataset, client=None) -> dict:
    """Per-gene sums and sums of squares of the library-size-normalised counts, in one pass
    (in this process, or as tasks over row ranges on a Dask ``client``).

    Also validates the counts (finite, non-negative, no empty cell) block by block.
    """
    if client is not None:
        from ._dask import distributed_block_stats

        return fold_stats(dataset, distributed_block_stats(client, dataset.source, _STATS_BLOCK))
    return fold_stats(dataset, _lazy_block_stats(dataset.source))


def _lazy_block_stats(source: RowSource):
    for block in source.raw_blocks(_STATS_BLOCK):
        part = block_stats(block, source.n_columns)
        yield part
        if part[5]:
            return


def select_genes(datasets: list[Dataset], mask_var, preprocess: bool) -> pd.Index:
    """The model's genes: a var column (union over datasets), gene names, or LIGER's
    variable-gene test on the streaming statistics (union over datasets)."""
    if mask_var is None:
        genes = datasets[0].var_names
    elif isinstance(mask_var, str):
        have = [d for d in datasets if d.var is not None and mask_var in d.var.columns]
        if have:
            genes = pd.Index([])
            for d in have:
                genes = genes.union(d.var_names[d.var[mask_var].to_numpy(bool)], sort=False)
        elif mask_var == LIGER_MASK and preprocess:
            genes = pd.Index([])
            for d in datasets:
                s = d.stats
                mask = liger_variable_genes(s["mean"], s["var"], s["inv_umi_mean"], s["n_cells"])
                genes = genes.union(d.var_names[mask], sort=False)
            logger.info("LIGER variable genes over %d datasets: %d", len(datasets), len(genes))
        elif mask_var == LIGER_MASK:
            genes = datasets[0].var_names
        else:
            raise ValueError(
                f"mask_var={mask_var!r} is not a column of any dataset's var. Pass a boolean var "
                "column, a list of gene names, or None for every gene."
            )
    else:
        values = np.asarray(mask_var)
        if values.dtype == bool:
            if len(datasets) > 1 and len({len(d.var_names) for d in datasets}) > 1:
                raise ValueError(
                    "A boolean mask_var needs datasets with the same genes; pass gene names."
                )
            genes = datasets[0].var_names[values]
        else:
            genes = pd.Index(values.astype(str))
    if len(genes) == 0:
        raise ValueError("The gene selection is empty; pass mask_var=None or other genes.")
    return pd.Index(genes)


def gene_positions(var_names: pd.Index, genes: pd.Index, *, name: str) -> np.ndarray:
    """Columns of ``genes`` in ``var_names`` (of the dataset ``name``); refuses genes missing."""
    if not var_names.is_unique:
        raise ValueError(
            f"Dataset {name!r} has duplicated gene names; run var_names_make_unique()."
        )
    positions = var_names.get_indexer(genes)
    missing = genes[positions < 0]
    if len(missing):
        shown = ", ".join(map(str, missing[:5]))
        raise ValueError(
            f"Dataset {name!r} lacks {len(missing)} of the {len(genes)} genes the model "
            f"uses ({shown}{', ...' if len(missing) > 5 else ''}). Every dataset must measure "
            "the model's genes (gene names in var_names; their order may differ)."
        )
    return positions


def prepare(dataset: Dataset, genes: pd.Index, preprocess: bool) -> RowSource:
    """The dataset's rows restricted to ``genes``, LIGER-scaled on the fly when ``preprocess``."""
    source = dataset.source
    source.where = f"{dataset.where} (dataset {dataset.name!r})"
    source.genes = gene_positions(dataset.var_names, genes, name=dataset.name)
    if preprocess:
        s = dataset.stats
        rms = np.sqrt(s["sum_sq"][source.genes] / (s["n_cells"] - 1))
        with np.errstate(divide="ignore"):
            source.inv_rms = np.where(rms > 0, 1.0 / rms, 0.0)
    return source


def write_scaled(source: RowSource, path: Path, block_size: int) -> StoredRows:
    """Stream a prepared source to a chunked, compressed CSR file and read it from there."""
    import h5py

    blocks = (block[positions] for _, _, block, positions in source.blocks(block_size))
    write_csr_blocks(path, blocks, source.n_genes)
    return StoredRows(h5py.File(path, "r")["X"], owns_file=True)


def dataset_obs(dataset: Dataset) -> pd.DataFrame:
    """A copy of the dataset's ``obs`` (read from its file when it came from a path or zarr
    group)."""
    if dataset.obs is not None:
        return dataset.obs.copy()
    if dataset.group is not None:
        return read_h5ad_frame(dataset.group, "obs")
    if is_zarr_path(dataset.path):
        return read_h5ad_frame(_open_zarr(dataset.path), "obs")
    import h5py

    with h5py.File(dataset.path, "r") as f:
        return read_h5ad_frame(f, "obs")


def close_all(datasets, sources=()) -> None:
    """Close the files the datasets' sources opened (never a backed AnnData's own file)."""
    for source in [d.source for d in datasets if d.source is not None] + list(sources):
        source.close()


def check_writable_directory(directory) -> Path:
    """``write_scaled``: an existing directory this process can write to."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"write_scaled={str(directory)!r} is not an existing directory.")
    probe = directory / ".scintegrate_write_test"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"Cannot write to {str(directory)!r} ({error.strerror}); choose a writable directory "
            "for write_scaled, or leave it None to scale on the fly."
        ) from None
    return directory
