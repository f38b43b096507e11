""":class:`OnlineINMFModel`, the trained online iNMF model, and the steps ``tl.online_inmf`` runs
on it (create, prepare the data, train, solve every cell's factors)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from distributed import Client

from .._core.inmf import INMFResult
from .._core.online_inmf import OnlineINMF
from .._settings import settings
from .._utils._dask import resolve_client
from .._utils._random import get_rng
from .._utils._row_inputs import (
    LIGER_LAYER,
    Dataset,
    check_writable_directory,
    close_all,
    collect_datasets,
    from_anndata,
    prepare,
    streaming_stats,
    write_scaled,
)
from .._utils._slots import history_frame
from .._utils._validation import check_positive_int
from ._online_inmf_file import read_model_file, write_model_file


class OnlineINMFModel:
    """A trained online iNMF model that can be continued, projected onto, saved and reloaded.

    It keeps everything Algorithm 1 of Gao & Welch needs to go on: the shared factors ``W``, each
    dataset's ``V_i`` and sufficient statistics ``A_i``, ``B_i`` (with their two-epoch shadow
    copies), the step and epoch counters and the random generator, plus the model's genes
    (:attr:`var_names`) and, for datasets scaled on the fly, their per-gene scaling. Its size does
    not depend on the number of cells. Obtain one with ``tl.online_inmf(..., return_model=True)``
    or :meth:`load`.
    """

    def __init__(
        self, core: OnlineINMF, var_names: pd.Index, scaling: dict[str, np.ndarray | None]
    ) -> None:
        self._core = core
        self.var_names = pd.Index(var_names, dtype=str)
        self._scaling = dict(scaling)

    # -- read-only views --------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """Number of factors ``k``."""
        return self._core.k

    @property
    def genes(self) -> pd.Index:
        """Deprecated alias of :attr:`var_names`."""
        warnings.warn(
            "OnlineINMFModel.genes is deprecated; use OnlineINMFModel.var_names.",
            FutureWarning,
            stacklevel=2,
        )
        return self.var_names

    @property
    def datasets(self) -> list[str]:
        """Names of the datasets the model was trained on, in the order of ``V``."""
        return list(self._core.names)

    @property
    def W(self) -> np.ndarray:
        """Shared gene loadings (genes x k), genes in the order of :attr:`var_names`."""
        return self._core.W.copy()

    @property
    def V(self) -> dict[str, np.ndarray]:
        """Dataset-specific gene loadings ``V_i`` (genes x k) by dataset name."""
        return {name: v.copy() for name, v in zip(self._core.names, self._core.V, strict=True)}

    @property
    def epochs(self) -> dict[str, int]:
        """Epochs completed on each dataset."""
        return dict(zip(self._core.names, self._core.epochs, strict=True))

    @property
    def history(self) -> pd.DataFrame:
        """Per mini-batch step: ``epoch``, objective estimate, ``delta_W`` and ``time``."""
        return history_frame(self._core.history)

    def __repr__(self) -> str:
        return (
            f"OnlineINMFModel(k={self.n_components}, n_vars={len(self.var_names)}, "
            f"datasets={self.datasets}, lambda_={self._core.lambda_})"
        )

    # -- training ---------------------------------------------------------------------------
    def partial_fit(
        self,
        data,
        *,
        batch_key: str | None = None,
        layer: str | None = LIGER_LAYER,
        preprocess: bool | None = None,
        n_epochs: int = 1,
        write_scaled: str | Path | None = None,
        client: Client | str | bool | None = None,
    ) -> OnlineINMFModel:
        """Continue training on ``data``: new datasets get a new ``V_i`` (from their own cells)
        while ``W`` and every earlier dataset's ``V_i``, ``A_i``, ``B_i`` are kept (the paper's
        scenario 2); a dataset the model already knows (same name) continues where it stopped.

        ``data`` and the other arguments are as in :func:`online_inmf` (``client``: where the
        statistics pass of raw counts runs); every dataset must have the model's genes (by
        name, in any order). Returns the model itself.
        """
        n_epochs = check_positive_int(n_epochs, param="n_epochs")
        client, owned = resolve_client(client)
        datasets, sources = [], []
        try:
            datasets = collect_datasets(data, batch_key=batch_key, layer=layer)
            sources = prepare_sources(self, datasets, preprocess, write_scaled, client=client)
            train(self, datasets, sources, n_epochs, prefetch=client is not None)
        finally:
            close_all(datasets, sources)
            if owned:
                client.close()
        return self

    # -- cells ------------------------------------------------------------------------------
    def transform(
        self,
        data,
        *,
        dataset: str | None = None,
        batch_key: str | None = None,
        layer: str | None = LIGER_LAYER,
        preprocess: bool | None = None,
        client: Client | str | bool | None = None,
    ) -> np.ndarray:
        """Cell factors of ``data`` with the model fixed (nothing in the model changes).

        With ``dataset`` naming one of :attr:`datasets`, the cells are solved with that
        dataset's ``V_i`` (and its stored scaling when it was scaled on the fly): the H-step of
        training. Without it, cells of a dataset the model has not seen are projected onto the
        shared factors ``W`` alone (scenario 3 of the paper), each dataset of ``data`` scaled by
        its own statistics when it holds raw counts. ``data`` is an AnnData (in memory, backed,
        or with a Dask ``.X``), an h5ad or zarr path, a zarr group, or a list/dict of them; the
        other arguments are as in :func:`online_inmf`.

        Parameters
        ----------
        data
            The cells: an AnnData (in memory, backed, or with a Dask array of CSR chunks as
            ``.X``), an h5ad or zarr path, a zarr group, or a list or dict of them.
        dataset
            A dataset of the model whose ``V_i`` (and scaling) the cells are solved with;
            ``None`` projects them onto the shared factors ``W`` alone.
        batch_key
            ``obs`` column splitting a single AnnData into datasets, each scaled by its own
            statistics.
        layer
            Matrix with the data: a layer name, or ``None`` for ``.X`` (raw counts are scaled
            on the fly when the layer is absent).
        preprocess
            Normalise and scale raw counts on the fly; ``None``: only for inputs without the
            ``layer``.
        client
            Where the statistics pass and the solve run: ``None`` (default) on the active
            ``dask.distributed`` client if there is one, else in this process; ``False``: in this
            process; a ``Client`` or a scheduler address: on that cluster (as in
            :func:`online_inmf`).

        Returns
        -------
        Cells x k, in the order of the cells of ``data`` (datasets concatenated for a list or a
        ``batch_key``).
        """
        return self._solve(data, dataset, batch_key, layer, preprocess, client)[0]

    def objective(
        self,
        data,
        *,
        dataset: str | None = None,
        batch_key: str | None = None,
        layer: str | None = LIGER_LAYER,
        preprocess: bool | None = None,
        client: Client | str | bool | None = None,
    ) -> float:
        """Objective (1) of ``data``'s cells at their optimal factors, the model fixed: with
        ``dataset``, that dataset's term ``||X - H(W + V_i)ᵀ||² + λ||H V_iᵀ||²``; without,
        ``||X - H Wᵀ||²``. On held-out cells this measures how well the model generalises.
        Arguments as in :meth:`transform`."""
        return self._solve(data, dataset, batch_key, layer, preprocess, client)[1]

    def _solve(
        self, data, dataset, batch_key, layer, preprocess, client
    ) -> tuple[np.ndarray, float]:
        if dataset is not None and dataset not in self._core.names:
            raise ValueError(
                f"dataset={dataset!r} is not part of the model (datasets: {self.datasets})."
            )
        client, owned = resolve_client(client)
        datasets = []
        try:
            if isinstance(data, AnnData) and batch_key is None:
                datasets = [from_anndata(data, dataset or "new", layer)]
            else:
                datasets = collect_datasets(data, batch_key=batch_key, layer=layer)
            return self._solve_datasets(datasets, dataset, preprocess, client)
        finally:
            close_all(datasets)
            if owned:
                client.close()

    def _solve_datasets(self, datasets, dataset, preprocess, client) -> tuple[np.ndarray, float]:
        index = None if dataset is None else self._core.names.index(dataset)
        parts, total = [], 0.0
        for d in datasets:
            scale = d.counts if preprocess is None else bool(preprocess)
            source = prepare(d, self.var_names, preprocess=False)
            if scale:
                if dataset is not None and self._scaling.get(dataset) is not None:
                    source.inv_rms = self._scaling[dataset]
                else:
                    d.stats = streaming_stats(d, client)
                    source = prepare(d, self.var_names, preprocess=True)
            H, value = solve(self._core, source, index, client)
            parts.append(H)
            total += value
        return (np.concatenate(parts) if len(parts) > 1 else parts[0]), total

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model (factors, statistics, counters, random state, genes, scaling, the
        package version) to an HDF5 file; :meth:`load` reads it back and training resumes
        exactly where it stopped."""
        write_model_file(path, self._core, self.var_names, self._scaling)

    @classmethod
    def load(cls, path: str | Path) -> OnlineINMFModel:
        """Read a model written by :meth:`save`; a foreign, damaged or incomplete file gives a
        ValueError that says so."""
        return cls(*read_model_file(path))


