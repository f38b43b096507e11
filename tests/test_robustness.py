"""Property-based robustness of every public tool (hypothesis).

Inputs are small real datasets (tests/_public_calls.py) changed in ways a user's data can be:
other sparse formats and dtypes, unsorted or duplicate sparse indices, NaN/inf/negative values,
empty rows and columns, views, duplicated names, one-category batches, absurd sizes, missing
keys. Whatever the input, a call either succeeds with finite results or raises one
``ValueError``/``TypeError``/``KeyError`` with a message; it never changes what the user had,
and a second call with the same key leaves exactly the slots of the second call.

The default profile runs 12 examples per tool plus two explicit ones (about 20-40 s in all); ``pytest -m slow``
runs the long profile.
"""

from __future__ import annotations

import inspect
import warnings

import anndata as ad
import mudata
import numpy as np
import pytest
import scipy.sparse as sp
from _public_calls import CALLS, snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# where each tool reads its matrix: ("X",), ("layers", name), ("mod", name) or ("obsm", key)
MATRIX = {
    "tl.nmf": ("X",),
    "tl.etm": ("X",),
    "tl.inmf": ("layers", "liger_scaled"),
    "tl.online_inmf": ("layers", "liger_scaled"),
    "tl.uinmf": ("layers", "liger_scaled"),
    "tl.mmdma": ("mod", "rna"),
    "tl.scjmt": ("mod", "rna"),
    "pp.liger_preprocess": ("X",),
    "pp.liger_unshared": ("X",),
    "pp.quantile_norm": ("obsm", "X_inmf"),
    "pp.centroid_align": ("obsm", "X_inmf"),
    "tl.factor_markers": ("X",),
    "pp.gene_activity": ("X",),
}
SIZE_PARAMS = ("n_components", "n_topics", "n_dims", "n_clusters")


# ----------------------------------------------------------------------------- matrix changes
def _stored(M):
    """A CSR copy with at least one stored value, for changes of single values."""
    return sp.csr_matrix(M, copy=True)


def _unsorted(M):
    csr = _stored(M)
    for row in range(csr.shape[0]):
        a, b = csr.indptr[row], csr.indptr[row + 1]
        csr.indices[a:b] = csr.indices[a:b][::-1].copy()
        csr.data[a:b] = csr.data[a:b][::-1].copy()
    csr.has_sorted_indices = False
    return csr


def _duplicates(M):
    """Every stored value split into two equal stored halves (the same matrix)."""
    csr = _stored(M).astype(np.float64)
    counts = np.diff(csr.indptr)
    indptr = np.concatenate([[0], np.cumsum(2 * counts)])
    out = sp.csr_matrix(
        (np.repeat(csr.data / 2, 2), np.repeat(csr.indices, 2), indptr), shape=csr.shape
    )
    out.has_canonical_format = False
    return out


