"""MMD-MA (Liu et al. 2019) in the primal, as reformulated by LSMMD-MA (Meng-Papaxanthos et al. 2023).

Two modalities ``X`` (n x p) and ``Y`` (m x q), measured on different cells, are mapped to a
shared d-dimensional space by ``Z_x = X W_x`` and ``Z_y = Y W_y`` (primal) or
``Z_x = K_x a_x`` with ``K_x = X X^T`` (dual, the original MMD-MA; ``W_x = X^T a_x`` gives the
same embedding). The objective is

    L = MMD^2(Z_x, Z_y) + l1 (pen_x + pen_y) + l2 (dis_x + dis_y)

with the squared maximum mean discrepancy of a Gaussian kernel (:mod:`._kernels`), the
non-collapsing penalty ``pen`` and the distortion ``dis`` of each modality (:mod:`._modality`).
:func:`fit_mmdma` minimises it by Adam from several starts (:mod:`._fit`), undoing mirror images
of the alignment half-way through each (:mod:`._symmetry`).
"""

import importlib

# torch-free names, imported at once; the others load torch and are imported on first use
# (PEP 562), so that ``import scintegrate`` and the command line's --help stay quick
from ._choices import BACKENDS, FORMULATIONS, ROTATION_SEARCH_STARTS

_LAZY = {
    "MMDMAResult": "._fit",
    "fit_mmdma": "._fit",
    "objective": "._fit",
    "keops_available": "._kernels",
    "kernel_sum": "._kernels",
    "median_bandwidth": "._kernels",
    "mmd2": "._kernels",
    "mmd2_dense": "._kernels",
    "resolve_backend": "._kernels",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BACKENDS", "FORMULATIONS", "ROTATION_SEARCH_STARTS", *_LAZY]
