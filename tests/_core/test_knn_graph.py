"""The kNN graph built without umap-learn equals scanpy's (umap-learn's fuzzy weights)."""

from __future__ import annotations

import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

from scintegrate._core.knn_graph import exact_knn, fuzzy_connectivities, knn_distances_matrix
from scintegrate._utils._clustering import neighbors_graph


def _points(seed: int = 0, *, duplicates: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = np.concatenate(
        [rng.normal(size=(300, 8)), rng.normal(3, 0.5, size=(200, 8)), rng.normal(size=(5, 8)) * 9]
    ).astype(np.float32)
    if duplicates:  # which copy of a cell is a neighbour is then a tie, broken differently
        points[7] = points[8]
        points[20:23] = points[19]
    return points


def _scanpy_graph(points: np.ndarray, n_neighbors: int) -> ad.AnnData:
    """scanpy's own graph: exact neighbours, umap-learn's fuzzy_simplicial_set."""
    reference = ad.AnnData(obsm={"X_e": points})
    reference.obs_names = reference.obs_names.astype(str)
    sc.pp.neighbors(reference, n_neighbors=n_neighbors, use_rep="X_e", transformer="sklearn")
    return reference


@pytest.mark.parametrize("n_neighbors", [2, 15, 40])
def test_graph_equals_scanpy(n_neighbors):
    points = _points()
    reference = _scanpy_graph(points, n_neighbors)
    indices, distances = exact_knn(points, n_neighbors)
    ours = fuzzy_connectivities(indices, distances)
    theirs = reference.obsp["connectivities"]
    assert ours.dtype == np.float32 and ours.format == "csr"
    assert abs(ours - theirs).max() < 1e-5
    assert (ours != 0).sum() == (theirs != 0).sum()
    assert np.allclose(
        knn_distances_matrix(indices, distances).toarray(),
        reference.obsp["distances"].toarray(),
        atol=1e-5,
    )


def test_weights_equal_umap_learn():
    """The membership strengths and union against umap-learn's function itself."""
    from umap.umap_ import fuzzy_simplicial_set

    points = _points(1)
    indices, distances = exact_knn(points, 10)
    theirs, _, _ = fuzzy_simplicial_set(
        sparse.coo_matrix((len(points), 1)),
        10,
        None,
        None,
        knn_indices=indices,
        knn_dists=distances,
    )
    ours = fuzzy_connectivities(indices, distances)
    assert abs(ours - theirs.tocsr()).max() < 1e-5


def test_self_first_with_duplicates():
    points = _points(duplicates=True)
    indices, distances = exact_knn(points, 6)
    assert (indices[:, 0] == np.arange(len(points))).all()
    assert (distances[:, 0] == 0).all()
    assert (np.diff(distances, axis=1) >= 0).all()
    # every row names distinct cells, and never itself after column 0
    assert all(len(set(row)) == 6 for row in indices)


def test_neighbors_graph_is_read_by_scanpy():
    """The slots are scanpy's: sc.tl.leiden reads the graph and gives scanpy's clusters."""
    points = _points()
    ours = neighbors_graph(points, n_neighbors=15, metric="euclidean", random_state=0)
    reference = _scanpy_graph(points, 15)
    for graph in (ours, reference):
        sc.tl.leiden(graph, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    assert (ours.obs["leiden"].to_numpy() == reference.obs["leiden"].to_numpy()).all()
    assert ours.uns["neighbors"]["params"]["method"] == "umap"
    keyed = neighbors_graph(
        points, n_neighbors=5, metric="euclidean", random_state=0, key_added="g"
    )
    assert {"g_connectivities", "g_distances"} <= set(keyed.obsp)
    assert keyed.uns["g"]["connectivities_key"] == "g_connectivities"


def test_clusters_do_not_import_umap_learn():
    """Leiden clusters in a new process: umap-learn (20-40 s of compiling) is not imported."""
    code = (
        "import sys, numpy as np\n"
        "from scintegrate import metrics\n"
        "x = np.random.default_rng(0).normal(size=(200, 5))\n"
        "metrics.leiden_clusters(x, resolution=1.0)\n"
        "assert 'umap' not in sys.modules and 'pynndescent' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
