"""One small valid call of every public ``tl``/``pp`` function, on fresh copies of real data.

Shared by the convention test (copy semantics, nothing changed in the input) and the
property-based robustness test. Each builder returns ``(data, kwargs)``: a new object that the
call may write into, and keyword arguments that make the call fast.
"""

from __future__ import annotations

import functools
import warnings

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp

import scintegrate as si


@functools.cache
def _cortex_subset() -> ad.AnnData:
    """120 cells of two libraries x the 80 most-detected genes of the bundled cortex RNA."""
    cortex = si.datasets.snareseq_cortex_rna()
    libraries = cortex.obs["library"].astype(str)
    names = sorted(libraries.unique())[:2]
    rng = np.random.default_rng(0)
    cells = np.concatenate(
        [np.sort(rng.choice(np.flatnonzero(libraries == n), 60, replace=False)) for n in names]
    )
    sub = cortex[cells].copy()
    detected = np.asarray((sub.X > 0).sum(0)).ravel()
    genes = np.sort(np.argsort(-detected, kind="stable")[:80])
    sub = sub[:, genes].copy()
    sub.obs["library"] = sub.obs["library"].astype(str).astype("category")
    return sub


def cortex() -> ad.AnnData:
    return _cortex_subset().copy()


@functools.cache
def _preprocessed() -> ad.AnnData:
    adata = cortex()
    si.pp.liger_preprocess(adata, batch_key="library", var_thresh=0.0)
    return adata


def preprocessed() -> ad.AnnData:
    return _preprocessed().copy()


@functools.cache
def _integrated() -> ad.AnnData:
    adata = preprocessed()
    si.tl.inmf(adata, 3, batch_key="library", max_iter=5)
    return adata


def integrated() -> ad.AnnData:
    return _integrated().copy()


@functools.cache
def _mosaic_counts() -> ad.AnnData:
    """The cortex subset plus the 20 ATAC peaks most detected in the second library's nuclei, as
    features only that library has (zero in the first): a mosaic for UINMF. The peaks are the
    same nuclei's real ATAC counts; ``var["measured_in"]`` names each peak's library."""
    sub = _cortex_subset()
    peaks = si.datasets.snareseq_cortex_atac_peaks()
    second = (sub.obs["library"] == sub.obs["library"].cat.categories[1]).to_numpy()
    counts = peaks[sub.obs_names].X.tocsr()
    detected = np.asarray((counts[second] > 0).sum(0)).ravel()
    chosen = np.sort(np.argsort(-detected, kind="stable")[:20])
    block = sp.diags(second.astype(np.float32)) @ counts[:, chosen]
    var = pd.DataFrame(index=list(sub.var_names) + list(peaks.var_names[chosen]))
    owner = np.full(len(var), None, dtype=object)
    owner[sub.n_vars :] = str(sub.obs["library"].cat.categories[1])
    var["measured_in"] = pd.Categorical(owner)
    X = sp.hstack([sub.X, block], format="csr").astype(np.float32)
    return ad.AnnData(X, obs=sub.obs.copy(), var=var)


def mosaic_counts() -> ad.AnnData:
    return _mosaic_counts().copy()


@functools.cache
def _mosaic() -> ad.AnnData:
    adata = mosaic_counts()
    si.pp.liger_preprocess(adata, batch_key="library", var_thresh=0.0)
    si.pp.liger_unshared(adata, batch_key="library", features="measured_in")
    return adata


def mosaic() -> ad.AnnData:
    return _mosaic().copy()


def branch() -> mudata.MuData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return si.datasets.branch_simulation(n_obs=60, n_features=12, random_state=1)


def rna_atac() -> mudata.MuData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return si.datasets.simulate_rna_atac(
            n_rna=60, n_atac=60, n_types=2, n_genes=40, n_extra_regions=10, random_state=0
        )


def joinable_rna_atac(seed: int = 0, **kwargs) -> mudata.MuData:
    """Simulated RNA + ATAC with clear types (a k-means of either modality alone finds them):
    the scJMT tests are about joining the modalities, not about finding the types."""
    options = {
        "n_rna": 150,
        "n_atac": 150,
        "n_types": 3,
        "n_genes": 150,
        "de_fraction": 0.4,
        "atac_effect": 2.5,
        "atac_depth": 0.3,
        "random_state": seed,
    }
    return si.datasets.simulate_rna_atac(**{**options, **kwargs})


ANNOTATION = pd.DataFrame(
    {
        "chrom": ["chr1", "chr1", "chr2"],
        "start": [10_000, 30_000, 5_000],
        "end": [20_000, 40_000, 8_000],
        "strand": ["+", "-", "+"],
        "gene_name": ["A", "B", "C"],
    }
)


