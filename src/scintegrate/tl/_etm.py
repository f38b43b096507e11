"""``tl.etm``: the single-cell embedded topic model (scETM), with a reusable trained model."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._backed import is_writable, write_slots_to_file
from .._utils._device import resolve_device
from .._utils._etm_inputs import count_totals, is_path_like, open_counts, reads_from_store
from .._utils._random import get_rng
from .._utils._slots import history_frame, record_params, recorded_slots, write_slots
from .._utils._tracking import label_tracker
from .._utils._validation import (
    check_adata,
    check_finite_nonnegative,
    check_key,
    check_number,
    check_positive_int,
    get_matrix,
    get_obs_labels,
    matrix_label,
    obs_batch_codes,
)

if TYPE_CHECKING:  # torch is imported only when a model is trained or loaded
    from .._core.etm import ETMModule

_FORMAT = "scintegrate.etm"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _check_counts(X, where: str) -> None:
    """Raw counts: finite, non-negative, integer, and no cell without counts."""
    check_finite_nonnegative(
        X,
        what=where,
        fix="scETM models raw counts: pass the unnormalised counts (e.g. layer='counts').",
    )
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size and not np.array_equal(values, np.round(values)):
        raise ValueError(
            f"{where} contains non-integer values; scETM's multinomial likelihood needs raw "
            "counts. Pass the unnormalised counts (e.g. layer='counts'), not normalised or "
            "log-transformed data."
        )
    library = np.asarray(X.sum(axis=1)).ravel()
    empty = int(np.count_nonzero(library == 0))
    if empty:
        raise ValueError(
            f"{where} has {empty} cells with zero counts; their topic mixture is undefined. "
            "Remove them first, e.g. sc.pp.filter_cells(adata, min_counts=1)."
        )


def _check_input(adata) -> AnnData:
    """An AnnData (in memory or backed) with cells and genes; other types are refused."""
    if not isinstance(adata, AnnData):
        raise TypeError(
            f"adata must be an AnnData object (in memory or backed) or the path of an h5ad file, "
            f"got {type(adata).__name__}. Wrap arrays with anndata.AnnData(X)."
        )
    return check_adata(adata)


def _fixed_embedding(adata: AnnData, fixed_gene_emb: str | None) -> np.ndarray | None:
    if fixed_gene_emb is None:
        return None
    if not isinstance(fixed_gene_emb, str) or fixed_gene_emb not in adata.varm:
        keys = ", ".join(map(repr, adata.varm.keys())) or "none"
        raise ValueError(
            f"fixed_gene_emb={fixed_gene_emb!r} is not a key of adata.varm (keys: {keys}). "
            "Store the fixed gene embeddings (genes x dimensions, e.g. pathway membership) in "
            "adata.varm and pass its key."
        )
    emb = adata.varm[fixed_gene_emb]
    emb = emb.toarray() if sp.issparse(emb) else np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[1] == 0 or not np.isfinite(emb).all():
        raise ValueError(
            f"adata.varm[{fixed_gene_emb!r}] must be a finite genes x dimensions matrix with at "
            f"least one column, got shape {emb.shape}."
        )
    return emb.T


# --------------------------------------------------------------------------------------------
# the trained model
# --------------------------------------------------------------------------------------------


class ETMModel:
    """A trained scETM that embeds new cells; returned by ``tl.etm(..., return_model=True)``.

    Speaks the words of every model of the package: :meth:`transform` embeds cells,
    :meth:`save` and :meth:`load` write and read one file, :attr:`n_components`,
    :attr:`var_names` and :attr:`history` describe it.

    Attributes
    ----------
    module
        The torch module (encoder and decoder).
    var_names
        Genes of the training data, in the model's order (a :class:`pandas.Index`).
    batches
        Batch categories seen in training (empty without ``batch_key``).
    batch_key, layer
        Where the batches and counts were read in training (and are read by default here).
    params
        The training parameters, as in ``uns[key_added]["params"]``.
    """

    def __init__(
        self,
        module: ETMModule,
        var_names: Sequence[str],
        batches: Sequence[str],
        *,
        batch_key: str | None,
        layer: str | None,
        params: dict[str, Any],
        config: dict[str, Any],
        history: dict[str, list] | None = None,
    ):
        self.module = module
        self.var_names = pd.Index([str(v) for v in var_names])
        self.batches = [str(b) for b in batches]
        self.batch_key = batch_key
        self.layer = layer
        self.params = params
        self._config = config
        self._history = {} if history is None else {k: list(v) for k, v in history.items()}

    def __repr__(self) -> str:
        return (
            f"ETMModel({self.n_components} topics, {len(self.var_names)} genes, "
            f"{len(self.batches)} batches, device={self.device!r})"
        )

    @property
    def device(self) -> str:
        return str(next(self.module.parameters()).device)

    @property
    def n_components(self) -> int:
        """Number of topics K."""
        return self._config["n_topics"]

    @property
    def n_topics(self) -> int:
        """Deprecated alias of :attr:`n_components`."""
        _deprecated("n_topics", "n_components")
        return self.n_components

    @property
    def history(self) -> pd.DataFrame:
        """Training history, one row per epoch, as in ``uns[key_added]["history"]``."""
        return history_frame(self._history)

    def _genes(self, adata: AnnData) -> np.ndarray:
        """Columns of ``adata`` in the model's gene order."""
        index = pd.Index(adata.var_names.astype(str))
        if index.equals(self.var_names):
            return np.arange(adata.n_vars)
        if not index.is_unique:
            raise ValueError("adata.var_names are not unique; call adata.var_names_make_unique().")
        positions = index.get_indexer(self.var_names)
        missing = int(np.count_nonzero(positions < 0))
        if missing:
            example = ", ".join(self.var_names[positions < 0][:5])
            raise ValueError(
                f"adata lacks {missing} of the model's {len(self.var_names)} genes (e.g. "
                f"{example}); the encoder needs the same genes as in training."
            )
        return positions

    def transform(
        self,
        data: AnnData | str | Path,
        *,
        layer: str | None = "training",
        batch_key: str | None = "training",
        return_delta: bool = False,
        batch_size: int = 10_000,
    ) -> np.ndarray:
        """Topic mixtures ``theta`` (cells x topics) of the cells of ``data``, without training.

        The encoder is run in evaluation mode (``theta = softmax(mu)``, no sampling), so the
        result is deterministic and, for the training cells, equals ``obsm["X_etm"]``.

        Parameters
        ----------
        data
            The cells to embed, with raw counts for (at least) the training genes, matched by
            name: an AnnData in memory, backed or with a Dask matrix (then read in chunks of
            ``batch_size`` cells), or an h5ad or zarr path or a zarr group (read in chunks).
        layer
            Where the counts are; ``"training"`` uses the layer of training.
        batch_key
            ``obs`` column of the batches (``"training"``: the training ``batch_key``). The
            encoder does not use batches, but a batch the model has not seen is refused: its
            batch-specific gene intercept does not exist.
        return_delta
            Return the unnormalised topic mixture ``mu`` instead of ``theta = softmax(mu)``.
        batch_size
            Cells encoded at a time.
        """
        from .._core.etm import CSRData, SourceData

        layer = self.layer if layer == "training" else layer
        batch_key = self.batch_key if batch_key == "training" else batch_key
        batch_size = check_positive_int(batch_size, param="batch_size")
        path_input = is_path_like(data)
        if not path_input:
            _check_input(data)
        on_disk = reads_from_store(data, layer)
        counts = open_counts(data, layer) if on_disk else None
        try:
            adata = data if not path_input else counts.results_anndata()
            if batch_key is not None:
                values = get_obs_labels(adata, batch_key, param="batch_key").astype(str)
                unseen = sorted(str(v) for v in set(values) - set(self.batches))
                if unseen:
                    raise ValueError(
                        f"adata.obs[{batch_key!r}] has batches the model was not trained on: "
                        f"{', '.join(map(repr, unseen[:5]))} (trained on "
                        f"{', '.join(map(repr, self.batches[:10]))}). Train a model that "
                        "includes them, or pass batch_key=None to embed without the check."
                    )
            genes = self._genes(adata)
            dtype = next(self.module.parameters()).dtype
            if on_disk:  # read and embedded in chunks of batch_size cells
                source = counts.source
                identity = len(genes) == source.n_columns and np.array_equal(
                    genes, np.arange(len(genes))
                )
                source.genes = None if identity else genes
                library = count_totals(source, counts.where, None if identity else genes)
                cells = SourceData(source, library, None, self.device, dtype)
            else:
                X = get_matrix(adata, layer)
                X = X[:, genes]
                _check_counts(X, matrix_label(layer))
                cells = CSRData(X, None, self.device, dtype)
            theta, mu = self.module.embed(cells, chunk_size=batch_size)
        finally:
            if counts is not None:
                counts.close()
        return mu if return_delta else theta

    def get_latent_representation(
        self,
        adata: AnnData,
        *,
        layer: str | None = "training",
        batch_key: str | None = "training",
        return_delta: bool = False,
        batch_size: int = 10_000,
    ) -> np.ndarray:
        """Deprecated alias of :meth:`transform` (same arguments, same result)."""
        _deprecated("get_latent_representation()", "transform()")
        return self.transform(
            adata,
            layer=layer,
            batch_key=batch_key,
            return_delta=return_delta,
            batch_size=batch_size,
        )

    def save(self, path: str | Path) -> None:
        """Write the model (weights, genes, batches, parameters, history) to one file.

        The file (torch format) records the package version; :meth:`load` reads it back.
        """
        import torch

        from .._version import __version__

        path = Path(path)
        if not path.parent.is_dir():
            raise ValueError(
                f"Cannot write the model to {str(path)!r}: the folder {str(path.parent)!r} does "
                "not exist."
            )
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        content = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "scintegrate_version": __version__,
            "config": self._config,
            "state_dict": state,
            "var_names": list(self.var_names),
            "batches": list(self.batches),
            "batch_key": self.batch_key,
            "layer": self.layer,
            "params": _plain(self.params),
            "history": _plain(self._history),
        }
        try:
            torch.save(content, path)
        except (OSError, RuntimeError) as error:
            raise ValueError(f"Cannot write the model to {str(path)!r}: {error}.") from None

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> ETMModel:
        """Read a model written by :meth:`save` onto ``device``.

        A file that is not such a model, or is damaged, gives a ValueError.

        Parameters
        ----------
        path
            The file written by :meth:`save`.
        device
            Where the model computes: ``"auto"`` (CUDA if present, else the CPU), ``"cpu"`` or
            ``"cuda"``.
        """
        import torch

        from .._core.etm import ETMModule

        device = resolve_device(device)
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for a file that is not a model
            raise ValueError(f"Cannot read an scETM model from {str(path)!r}: {error}") from None
        if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} is not an scETM model written by ETMModel.save.")
        version = saved.get("format_version")
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise ValueError(
                f"{str(path)!r} holds an scETM model of format version {version!r}, written by "
                f"scintegrate {saved.get('scintegrate_version', 'unknown')}; this version reads "
                f"format version {_FORMAT_VERSION} and older. Upgrade scintegrate to read it."
            )
        try:
            config = saved["config"]
            state = saved["state_dict"]
            fixed = state.get("rho_fixed")
            module = ETMModule(
                config["n_genes"],
                config["n_topics"],
                config["n_batches"],
                emb_dim=config["emb_dim"],
                hidden_sizes=config["hidden_sizes"],
                dropout=config["dropout"],
                fixed_emb=None if fixed is None else fixed.numpy(),
                dtype=state["alpha"].dtype,
            )
            module.load_state_dict(state)
            model = cls(
                module,
                saved["var_names"],
                saved["batches"],
                batch_key=saved["batch_key"],
                layer=saved["layer"],
                params=saved["params"],
                config=config,
                history=saved.get("history"),  # files written before it was saved lack it
            )
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
            raise ValueError(
                f"The scETM model in {str(path)!r} is incomplete or damaged ({error})."
            ) from None
        if len(model.var_names) != config["n_genes"]:
            raise ValueError(f"The scETM model in {str(path)!r} is inconsistent (genes).")
        module.to(device).eval()
        return model


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"ETMModel.{old} is deprecated and will be removed; use ETMModel.{new} instead.",
        FutureWarning,
        stacklevel=3,
    )