# ------------------------------------------------------------------ steps of tl.online_inmf
def new_model(
    n_components: int,
    *,
    lambda_: float,
    batch_size: int,
    hals_iter: int,
    chunk_size: int,
    random_state,
    var_names: pd.Index,
) -> OnlineINMFModel:
    """An untrained model (no datasets yet) over the genes ``var_names``."""
    core = OnlineINMF(
        n_components,
        lambda_=lambda_,
        batch_size=batch_size,
        hals_iter=hals_iter,
        chunk_size=chunk_size,
        rng=get_rng(random_state),
    )
    return OnlineINMFModel(core, var_names, {})


def model_settings(model: OnlineINMFModel) -> dict[str, float | int]:
    """The model's training settings: ``lambda_``, ``batch_size``, ``hals_iter``,
    ``chunk_size``."""
    core = model._core
    return {
        "lambda_": core.lambda_,
        "batch_size": core.batch_size,
        "hals_iter": core.hals_iter,
        "chunk_size": core.chunk_size,
    }


def prepare_sources(
    model: OnlineINMFModel, datasets: list[Dataset], preprocess, write_scaled_to, *, client=None
) -> list:
    """Each dataset's rows restricted to the model's genes, scaled on the fly when they are
    counts (with the scaling the model stored for a dataset it knows), and written once to
    ``<write_scaled_to>/<name>.liger_scaled.h5`` when a directory is given."""
    sources = []
    directory = None if write_scaled_to is None else check_writable_directory(write_scaled_to)
    for d in datasets:
        scale = d.counts if preprocess is None else bool(preprocess)
        known = d.name in model._scaling
        if known and (model._scaling[d.name] is not None) != scale:
            kind = "scaled on the fly from counts" if scale else "already scaled"
            raise ValueError(
                f"Dataset {d.name!r} was not {kind} when the model was trained on it; pass the "
                "same kind of data (layer=..., preprocess=...) to continue on it."
            )
        source = prepare(d, model.var_names, preprocess=False)
        if scale and known:
            source.inv_rms = model._scaling[d.name]
        elif scale:
            if d.stats is None:
                d.stats = streaming_stats(d, client)
            source = prepare(d, model.var_names, preprocess=True)
        if directory is not None:
            source = write_scaled(
                source, directory / f"{d.name}.liger_scaled.h5", model._core.batch_size
            )
        sources.append(source)
    return sources


