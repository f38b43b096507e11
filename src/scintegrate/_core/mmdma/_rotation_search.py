"""A start for MMD-MA from a global search over rotations of the principal embeddings.

Penalty and distortion are smallest at the principal maps of each modality, and free in a
rotation of the d-dimensional embedding; what a start has to find is the rotation (reflections
included) that lines the two modalities' principal embeddings up. Random starts leave that to
Adam on the whole objective, which often ends in a wrong alignment with a similar loss. The
search below tries many rotations on the MMD² alone (d x d parameters, a summary of the cells),
which is cheap enough to cover the orthogonal group far more densely than restarts of the fit:
on the SNARE-seq cell lines it took the unsupervised result from a mean FOSCTTM of 0.22-0.26
(32 restarts of the fit) to 0.198 with one fit (``benchmarks/README.md``).

Cost (SNARE-seq's 1,047 cells per modality, d = 5, one core): 10-15 s. The first version,
descending each start on 500 random cells per step with ``cdist`` in float64 as
``benchmarks/mmdma_rotations.py`` does, took 2-6 minutes; the batched product of
:func:`_cross_kernel_mean` (``cdist``'s backward pass is slow), float32 (float64's ``exp`` was
7x slower in the refinement: 93 s against 13 s) and the k-means summary for the coarse stage
(256 weighted centroids instead of 500 cells: a quarter of the kernel entries, and no sampling
noise) brought it there.
"""

from __future__ import annotations

import numpy as np
import torch

from .._adam import Adam
from ._choices import ROTATION_SEARCH_STARTS
from ._kernels import at_most, median_bandwidth


