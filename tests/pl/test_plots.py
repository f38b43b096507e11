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


def _slots(adata):
    return (set(adata.obsm), set(adata.obsp), set(adata.uns), set(adata.obs.columns))


@pytest.mark.parametrize("plot", [si.pl.umap, si.pl.tsne])
@pytest.mark.parametrize("color", ["nope", ["cell_type", "nope"]])
def test_bad_color_is_refused_before_anything_is_written(fitted, plot, color):
    # pl.umap used to raise scanpy's KeyError after writing obsm, obsp and uns entries
    before = _slots(fitted)
    with pytest.raises(ValueError, match=r"color='nope' is neither a column of adata\.obs"):
        plot(fitted, "nmf", color=color, show=False)
    assert _slots(fitted) == before


def test_umap_matches_scanpy_and_a_second_call_replaces_its_slots(fitted):
    import scanpy as sc

    si.pl.umap(fitted, "nmf", n_neighbors=10, show=False)
    # the same graph and coordinates as scanpy run on the object itself
    ref = fitted.copy()
    sc.pp.neighbors(
        ref,
        n_neighbors=10,
        use_rep="X_nmf",
        metric="cosine",
        random_state=0,
        key_added="ref",
        transformer="sklearn",
    )
    sc.tl.umap(ref, neighbors_key="ref", random_state=0, key_added="X_ref")
    np.testing.assert_array_equal(fitted.obsm["X_nmf_umap"], ref.obsm["X_ref"])
    conn = fitted.obsp["nmf_neighbors_connectivities"]
    assert abs(conn - ref.obsp["ref_connectivities"]).max() == 0
    assert fitted.uns["nmf_neighbors"]["connectivities_key"] == "nmf_neighbors_connectivities"
    assert fitted.uns["nmf_neighbors"]["params"]["n_neighbors"] == 10
    assert set(fitted.uns["X_nmf_umap"]["slots"]) == {"obsm:X_nmf_umap"}
    # genes (also through .raw and gene_symbols) are valid colours
    fitted.var["symbol"] = [f"S{name}" for name in fitted.var_names]
    fitted.raw = fitted.copy()
    gene = fitted.var_names[0]
    si.pl.umap(fitted, "nmf", color=[gene, "cell_type"], show=False)
    si.pl.umap(fitted, "nmf", color=f"S{gene}", gene_symbols="symbol", use_raw=False, show=False)
    si.pl.umap(fitted, "nmf", color=gene, use_raw=True, show=False)
    # recompute with other options replaces the graph
    si.pl.umap(fitted, "nmf", n_neighbors=5, recompute=True, show=False)
    assert fitted.uns["nmf_neighbors"]["params"]["n_neighbors"] == 5
    assert (fitted.obsp["nmf_neighbors_distances"] > 0).sum(1).max() <= 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: si.pl.training_curve(a, "etm"), "no entry 'etm'"),
        (lambda a: si.pl.training_curve(a, "nmf", y="elbo"), "'elbo' is not a column"),
        (lambda a: si.pl.factor_heatmap(a, "etm", groupby="cell_type"), "no 'X_etm'"),
        (lambda a: si.pl.factor_heatmap(a, "nmf", groupby="celltype"), "not a column"),
        (lambda a: si.pl.top_features(a, "etm"), "has none of"),
        (lambda a: si.pl.umap(a, "etm"), "no 'X_etm'"),
        (lambda a: si.pl.top_features(a, "nmf", n_top=True), "n_top must be an integer >= 1"),
        (lambda a: si.pl.factor_heatmap(a, "nmf", groupby="cell_type", vmax=-1), "vmax must be"),
        (lambda a: si.pl.umap(a, "nmf", n_neighbors=1), "n_neighbors must be an integer >= 2"),
        (lambda a: si.pl.umap(a, "nmf", random_state=-1), "random_state must be"),
        (lambda a: si.pl.tsne(a, "nmf", perplexity=0), "perplexity must be a finite number > 0"),
        (lambda a: si.pl.tsne(a, "nmf", recompute="yes"), "recompute must be True or False"),
    ],
)
def test_plot_errors(fitted, call, message):
    with pytest.raises(ValueError, match=message):
        call(fitted)


# ----------------------------------------------------------------- iNMF interpretation plots
@pytest.fixture(scope="module")
def online():
    """Online iNMF of 120 cortex cells of two libraries (W, V, delta_W history) and its
    factor markers."""
    from _public_calls import preprocessed

    adata = preprocessed()
    si.tl.online_inmf(adata, 3, batch_key="library", max_epochs=3, batch_size=30)
    si.tl.factor_markers(adata, factor_share_thresh=None, n_genes=5)
    return adata


