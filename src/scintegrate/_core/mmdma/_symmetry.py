"""The symmetry search of MMD-MA: undo a mirror image (or a rotated copy) of the alignment.

MMD matching is blind to symmetries of the cells' distribution; half-way through each start of
the fit, :func:`_symmetry_search` looks for a reflection or rotation of the second embedding that
a narrow kernel prefers decisively, on the embeddings' leading principal subspace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._kernels import _kernel_total, at_most, median_bandwidth


def _orthogonal_map(kind: str, angles: Sequence[float], k: int) -> torch.Tensor:
    """A k x k orthogonal map (k = 2 or 3) from its angles: ``"reflect"`` through the line
    (plane) normal to the unit vector at ``angles``, ``"turn"`` (k = 2: rotation by twice the
    angle; k = 3: the half-turn about that vector) or ``"point"`` (``-I``)."""
    eye = torch.eye(k, dtype=torch.float64)
    if kind == "point":
        return -eye
    if k == 2:
        (t,) = angles
        if kind == "turn":
            c, s = math.cos(2 * t), math.sin(2 * t)
            return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        u = torch.tensor([[math.cos(t)], [math.sin(t)]], dtype=torch.float64)
    else:
        theta, phi = angles
        u = torch.tensor(
            [
                [math.sin(theta) * math.cos(phi)],
                [math.sin(theta) * math.sin(phi)],
                [math.cos(theta)],
            ],
            dtype=torch.float64,
        )
    reflection = eye - 2.0 * u @ u.T
    return reflection if kind == "reflect" else -reflection


def _symmetry_grid(k: int, n_angles: int) -> tuple[list[tuple[str, list[float]]], float]:
    """The candidates of :func:`_symmetry_search` (kind, angles) and their angular spacing: in
    the plane, reflections through ``n_angles`` lines and rotations by multiples of
    ``2 pi / n_angles``; in 3-D, reflections through ``2 n_angles`` planes (Fibonacci normals on
    a half sphere), half-turns about the same normals and the point reflection."""
    if k == 2:
        grid = [("reflect", [math.pi * j / n_angles]) for j in range(n_angles)]
        grid += [("turn", [math.pi * j / n_angles]) for j in range(1, n_angles)]
        return grid, math.pi / n_angles
    count = 2 * n_angles
    grid = []
    for j in range(count):
        height = 1.0 - (j + 0.5) / count
        angles = [math.acos(height), (j * math.pi * (3.0 - math.sqrt(5.0))) % (2 * math.pi)]
        grid += [("reflect", angles), ("turn", angles)]
    grid.append(("point", []))
    return grid, math.sqrt(2.0 * math.pi / count)


def _sym_power(u: torch.Tensor, power: float) -> torch.Tensor:
    """``C^power`` of the covariance ``C`` of the (centred) rows of ``u``."""
    vals, vecs = torch.linalg.eigh(u.T @ u / len(u))
    return vecs @ torch.diag(vals.clamp_min(1e-12) ** power) @ vecs.T


def _symmetry_search(
    zx: torch.Tensor,
    zy: torch.Tensor,
    *,
    factor: float = 0.25,
    fine_factor: float = 0.1,
    max_dims: int = 3,
    n_angles: int = 36,
    shortlist: int = 6,
    margin: float = 0.5,
    gen: torch.Generator | None = None,
    max_cells: int = 1000,
    coarse_cells: int = 500,
) -> torch.Tensor | None:
    """A linear map ``T`` (d x d) of the second embedding that makes it match the first far
    better under a narrow kernel, or ``None``.

    MMD matching is blind to symmetries of the data: when the cells' distribution is (nearly)
    mirror-symmetric, as the branch simulation's T is, gradient descent ends in the true
    alignment or in a mirror image (or a rotated copy) of it with about the same loss. They
    differ in the fine structure: in the true alignment each cell lies on its partner, which a
    kernel much narrower than the trained one sees.

    Both embeddings are reduced to the leading principal subspace of the pooled cells (2 or 3
    dimensions, each with at least 5% of the top variance) and whitened there, each with its
    own covariance, so that a difference of scale between the modalities (their maps are
    nearly orthonormal, their features are not alike) does not blur the comparison. The
    orthogonal maps ``Q`` of :func:`_symmetry_grid` are scored by the MMD² between the whitened
    first embedding and the whitened second one times ``Q``, with a bandwidth ``factor`` times
    their median distance (only the cross term depends on ``Q``); the ``shortlist`` best are
    refined by a pattern search on their angles under a ``fine_factor`` bandwidth. The best is
    returned as the map ``C^-1/2 Q C^1/2`` of the second embedding in that subspace (``C``:
    its covariance there; other directions unchanged) when its fine MMD² is below ``margin``
    times the current one: on data without such a symmetry no candidate comes close and
    nothing changes. At most ``max_cells`` cells per modality are scored (``coarse_cells`` in
    the ranking).
    """
    d = zy.shape[1]
    if d < 2:
        return None
    subsets = []
    for z in (zx, zy):
        z = at_most(z.detach(), max_cells, gen).double().cpu()
        subsets.append(z - z.mean(0))
    zx, zy = subsets
    pooled = torch.cat([zx, zy])
    vals, vecs = torch.linalg.eigh(pooled.T @ pooled)
    k = min(max_dims, int((vals >= 0.05 * vals[-1]).sum()))
    if k < 2:
        return None
    basis = vecs[:, d - k :]
    ux, uy = zx @ basis, zy @ basis
    whiten_y = _sym_power(uy, -0.5)
    wx = (ux @ _sym_power(ux, -0.5)).float()
    wy = (uy @ whiten_y).float()
    both = torch.cat([wx, wy])
    median = median_bandwidth(both[torch.randperm(len(both), generator=gen)[:512]])

    # the coarse ranking on at most `coarse_cells` cells, the refinement on all (<= max_cells)
    sub_x = torch.randperm(len(wx), generator=gen)[:coarse_cells]
    sub_y = torch.randperm(len(wy), generator=gen)[:coarse_cells]
    coarse = _scorer(wx[sub_x], wy[sub_y], factor * median)
    fine = _scorer(wx, wy, fine_factor * median)
    grid, spacing = _symmetry_grid(k, n_angles)
    ranked = sorted(grid, key=lambda c: coarse(_orthogonal_map(c[0], c[1], k)))[:shortlist]
    best = margin * fine(torch.eye(k, dtype=torch.float64))
    best_q = None
    for kind, angles in ranked:
        angles, value = _refine(fine, kind, list(angles), k, spacing)
        if value < best:
            best, best_q = value, _orthogonal_map(kind, angles, k)
    if best_q is None:
        return None
    inner = whiten_y @ best_q @ _sym_power(uy, 0.5)
    return torch.eye(d, dtype=torch.float64) - basis @ basis.T + basis @ inner @ basis.T


def _scorer(wx: torch.Tensor, wy: torch.Tensor, bandwidth: float):
    """``q -> MMD²(wx, wy q)`` for orthogonal maps ``q``, with ``bandwidth``."""
    n, m = len(wx), len(wy)
    fixed = _kernel_total(wx, wx, bandwidth) / n**2 + _kernel_total(wy, wy, bandwidth) / m**2

    def mmd_after(q: torch.Tensor) -> float:
        # an orthogonal q leaves the second embedding's own kernel sum unchanged
        return fixed - 2.0 * _kernel_total(wx, wy @ q.float(), bandwidth) / (n * m)

    return mmd_after


def _refine(score, kind: str, angles: list[float], k: int, spacing: float):
    """Pattern search on the angles of one candidate: move one angle by +-step while that
    lowers ``score``, then halve the step (5 rounds from half the grid spacing); returns the
    angles and their score."""
    value = score(_orthogonal_map(kind, angles, k))
    step = spacing / 2
    for _ in range(5 if angles else 0):
        for i in range(len(angles)):
            for sign in (1.0, -1.0):
                trial = list(angles)
                trial[i] += sign * step
                trial_value = score(_orthogonal_map(kind, trial, k))
                if trial_value < value:
                    angles, value = trial, trial_value
        step /= 2
    return angles, value
