"""Plots: training curves and the convergence of W, factor heatmaps, top features, the gene
loadings of iNMF factors, cluster composition per dataset, and UMAP / t-SNE of an embedding."""

from ._composition import proportions
from ._embedding import tsne, umap
from ._heatmaps import factor_heatmap, top_features
from ._loadings import gene_loadings
from ._training import delta_w, training_curve

__all__ = [
    "delta_w",
    "factor_heatmap",
    "gene_loadings",
    "proportions",
    "top_features",
    "training_curve",
    "tsne",
    "umap",
]
