"""Choosing a restart by agreement with the others (``select="consensus"``).

MMD matches distributions, not cells, so restarts of a non-convex fit can end in different
alignments (mirror images, rotations, swapped groups) with nearly the same loss, and on real
data the lowest loss is not always the best alignment. Restarts that found the same
alignment agree on which cells of the second modality lie next to each cell of the first; wrong
alignments are wrong in different ways, so they agree less with the rest. The score of a
restart is its mean agreement with the other restarts: the fraction of shared cross-modal
nearest neighbours, averaged over sampled cells of both modalities. It never uses a pairing
of cells, only the restarts' own embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors

_SAMPLE = 2_000


def cross_neighbours(
    Z_x: np.ndarray, Z_y: np.ndarray, queries: Sequence[np.ndarray], n_neighbors: int
) -> list[np.ndarray]:
    """For the sampled cells of each modality, their ``n_neighbors`` nearest cells of the other
    (``queries[0]`` rows of ``Z_x`` among ``Z_y`` and ``queries[1]`` rows of ``Z_y`` among
    ``Z_x``); each an array (sampled cells x n_neighbors) of sorted indices."""
    out = []
    for source, target, rows in ((Z_x, Z_y, queries[0]), (Z_y, Z_x, queries[1])):
        k = min(n_neighbors, target.shape[0])
        index = NearestNeighbors(n_neighbors=k).fit(target)
        out.append(np.sort(index.kneighbors(source[rows], return_distance=False), axis=1))
    return out


def _shared_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |a_i ∩ b_i| / k, for rows of sorted, distinct indices."""
    k = a.shape[1]
    offsets = np.arange(a.shape[0])[:, None] * (max(a.max(), b.max()) + 1)
    shared = np.intersect1d((a + offsets).ravel(), (b + offsets).ravel(), assume_unique=True)
    return shared.size / a.size if k else 0.0


def consensus_scores(
    embeddings: Sequence[Sequence[np.ndarray]],
    *,
    n_neighbors: int = 10,
    rng: np.random.Generator,
) -> np.ndarray:
    """Negative mean agreement of each restart with the others (lower is better, as losses).

    ``embeddings[r]`` holds restart r's ``(Z_x, Z_y)``. At most 2,000 cells of each modality
    (the same for every restart) are the queries, so the cost is a few nearest-neighbour
    searches per restart whatever the number of cells.
    """
    n_x, n_y = embeddings[0][0].shape[0], embeddings[0][1].shape[0]
    queries = [
        np.sort(rng.choice(n, size=min(n, _SAMPLE), replace=False)) for n in (n_x, n_y)
    ]
    neighbours = [cross_neighbours(zx, zy, queries, n_neighbors) for zx, zy in embeddings]
    n = len(embeddings)
    agreement = np.eye(n)
    for r in range(n):
        for s in range(r + 1, n):
            value = np.mean(
                [_shared_fraction(a, b) for a, b in zip(neighbours[r], neighbours[s], strict=True)]
            )
            agreement[r, s] = agreement[s, r] = value
    if n == 1:
        return np.zeros(1)
    return -(agreement.sum(axis=1) - 1.0) / (n - 1)
