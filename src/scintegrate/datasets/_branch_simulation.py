"""``datasets.branch_simulation``: two modalities of the branch manifold of MMD-MA / LSMMD-MA."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from .._utils._random import get_rng
from .._utils._validation import check_number, check_positive_int


def branch_simulation(
    *,
    n_obs: int = 1000,
    n_features: int | tuple[int, int] = 400,
    noise: float = 0.05,
    mods: tuple[str, str] = ("rna", "atac"),
    dtype: str = "float32",
    random_state: int | np.random.Generator | None = 0,
) -> MuData:
    """Two modalities observing the same branch-shaped 2-D manifold (LSMMD-MA appendix D).

    The simulation of Liu et al. (2019) as coded in LSMMD-MA (``generate_data(...,
    simulation='branch')``): ``3 n / 4`` latent points drawn from ``N((0, 0), diag(20, 1))`` (the
    stem) and ``n / 4`` from ``N((0, 8), diag(1, 10))`` (the branch), rotated by 45 degrees and
    standardised per latent dimension. Each modality maps the *same* latent points to its own
    feature space with its own ``2 x p`` standard Gaussian matrix and adds independent Gaussian
    noise of standard deviation ``noise`` to every entry.

    The two modalities are stored as different cells (``"<mod>_<i>"``), as an unpaired
    integration method sees them; ``obs["latent_id"]`` gives the hidden pairing (row ``i`` of
    both modalities is latent point ``i``), so the result can be scored with
    :func:`scintegrate.metrics.foscttm`.

    Parameters
    ----------
    n_obs
        Number of latent points, i.e. cells per modality (at least 4).
    n_features
        Features per modality: one number for both, or a pair.
    noise
        Standard deviation of the Gaussian noise added to each entry (the reference uses 0.05).
    mods
        Names of the two modalities.
    dtype
        ``"float32"`` or ``"float64"`` for the feature matrices.
    random_state
        Seed of the random number generator; the same seed gives the same data.

    Returns
    -------
    :class:`~mudata.MuData` with two modalities, each with

    ``X``
        Dense ``n_obs x p`` features.
    ``obs["latent_id"]``
        Index of the latent point (the hidden pairing).
    ``obs["branch"]``
        ``"stem"`` or ``"branch"`` (categorical), the mixture component.
    ``obsm["latent"]``
        The standardised 2-D latent coordinates.

    Examples
    --------
    >>> import scintegrate as si
    >>> mdata = si.datasets.branch_simulation(n_obs=500, n_features=100)
    """
    n_obs = check_positive_int(n_obs, param="n_obs", minimum=4)
    if isinstance(n_features, tuple | list):
        if len(n_features) != 2:
            raise ValueError(f"n_features must be an int or a pair of ints, got {n_features!r}.")
        p = [check_positive_int(v, param="n_features") for v in n_features]
    else:
        p = [check_positive_int(n_features, param="n_features")] * 2
    check_number(noise, param="noise", minimum=0)
    if len(mods) != 2 or len(set(mods)) != 2 or not all(isinstance(m, str) for m in mods):
        raise ValueError(f"mods must be two different names, got {mods!r}.")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    rng = get_rng(random_state)
    n_stem = (3 * n_obs) // 4
    n_branch = n_obs - n_stem
    stem = rng.normal(size=(n_stem, 2)) * np.sqrt([20.0, 1.0])
    branch = rng.normal(size=(n_branch, 2)) * np.sqrt([1.0, 10.0]) + np.array([0.0, 8.0])
    latent = np.vstack([stem, branch])
    angle = np.pi / 4
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    latent = latent @ rotation.T
    latent = (latent - latent.mean(0)) / latent.std(0)
    labels = pd.Categorical(
        ["stem"] * n_stem + ["branch"] * n_branch, categories=["stem", "branch"]
    )
    modalities = {}
    for name, n_feat in zip(mods, p, strict=True):
        projection = rng.normal(size=(2, n_feat))
        X = latent @ projection + noise * rng.normal(size=(n_obs, n_feat))
        obs = pd.DataFrame(
            {"latent_id": np.arange(n_obs), "branch": labels},
            index=[f"{name}_{i}" for i in range(n_obs)],
        )
        var = pd.DataFrame(index=[f"{name}_feature_{j}" for j in range(n_feat)])
        adata = AnnData(X.astype(dtype), obs=obs, var=var)
        adata.obsm["latent"] = latent.copy()
        modalities[name] = adata
    return MuData(modalities)
