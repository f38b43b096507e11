"""Shared parameter documentation, substituted into docstrings with :func:`doc_params`."""

from __future__ import annotations

import re
from collections.abc import Callable
from inspect import cleandoc
from typing import TypeVar

F = TypeVar("F", bound=Callable)

_PARAMS = {
    "adata": """\
adata
    Annotated data matrix of shape ``n_obs`` x ``n_vars``: cells in rows, features in columns.""",
    "layer": """\
layer
    Layer holding the matrix to use instead of ``.X`` (for example ``"counts"``).""",
    "random_state": """\
random_state
    Seed of the random number generator; the same seed gives the same result.""",
    "key_added": """\
key_added
    Prefix of every slot written; see Returns.""",
    "copy": """\
copy
    Work on a copy of ``adata`` and return it, instead of writing into ``adata``.""",
    "embedding_clustering": """\
data
    An embedding (cells x dimensions), or an AnnData with the embedding in ``obsm[use_rep]``.
labels
    Known labels, one per cell, or the ``obs`` column holding them when ``data`` is an AnnData.
use_rep
    ``obsm`` key of the embedding when ``data`` is an AnnData (for example ``"X_nmf"``).
resolution
    A Leiden resolution (a number > 0), or several (:func:`ari` and :func:`nmi` report the best
    of them, :func:`cluster_agreement` each).
n_neighbors
    Neighbours per cell in the kNN graph (at least 2).
metric
    Distance of the kNN search (``"euclidean"``, ``"cosine"``, ...).
random_state
    Seed of the neighbour search and of Leiden (a numpy Generator gives one seed).""",
    "snareseq_references": """\
Chen S, Lake BB, Zhang K. High-throughput sequencing of the transcriptome and chromatin
accessibility in the same cell. *Nat Biotechnol* 37, 1452-1457 (2019).

Zhang Z, Sun H, Mariappan R, et al. scMoMaT jointly performs single cell mosaic integration and
multi-modal bio-marker detection. *Nat Commun* 14, 384 (2023).""",
    "inmf_iterations": """\
max_iter
    Maximum number of iterations (rliger runs 30).
tol
    Stop when the objective decreases by less than this fraction of its value in one iteration;
    0 runs all ``max_iter`` iterations.""",
    "plot_common": """\
ax
    Axes to draw into; a new figure is created when ``None``.
show
    Show the figure (``plt.show()``); by default only when no ``ax`` was given and the session
    is interactive.
return_fig
    Return the :class:`~matplotlib.figure.Figure` instead of the Axes.""",
}


def doc_params(func: F) -> F:
    """Fill ``{adata}``-style placeholders of a docstring from the shared parameter docs.

    Only a placeholder standing alone on its line is replaced, so that text such as
    ``obsm[f"X_{key_added}"]`` in a Returns section is left as written.
    """
    if func.__doc__:
        doc = cleandoc(func.__doc__)

        def fill(match: re.Match) -> str:
            return _PARAMS.get(match.group(1), match.group(0))

        func.__doc__ = _PLACEHOLDER.sub(fill, doc)
    return func


_PLACEHOLDER = re.compile(r"^\{(\w+)\}$", flags=re.MULTILINE)