def peaks() -> ad.AnnData:
    names = ["chr1_9000_9500", "chr1_15000_15500", "chr1_40500_41000", "chr2_6000_6200"]
    X = sp.random(30, len(names), density=0.5, format="csr", random_state=1, dtype=np.float32)
    X.data = np.ceil(X.data * 4)
    return ad.AnnData(X, var=pd.DataFrame(index=names))


CALLS = {
    "tl.nmf": (si.tl.nmf, cortex, {"n_components": 3, "max_iter": 5}),
    "tl.inmf": (
        si.tl.inmf,
        preprocessed,
        {"n_components": 3, "batch_key": "library", "max_iter": 3},
    ),
    "tl.online_inmf": (
        si.tl.online_inmf,
        preprocessed,
        {"n_components": 3, "batch_key": "library", "max_epochs": 1, "batch_size": 50},
    ),
    "tl.uinmf": (
        si.tl.uinmf,
        mosaic,
        # few of 20 sparse peaks pass LIGER's test at 60 cells: use all of them
        {"n_components": 3, "batch_key": "library", "max_iter": 3, "mask_unshared": None},
    ),
    "tl.etm": (
        si.tl.etm,
        cortex,
        {"n_topics": 3, "emb_dim": 4, "hidden_sizes": (8,), "max_epochs": 2},
    ),
    "tl.mmdma": (si.tl.mmdma, branch, {"n_dims": 2, "max_epochs": 3, "backend": "torch"}),
    "tl.scjmt": (si.tl.scjmt, rna_atac, {"n_clusters": 2, "max_iter": 5, "n_restarts": 1}),
    "tl.factor_markers": (
        si.tl.factor_markers,
        integrated,
        {"batch_key": "library", "factor_share_thresh": None, "n_genes": 5},
    ),
    "pp.liger_preprocess": (si.pp.liger_preprocess, cortex, {"batch_key": "library"}),
    "pp.liger_unshared": (
        si.pp.liger_unshared,
        mosaic_counts,
        {"batch_key": "library", "features": "measured_in"},
    ),
    "pp.quantile_norm": (
        si.pp.quantile_norm,
        integrated,
        {"batch_key": "library", "min_cells": 5, "n_neighbors": 5},
    ),
    "pp.centroid_align": (si.pp.centroid_align, integrated, {"batch_key": "library"}),
    "pp.gene_activity": (si.pp.gene_activity, peaks, {"annotation": ANNOTATION}),
}


def snapshot(obj):
    """A deep copy of everything a call could change in an AnnData/MuData (arrays bit for bit)."""
    import copy

    if isinstance(obj, mudata.MuData):
        return {
            "mod": {name: snapshot(mod) for name, mod in obj.mod.items()},
            "obs": obj.obs.copy(),
            "var": obj.var.copy(),
            "obsm": {k: _copy_array(v) for k, v in obj.obsm.items()},
            "uns": copy.deepcopy(dict(obj.uns)),
        }
    return {
        "X": _copy_array(obj.X),
        "layers": {k: _copy_array(v) for k, v in obj.layers.items()},
        "obs": obj.obs.copy(),
        "var": obj.var.copy(),
        "obsm": {k: _copy_array(v) for k, v in obj.obsm.items()},
        "varm": {k: _copy_array(v) for k, v in obj.varm.items()},
        "obsp": {k: _copy_array(v) for k, v in obj.obsp.items()},
        "varp": {k: _copy_array(v) for k, v in obj.varp.items()},
        "uns": copy.deepcopy(dict(obj.uns)),
    }


def _copy_array(value):
    if sp.issparse(value):
        # keep the exact stored arrays (order, duplicates, dtype): that is what must not change
        return (
            "sparse",
            value.format,
            value.shape,
            value.data.copy(),
            value.indices.copy(),
            value.indptr.copy(),
        )
    if isinstance(value, pd.DataFrame):
        return value.copy()
    return np.array(value, copy=True)


def assert_same(before, after_obj, where="input") -> None:
    """Assert that ``after_obj`` still equals the ``snapshot`` taken before a call."""
    _assert_equal(before, snapshot(after_obj), where)


def _assert_equal(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)} changed"
        for key in a:
            _assert_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, tuple) and a and a[0] == "sparse":
        assert a[:3] == b[:3], f"{where}: sparse format/shape changed"
        for name, x, y in zip(("data", "indices", "indptr"), a[3:], b[3:], strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y), f"{where}.{name} changed"
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: dtype/shape changed"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where}: values changed"
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{where} changed"