def test_gene_loadings(online):
    W, V = online.varm["inmf_W"], online.varm["inmf_V"]
    axes = si.pl.gene_loadings(online, n_top=6, factor=1)
    assert len(axes) == 3 and all(isinstance(a, Axes) for a in axes)
    shared = W[:, 1] + V[:, 1].min(axis=1)
    widths = [p.get_width() for p in axes[0].patches]
    np.testing.assert_allclose(widths, np.sort(shared)[::-1][:6][::-1])  # largest on top
    np.testing.assert_allclose(
        sorted(p.get_width() for p in axes[2].patches), np.sort(V[:, 1, 1])[-6:]
    )
    names = [t.get_text() for t in axes[0].get_yticklabels()]
    assert names[-1] == online.var_names[np.argmax(shared)]
    # markers of tl.factor_markers in colour, other genes grey
    axes = si.pl.gene_loadings(online, n_top=8, factor=0, markers_key="inmf_markers")
    table = online.uns["inmf_markers"]["shared"]
    markers = set(table.loc[table["factor"] == 0, "gene"])
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    colored = [p.get_facecolor()[:3] != (0.6, 0.6, 0.6) for p in axes[0].patches]
    assert colored == [name in markers for name in labels] and any(colored)
    # given Axes, one dataset
    import matplotlib.pyplot as plt

    fig, given = plt.subplots(1, 2)
    out = si.pl.gene_loadings(
        online, factor=2, datasets=[online.uns["inmf"]["batches"][1]], ax=given, return_fig=True
    )
    assert out is fig and len(given[1].patches) > 0


def test_proportions(online):
    online.obs["types"] = online.obs["cell_type"].astype(str)
    ax = si.pl.proportions(online, groupby="types", batch_key="library")
    n_batches = online.obs["library"].nunique()
    tops = {}
    for patch in ax.patches:
        x = round(patch.get_x(), 6)
        tops[x] = max(tops.get(x, 0), patch.get_y() + patch.get_height())
    assert len(tops) == n_batches
    np.testing.assert_allclose(list(tops.values()), 1.0)
    ax = si.pl.proportions(
        online, groupby="types", batch_key="library", bars="group", normalize=False
    )
    assert sum(p.get_height() for p in ax.patches) == pytest.approx(online.n_obs)
    assert len({round(p.get_x(), 6) for p in ax.patches}) == online.obs["types"].nunique()


def test_delta_w(online):
    ax = si.pl.delta_w(online)
    history = online.uns["inmf"]["history"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), history["delta_W"])
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_xdata(), history["epoch"])
    si.pl.delta_w(online, x="iteration", ax=ax, color="C1", label="again")
    assert len(ax.lines) == 2


def test_factor_heatmap_hierarchical_order(fitted):
    default = si.pl.factor_heatmap(fitted, "nmf", groupby="cell_type")
    explicit = si.pl.factor_heatmap(fitted, "nmf", groupby="cell_type", order_factors=True)
    ticks = [t.get_text() for t in default.get_xticklabels()]
    assert ticks == [t.get_text() for t in explicit.get_xticklabels()]
    ax = si.pl.factor_heatmap(
        fitted,
        "nmf",
        groupby="cell_type",
        order_factors="hierarchical",
        order_groups="hierarchical",
    )
    from scipy.cluster.hierarchy import leaves_list, linkage

    values = fitted.obsm["X_nmf"] / fitted.obsm["X_nmf"].sum(1, keepdims=True)
    labels = fitted.obs["cell_type"].astype("category")
    means = np.stack([values[(labels == c).to_numpy()].mean(0) for c in labels.cat.categories])
    expected = leaves_list(linkage(means.T, method="average", optimal_ordering=True))
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(f) for f in expected]
    groups = leaves_list(linkage(means, method="average", optimal_ordering=True))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [str(labels.cat.categories[g]) for g in groups]
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (fitted.n_obs, 5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: si.pl.gene_loadings(a, "nmf", factor=0), "No integrative NMF under key='nmf'"),
        (lambda a: si.pl.gene_loadings(a, factor=3), r"factor must be a factor index in \[0, 2\]"),
        (lambda a: si.pl.gene_loadings(a, factor=0, datasets=["x"]), "'x' is not a dataset"),
        (lambda a: si.pl.gene_loadings(a, factor=0, markers_key="fm"), "holds no marker tables"),
        (lambda a: si.pl.gene_loadings(a, factor=0, ax=[None]), "ax must be 3 Axes"),
        (lambda a: si.pl.proportions(a, groupby="nope", batch_key="library"), "not a column"),
        (
            lambda a: si.pl.proportions(a, groupby="cell_type", batch_key="library", bars="x"),
            "bars='x' is not supported",
        ),
        (lambda a: si.pl.delta_w(a, "inmf_markers"), "no history with a 'delta_W' column"),
        (lambda a: si.pl.delta_w(a, x="loss"), "x='loss' is not supported"),
        (
            lambda a: si.pl.factor_heatmap(a, "inmf", groupby="cell_type", order_factors="x"),
            "order_factors must be True, False or 'hierarchical'",
        ),
        (
            lambda a: si.pl.factor_heatmap(a, "inmf", groupby="cell_type", order_groups=True),
            "order_groups=True is not supported",
        ),
    ],
)
def test_interpretation_plot_errors(online, call, message):
    with pytest.raises(ValueError, match=message):
        call(online)
