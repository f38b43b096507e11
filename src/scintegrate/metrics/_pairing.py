"""Metrics for embeddings of cells measured in two modalities: FOSCTTM and neighbourhood overlap
(the pairing known), label transfer accuracy (labels known, no pairing needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._utils._validation import check_positive_int
from ._common import get_array


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


def _paired(x, y, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    x = get_array(x, param="x").astype(np.float64, copy=False)
    y = get_array(y, param="y").astype(np.float64, copy=False)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape (row i of both is the same cell), got {x.shape} "
            f"and {y.shape}."
        )
    if len(x) < 2:
        raise ValueError("Paired metrics need at least 2 paired cells.")
    check_positive_int(block_size, param="block_size")
    return x, y


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
    x, y = _paired(x, y, block_size)
    x_to_y = _fraction_closer(x, y, block_size)
    y_to_x = _fraction_closer(y, x, block_size)
    if per_cell:
        return x_to_y, y_to_x
    return float((x_to_y.mean() + y_to_x.mean()) / 2)


def neighborhood_overlap(
    x,
    y,
    *,
    n_neighbors: int | Sequence[int] = 10,
    block_size: int = 2048,
) -> float | np.ndarray:
    """Fraction of cells whose true match is among their ``k`` nearest cross-modality neighbours.

    Row ``i`` of ``x`` and of ``y`` are the same cell. For each cell of ``x``, its true match
    ``y[i]`` counts as found when fewer than ``k`` other rows of ``y`` are closer (Euclidean);
    the same from ``y`` to ``x``; the two fractions are averaged (the "neighbourhood overlap"
    curve of MMD-MA / LSMMD-MA). 1 is a perfect pairing; chance is about ``k / n``. Memory is
    ``block_size`` x n at a time.

    Parameters
    ----------
    x, y
        Embeddings of the same ``n`` cells, one per modality, with the same dimensions.
    n_neighbors
        ``k``: one value, or several (e.g. ``range(1, 51)``) for a curve.
    block_size
        Rows of distances computed at once.

    Returns
    -------
    The overlap at ``k`` (a float), or an array with one value per ``k`` given.
    """
    x, y = _paired(x, y, block_size)
    ks = np.atleast_1d(np.asarray(n_neighbors))
    if ks.ndim != 1 or not np.issubdtype(ks.dtype, np.integer) or (ks < 1).any():
        raise ValueError(f"n_neighbors must be positive integers, got {n_neighbors!r}.")
    n = len(x)
    # number of other cells closer than the true match, per cell and direction
    ranks = [
        np.rint(f * (n - 1))
        for f in (_fraction_closer(x, y, block_size), _fraction_closer(y, x, block_size))
    ]
    out = np.array([np.mean([np.mean(r < k) for r in ranks]) for k in ks])
    return float(out[0]) if np.ndim(n_neighbors) == 0 else out


def label_transfer_accuracy(
    x,
    y,
    *,
    labels_x: Sequence,
    labels_y: Sequence,
    n_neighbors: int = 5,
) -> float:
    """Accuracy of labels transferred across modalities by a kNN classifier, both directions.

    A ``n_neighbors``-nearest-neighbour classifier (majority vote, Euclidean) trained on the
    embedding ``x`` with ``labels_x`` predicts the labels of ``y``, and one trained on ``y``
    predicts ``x``; the two accuracies are averaged (LTA of MMD-MA / SCOT / LSMMD-MA). No pairing
    is needed, so it also scores truly unpaired modalities.

    Parameters
    ----------
    x, y
        Embeddings of the two modalities (``n_x x d`` and ``n_y x d``, any numbers of cells).
    labels_x, labels_y
        One label per row of ``x`` / ``y`` (e.g. cell types).
    n_neighbors
        Neighbours voting for each prediction.

    Returns
    -------
    The mean of the two accuracies, in [0, 1].
    """
    from sklearn.neighbors import KNeighborsClassifier

    x = get_array(x, param="x").astype(np.float64, copy=False)
    y = get_array(y, param="y").astype(np.float64, copy=False)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same number of dimensions, got {x.shape[1]} and {y.shape[1]}."
        )
    labels_x = np.asarray(labels_x, dtype=object)
    labels_y = np.asarray(labels_y, dtype=object)
    for name, labels, emb in (("labels_x", labels_x, x), ("labels_y", labels_y, y)):
        if labels.shape != (len(emb),):
            raise ValueError(
                f"{name} must have one label per row ({len(emb)}), got {labels.shape}."
            )
        if pd.isna(labels).any():
            raise ValueError(f"{name} has missing values; drop those cells or fill the labels.")
    check_positive_int(n_neighbors, param="n_neighbors")
    if n_neighbors > min(len(x), len(y)):
        raise ValueError(
            f"n_neighbors={n_neighbors} must be between 1 and the smaller number of cells "
            f"({min(len(x), len(y))})."
        )
    accuracies = []
    for train, train_labels, test, test_labels in (
        (x, labels_x, y, labels_y),
        (y, labels_y, x, labels_x),
    ):
        codes, _ = pd.factorize(np.concatenate([train_labels, test_labels]))
        clf = KNeighborsClassifier(n_neighbors=n_neighbors).fit(train, codes[: len(train)])
        accuracies.append(float(np.mean(clf.predict(test) == codes[len(train) :])))
    return float(np.mean(accuracies))