def _haar_orthogonal(count: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` d x d orthogonal matrices drawn from the Haar measure (reflections included)."""
    q, r = torch.linalg.qr(torch.randn(count, d, d, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


def _cross_kernel_mean(zx, zy, R, bandwidth: float, wx=None, wy=None):
    """``sum_ij wx_i wy_j k(zx_i, zy_j R)`` (uniform weights: the mean) for each rotation of
    the batch ``R`` (S x d x d).

    The only term of the MMD² that depends on ``R``: rotating ``zy`` leaves its own kernel sum
    unchanged, and its squared norms too, so ``|x - yR|² = |x|² + |y|² - 2 x · (y R)`` needs one
    batched product (several times faster than ``cdist``, whose backward pass is slow)."""
    scale = 1.0 / (2.0 * bandwidth**2)
    sx = zx.pow(2).sum(1)[:, None] * scale
    sy = zy.pow(2).sum(1)[None, :] * scale
    inner = torch.matmul(zx, R.transpose(-2, -1) @ zy.T)  # x · (y R)
    K = torch.exp((2.0 * scale) * inner - sx - sy)
    if wx is None:
        return K.mean(dim=(-2, -1))
    return ((K @ wy) * wx).sum(-1)


def _chunk(n: int, m: int) -> int:
    """Rotations per batch: about a million kernel entries (larger batches are slower on a CPU:
    their temporaries leave the cache and cost page faults)."""
    return max(1, 2**20 // (n * m))


def _descend(zx, zy, R0, bandwidth, *, steps, lr, wx=None, wy=None):
    """Adam on ``R = R0 exp(A - Aᵀ)`` (stays orthogonal) maximising the cross-kernel sum."""
    ends = []
    for R_chunk in R0.split(_chunk(len(zx), len(zy))):
        A = torch.zeros_like(R_chunk, requires_grad=True)
        opt = Adam([A], lr)  # not torch.optim: its first use imports torch._dynamo (1-2 s)
        for _ in range(steps):
            R = R_chunk @ torch.linalg.matrix_exp(A - A.transpose(1, 2))
            loss = -_cross_kernel_mean(zx, zy, R, bandwidth, wx, wy).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            ends.append(R_chunk @ torch.linalg.matrix_exp(A - A.transpose(1, 2)))
    return torch.cat(ends)


def _summary(z: torch.Tensor, n_centroids: int, seed: int):
    """k-means centroids of the rows of ``z`` and their shares of the cells."""
    from sklearn.cluster import KMeans

    if len(z) <= n_centroids:
        return z, torch.full((len(z),), 1.0 / len(z), dtype=z.dtype)
    km = KMeans(n_clusters=n_centroids, n_init=1, max_iter=50, random_state=seed).fit(z.numpy())
    counts = np.bincount(km.labels_, minlength=n_centroids)
    keep = counts > 0
    centroids = torch.as_tensor(km.cluster_centers_[keep], dtype=z.dtype)
    return centroids, torch.as_tensor(counts[keep] / len(z), dtype=z.dtype)


def rotation_search(
    zx: torch.Tensor,
    zy: torch.Tensor,
    gen: torch.Generator,
    *,
    n_keep: int = 1,
    n_starts: int = ROTATION_SEARCH_STARTS,
    n_refine: int = 4,
    steps: int = 60,
    refine_steps: int = 300,
    lr: float = 0.03,
    refine_lr: float = 0.02,
    n_centroids: int = 256,
    max_cells: int = 2000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_keep`` rotations ``R`` of ``zy`` (m x d) that best match ``zx`` (n x d) by MMD²,
    best first, and their MMD².

    Both embeddings are scaled to unit mean squared norm (the modalities' scales differ); the
    Gaussian kernel's bandwidth is the median distance between the pooled cells. ``n_starts``
    Haar-random orthogonal matrices are each descended ``steps`` Adam steps on a summary of the
    cells (``n_centroids`` k-means centroids per modality, weighted by their shares of the
    cells); the ``max(n_refine, 2 n_keep)`` with the lowest MMD² (on at most ``max_cells``
    cells per modality, as is every score) are descended ``refine_steps`` more on those cells
    and ranked again, distinct rotations first (refined starts often meet in one minimum).
    The descents and the ranking run in float32 (float64's exp is several times slower on a
    CPU, and the MMD² of rotations differ by far more than float32's rounding); the returned
    MMD² are in float64, as are the rotations (d x d tensors on the CPU).
    """
    subsets = []
    for z in (zx, zy):
        z = at_most(z.detach().float().cpu(), max_cells, gen)
        subsets.append(z / z.pow(2).sum(1).mean().sqrt().clamp_min(1e-300))
    zx, zy = subsets
    bandwidth = max(median_bandwidth(at_most(torch.cat([zx, zy]), max_cells, gen)), 1e-12)

    def mmd2(R: torch.Tensor, x=zx, y=zy) -> torch.Tensor:
        with torch.no_grad():
            eye = torch.eye(x.shape[1], dtype=x.dtype)[None]
            constant = sum(_cross_kernel_mean(z, z, eye, bandwidth) for z in (x, y))
            R = R.to(x.dtype)
            chunks = R.split(_chunk(len(x), len(y)))
            return constant - 2.0 * torch.cat(
                [_cross_kernel_mean(x, y, r, bandwidth) for r in chunks]
            )

    seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
    (cx, wx), (cy, wy) = (_summary(z, n_centroids, seed) for z in (zx, zy))
    R = _haar_orthogonal(n_starts, zx.shape[1], gen).float()
    R = _descend(cx, cy, R, bandwidth, steps=steps, lr=lr, wx=wx, wy=wy)
    order = torch.argsort(mmd2(R))[: max(n_refine, 2 * n_keep)]
    R = _descend(zx, zy, R[order], bandwidth, steps=refine_steps, lr=refine_lr).double()
    # re-orthogonalise in float64 (the float32 exponentials drift by ~1e-7) and score there
    u, _, vt = torch.linalg.svd(R)
    R = u @ vt
    scores = mmd2(R, zx.double(), zy.double())
    order = _distinct_first(R, torch.argsort(scores))[:n_keep]
    return R[order], scores[order]


def _distinct_first(R: torch.Tensor, order: torch.Tensor, tol: float = 0.1) -> torch.Tensor:
    """``order`` with every rotation that lies within ``tol`` (Frobenius) of a better one moved
    to the end: refined starts often end in the same minimum, and restarts from copies of one
    rotation would repeat one fit."""
    distinct, copies = [], []
    for i in order.tolist():
        near = any(torch.linalg.matrix_norm(R[i] - R[j]) < tol for j in distinct)
        (copies if near else distinct).append(i)
    return torch.tensor(distinct + copies, dtype=torch.long)