def _set_value(M, value):
    csr = _stored(M).astype(np.float64)
    csr.data[len(csr.data) // 2] = value
    return csr if sp.issparse(M) else csr.toarray()


def _empty_row(M):
    dense = M.toarray() if sp.issparse(M) else np.array(M, copy=True)
    dense[0] = 0
    return sp.csr_matrix(dense) if sp.issparse(M) else dense


def _empty_col(M):
    dense = M.toarray() if sp.issparse(M) else np.array(M, copy=True)
    dense[:, 0] = 0
    return sp.csr_matrix(dense) if sp.issparse(M) else dense


def _dense(M):
    return M.toarray() if sp.issparse(M) else np.asarray(M)


MATRIX_CHANGES = {
    "none": lambda M: M,
    "csr": lambda M: sp.csr_matrix(M),
    "csc": lambda M: sp.csc_matrix(M),
    "csr_array": lambda M: sp.csr_array(M),
    "dense": _dense,
    "unsorted_indices": _unsorted,
    "duplicate_indices": _duplicates,
    "float16": lambda M: _dense(M).astype(np.float16),  # scipy.sparse has no float16
    "float32": lambda M: M.astype(np.float32),
    "int64": lambda M: np.round(_dense(M)).astype(np.int64),
    "object": lambda M: _dense(M).astype(object),
    "negative": lambda M: _set_value(M, -1.0),
    "nan": lambda M: _set_value(M, np.nan),
    "inf": lambda M: _set_value(M, np.inf),
    "empty_row": _empty_row,
    "empty_col": _empty_col,
}

# ----------------------------------------------------------------------------- object changes
OBJECT_CHANGES = (
    "none",
    "view",
    "duplicate_obs_names",
    "bad_key_added",
    "missing_layer",
    "missing_batch_key",
    "one_batch",
    "huge_size",
    "tiny",
)


def _apply_matrix(data, where, change):
    if where[0] == "mod":
        adata = data.mod[where[1]]
        adata.X = MATRIX_CHANGES[change](adata.X)
    elif where[0] == "X":
        data.X = MATRIX_CHANGES[change](data.X)
    else:
        mapping = getattr(data, where[0])
        mapping[where[1]] = MATRIX_CHANGES[change](mapping[where[1]])


def _apply_object(name, func, data, kwargs, change):
    params = inspect.signature(func).parameters
    if change == "view" and isinstance(data, ad.AnnData):
        data = data[1:]
    elif change == "duplicate_obs_names":
        target = data.mod[next(iter(data.mod))] if isinstance(data, mudata.MuData) else data
        names = target.obs_names.to_numpy().copy()
        names[1] = names[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target.obs_names = names
    elif change == "bad_key_added":
        kwargs["key_added"] = "a/b"
    elif change == "missing_layer" and "layer" in params:
        kwargs["layer"] = "no_such_layer"
    elif change == "missing_batch_key" and "batch_key" in kwargs:
        kwargs["batch_key"] = "no_such_column"
    elif change == "one_batch" and "batch_key" in kwargs:
        data.obs[kwargs["batch_key"]] = "only"
    elif change == "huge_size":
        for size in SIZE_PARAMS:
            if size in kwargs:
                kwargs[size] = 10**9
    elif change == "tiny" and isinstance(data, ad.AnnData):
        data = data[:3].copy()
    return data, kwargs


# ----------------------------------------------------------------------------- the checks
def _unchanged(before, after, where="input"):
    """Everything the user had is still there, bit for bit; new slots are allowed."""
    if isinstance(before, dict):
        for key, value in before.items():
            if key == "uns":
                continue  # results live in uns[key]; user entries are checked below
            assert key in after, f"{where}: {key!r} was removed"
            _unchanged(value, after[key], f"{where}[{key!r}]")
        for key in before.get("uns", {}):
            assert key in after["uns"], f"{where}: uns[{key!r}] was removed"
        return
    if isinstance(before, tuple) and before and before[0] == "sparse":
        assert before[:3] == after[:3], f"{where}: sparse format or shape changed"
        for x, y in zip(before[3:], after[3:], strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), f"{where} changed"
        return
    if hasattr(before, "columns"):  # obs / var: existing columns unchanged, new ones allowed
        assert list(before.index) == list(after.index), f"{where}: index changed"
        for column in before.columns:
            assert column in after.columns, f"{where}: column {column!r} removed"
            assert before[column].equals(after[column]), f"{where}: column {column!r} changed"
        return
    assert before.dtype == after.dtype and np.array_equal(
        before, after, equal_nan=before.dtype.kind in "fc"
    ), f"{where} changed"


def _new_arrays_finite(before, data):
    objects = [(data, before)]
    if isinstance(data, mudata.MuData):
        objects += [(data.mod[m], before["mod"][m]) for m in data.mod]
    for obj, snap in objects:
        for attr in ("obsm", "varm"):
            for key, value in getattr(obj, attr).items():
                if key in snap.get(attr, {}) or not isinstance(value, np.ndarray):
                    continue
                if value.dtype.kind not in "fc":
                    continue
                rows = value.reshape(len(value), -1)
                embedded = ~np.isnan(rows).all(axis=1)  # cells a method did not embed are NaN
                assert np.isfinite(rows[embedded]).all(), f"{attr}[{key!r}] has NaN/inf"


def _slots(data):
    names = {a: set(getattr(data, a).keys()) for a in ("obsm", "varm", "obsp", "uns")}
    for mod, adata in getattr(data, "mod", {}).items():
        names |= {f"{mod}:{a}": v for a, v in _slots(adata).items()}
    return names


def check_call(name, matrix_change, object_change):
    func, make, base_kwargs = CALLS[name]
    data, kwargs = make(), dict(base_kwargs)
    _apply_matrix(data, MATRIX[name], matrix_change)
    data, kwargs = _apply_object(name, func, data, kwargs, object_change)
    before = snapshot(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = func(data, **kwargs)
        except (ValueError, TypeError, KeyError) as error:
            assert str(error).strip(), f"{name}: {type(error).__name__} without a message"
            _unchanged(before, snapshot(data))
            # the user's uns is untouched too when the call fails
            assert set(before["uns"]) == set(snapshot(data)["uns"]), f"{name} wrote into uns"
            return
        _unchanged(before, snapshot(data))
        _new_arrays_finite(before, data)
        if name == "pp.gene_activity":
            assert np.isfinite(out.X.data if sp.issparse(out.X) else out.X).all()
            return
        slots = _slots(data)
        func(data, **kwargs)
        assert _slots(data) == slots, f"{name}: a second call left other slots"


@pytest.mark.parametrize("name", sorted(CALLS))
@settings(settings.get_profile("ci"))
@given(
    matrix_change=st.sampled_from(sorted(MATRIX_CHANGES)),
    object_change=st.sampled_from(OBJECT_CHANGES),
)
@example(matrix_change="unsorted_indices", object_change="none")
@example(matrix_change="duplicate_indices", object_change="none")
def test_tool_survives_unusual_input(name, matrix_change, object_change):
    check_call(name, matrix_change, object_change)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CALLS))
@settings(settings.get_profile("long"))
@given(
    matrix_change=st.sampled_from(sorted(MATRIX_CHANGES)),
    object_change=st.sampled_from(OBJECT_CHANGES),
)
def test_tool_survives_unusual_input_long(name, matrix_change, object_change):
    check_call(name, matrix_change, object_change)
