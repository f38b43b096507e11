"""How dataset-specific the factors of an integrative NMF are (rliger ``calcDatasetSpecificity``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from anndata import AnnData

from .._core.factor_markers import dataset_specificity as _dataset_specificity
from .._utils._factors import dataset_pair, get_inmf_loadings


def dataset_specificity(
    adata: AnnData, key: str = "inmf", *, datasets: Sequence[str] | None = None
) -> pd.DataFrame:
    """Dataset specificity of every iNMF factor: how much more one dataset uses it.

    rliger's ``calcDatasetSpecificity``: for datasets 1 and 2 with shared gene loadings ``W`` and
    dataset-specific ``V_1``, ``V_2``, factor ``f`` has the norms ``‖W_f + V_1f‖`` and
    ``‖W_f + V_2f‖`` (Euclidean, over genes) and the specificity
    ``100 (1 - ‖W_f + V_1f‖ / ‖W_f + V_2f‖)``: 0 for a factor both datasets load alike,
    positive when it is stronger in dataset 2, negative (down to ``-inf``) when stronger in
    dataset 1. ``tl.factor_markers`` tests the factors within ``factor_share_thresh`` of 0.

    Parameters
    ----------
    adata
        AnnData with an integrative NMF (``tl.inmf`` or ``tl.online_inmf``).
    key
        Its ``key_added``: reads ``varm[f"{key}_W"]``, ``varm[f"{key}_V"]`` and
        ``uns[key]["batches"]``.
    datasets
        The two datasets to compare, as named in ``uns[key]["batches"]``; by default the two of
        the factorisation (required when it has more).

    Returns
    -------
    A DataFrame with one row per factor (index ``"0"``, ``"1"``, ...) and the columns
    ``norm_1`` and ``norm_2`` (the norms of the first and second dataset's loadings) and
    ``specificity`` (percent); ``DataFrame.attrs["datasets"]`` names the two datasets.
    """
    loadings = get_inmf_loadings(adata, key)
    first, second = dataset_pair(loadings.batches, datasets)
    V = loadings.V
    norms = _dataset_specificity(loadings.W, V[:, :, first], V[:, :, second])
    frame = pd.DataFrame(
        {"norm_1": norms[0], "norm_2": norms[1], "specificity": norms[2]},
        index=pd.Index([str(f) for f in range(norms.shape[1])], name="factor"),
    )
    frame.attrs["datasets"] = [str(loadings.batches[first]), str(loadings.batches[second])]
    return frame
