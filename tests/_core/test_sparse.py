"""The one CSR converter never changes the caller's matrix."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from scintegrate._core._sparse import as_csr


def _messy(dtype):
    """CSR with reversed (unsorted) indices, a duplicate and an explicit zero in row 0."""
    indptr = np.array([0, 4, 6])
    indices = np.array([3, 1, 1, 0, 2, 0], dtype=np.int32)
    data = np.array([1, 2, 3, 0, 5, 6], dtype=dtype)
    return sp.csr_matrix((data, indices, indptr), shape=(2, 4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", [None, np.float64])
@pytest.mark.parametrize("kind", [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.coo_matrix])
def test_canonical_copy_leaves_the_input_alone(dtype, target, kind):
    X = kind(_messy(dtype)) if kind is not sp.csr_matrix else _messy(dtype)
    before = X.copy()
    arrays = [a.copy() for a in _stored(X)]
    out = as_csr(X, dtype=target, canonical=True)
    assert out.has_canonical_format and out.nnz == 4
    np.testing.assert_array_equal(out.toarray(), before.toarray())
    for original, now in zip(arrays, _stored(X), strict=True):
        assert original.dtype == now.dtype
        np.testing.assert_array_equal(original, now)


def _stored(X):
    """The arrays a sparse matrix stores, in its own format."""
    if X.format == "coo":
        return X.data, X.row, X.col
    return X.data, X.indices, X.indptr


def test_dense_float16_becomes_float32():
    out = as_csr(np.eye(3, dtype=np.float16))
    assert out.dtype == np.float32 and out.nnz == 3


def test_torch_csr_matches_and_leaves_input_alone():
    import torch

    from scintegrate._core._sparse import torch_csr

    X = sp.random(7, 5, density=0.4, format="csr", random_state=0, dtype=np.float32)
    indices = X.indices.copy()
    T = torch_csr(X, dtype=torch.float64)
    assert T.dtype == torch.float64 and T.layout == torch.sparse_csr
    np.testing.assert_allclose(T.to_dense().numpy(), X.toarray())
    assert not np.shares_memory(T.col_indices().numpy(), X.indices)
    np.testing.assert_array_equal(X.indices, indices)


def test_torch_csr_is_silent():
    # torch warns once per process, so a fresh process (any earlier test may have warned); the
    # module is loaded from its file alone, which spares the subprocess the package's imports
    from scintegrate._core import _sparse

    code = (
        "import importlib.util, warnings, scipy.sparse as sp\n"
        f"spec = importlib.util.spec_from_file_location('s', {_sparse.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "warnings.simplefilter('error')\n"
        "module.torch_csr(sp.eye(3, format='csr'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
