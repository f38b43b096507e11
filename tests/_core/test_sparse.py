"""The one CSR converter never changes the caller's matrix."""

from __future__ import annotations

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
