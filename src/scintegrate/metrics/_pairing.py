"""Metrics for embeddings of paired cells measured in two modalities (the pairing known)."""

from __future__ import annotations

import numpy as np

from ._integration import _embedding


def _fraction_closer(a: np.ndarray, b: np.ndarray, block: int) -> np.ndarray:
    """For each row i of ``a``: the fraction of rows of ``b`` other than i closer than b[i]."""
    n = len(a)
    b_sq = np.einsum("ij,ij->i", b, b)
    out = np.empty(n)
    for start in range(0, n, block):
        rows = a[start : start + block]
        # |a_i|^2 is common to a whole row of distances, so it is left out of the comparison
        d = b_sq[None, :] - 2.0 * (rows @ b.T)
        idx = np.arange(start, start + len(rows))
        true = d[np.arange(len(rows)), idx]
        out[start : start + len(rows)] = np.sum(d < true[:, None], axis=1) / (n - 1)
    return out


def foscttm(
    x,
    y,
    *,
    per_cell: bool = False,
    block_size: int = 2048,
) -> float | tuple[np.ndarray, np.ndarray]:
    """Fraction of samples closer than the true match (FOSCTTM).

    Row ``i`` of ``x`` and row ``i`` of ``y`` are the same cell seen in two modalities. For
    each cell of ``x``, the fraction of the *other* cells of ``y`` that lie closer to it
    (Euclidean distance) than its true match; and the same from ``y`` to ``x``. 0 is a perfect
    pairing, about 0.5 is chance. Memory is ``block_size`` x n at a time, never n x n.

    Parameters
    ----------
    x, y
        Embeddings of the same ``n`` cells (``n >= 2``), one per modality, with the same number
        of dimensions.
    per_cell
        Return the two per-cell vectors ``(x_to_y, y_to_x)`` instead of their overall mean.
    block_size
        Rows of distances computed at once.

    Returns
    -------
    The mean of both directions, or the two per-cell arrays when ``per_cell=True``.
    """
    x = _embedding(x, None)
    y = _embedding(y, None)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape (row i of both is the same cell), got {x.shape} "
            f"and {y.shape}."
        )
    if len(x) < 2:
        raise ValueError("FOSCTTM needs at least 2 paired cells.")
    if block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size}.")
    x_to_y = _fraction_closer(x, y, block_size)
    y_to_x = _fraction_closer(y, x, block_size)
    if per_cell:
        return x_to_y, y_to_x
    return float((x_to_y.mean() + y_to_x.mean()) / 2)
