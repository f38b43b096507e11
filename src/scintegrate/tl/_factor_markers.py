"""``tl.factor_markers``: shared and dataset-specific marker genes of iNMF factors (rliger
``getFactorMarkers``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from .._core.factor_markers import MarkerTable, dataset_specificity, log_normalize
from .._core.factor_markers import factor_markers as _factor_markers
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._factors import dataset_pair, get_inmf_loadings
from .._utils._mudata import is_mudata, run_factor_markers_on_mudata
from .._utils._slots import record_params, write_slots
from .._utils._validation import (
    check_adata,
    check_finite,
    check_finite_nonnegative,
    check_key,
    check_number,
    check_positive_int,
    get_cell_factors,
    get_matrix,
    matrix_label,
    obs_batch_codes,
)


def _frame(table: MarkerTable, genes: pd.Index, dataset: str | None = None) -> pd.DataFrame:
    columns = {
        "factor": table.factor,
        "gene": np.asarray(genes[table.gene], dtype=object).astype(str),
        "loading": table.loading,
        "logfc": table.logfc,
        "pval": table.pval,
        "pval_adj": table.pval_adj,
    }
    if dataset is not None:
        columns = {"dataset": np.full(len(table.factor), dataset, dtype=object), **columns}
    frame = pd.DataFrame(columns)
    frame.index = frame.index.astype(str)  # h5ad needs string indices
    return frame


@doc_params
def factor_markers(
    adata: AnnData | MuData,
    key: str = "inmf",
    *,
    datasets: Sequence[str] | None = None,
    batch_key: str | None = None,
    layer: str | None = None,
    target_sum: float | None = 1e4,
    factor_share_thresh: float | None = 10.0,
    logfc_thresh: float = 1.0,
    pval_thresh: float = 0.05,
    n_genes: int = 30,
    key_added: str = "inmf_markers",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Shared and dataset-specific marker genes of every iNMF factor (rliger).

    rliger's ``getFactorMarkers`` for two datasets of an integrative NMF (``tl.inmf`` or
    ``tl.online_inmf``), from the shared gene loadings ``W`` and the dataset-specific ``V_1``,
    ``V_2``:

    1. **Factors:** those whose dataset specificity (:func:`~scintegrate.metrics.dataset_specificity`)
       is at most ``factor_share_thresh`` in absolute value.
    2. **Cells of a factor:** in each dataset the factors are centred and divided by their
       standard deviation over its cells, and every cell goes to its largest one (among the
       factors of step 1).
    3. **Test:** per factor, its cells of dataset 1 and of dataset 2 are compared gene by gene
       by a two-sided Wilcoxon rank-sum test (normal approximation, tie and continuity
       corrections), on log-normalised expression; the log fold change is the difference of the
       mean log expressions (natural log).
    4. **Markers:** *shared*: the ``n_genes`` genes with the largest ``W + min(V_1, V_2)`` (the
       loading both datasets have) for the factor, with their test results but no filter;
       *dataset-specific*: among the genes higher in that dataset by more than
       ``logfc_thresh`` with ``pval < pval_thresh``, the ``n_genes`` with the largest loading in
       its ``V``. Only positive loadings count, and only genes with a positive loading on the
       factor are tested.

    The cells' largest factors (step 2) are written to ``obs`` by this call rather than by a
    tool of their own: they depend on the factors this call selects, and they are the groups it
    tested. The alignment steps write their own factor clusters
    (``obs["inmf_qn_clusters"]`` of :func:`~scintegrate.pp.quantile_norm`,
    ``obs["inmf_ca_clusters"]`` of :func:`~scintegrate.pp.centroid_align`).

    Differences from rliger: rliger selects a dataset's specific markers among genes that
    differ in either direction (its filter reads both rows of presto's two-group table), here
    only among genes higher in that dataset; rliger log-transforms ``1e10 x`` (normalised
    counts ``x``), here ``target_sum x`` (scanpy's 1e4 by default; ``target_sum=1e10``
    reproduces rliger's fold changes); the p-values are the same for any ``target_sum``.

    Parameters
    ----------
    {adata}
    key
        ``key_added`` of the integrative NMF: reads ``varm[f"{key}_W"]``,
        ``varm[f"{key}_V"]``, ``obsm[f"X_{key}"]`` and ``uns[key]``.
    datasets
        The two datasets to compare, as named in ``uns[key]["batches"]``; by default the two
        datasets of the factorisation (required when it has more).
    batch_key
        ``obs`` column with every cell's dataset; by default the one the factorisation used
        (``uns[key]["params"]["batch_key"]``). For a MuData the datasets are the modalities,
        split further by this column of every modality (by default as the factorisation did).
    layer
        Layer with the expression to test (``None``: ``.X``), counts by default (see
        ``target_sum``).
    target_sum
        Normalise every cell's counts to this total, then take ``log1p``; ``None`` tests the
        matrix as it is (for already log-normalised data, e.g. after ``sc.pp.normalize_total``
        and ``sc.pp.log1p``).
    factor_share_thresh
        Largest absolute dataset specificity (in percent) of a factor to test; ``None`` tests
        every factor.
    logfc_thresh
        Smallest log fold change (natural log) of a dataset-specific marker.
    pval_thresh
        P-value threshold (unadjusted, as rliger) of a dataset-specific marker.
    n_genes
        Markers per factor and table at most.
    {key_added}
    {copy}

    Returns
    -------
    Returns ``None``, or the modified copy when ``copy=True``, and writes (replacing every slot
    that an earlier call with the same ``key_added`` wrote):

    ``adata.obs[f"{key_added}_clusters"]``
        Categorical largest factor (0-based index, as a string) of every cell of the two
        datasets, as used for the tests (step 2); missing for cells of other datasets.
    ``adata.uns[key_added]``
        ``params`` (every argument that affected the result and the package version);
        ``datasets``, the two compared datasets in order; ``specificity``, the dataset
        specificity of every factor (percent; positive where the factor is stronger in the
        second dataset); ``factors_tested``, the factors with at least 2 cells in each dataset;
        ``shared``, a DataFrame with one row per shared marker (columns ``factor``, ``gene``,
        ``loading`` (``W + min(V_1, V_2)``), ``logfc`` (first minus second dataset), ``pval``,
        ``pval_adj`` (Benjamini-Hochberg over the factor's tested genes)), ordered by factor and
        decreasing loading; ``specific``, a DataFrame of the dataset-specific markers with the
        same columns and ``dataset``, where ``loading`` is that dataset's ``V`` and ``logfc`` is
        from its side (positive).

    For a :class:`~mudata.MuData` integrated by ``tl.inmf``/``tl.online_inmf`` (``uns[key]`` on
    the container, the factors and loadings on the modalities), the cells of every modality and
    the features they share are tested exactly as in the concatenated modalities: the clusters
    go to every modality's ``obs`` and to ``mdata.obs`` (not for cells in several
    modalities), the tables to ``mdata.uns[key_added]``; ``datasets`` names modalities (or
    ``"<mod>:<value>"``) and ``layer`` a layer of every modality.

    Examples
    --------
    >>> import scintegrate as si
    >>> si.tl.inmf(adata, 20, batch_key="condition")
    >>> si.tl.factor_markers(adata)
    >>> markers = adata.uns["inmf_markers"]["specific"]
    >>> markers[markers["dataset"] == "stim"].groupby("factor").head(3)
    """
    if is_mudata(adata):
        return run_factor_markers_on_mudata(
            factor_markers,
            adata,
            key,
            batch_key=batch_key,
            layer=layer,
            copy=copy,
            key_added=key_added,
            datasets=datasets,
            target_sum=target_sum,
            factor_share_thresh=factor_share_thresh,
            logfc_thresh=logfc_thresh,
            pval_thresh=pval_thresh,
            n_genes=n_genes,
        )
    check_adata(adata)
    check_key(key_added)
    loadings = get_inmf_loadings(adata, key)
    W, V, batches = loadings.W, loadings.V, loadings.batches
    H = get_cell_factors(adata, f"X_{key}", tool="factor_markers", param="key")
    if H.shape[1] != W.shape[1]:
        raise ValueError(
            f"adata.obsm['X_{key}'] has {H.shape[1]} factors but adata.varm['{key}_W'] has "
            f"{W.shape[1]}; they come from different calls. Rerun the factorisation."
        )
    first, second = dataset_pair(batches, datasets)
    if batch_key is None:
        batch_key = loadings.record.get("params", {}).get("batch_key")
        if not isinstance(batch_key, str):
            raise ValueError(
                f"adata.uns[{key!r}] records no batch_key; pass batch_key=, the obs column with "
                "every cell's dataset."
            )
    codes, names = obs_batch_codes(adata, batch_key)
    unknown = sorted(set(names) - set(batches))
    if unknown:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has datasets the factorisation does not know "
            f"({', '.join(map(repr, unknown[:5]))}); its datasets are "
            f"{', '.join(map(repr, batches[:20]))}."
        )
    position = {name: i for i, name in enumerate(batches)}
    cell_dataset = np.array([position[n] for n in names])[codes]
    rows = [np.flatnonzero(cell_dataset == d) for d in (first, second)]
    for d, r in zip((first, second), rows, strict=True):
        if r.size == 0:
            raise ValueError(f"Dataset {batches[d]!r} has no cells in adata; compare others.")
    X = get_matrix(adata, layer)
    if target_sum is None:
        check_finite(X, what=matrix_label(layer))
    else:
        target_sum = check_number(target_sum, param="target_sum", minimum=0, exclusive_minimum=True)
        check_finite_nonnegative(
            X,
            what=matrix_label(layer),
            fix="With target_sum, the matrix must hold counts; pass target_sum=None for "
            "log-normalised values.",
        )
    if factor_share_thresh is not None:
        factor_share_thresh = check_number(
            factor_share_thresh, param="factor_share_thresh", minimum=0
        )
    logfc_thresh = check_number(logfc_thresh, param="logfc_thresh")
    pval_thresh = check_number(pval_thresh, param="pval_thresh", minimum=0, maximum=1)
    n_genes = check_positive_int(n_genes, param="n_genes")

    V1, V2 = V[:, :, first], V[:, :, second]
    specificity = dataset_specificity(W, V1, V2)[2]
    if factor_share_thresh is None:
        factors = np.arange(W.shape[1])
    else:
        factors = np.flatnonzero(np.abs(specificity) <= factor_share_thresh)
    if factors.size == 0:
        raise ValueError(
            f"No factor has a dataset specificity within +-{factor_share_thresh:g} % (smallest "
            f"{np.abs(specificity).min():.3g} %); raise factor_share_thresh or pass None."
        )
    expression = [X[r] if target_sum is None else log_normalize(X[r], target_sum) for r in rows]
    result = _factor_markers(
        W,
        V1,
        V2,
        H[rows[0]],
        H[rows[1]],
        expression[0],
        expression[1],
        factors,
        n_genes=n_genes,
        logfc_thresh=logfc_thresh,
        pval_thresh=pval_thresh,
        progress=settings.progress_bar,
    )
    logger.info(
        "factor_markers: %d of %d factors tested (%s vs %s)",
        result.tested.size,
        W.shape[1],
        batches[first],
        batches[second],
    )
    if result.tested.size == 0:
        logger.warning(
            "No factor is the largest for at least 2 cells of each dataset; the marker tables "
            "are empty."
        )
    labels = np.full(adata.n_obs, None, dtype=object)
    for r, label in zip(rows, result.labels, strict=True):
        labels[r] = label.astype(str)
    present = sorted({int(x) for label in result.labels for x in label})
    clusters = pd.Categorical(labels, categories=[str(f) for f in present])
    shared = _frame(result.shared, adata.var_names)
    specific = pd.concat(
        [
            _frame(table, adata.var_names, dataset=batches[d])
            for table, d in zip(result.specific, (first, second), strict=True)
        ],
        ignore_index=True,
    )
    specific.index = specific.index.astype(str)
    specific["dataset"] = pd.Categorical(
        specific["dataset"], categories=[batches[first], batches[second]]
    )

    adata = adata.copy() if copy else adata
    write_slots(
        adata,
        key_added,
        obs={f"{key_added}_clusters": clusters},
        uns={
            "params": record_params(
                {
                    "key": key,
                    "datasets": [str(batches[first]), str(batches[second])],
                    "batch_key": batch_key,
                    "layer": layer,
                    "target_sum": target_sum,
                    "factor_share_thresh": factor_share_thresh,
                    "logfc_thresh": logfc_thresh,
                    "pval_thresh": pval_thresh,
                    "n_genes": n_genes,
                }
            ),
            "datasets": np.asarray([batches[first], batches[second]], dtype=object),
            "specificity": specificity,
            "factors_tested": result.tested,
            "shared": shared,
            "specific": specific,
        },
    )
    return adata if copy else None
