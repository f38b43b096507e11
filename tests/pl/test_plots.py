"""Plots return their Axes / Figure and explain missing inputs."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import scintegrate as si


@pytest.fixture
def fitted(cortex_small):
    si.tl.nmf(cortex_small, 5, objective="kl", max_iter=10, labels_key="cell_type", track_every=5)
    return cortex_small


def test_training_curve(fitted):
    ax = si.pl.training_curve(fitted, "nmf", y="poisson_loglik")
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 1 and len(ax.figure.axes) == 2  # twin axis for ARI
    np.testing.assert_allclose(
        ax.lines[0].get_ydata(), fitted.uns["nmf"]["history"]["poisson_loglik"]
    )
    fig = si.pl.training_curve(fitted, "nmf", y2=None, return_fig=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    # overlay two runs on one axes
    si.tl.nmf(fitted, 5, max_iter=10, labels_key="cell_type", track_every=5, key_added="sse")
    ax = si.pl.training_curve(fitted, "nmf", y="ari", y2=None)
    si.pl.training_curve(fitted, "sse", y="ari", y2=None, ax=ax, color="C1")
    assert len(ax.lines) == 2


def test_factor_heatmap_and_top_features(fitted):
    ax = si.pl.factor_heatmap(fitted, "nmf", groupby="cell_type")
    assert isinstance(ax, Axes)
    image = ax.images[0].get_array()
    assert image.shape == (fitted.n_obs, 5)
    np.testing.assert_allclose(np.asarray(image).sum(1), 1.0)  # rows normalised to sum 1
    ax = si.pl.top_features(fitted, "nmf", n_top=3, vmax=0.2)
    assert isinstance(ax, Axes)
    shown = ax.images[0].get_array().shape[0]
    assert 3 <= shown <= 15 and ax.images[0].get_clim()[1] == 0.2


def test_umap_and_tsne(fitted):
    fig = si.pl.umap(fitted, "nmf", color="cell_type", return_fig=True, show=False)
    assert isinstance(fig, Figure)
    assert fitted.obsm["X_nmf_umap"].shape == (fitted.n_obs, 2)
    ax = si.pl.tsne(fitted, "nmf", color="cell_type", show=False)
    assert ax is not None and fitted.obsm["X_nmf_tsne"].shape == (fitted.n_obs, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: si.pl.training_curve(a, "etm"), "no entry 'etm'"),
        (lambda a: si.pl.training_curve(a, "nmf", y="elbo"), "'elbo' is not a column"),
        (lambda a: si.pl.factor_heatmap(a, "etm", groupby="cell_type"), "no 'X_etm'"),
        (lambda a: si.pl.factor_heatmap(a, "nmf", groupby="celltype"), "not a column"),
        (lambda a: si.pl.top_features(a, "etm"), "has none of"),
        (lambda a: si.pl.umap(a, "etm"), "no 'X_etm'"),
    ],
)
def test_plot_errors(fitted, call, message):
    with pytest.raises(ValueError, match=message):
        call(fitted)
