"""The demo's UMAP layouts, computed in a process of their own while the demo trains its models.

umap-learn's import compiles pynndescent's numba kernels in every new process (21-24 s on a
quiet 2-core machine, no cache keeps them): more than the whole integration. ``scintegrate
demo`` therefore starts this file as a separate Python process first thing; it imports scanpy
and umap-learn on the other core while the demo's process loads the data and trains, then
waits for the embeddings on its standard input.

Run by path (``python _demo_umap_worker.py``), so that neither scintegrate nor torch is
imported here. The protocol is one JSON line on standard input::

    {"graphs": {"nmf": "nmf.h5ad", ...}, "output": "coords.npz", "epochs": 200,
     "random_state": 0}

Each graph file is an AnnData holding an embedding and its kNN graph in scanpy's slots, built by
the demo's process (``_utils._clustering.neighbors_graph``, which needs no compiling: that
saves this process compiling umap-learn's graph code, 12 s of CPU); the output file gets each
one's 2-D UMAP (scanpy's ``tl.umap``) under the same name. Exit status 0 on success; anything
else ends the process with a traceback on standard error.
"""

import sys


def _prepare() -> None:
    """Import scanpy and umap-learn and compile the layout's kernels on a tiny graph."""
    import warnings

    import anndata as ad
    import numpy as np
    import scanpy as sc
    from scipy import sparse

    n_cells = 60
    ring = sparse.diags([1.0, 1.0], [1, -1], shape=(n_cells, n_cells), format="csr")
    tiny = ad.AnnData(
        obsm={"X_emb": np.random.default_rng(0).random((n_cells, 2))},
        obsp={"connectivities": ring, "distances": ring},
        uns={"neighbors": _neighbors_record(2)},
    )
    tiny.obs_names = tiny.obs_names.astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.umap(tiny, maxiter=2, random_state=0)


def _neighbors_record(n_neighbors: int) -> dict:
    """``uns["neighbors"]`` as scanpy writes it, naming the graph's slots."""
    return {
        "connectivities_key": "connectivities",
        "distances_key": "distances",
        "params": {"n_neighbors": n_neighbors, "method": "umap", "use_rep": "X_emb"},
    }


def _layouts(request: dict) -> None:
    """The UMAP (scanpy's ``tl.umap``) of every graph file named in ``request``."""
    import anndata as ad
    import numpy as np
    import scanpy as sc

    coords = {}
    for name, path in request["graphs"].items():
        graph = ad.read_h5ad(path)
        sc.tl.umap(graph, maxiter=request["epochs"], random_state=request["random_state"])
        coords[name] = graph.obsm["X_umap"]
    np.savez(request["output"], **coords)


def main() -> None:
    import json

    _prepare()
    line = sys.stdin.readline()
    if not line.strip():  # the demo ended early: nothing to draw
        return
    _layouts(json.loads(line))


if __name__ == "__main__":
    # run by path: the package's own folder must not shadow top-level modules
    del sys.path[0]
    main()
