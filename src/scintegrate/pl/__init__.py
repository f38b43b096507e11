"""Plots: training curves, factor heatmaps, top features, and UMAP / t-SNE of an embedding."""

from ._embedding import tsne, umap
from ._heatmaps import factor_heatmap, top_features
from ._training import training_curve

__all__ = ["factor_heatmap", "top_features", "training_curve", "tsne", "umap"]
