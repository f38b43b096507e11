"""The demo's UMAP layouts, computed in a process of their own while the demo trains its models.

umap-learn's import compiles pynndescent's numba kernels in every new process (21-24 s on a
quiet 2-core machine, no cache keeps them): more than the whole integration. ``scintegrate
demo`` therefore starts this file as a separate Python process first thing; it imports scanpy
and umap-learn on the other core while the demo's process loads the data and trains, then
waits for the embeddings on its standard input.

Run by path (``python _demo_umap_worker.py``), so that neither scintegrate nor torch is
imported here. The protocol is one JSON line on standard input::

    {"input": "embeddings.npz", "output": "coords.npz", "n_neighbors": 15, "epochs": 200,
     "random_state": 0}

Every array of the input file is a cells x dimensions embedding; the output file gets its 2-D
UMAP under the same name (scanpy's ``pp.neighbors`` with exact neighbours and ``tl.umap``).
Exit status 0 on success; anything else ends the process with a traceback on standard error.
"""

import sys


def _prepare() -> None:
    """Import scanpy and umap-learn and compile the layout's kernels on a few points."""
    import warnings

    import anndata as ad
    import numpy as np
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = ad.AnnData(obsm={"X_tiny": np.random.default_rng(0).random((60, 2))})
        tiny.obs_names = tiny.obs_names.astype(str)
        sc.pp.neighbors(
            tiny, n_neighbors=5, use_rep="X_tiny", transformer="sklearn", random_state=0
        )
        sc.tl.umap(tiny, maxiter=2, random_state=0)


def _layouts(request: dict) -> None:
    import anndata as ad
    import numpy as np
    import scanpy as sc

    coords = {}
    with np.load(request["input"]) as embeddings:
        for name in embeddings.files:
            embedding = np.asarray(embeddings[name], dtype=np.float32)
            drawn = ad.AnnData(obsm={"X_emb": embedding})
            drawn.obs_names = drawn.obs_names.astype(str)
            sc.pp.neighbors(
                drawn,
                n_neighbors=request["n_neighbors"],
                use_rep="X_emb",
                transformer="sklearn",
                random_state=request["random_state"],
            )
            sc.tl.umap(drawn, maxiter=request["epochs"], random_state=request["random_state"])
            coords[name] = drawn.obsm["X_umap"]
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
