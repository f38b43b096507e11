"""Sparse-matrix conversions shared by every numerical core.

scipy's ``csr_matrix(X, dtype=...)`` can share ``indices``/``indptr`` with its input while copying
the values, and ``sum_duplicates``/``sort_indices`` then reorder the shared arrays in place: the
caller's matrix changes. Everything here copies before it canonicalises.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def as_csr(X, *, dtype=None, canonical: bool = False) -> sp.csr_matrix:
    """CSR form of a dense or sparse matrix, never modifying ``X``.

    Parameters
    ----------
    X
        Dense array or any scipy sparse matrix/array.
    dtype
        Value dtype of the result (``None`` keeps the input's; dense float16, which
        scipy.sparse cannot hold, becomes float32).
    canonical
        Return a private copy with duplicates summed, explicit zeros removed and indices sorted,
        as the compiled kernels expect. Without it, CSR input of the requested dtype is returned
        as it is (no copy: read it, never write to it).
    """
    if dtype is None and not sp.issparse(X) and np.asarray(X).dtype == np.float16:
        dtype = np.float32  # scipy.sparse has no float16; float32 holds every float16 exactly
    if canonical:
        # copy=True gives the result its own data, indices and indptr (without it, a dtype
        # change copies only the values and the in-place steps below reorder the caller's indices)
        csr = sp.csr_matrix(X, dtype=dtype, copy=True)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        csr.sort_indices()
        return csr
    if sp.issparse(X) and X.format == "csr" and (dtype is None or X.dtype == np.dtype(dtype)):
        return X if isinstance(X, sp.csr_matrix) else sp.csr_matrix(X)
    return sp.csr_matrix(X, dtype=dtype)


def csr_tensor(crow, col, values, size, *, dtype=None, device=None):
    """``torch.sparse_csr_tensor`` from valid CSR arrays, without torch's warnings.

    torch warns on every sparse CSR construction (support "in beta", invariant checks
    "implicitly disabled"); both are expected here, and users saw them in every fit. The
    callers build the arrays from canonical CSR matrices, so the invariants hold and are not
    checked.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, col, values, size=size, dtype=dtype, device=device, check_invariants=False
        )


def torch_csr(X: sp.csr_matrix, *, dtype=None, device=None):
    """A canonical scipy CSR matrix (``as_csr(..., canonical=True)``) as a torch sparse CSR
    tensor, through :func:`csr_tensor`. The index arrays are copied (as int64); the values are
    shared with ``X`` when ``dtype`` matches (nothing here writes to them).
    """
    import torch

    return csr_tensor(
        torch.from_numpy(X.indptr.astype(np.int64)),
        torch.from_numpy(X.indices.astype(np.int64)),
        torch.as_tensor(X.data),
        X.shape,
        dtype=dtype,
        device=device,
    )


def numpy_dtype(dtype):
    """The numpy float type of a torch float dtype (float32 stays float32, others float64)."""
    import torch

    return np.float32 if dtype == torch.float32 else np.float64