def _plain(value):
    """Plain Python values (torch.load(weights_only=True) refuses numpy objects)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------
# tl.etm
# --------------------------------------------------------------------------------------------


@doc_params
def etm(
    adata: AnnData | str | Path,
    n_topics: int = 50,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    emb_dim: int = 400,
    hidden_sizes: Sequence[int] = (128,),
    dropout: float = 0.1,
    fixed_gene_emb: str | None = None,
    max_epochs: int = 400,
    batch_size: int = 2000,
    lr: float = 5e-3,
    lr_decay: float = 6e-5,
    kl_weight: float = 1.0,
    kl_warmup: float = 1 / 3,
    grad_clip: float | None = 50.0,
    chunk_size: int = 256,
    shuffle_buffer: int = 16_384,
    early_stopping_patience: int | None = None,
    labels_key: str | None = None,
    eval_every: int = 10,
    resolution: float = 1.0,
    device: str = "auto",
    random_state: int | np.random.Generator | None = 0,
    return_model: bool = False,
    key_added: str = "etm",
    copy: bool = False,
) -> AnnData | ETMModel | tuple[AnnData, ETMModel] | None:
    """Single-cell embedded topic model (scETM; Zhao et al., Nat Commun 2021).

    A variational autoencoder whose decoder is a topic model in embedding space. The encoder (an
    MLP with batch norm and dropout) maps a cell's unit-sum normalised counts to a logistic-normal
    topic mixture ``theta = softmax(delta)``, ``delta ~ N(mu, sigma²)``. The linear decoder
    gives gene probabilities ``softmax(theta alpha rho + lambda_b)``, with topic embeddings
    ``alpha`` (topics x L), gene embeddings ``rho`` (L x genes) and, with ``batch_key``, a
    batch-specific gene intercept ``lambda_b`` that absorbs batch effects. The raw counts are
    scored by their multinomial likelihood.

    The loss is the negative ELBO per cell, the reconstruction NLL plus ``w`` times the KL
    divergence of the posterior from N(0, I); ``w`` rises linearly from 0 to ``kl_weight`` over
    the first ``kl_warmup`` of the epochs. **Default ``kl_weight=1``**: the actual ELBO on raw
    counts, as in the original ETM. scETM instead scores each cell's counts divided by its depth
    and caps the KL weight at 1e-7, which turns the KL off and makes the model an autoencoder
    with a softmax bottleneck; on our depth-weighted scale a weight of 1 corresponds to about
    ``1 / mean depth`` on scETM's (~1e-3 for the SNARE-seq cortex), still a small regulariser
    next to the reconstruction. Pass ``kl_weight=0`` for the autoencoder.

    Training uses Adam with a per-step learning-rate decay ``lr * exp(-lr_decay * step)``,
    gradient-norm clipping, and mini-batches of ``batch_size`` cells drawn from the sparse
    matrix (never densified: the first encoder layer is a sparse product and the likelihood
    is evaluated at the non-zero counts plus a per-cell normaliser). One epoch is
    ``max(n_obs // batch_size, 1)`` steps; with ``n_obs <= batch_size`` every step is full-batch.
    On the CPU the same ``random_state`` gives the same result.

    **Data on disk.** A backed AnnData (``read_h5ad(path, backed="r")``, CSR ``.X``), an h5ad or
    zarr store, or an AnnData with a Dask matrix is never loaded whole: one pass over its rows
    checks the counts and sums each cell's total, mini-batches are read during training, and the
    cells are embedded in chunks at the end, so memory does not grow with the number of cells
    (beyond the results and a few numbers per cell). Each epoch's order is **shuffled by chunk**:
    the rows are cut into chunks of ``chunk_size`` consecutive cells, the chunks are permuted and
    grouped into windows of ``shuffle_buffer`` cells, each window's cells are permuted among
    themselves, and the mini-batches are consecutive slices of that order; a window is read as
    runs of consecutive rows and held while its mini-batches are trained. Data in memory uses
    the same order, so the same ``random_state`` gives the same result in memory and from disk
    (to float rounding). With at most ``shuffle_buffer`` cells the order is a plain random
    permutation.

    Parameters
    ----------
    adata
        The cells: an AnnData in memory, backed (``read_h5ad(..., backed="r")``, whose CSR
        ``.X`` is read from the file) or with a Dask array of CSR chunks as ``.X`` or ``layer``
        (read a block of rows at a time), or an h5ad or zarr path or a zarr group (AnnData's
        on-disk formats, CSR matrix). Results go into the AnnData, or, for a path, a zarr group
        or a backed AnnData with ``copy=True``, into a new AnnData (the store's ``obs`` and
        ``var``, no ``X``) that is returned. A backed AnnData opened read-only needs
        ``copy=True`` (or ``backed="r+"``, which writes the results into the file too).
    n_topics
        Number of topics K (at least 2).
    layer
        Layer holding the raw counts instead of ``.X``. Counts must be non-negative integers and
        every cell needs at least one count.
    batch_key
        ``obs`` column of the batches (e.g. sequencing libraries); adds the batch intercept.
    emb_dim
        Dimensions L of the trainable gene and topic embeddings (0 only with ``fixed_gene_emb``).
    hidden_sizes
        Widths of the encoder's hidden layers.
    dropout
        Dropout probability after each hidden layer.
    fixed_gene_emb
        ``varm`` key of fixed gene embeddings (genes x dimensions, e.g. a binary pathway
        membership matrix), concatenated to the trainable ones as in pathway-informed scETM.
    max_epochs
        Epochs of training (one epoch is ``max(n_obs // batch_size, 1)`` steps).
    batch_size
        Cells per mini-batch (scETM's default 2000).
    lr, lr_decay
        Adam learning rate and its per-step exponential decay rate (scETM: 5e-3, 6e-5). These
        defaults suit thousands of steps (scETM recommends at least 6,000); for small data or
        short runs a larger ``lr`` (e.g. 1e-2 to 2e-2 for 100-200 steps) learns much more.
    kl_weight, kl_warmup
        Final weight of the KL term and the fraction of epochs over which it is warmed up from 0.
    grad_clip
        Maximum gradient norm (of the loss per count); ``None`` disables clipping.
    chunk_size
        Consecutive cells kept together when an epoch is shuffled (see data on disk above); 1 gives
        a plain random permutation within each window.
    shuffle_buffer
        Cells per shuffling window (at least ``batch_size`` are used): the cells held in memory
        when reading from disk; mini-batches mix the cells of about
        ``shuffle_buffer / chunk_size`` chunks.
    early_stopping_patience
        Stop when the epoch loss has not improved by 1e-4 (relative) for this many epochs
        after the KL warm-up; ``None`` (default) trains ``max_epochs``.
    labels_key
        ``obs`` column of known cell types. When given, the ARI and NMI of Leiden clusters of
        ``theta`` (15-nearest-neighbour graph, Euclidean, at ``resolution``) are recorded every
        ``eval_every`` epochs and after the last; the same numbers as
        ``metrics.ari(adata, labels_key, use_rep="X_etm", resolution=resolution)``.
    eval_every
        Epochs between those evaluations (their time is excluded from the history).
    resolution
        Leiden resolution of the tracked ARI.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    {random_state}
    return_model
        Also return the trained :class:`ETMModel` (to embed new cells, save and load).
    {key_added}
    {copy}

    Returns
    -------
    ``None``, the copy when ``copy=True`` (or the new AnnData for a path), the :class:`ETMModel`
    when ``return_model=True``, or both as ``(adata, model)``. Writes:

    ``adata.obsm[f"X_{key_added}"]``
        ``theta``, the cells' topic mixtures (n_obs x K, rows sum to 1; posterior means mapped
        through the softmax).
    ``adata.obsm[f"{key_added}_delta"]``
        ``mu``, the unnormalised topic mixtures (n_obs x K; scETM's default clustering input).
    ``adata.varm[f"{key_added}_rho"]``
        Gene embeddings (n_vars x L, fixed dimensions first).
    ``adata.varm[f"{key_added}_beta"]``
        Topic-gene distributions ``softmax_genes(alpha rho)`` (n_vars x K, each column sums to
        1; without the batch intercepts).
    ``adata.varm[f"{key_added}_batch_bias"]``
        With ``batch_key``: the batch intercepts ``lambda`` (n_vars x n_batches, batch order in
        ``uns[key_added]["batches"]``).
    ``adata.uns[key_added]``
        ``params`` (every argument that affected the result, the resolved device, epochs and
        steps run, the package version), ``alpha`` (K x L topic embeddings), ``batches``, and
        ``history``: a DataFrame with one row per epoch, ``epoch``, ``loss`` (negative ELBO per
        cell with the epoch's KL weight), ``reconstruction`` (NLL per cell), ``kl`` (per cell),
        ``kl_weight``, ``lr``, ``time`` (seconds of training since the start), and ``ari``,
        ``nmi`` with ``labels_key`` (NaN between evaluations); ``slots`` names the slots
        written, which a later call with the same ``key_added`` removes first (so a run without
        ``batch_key`` leaves no batch intercepts of an earlier run).

    Examples
    --------
    >>> import scintegrate as si
    >>> adata = si.datasets.snareseq_cortex_rna()
    >>> si.tl.etm(adata, 16, batch_key="library", max_epochs=100, labels_key="cell_type")
    >>> si.pl.training_curve(adata, "etm", x="epoch")
    """
    # validate everything before touching adata
    path_input = is_path_like(adata)
    if not path_input:
        _check_input(adata)
    check_key(key_added)
    n_topics = check_positive_int(n_topics, param="n_topics", minimum=2)
    emb_dim = check_positive_int(emb_dim, param="emb_dim", minimum=0)
    if isinstance(hidden_sizes, int | np.integer):
        hidden_sizes = (hidden_sizes,)
    if not isinstance(hidden_sizes, Sequence) or not hidden_sizes:
        raise ValueError(
            f"hidden_sizes must be a non-empty sequence of layer widths, got {hidden_sizes!r}."
        )
    hidden_sizes = [check_positive_int(h, param="hidden_sizes") for h in hidden_sizes]
    dropout = check_number(dropout, param="dropout", minimum=0, maximum=0.99)
    max_epochs = check_positive_int(max_epochs, param="max_epochs")
    batch_size = check_positive_int(batch_size, param="batch_size", minimum=2)
    lr = check_number(lr, param="lr", minimum=0, exclusive_minimum=True)
    lr_decay = check_number(lr_decay, param="lr_decay", minimum=0)
    kl_weight = check_number(kl_weight, param="kl_weight", minimum=0)
    kl_warmup = check_number(kl_warmup, param="kl_warmup", minimum=0, maximum=1)
    if grad_clip is not None:
        grad_clip = check_number(grad_clip, param="grad_clip", minimum=0, exclusive_minimum=True)
    chunk_size = check_positive_int(chunk_size, param="chunk_size")
    shuffle_buffer = check_positive_int(shuffle_buffer, param="shuffle_buffer")
    if early_stopping_patience is not None:
        early_stopping_patience = check_positive_int(
            early_stopping_patience, param="early_stopping_patience"
        )
    eval_every = check_positive_int(eval_every, param="eval_every")
    resolution = check_number(resolution, param="resolution", minimum=0, exclusive_minimum=True)
    resolved_device = resolve_device(device)
    backed = not path_input and adata.isbacked
    # a backed AnnData's layers are in memory (anndata backs .X only)
    on_disk = reads_from_store(adata, layer)
    if backed and not copy and not is_writable(adata):
        raise ValueError(
            f"{adata.filename!r} is opened read-only (backed='r'), so the results cannot be "
            "written into it. Pass copy=True to get them as a new AnnData, or open the file "
            "with backed='r+'."
        )
    rng = get_rng(random_state)
    counts = None
    try:
        if on_disk:
            counts = open_counts(adata, layer)
            meta = counts.results_anndata() if path_input else adata
            if path_input and fixed_gene_emb is not None:
                emb = counts.varm(fixed_gene_emb) if isinstance(fixed_gene_emb, str) else None
                if emb is not None:
                    meta.varm[fixed_gene_emb] = emb
            n_obs, n_vars = counts.source.n_cells, counts.source.n_genes
            X = None
        else:
            meta = adata
            X = get_matrix(adata, layer)
            _check_counts(X, matrix_label(layer))
            n_obs, n_vars = adata.shape
        if n_obs < 2:
            raise ValueError("scETM needs at least 2 cells (batch normalisation in the encoder).")
        if n_topics > n_vars:
            # each topic is a distribution over genes: more topics than genes cannot be told apart
            raise ValueError(
                f"n_topics={n_topics} is larger than the number of genes ({n_vars}); "
                "choose fewer topics."
            )
        codes, batches = (
            (None, []) if batch_key is None else obs_batch_codes(meta, batch_key, order="sorted")
        )
        fixed = _fixed_embedding(meta, fixed_gene_emb)
        if emb_dim == 0 and fixed is None:
            raise ValueError("emb_dim=0 needs fixed_gene_emb (the gene embeddings would be empty).")
        callback = label_tracker(meta, labels_key, resolution=resolution, metric="euclidean")

        import torch

        from .._core.etm import SourceData, fit_etm

        if on_disk:
            library = count_totals(counts.source, counts.where)
            X = SourceData(counts.source, library, codes, resolved_device, torch.float32)
        result = fit_etm(
            X,
            n_topics,
            batch_codes=codes,
            n_batches=max(len(batches), 1),
            emb_dim=emb_dim,
            hidden_sizes=hidden_sizes,
            dropout=dropout,
            fixed_emb=fixed,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            lr_decay=lr_decay,
            kl_weight=kl_weight,
            kl_warmup=kl_warmup,
            grad_clip=grad_clip,
            chunk_size=chunk_size,
            shuffle_buffer=shuffle_buffer,
            early_stopping_patience=early_stopping_patience,
            callback=callback,
            eval_every=eval_every,
            random_state=rng,
            device=resolved_device,
            progress=settings.progress_bar,
        )
    finally:
        if counts is not None:
            counts.close()
    history = result.history
    logger.info(
        "scETM: %d epochs (%d steps) in %.1f s, final loss %.6g%s",
        result.n_epochs,
        result.n_steps,
        history["time"][-1],
        history["loss"][-1],
        " (stopped early)" if result.stopped_early else "",
    )
    module = result.module
    params = record_params(
        {
            "n_topics": n_topics,
            "layer": layer,
            "batch_key": batch_key,
            "emb_dim": emb_dim,
            "hidden_sizes": list(hidden_sizes),
            "dropout": dropout,
            "fixed_gene_emb": fixed_gene_emb,
            "max_epochs": max_epochs,
            "batch_size": batch_size,
            "lr": lr,
            "lr_decay": lr_decay,
            "kl_weight": kl_weight,
            "kl_warmup": kl_warmup,
            "grad_clip": grad_clip,
            "chunk_size": chunk_size,
            "shuffle_buffer": shuffle_buffer,
            "from_disk": on_disk,
            "early_stopping_patience": early_stopping_patience,
            "labels_key": labels_key,
            "eval_every": eval_every if labels_key is not None else None,
            "resolution": resolution if labels_key is not None else None,
            "random_state": random_state if isinstance(random_state, int) else None,
            "device": resolved_device,
            "n_epochs": result.n_epochs,
            "n_steps": result.n_steps,
            "stopped_early": result.stopped_early,
        }
    )
    alpha, rho, beta, bias = _decoder_arrays(module)
    varm = {f"{key_added}_rho": rho.T, f"{key_added}_beta": beta.T}
    if bias is not None:
        varm[f"{key_added}_batch_bias"] = bias.T

    if path_input or (backed and copy):
        # a backed AnnData's copy: its cells and genes, without the matrix on disk
        target = meta if path_input else AnnData(obs=adata.obs.copy(), var=adata.var.copy())
        returned = target
    else:
        target = adata.copy() if copy else adata
        returned = target if copy else None
    replaced = recorded_slots(target, key_added)
    write_slots(
        target,
        key_added,
        obsm={f"X_{key_added}": result.theta, f"{key_added}_delta": result.mu},
        varm=varm,
        uns={
            "params": params,
            "alpha": alpha,
            "batches": np.asarray(batches, dtype=object),
            "history": history_frame(history),
        },
    )
    if target.isbacked:
        write_slots_to_file(target, key_added, replaced)
    if not return_model:
        return returned
    config = {
        "n_genes": int(n_vars),
        "n_topics": n_topics,
        "n_batches": max(len(batches), 1),
        "emb_dim": emb_dim,
        "hidden_sizes": list(hidden_sizes),
        "dropout": dropout,
    }
    module.eval()
    model = ETMModel(
        module,
        target.var_names,
        batches,
        batch_key=batch_key,
        layer=layer,
        params=dict(params),
        config=config,
        history=history,
    )
    return model if returned is None else (returned, model)


def _decoder_arrays(module: ETMModule):
    """alpha (K x L), rho (L x G), beta = softmax_genes(alpha rho) (K x G), lambda or None."""
    import torch

    with torch.no_grad():
        rho = module.gene_embedding.detach().cpu().to(torch.float64)
        alpha = module.alpha.detach().cpu().to(torch.float64)
        beta = torch.softmax(alpha @ rho, dim=1)
        bias = module.batch_bias
        bias = None if bias is None else bias.detach().cpu().to(torch.float64).numpy()
    return alpha.numpy(), rho.numpy(), beta.numpy(), bias
