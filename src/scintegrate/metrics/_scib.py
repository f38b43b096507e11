"""The scIB integration metrics (Luecken et al. 2022) as computed by ``scib-metrics``.

A thin wrapper: :func:`scib` checks the inputs, builds a small AnnData holding only the
embeddings and the two ``obs`` columns, and runs ``scib_metrics.benchmark.Benchmarker`` on it,
so the scores are those of the scverse implementation and nothing of the user's object is
modified. ``scib-metrics`` (and JAX) is an optional dependency: ``pip install scintegrate[scib]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._logging import logger
from .._settings import settings
from .._utils._clustering import check_embedding
from .._utils._mudata import container_anndata, is_mudata
from .._utils._validation import check_positive_int, get_obs_labels, get_obsm

if TYPE_CHECKING:
    from mudata import MuData

# scib_metrics.benchmark field name -> (metric type, column name); the Benchmarker's own order
BIO_CONSERVATION = ("isolated_labels", "nmi_ari_cluster_labels_leiden",
                    "nmi_ari_cluster_labels_kmeans", "silhouette_label", "clisi_knn")  # fmt: skip
BATCH_CORRECTION = ("bras", "ilisi_knn", "kbet_per_label", "graph_connectivity", "pcr_comparison")
# the Benchmarker's default selection (Leiden NMI/ARI is off there: it clusters at many
# resolutions and is the slowest metric)
DEFAULT_METRICS = tuple(m for m in BIO_CONSERVATION + BATCH_CORRECTION if "leiden" not in m)
# metrics="fast": without kBET and BRAS, whose first call compiles one JAX kernel per label size
# (in a profile of a first call on SNARE-seq cortex, kBET alone took 45 s of 208 s)
FAST_METRICS = tuple(m for m in DEFAULT_METRICS if m not in ("kbet_per_label", "bras"))
AGGREGATES = ("Batch correction", "Bio conservation", "Total")


def _import_benchmark():
    try:
        from scib_metrics import benchmark
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "metrics.scib needs the optional package scib-metrics (with JAX): install it with "
            "`pip install 'scintegrate[scib]'` (or `pip install scib-metrics`)."
        ) from err
    return benchmark


def _as_list(value: str | Sequence[str], *, param: str, what: str) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{param} must be {what}.")
    return list(dict.fromkeys(values))  # duplicates once, order kept


def _labels(adata: AnnData, key: str, *, param: str) -> np.ndarray:
    values = pd.Series(get_obs_labels(adata, key, param=param))
    if values.isna().any():
        raise ValueError(
            f"adata.obs[{key!r}] has {int(values.isna().sum())} missing values; fill them "
            "(e.g. 'unknown') or drop those cells before scoring."
        )
    values = values.astype(str).to_numpy()
    if len(np.unique(values)) < 2:
        raise ValueError(
            f"adata.obs[{key!r}] ({param}) has a single value ({values[0]!r}); the scIB metrics "
            "compare at least 2 batches and 2 cell labels."
        )
    return values


def _log_normalised_pca(adata: AnnData, layer: str | None, n_comps: int) -> np.ndarray:
    """PCA of the log-normalised counts of ``layer`` (scanpy's standard workflow), on a copy."""
    import scanpy as sc

    X = adata.X if layer is None else adata.layers[layer]
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if X is None:
        raise ValueError(
            f"{where} is empty: pass layer=, the counts to compute the unintegrated PCA from, or "
            "store an unintegrated embedding in adata.obsm and name it with unintegrated=."
        )
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size and (np.any(values < 0) or np.any(values != np.round(values))):
        raise ValueError(
            f"{where} does not hold counts (negative or non-integer values), so the unintegrated "
            "PCA cannot log-normalise it: pass layer= naming the raw counts, or compute the "
            "baseline yourself (e.g. sc.pp.pca on log-normalised data) and give its obsm key as "
            "unintegrated=."
        )
    counts = AnnData(sp.csr_matrix(X, dtype=np.float32, copy=True))
    sc.pp.normalize_total(counts, target_sum=1e4)
    sc.pp.log1p(counts)
    n_comps = min(n_comps, min(counts.shape) - 1)
    sc.pp.pca(counts, n_comps=n_comps, random_state=0)
    return counts.obsm["X_pca"]


def scib(
    adata: AnnData | MuData,
    embeddings: str | Sequence[str],
    *,
    batch_key: str,
    labels_key: str,
    unintegrated: str | None = "X_pca",
    layer: str | None = None,
    n_comps: int = 50,
    metrics: Sequence[str] | str | None = None,
    min_max_scale: bool = False,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """The scIB integration metrics of several embeddings, computed by ``scib-metrics``.

    Runs :class:`scib_metrics.benchmark.Benchmarker` (Luecken et al. 2022, as implemented by
    the scverse package ``scib-metrics``) on the embeddings ``adata.obsm[key]``: batch
    correction (BRAS, the batch silhouette corrected for nested batch effects; iLISI; kBET per
    label; graph connectivity; PCR comparison) and conservation of the cell labels (isolated
    labels; NMI and ARI of k-means clusters, and of Leiden clusters on request; label
    silhouette; cLISI), each scaled to [0, 1] with higher better, and their aggregates as the
    Benchmarker computes them: the mean of each group and ``Total = 0.4 batch + 0.6 bio``.
    Neighbours are those of ``scib_metrics.nearest_neighbors.pynndescent`` (90 of them, seed 0;
    kBET uses the first 50, graph connectivity and Leiden the first 15). Nothing is written to
    ``adata``. Needs the optional dependency: ``pip install 'scintegrate[scib]'``.

    The unintegrated embedding is scored as one more row and is the reference of PCR
    comparison, which measures how much less the batch explains of the embedding's variance
    than of the unintegrated one (so the unintegrated row scores 0 there).

    The first call in a process compiles the JAX kernels of the metrics (tens of seconds on a
    laptop CPU, more per new embedding width); the next calls are faster.

    Parameters
    ----------
    adata
        Annotated data with the embeddings in ``obsm`` and the batch and label columns in
        ``obs``; or a MuData, whose joint embeddings (``mdata.obsm``, e.g. ``"X_mmdma"``,
        ``"X_scjmt"``) are scored over the container's cells, with ``batch_key="modality"``
        (each cell's modality) and a ``labels_key`` column of ``mdata.obs`` or of the
        modalities (``"cell_type"`` is gathered from every modality that has it, as in
        :func:`~scintegrate.pl.umap`). Its unintegrated embedding must be given
        (``unintegrated=`` an ``obsm`` key, or ``None``): a MuData has no joint counts to
        compute a PCA from.
    embeddings
        ``obsm`` key(s) of the embeddings to score, e.g. ``["X_inmf_qn", "X_etm"]``.
    batch_key
        ``obs`` column of the batches (datasets, libraries, conditions): at least 2 values.
    labels_key
        ``obs`` column of the cell types (known labels): at least 2 values, no missing values.
    unintegrated
        ``obsm`` key of an unintegrated embedding, scored as a row of the table and used by PCR
        comparison; ``None`` for neither (PCR comparison is then left out). When the key is
        ``"X_pca"`` (the default) and not in ``adata.obsm``, it is computed on the fly and not
        stored: ``n_comps`` principal components of ``layer`` (raw counts) normalised to 10,000
        per cell and log-transformed, the scanpy workflow.
    layer
        Layer of raw counts from which the unintegrated PCA is computed (default ``adata.X``).
        Only used when that PCA is computed.
    n_comps
        Principal components of the unintegrated PCA, when it is computed.
    metrics
        Names of the ``scib_metrics`` functions to run (e.g. ``["silhouette_label",
        "ilisi_knn", "graph_connectivity"]``), among ``isolated_labels``,
        ``nmi_ari_cluster_labels_leiden``, ``nmi_ari_cluster_labels_kmeans``,
        ``silhouette_label``, ``clisi_knn``, ``bras``, ``ilisi_knn``, ``kbet_per_label``,
        ``graph_connectivity``, ``pcr_comparison``; by default the Benchmarker's selection
        (all but Leiden NMI/ARI). ``"fast"``: that selection without ``kbet_per_label`` and
        ``bras``, the slowest to compile on a first call (one JAX kernel per label size).
    min_max_scale
        Scale every metric to [0, 1] across the scored embeddings before aggregating, as the
        Benchmarker optionally does (useful for ranking; the values then depend on the other
        rows).
    n_jobs
        Threads of the nearest-neighbour search.

    Returns
    -------
    A DataFrame with one row per embedding (index ``embedding``: the ``obsm`` keys, the
    unintegrated one last) and one float column per metric, named as in ``scib-metrics``
    (``"Isolated labels"``, ``"KMeans NMI"``, ``"KMeans ARI"``, ``"Silhouette label"``,
    ``"cLISI"``, ``"BRAS"``, ``"iLISI"``, ``"KBET"``, ``"Graph connectivity"``,
    ``"PCR comparison"``, ``"Leiden NMI"``, ``"Leiden ARI"``), then the aggregate scores
    ``"Batch correction"``, ``"Bio conservation"`` and ``"Total"`` (only those whose group was
    computed). ``frame.attrs["metric_type"]`` maps every column to ``"Bio conservation"``,
    ``"Batch correction"`` or ``"Aggregate score"``.

    References
    ----------
    Luecken, M.D. et al. Benchmarking atlas-level data integration in single-cell genomics.
    Nat Methods 19, 41-50 (2022). doi:10.1038/s41592-021-01336-8

    Examples
    --------
    >>> import scintegrate as si
    >>> table = si.metrics.scib(
    ...     adata, ["X_inmf_qn", "X_etm"], batch_key="library", labels_key="cell_type"
    ... )
    >>> table[["Batch correction", "Bio conservation", "Total"]]
    """
    if is_mudata(adata):
        if unintegrated == "X_pca" and "X_pca" not in adata.obsm:
            raise ValueError(
                "A MuData has no joint count matrix to compute the unintegrated PCA from: pass "
                "unintegrated= an obsm key of the container (an embedding of all its cells "
                "before integration) or unintegrated=None."
            )
        if layer is not None:
            raise ValueError("layer= is for an AnnData's counts; a MuData has no joint layers.")
        # the container's cells: obsm of the container, batch and labels gathered from the
        # modalities as pl.umap does ("modality" is each cell's modality)
        adata = container_anndata(adata, [batch_key, labels_key])
    elif not isinstance(adata, AnnData):
        raise TypeError(f"adata must be an AnnData or a MuData, got {type(adata).__name__}.")
    keys = _as_list(embeddings, param="embeddings", what="an obsm key or a non-empty list of them")
    batches = _labels(adata, batch_key, param="batch_key")
    labels = _labels(adata, labels_key, param="labels_key")
    n_comps = check_positive_int(n_comps, param="n_comps", minimum=2)
    n_jobs = check_positive_int(n_jobs, param="n_jobs")
    preset = metrics is None or (isinstance(metrics, str) and metrics == "fast")
    if preset:
        chosen = list(DEFAULT_METRICS if metrics is None else FAST_METRICS)
    else:
        chosen = _as_list(
            metrics, param="metrics", what='"fast", a metric name or a non-empty list of them'
        )
    known = BIO_CONSERVATION + BATCH_CORRECTION
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise ValueError(
            f"Unknown scIB metric(s) {unknown}; choose among {list(known)}, or give "
            'metrics="fast" (all but kBET and BRAS) or None (the default selection).'
        )
    if unintegrated is None and "pcr_comparison" in chosen:
        if not preset:
            raise ValueError(
                "pcr_comparison compares with the unintegrated embedding: give unintegrated= "
                "(an obsm key, or 'X_pca' to compute it) or leave pcr_comparison out."
            )
        chosen.remove("pcr_comparison")
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"layer={layer!r} is not in adata.layers (keys: {list(adata.layers)}).")

    obsm = {}
    for key in keys:
        obsm[key] = check_embedding(
            get_obsm(adata, key, param="embeddings"), what=f"adata.obsm[{key!r}]"
        )
    if unintegrated is not None:
        if unintegrated in adata.obsm:
            base = check_embedding(adata.obsm[unintegrated], what=f"adata.obsm[{unintegrated!r}]")
        elif unintegrated == "X_pca":
            logger.info("metrics.scib: computing the unintegrated PCA (%d components)", n_comps)
            base = _log_normalised_pca(adata, layer, n_comps)
        else:
            get_obsm(  # raises, listing the keys
                adata,
                unintegrated,
                param="unintegrated",
                advice="Pass None, or 'X_pca' to compute a PCA of the log-normalised counts.",
            )
        obsm.pop(unintegrated, None)
        obsm[unintegrated] = base
    benchmark = _import_benchmark()

    # a private AnnData: the Benchmarker reads obs/obsm only (it would run sc.tl.pca on adata
    # itself without a pre-integrated key), so the user's object is never touched
    data = AnnData(
        obs=pd.DataFrame(
            {"batch": pd.Categorical(batches), "labels": pd.Categorical(labels)},
            index=adata.obs_names.copy(),
        ),
        obsm={k: np.asarray(v, dtype=np.float32) for k, v in obsm.items()},
    )
    bio = {m: m in chosen for m in BIO_CONSERVATION}
    batch = {m: m in chosen for m in BATCH_CORRECTION}
    bench = benchmark.Benchmarker(
        data,
        batch_key="batch",
        label_key="labels",
        embedding_obsm_keys=list(obsm),
        bio_conservation_metrics=benchmark.BioConservation(**bio) if any(bio.values()) else None,
        batch_correction_metrics=benchmark.BatchCorrection(**batch)
        if any(batch.values())
        else None,
        pre_integrated_embedding_obsm_key=unintegrated if unintegrated is not None else keys[0],
        n_jobs=n_jobs,
        progress_bar=settings.progress_bar,
    )
    bench.benchmark()
    raw = bench.get_results(min_max_scale=min_max_scale)
    metric_type = raw.loc["Metric Type"].astype(str).to_dict()
    table = raw.drop(index="Metric Type").astype(np.float64)
    table.index = pd.Index(list(table.index), name="embedding")
    table.columns.name = None
    table.attrs["metric_type"] = metric_type
    return table
