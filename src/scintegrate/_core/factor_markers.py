"""Shared and dataset-specific marker genes of iNMF factors (rliger ``getFactorMarkers`` and
``calcDatasetSpecificity``), arrays only.

For two datasets ``1`` and ``2`` with gene loadings ``W`` (shared) and ``V_1``, ``V_2``:

- **Dataset specificity** of factor ``f``: ``100 (1 - ‖W_f + V_1f‖ / ‖W_f + V_2f‖)``: 0 when the
  factor has the same weight in both datasets, positive when it is larger in dataset 2.
- **Max-factor groups:** in each dataset the factors are centred and divided by their standard
  deviation over that dataset's cells, and every cell goes to its largest factor among the
  factors considered.
- **Test:** for every factor, the cells of both datasets in its group are compared gene by gene
  with a two-sided Wilcoxon rank-sum test (normal approximation with tie and continuity
  corrections, as presto's ``wilcoxauc``); the log fold change is the difference of the mean
  log-normalised expressions, dataset 1 minus dataset 2.
- **Markers of factor f:** shared: the genes with the largest ``W_f + min(V_1f, V_2f)`` (the
  loading both datasets have), no test filter; dataset ``d``-specific: among the genes higher
  in ``d`` by more than the log fold change threshold, at the p-value threshold, those with the
  largest ``V_df``. Only positive loadings count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._progress import progress_bar
from ._sparse import as_csr

# genes made dense at a time for the rank-sum test
_GENE_BLOCK = 512


def dataset_specificity(W: np.ndarray, V1: np.ndarray, V2: np.ndarray) -> np.ndarray:
    """Norms ``‖W_f + V_1f‖``, ``‖W_f + V_2f‖`` and the specificity of every factor (3 x k)."""
    norm1 = np.linalg.norm(W + V1, axis=0)
    norm2 = np.linalg.norm(W + V2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        specificity = 100 * (1 - norm1 / norm2)  # -inf where only dataset 1 has the factor
    specificity[(norm1 == 0) & (norm2 == 0)] = 0.0  # a factor empty in both is not specific
    return np.vstack([norm1, norm2, specificity])


def max_factor(H: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Largest of ``factors`` for every cell after centring and scaling the columns of ``H``.

    Standard deviations with ``n - 1``; a constant column scores 0 for every cell.
    """
    sub = np.asarray(H[:, factors], dtype=np.float64)
    sub = sub - sub.mean(axis=0)
    sd = np.sqrt(np.sum(sub * sub, axis=0) / max(sub.shape[0] - 1, 1))
    scaled = np.divide(sub, sd, out=np.zeros_like(sub), where=sd > 0)
    return factors[np.argmax(scaled, axis=1)]


def log_normalize(X, target_sum: float):
    """``log1p(target_sum * x / total)`` of every cell's counts, as CSR (zero rows stay zero)."""
    X = as_csr(X, dtype=np.float64, canonical=True)  # a private copy: the input stays as it was
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    X.data *= np.repeat(scale, np.diff(X.indptr))
    np.log1p(X.data, out=X.data)
    return X