def train(
    model: OnlineINMFModel,
    datasets: list[Dataset],
    sources: list,
    n_epochs: int,
    *,
    chunk_size: int | None = None,
    prefetch: bool = False,
) -> None:
    """``n_epochs`` epochs over ``datasets`` (read from ``sources``); datasets the model does not
    know yet are added first. ``chunk_size`` replaces the model's for this and later training;
    ``prefetch`` reads the next mini-batch while the current one is computed."""
    core = model._core
    if chunk_size is not None:
        core.chunk_size = chunk_size
    known = [d.name in core.names for d in datasets]
    new = [(d, s) for d, s, k in zip(datasets, sources, known, strict=True) if not k]
    if new:
        small = [d.name for d, s in new if s.n_cells < core.k]
        if small:
            raise ValueError(
                f"Dataset(s) {small} have fewer cells than n_components={core.k}; choose "
                "fewer components or drop them."
            )
        core.add_datasets([s for _, s in new], [d.name for d, _ in new])
        for d, s in new:
            model._scaling[d.name] = s.inv_rms if s.inv_rms is not None else None
    active = [core.names.index(d.name) for d in datasets]
    core.train(sources, active, n_epochs, progress=settings.progress_bar, prefetch=prefetch)


def solve(core, source, index: int | None, client, out=None) -> tuple[np.ndarray, float]:
    """A source's cell factors with the model fixed, in this process or on a Dask client."""
    if client is None:
        return core.solve(source, index, out=out)
    from .._utils._dask import distributed_solve

    return distributed_solve(client, core, source, index, out=out)


def final_factors(
    model: OnlineINMFModel, datasets, sources, client=None
) -> tuple[list[np.ndarray], float]:
    """Every cell's H with the final factors (streamed, or as tasks on a Dask ``client``), and
    objective (1) over the data.

    The datasets' H are views of one (cells x k) array, filled block by block: the results need
    no concatenated copy.
    """
    H_all = np.empty((sum(s.n_cells for s in sources), model.n_components))
    Hs, objective, start = [], 0.0, 0
    for d, source in zip(datasets, sources, strict=True):
        H = H_all[start : start + source.n_cells]
        index = model._core.names.index(d.name)
        objective += solve(model._core, source, index, client, out=H)[1]
        Hs.append(H)
        start += source.n_cells
    return Hs, objective


def model_result(model: OnlineINMFModel, names, Hs, objective) -> INMFResult:
    """The model's factors and statistics for the datasets ``names``, with their cells' ``Hs``."""
    core = model._core
    index = [core.names.index(n) for n in names]
    return INMFResult(
        W=core.W,
        V=[core.V[i] for i in index],
        H=Hs,
        objective=objective,
        history=core.history,
        n_iter=len(core.history["iteration"]),
        A=[core.A[i] for i in index],
        B=[core.B[i] for i in index],
    )