def rank_sum_test(X1, X2) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wilcoxon rank-sum p-values and mean differences (X1 - X2) per column.

    Normal approximation with tie and continuity corrections (scipy's asymptotic
    Mann-Whitney U); columns that are constant over both groups get p = 1. Sparse input is made
    dense a block of columns at a time.
    """
    from scipy.stats import mannwhitneyu  # imported late: heavy

    n_genes = X1.shape[1]
    diff = np.asarray(X1.mean(axis=0)).ravel() - np.asarray(X2.mean(axis=0)).ravel()
    pvals = np.ones(n_genes)
    for start in range(0, n_genes, _GENE_BLOCK):
        cols = slice(start, min(start + _GENE_BLOCK, n_genes))
        a, b = (
            M[:, cols].toarray() if sp.issparse(M) else np.asarray(M[:, cols]) for M in (X1, X2)
        )
        varies = np.ptp(np.vstack([a, b]), axis=0) > 0
        if varies.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                p = mannwhitneyu(
                    a[:, varies], b[:, varies], axis=0, method="asymptotic", use_continuity=True
                ).pvalue
            pvals[np.arange(cols.start, cols.stop)[varies]] = np.nan_to_num(p, nan=1.0)
    return pvals, diff


def bh_adjust(pvals: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values."""
    n = pvals.size
    if n == 0:
        return pvals.copy()
    order = np.argsort(pvals)
    ranked = pvals[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


@dataclass
class MarkerTable:
    """One marker table as columns: a row per (factor, gene)."""

    factor: np.ndarray
    gene: np.ndarray
    loading: np.ndarray
    logfc: np.ndarray
    pval: np.ndarray
    pval_adj: np.ndarray


@dataclass
class FactorMarkersResult:
    """Output of :func:`factor_markers`."""

    shared: MarkerTable
    specific: list[MarkerTable]
    """Markers of dataset 1 and of dataset 2 (log fold changes from that dataset's side)."""
    tested: np.ndarray
    """Factors whose groups were tested (at least 2 cells in each dataset)."""
    labels: list[np.ndarray]
    """Max factor of the cells of dataset 1 and of dataset 2."""


def _table(rows: list[tuple]) -> MarkerTable:
    if not rows:
        empty_int, empty = np.zeros(0, dtype=np.int64), np.zeros(0)
        return MarkerTable(empty_int, empty_int.copy(), empty, empty.copy(), empty.copy(), empty)
    columns = list(zip(*rows, strict=True))
    return MarkerTable(
        factor=np.asarray(columns[0], dtype=np.int64),
        gene=np.asarray(columns[1], dtype=np.int64),
        loading=np.asarray(columns[2], dtype=np.float64),
        logfc=np.asarray(columns[3], dtype=np.float64),
        pval=np.asarray(columns[4], dtype=np.float64),
        pval_adj=np.asarray(columns[5], dtype=np.float64),
    )


def _top(scores: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``candidates`` with the largest positive ``scores`` (ties: lower index)."""
    candidates = candidates[scores[candidates] > 0]
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order[:n]]


def _rows(f: int, chosen: np.ndarray, loading: np.ndarray, sign: float, test: tuple) -> list:
    """Table rows (factor, gene, loading, logfc, pval, pval_adj) of the ``chosen`` genes."""
    position, logfc, pvals, adjusted = test
    at = position[chosen]
    return [
        (f, g, loading[g], sign * logfc[i], pvals[i], adjusted[i])
        for g, i in zip(chosen, at, strict=True)
    ]


def factor_markers(
    W: np.ndarray,
    V1: np.ndarray,
    V2: np.ndarray,
    H1: np.ndarray,
    H2: np.ndarray,
    X1,
    X2,
    factors: np.ndarray,
    *,
    n_genes: int = 30,
    logfc_thresh: float = 1.0,
    pval_thresh: float = 0.05,
    progress: bool = False,
) -> FactorMarkersResult:
    """Shared and dataset-specific markers of each of ``factors``.

    Parameters
    ----------
    W, V1, V2
        Shared and dataset-specific gene loadings (genes x k).
    H1, H2
        Cell factors of the cells of each dataset (cells x k).
    X1, X2
        Log-normalised expression of the same cells (cells x genes, dense or CSR).
    factors
        Indices of the factors to consider (those passing the specificity filter).
    n_genes, logfc_thresh, pval_thresh
        As in :func:`scintegrate.tl.factor_markers`.
    progress
        Show a progress bar over the factors.
    """
    factors = np.asarray(factors, dtype=np.int64)
    labels = [max_factor(H, factors) for H in (H1, H2)]
    X1, X2 = (as_csr(X) if sp.issparse(X) else np.asarray(X) for X in (X1, X2))
    shared_loading = W + np.minimum(V1, V2)
    shared_rows: list[tuple] = []
    specific_rows: list[list[tuple]] = [[], []]
    tested = []
    bar = progress_bar(total=len(factors), desc="factor markers", disable=not progress)
    for f in factors:
        bar.update()
        cells = [np.flatnonzero(label == f) for label in labels]
        if min(len(c) for c in cells) < 2:
            continue  # a test needs cells of the factor in both datasets
        tested.append(int(f))
        genes = np.flatnonzero((shared_loading[:, f] > 0) | (V1[:, f] > 0) | (V2[:, f] > 0))
        pvals, logfc = rank_sum_test(X1[cells[0]][:, genes], X2[cells[1]][:, genes])
        adjusted = bh_adjust(pvals)
        # gene index -> position among the tested genes
        position = np.full(W.shape[0], -1)
        position[genes] = np.arange(genes.size)
        test = (position, logfc, pvals, adjusted)
        top_shared = _top(shared_loading[:, f], genes, n_genes)
        shared_rows += _rows(f, top_shared, shared_loading[:, f], 1.0, test)
        for d, (V, sign) in enumerate(((V1, 1.0), (V2, -1.0))):
            passing = genes[(sign * logfc > logfc_thresh) & (pvals < pval_thresh)]
            specific_rows[d] += _rows(f, _top(V[:, f], passing, n_genes), V[:, f], sign, test)
    bar.close()
    return FactorMarkersResult(
        shared=_table(shared_rows),
        specific=[_table(r) for r in specific_rows],
        tested=np.asarray(tested, dtype=np.int64),
        labels=labels,
    )
