"""``tl.online_inmf`` and :class:`OnlineINMFModel`: online iNMF on data in memory or on disk,
continued on new datasets, projecting new cells, saved and resumed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core.inmf import INMFResult
from .._core.online_inmf import OnlineINMF
from .._docs import doc_params
from .._logging import logger
from .._settings import settings
from .._utils._random import get_rng
from .._utils._slots import history_frame, record_params
from .._utils._validation import check_key, check_positive_int
from . import _online_inmf_data as io
from ._inmf import _check_lambda, _Datasets, _split_datasets, _write_results

_AUTO_CHUNK_ON_DISK = 1000  # cells per contiguous run of the epoch order for data on disk


class OnlineINMFModel:
    """A trained online iNMF model that can be continued, projected onto, saved and reloaded.

    It keeps everything Algorithm 1 of Gao & Welch needs to go on: the shared factors ``W``, each
    dataset's ``V_i`` and sufficient statistics ``A_i``, ``B_i`` (with their two-epoch shadow
    copies), the step and epoch counters and the random generator, plus the model's genes and,
    for datasets scaled on the fly, their per-gene scaling. Its size does not depend on the
    number of cells. Obtain one with ``tl.online_inmf(..., return_model=True)`` or
    :meth:`load`.
    """

    def __init__(
        self, core: OnlineINMF, genes: pd.Index, scaling: dict[str, np.ndarray | None]
    ) -> None:
        self._core = core
        self.genes = pd.Index(genes, dtype=str)
        self._scaling = dict(scaling)

    # -- read-only views --------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return self._core.k

    @property
    def datasets(self) -> list[str]:
        """Names of the datasets the model was trained on, in the order of ``V``."""
        return list(self._core.names)

    @property
    def W(self) -> np.ndarray:
        """Shared gene loadings (genes x k), genes in the order of :attr:`genes`."""
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
            f"OnlineINMFModel(k={self.n_components}, genes={len(self.genes)}, "
            f"datasets={self.datasets}, lambda_={self._core.lambda_})"
        )

    # -- training ---------------------------------------------------------------------------
    def partial_fit(
        self,
        data,
        *,
        batch_key: str | None = None,
        layer: str | None = io._DEFAULT_LAYER,
        preprocess: bool | None = None,
        n_epochs: int = 1,
        write_scaled: str | Path | None = None,
    ) -> OnlineINMFModel:
        """Continue training on ``data``: new datasets get a new ``V_i`` (from their own cells)
        while ``W`` and every earlier dataset's ``V_i``, ``A_i``, ``B_i`` are kept (the paper's
        scenario 2); a dataset the model already knows (same name) continues where it stopped.

        ``data`` and the other arguments are as in :func:`online_inmf`; every dataset must have
        the model's genes (by name, in any order). Returns the model itself.
        """
        n_epochs = check_positive_int(n_epochs, param="n_epochs")
        datasets = io.collect_datasets(data, batch_key=batch_key, layer=layer)
        sources = []
        try:
            sources = self._prepare(datasets, preprocess, write_scaled)
            self._train(datasets, sources, n_epochs)
        finally:
            io.close_all(datasets, sources)
        return self

    def _prepare(self, datasets, preprocess, write_scaled) -> list:
        sources = []
        directory = None if write_scaled is None else io.check_writable_directory(write_scaled)
        for d in datasets:
            scale = d.counts if preprocess is None else bool(preprocess)
            known = d.name in self._scaling
            if known and (self._scaling[d.name] is not None) != scale:
                kind = "scaled on the fly from counts" if scale else "already scaled"
                raise ValueError(
                    f"Dataset {d.name!r} was not {kind} when the model was trained on it; pass the "
                    "same kind of data (layer=..., preprocess=...) to continue on it."
                )
            source = io.prepare(d, self.genes, preprocess=False)
            if scale and known:
                source.inv_rms = self._scaling[d.name]
            elif scale:
                if d.stats is None:
                    d.stats = io.streaming_stats(d)
                source = io.prepare(d, self.genes, preprocess=True)
            if directory is not None:
                source = io.write_scaled(
                    source, directory / f"{d.name}.liger_scaled.h5", self._core.batch_size
                )
            sources.append(source)
        return sources

    def _train(self, datasets, sources, n_epochs: int) -> None:
        core = self._core
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
                self._scaling[d.name] = s.inv_rms if s.inv_rms is not None else None
        active = [core.names.index(d.name) for d in datasets]
        core.train(sources, active, n_epochs, progress=settings.progress_bar)

    # -- cells ------------------------------------------------------------------------------
    def transform(
        self,
        data,
        *,
        dataset: str | None = None,
        batch_key: str | None = None,
        layer: str | None = io._DEFAULT_LAYER,
        preprocess: bool | None = None,
    ) -> np.ndarray:
        """Cell factors of ``data`` with the model fixed (nothing in the model changes).

        With ``dataset`` naming one of :attr:`datasets`, the cells are solved with that
        dataset's ``V_i`` (and its stored scaling when it was scaled on the fly): the H-step of
        training. Without it, cells of a dataset the model has not seen are projected onto the
        shared factors ``W`` alone (scenario 3 of the paper), each dataset of ``data`` scaled by
        its own statistics when it holds raw counts. ``data`` is an AnnData (in memory or
        backed), an h5ad path, or a list/dict of them; the other arguments are as in
        :func:`online_inmf`. Returns cells x k, in the order of the cells of ``data`` (datasets
        concatenated for a list or a ``batch_key``).
        """
        return self._solve(data, dataset, batch_key, layer, preprocess)[0]

    def objective(
        self,
        data,
        *,
        dataset: str | None = None,
        batch_key: str | None = None,
        layer: str | None = io._DEFAULT_LAYER,
        preprocess: bool | None = None,
    ) -> float:
        """Objective (1) of ``data``'s cells at their optimal factors, the model fixed: with
        ``dataset``, that dataset's term ``||X - H(W + V_i)ᵀ||² + λ||H V_iᵀ||²``; without,
        ``||X - H Wᵀ||²``. On held-out cells this measures how well the model generalises.
        Arguments as in :meth:`transform`."""
        return self._solve(data, dataset, batch_key, layer, preprocess)[1]

    def _solve(self, data, dataset, batch_key, layer, preprocess) -> tuple[np.ndarray, float]:
        if dataset is not None and dataset not in self._core.names:
            raise ValueError(
                f"dataset={dataset!r} is not part of the model (datasets: {self.datasets})."
            )
        if isinstance(data, AnnData) and batch_key is None:
            datasets = [io._from_anndata(data, dataset or "new", layer)]
        else:
            datasets = io.collect_datasets(data, batch_key=batch_key, layer=layer)
        try:
            return self._solve_datasets(datasets, dataset, preprocess)
        finally:
            io.close_all(datasets)

    def _solve_datasets(self, datasets, dataset, preprocess) -> tuple[np.ndarray, float]:
        index = None if dataset is None else self._core.names.index(dataset)
        parts, total = [], 0.0
        for d in datasets:
            scale = d.counts if preprocess is None else bool(preprocess)
            source = io.prepare(d, self.genes, preprocess=False)
            if scale:
                if dataset is not None and self._scaling.get(dataset) is not None:
                    source.inv_rms = self._scaling[dataset]
                else:
                    d.stats = io.streaming_stats(d)
                    source = io.prepare(d, self.genes, preprocess=True)
            H, value = self._core.solve(source, index)
            parts.append(H)
            total += value
        return (np.concatenate(parts) if len(parts) > 1 else parts[0]), total

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model (factors, statistics, counters, random state, genes, scaling) to an
        HDF5 file; :meth:`load` reads it back and training resumes exactly where it stopped."""
        import h5py

        path = Path(path)
        try:
            self._core.save(path)
        except OSError as error:
            raise ValueError(f"Cannot write the model to {str(path)!r}: {error}.") from None
        with h5py.File(path, "a") as f:
            f.create_dataset(
                "genes", data=np.asarray(self.genes, dtype=object), dtype=h5py.string_dtype()
            )
            scaling = f.create_group("scaling")
            for name, inv_rms in self._scaling.items():
                if inv_rms is not None:
                    scaling.create_dataset(name, data=inv_rms)
            f.attrs["scaled_on_the_fly"] = json.dumps(
                [name for name, v in self._scaling.items() if v is not None]
            )

    @classmethod
    def load(cls, path: str | Path) -> OnlineINMFModel:
        """Read a model written by :meth:`save`; damaged or foreign files give a ValueError."""
        import h5py

        core = OnlineINMF.load(path)
        try:
            with h5py.File(path, "r") as f:
                genes = pd.Index(
                    [g.decode() if isinstance(g, bytes) else g for g in f["genes"][()]]
                )
                on_the_fly = set(json.loads(f.attrs["scaled_on_the_fly"]))
                scaling = {
                    name: (f["scaling"][name][()] if name in on_the_fly else None)
                    for name in core.names
                }
        except (KeyError, OSError) as error:
            raise ValueError(
                f"{str(path)!r} holds online iNMF factors but not the model's genes and scaling "
                f"({error}); save it with OnlineINMFModel.save."
            ) from None
        if len(genes) != core.W.shape[0]:
            raise ValueError(f"The model in {str(path)!r} is inconsistent (genes vs W).")
        return cls(core, genes, scaling)


def new_model(
    n_components: int,
    *,
    lambda_: float,
    batch_size: int,
    hals_iter: int,
    chunk_size: int,
    random_state,
    genes: pd.Index,
) -> OnlineINMFModel:
    core = OnlineINMF(
        n_components,
        lambda_=lambda_,
        batch_size=batch_size,
        hals_iter=hals_iter,
        chunk_size=chunk_size,
        rng=get_rng(random_state),
    )
    return OnlineINMFModel(core, genes, {})


def final_factors(model: OnlineINMFModel, datasets, sources) -> tuple[list[np.ndarray], float]:
    """Every cell's H with the final factors (streamed), and objective (1) over the data.

    The datasets' H are views of one (cells x k) array, filled block by block: the results need
    no concatenated copy.
    """
    H_all = np.empty((sum(s.n_cells for s in sources), model.n_components))
    Hs, objective, start = [], 0.0, 0
    for d, source in zip(datasets, sources, strict=True):
        H = H_all[start : start + source.n_cells]
        objective += model._core.solve(source, model._core.names.index(d.name), out=H)[1]
        Hs.append(H)
        start += source.n_cells
    return Hs, objective


def model_result(model: OnlineINMFModel, names, Hs, objective) -> INMFResult:
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


def results_anndata(
    model: OnlineINMFModel,
    datasets,
    result: INMFResult,
    *,
    key_added: str,
    batch_key: str,
    params: dict[str, Any],
) -> AnnData:
    """A new AnnData with the results: obs of every dataset (concatenated, with ``batch_key``
    naming the dataset), var = the model's genes."""
    import h5py

    frames = []
    for d in datasets:
        if d.obs is not None:
            obs = d.obs.copy()
        else:
            with h5py.File(d.path, "r") as f:
                obs = io._read_h5ad_frame(f, "obs")
        obs[batch_key] = d.name
        frames.append(obs)
    obs = pd.concat(frames)
    obs[batch_key] = pd.Categorical(obs[batch_key], categories=[d.name for d in datasets])
    if not obs.index.is_unique:
        logger.warning("Cell names repeat across datasets; they are made unique in the results.")
        obs.index = pd.Index([f"{i}-{b}" for i, b in zip(obs.index, obs[batch_key], strict=True)])
    obs.index = obs.index.astype(str)
    out = AnnData(obs=obs, var=pd.DataFrame(index=model.genes))
    first, last = result.H[0], result.H[-1]
    if first.base is not None and first.base is last.base:  # views of one array: no copy
        out.obsm[f"X_{key_added}"] = first.base
    else:
        out.obsm[f"X_{key_added}"] = np.concatenate(result.H)
    out.varm[f"{key_added}_W"] = result.W.copy()
    out.varm[f"{key_added}_V"] = np.stack(result.V, axis=2)
    out.uns[key_added] = {
        "params": record_params(params),
        "batches": np.asarray([d.name for d in datasets], dtype=object),
        "objective": float(result.objective),
        "history": history_frame(result.history),
        "A": np.stack(result.A),
        "B": np.stack(result.B),
    }
    return out


def _write_backed(adata: AnnData, key_added: str) -> None:
    """Persist the result slots of a backed AnnData opened ``r+`` into its file."""
    from anndata.io import write_elem

    f = adata.file._file
    for group, name in (
        ("obsm", f"X_{key_added}"),
        ("varm", f"{key_added}_W"),
        ("varm", f"{key_added}_V"),
        ("uns", key_added),
    ):
        slot = getattr(adata, group)
        if group not in f:
            f.create_group(group)
        if name in f[group]:
            del f[group][name]
        write_elem(f[group], name, slot[name])
    f.flush()


@doc_params
def online_inmf(
    adata,
    n_components: int = 20,
    *,
    batch_key: str | None = None,
    layer: str | None = io._DEFAULT_LAYER,
    mask_var: str | np.ndarray | list[str] | None = io._DEFAULT_MASK,
    lambda_: float = 5.0,
    batch_size: int = 5000,
    max_epochs: int | None = None,
    hals_iter: int = 1,
    chunk_size: int | None = None,
    preprocess: bool | None = None,
    write_scaled: str | Path | None = None,
    init: OnlineINMFModel | str | Path | None = None,
    return_model: bool = False,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "inmf",
    copy: bool = False,
):
    """Online integrative NMF (Algorithm 1 of Gao & Welch, 2021), in memory or from disk.

    Same model and outputs as :func:`inmf`, learned from mini-batches: each iteration draws about
    ``batch_size`` cells, from every dataset in proportion to its size, solves their factors
    exactly (non-negative least squares, (11)), accumulates the sufficient statistics
    ``A_i = Σ h hᵀ`` and ``B_i = Σ x hᵀ`` (10) and updates ``W`` and every ``V_i`` by HALS
    ((12)-(13)). ``W`` starts uniform(0, 2) and each ``V_i`` from randomly sampled cells of its
    dataset; statistics older than two epochs are discarded. After the last epoch the factors of
    every cell are solved with the final ``W`` and ``V_i``. Memory is set by ``batch_size`` and
    the number of genes, not by the number of cells.

    The paper's three scenarios:

    1. **Data larger than memory.** Pass h5ad paths, backed AnnData objects
       (``read_h5ad(..., backed="r")``, CSR ``.X``) or a list/dict of them, one per dataset.
       Mini-batches are read from disk as a few contiguous runs of ``chunk_size`` cells (the
       epoch order shuffles runs, not cells, so compressed HDF5 chunks are not decoded once per
       cell). Raw counts are LIGER-normalised and scaled per mini-batch from statistics gathered
       in one streaming pass (and the variable genes chosen from them); with ``write_scaled`` the
       scaled data is written once to chunked files in that directory and read from there.
    2. **New datasets.** ``init=model`` (a model returned with ``return_model=True``, or the path
       of a saved one) continues training: new datasets get a new ``V_i`` while ``W`` and the
       earlier datasets' ``V_i``, ``A_i``, ``B_i`` are kept; one epoch by default. The per-step
       change of ``W`` is in the history (``delta_W``).
    3. **New cells.** :meth:`OnlineINMFModel.transform` solves cells with the model fixed.

    Parameters
    ----------
    adata
        The data: an AnnData with one dataset per value of ``obs[batch_key]`` (in memory or
        backed), or an h5ad path, or a list or dict (``{{name: data}}``) of AnnData objects and h5ad
        paths, one per dataset (names: the dict keys, the file names, or ``dataset_<i>``).
    n_components
        Number of factors ``k`` (ignored with ``init``).
    batch_key
        ``obs`` column naming each cell's dataset, for a single AnnData. For lists and paths, the
        ``obs`` column of the returned results that names the dataset (default ``"dataset"``).
    layer
        Matrix with the data: a layer name, or ``None`` for ``.X``. With the default
        ``"liger_scaled"`` (written by :func:`scintegrate.pp.liger_preprocess`) an input without
        that layer is read from ``.X`` as raw counts and scaled on the fly (for a single in-memory
        AnnData the layer is required unless ``preprocess=True``).
    mask_var
        Genes to use: a boolean ``var`` column (union over datasets), a boolean mask, a list of
        gene names, or ``None`` for all genes. When the default column is absent and the data is
        scaled on the fly, LIGER's variable-gene test picks them (union over datasets). Every
        dataset must have every selected gene (matched by name). Ignored with ``init``.
    lambda_
        Weight of the dataset-specific term (LIGER's default 5).
    batch_size
        Cells per mini-batch, summed over datasets (LIGER's default 5000).
    max_epochs
        Passes over every dataset: 5 by default, 1 with ``init`` (the paper's scenario 2).
    hals_iter
        HALS sweeps over ``W`` and ``V_i`` after each mini-batch (LIGER's default 1).
    chunk_size
        Contiguous cells kept together when shuffling each epoch: 1 (a full shuffle) for data in
        memory, 1000 for data on disk by default.
    preprocess
        Normalise and scale raw counts on the fly (LIGER's ``normalize`` + ``scaleNotCenter``,
        per dataset). ``None``: only for inputs without the ``layer`` (raw counts in ``.X``).
    write_scaled
        A directory: write each dataset's scaled data there once (``<name>.liger_scaled.h5``,
        chunked and compressed CSR, float32) and train from those files. ``None`` (default)
        scales every mini-batch on the fly and writes nothing.
    init
        A model to continue (:class:`OnlineINMFModel` or the path of a saved one).
    return_model
        Also return the :class:`OnlineINMFModel` (to continue, project, or save).
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    For a single AnnData in memory: ``None`` (or the copy with ``copy=True``), writing the slots
    below into it. For lists, paths and backed AnnData: a new AnnData of results with the
    datasets' ``obs`` (concatenated, plus ``obs[batch_key]``) and the model's genes as ``var``;
    a backed AnnData opened ``r+`` with ``copy=False`` instead gets the slots written into its
    file and in memory (read-only files need ``copy=True``). With ``return_model=True`` the model
    is returned too (alone when nothing else is, otherwise as ``(result, model)``).

    ``obsm[f"X_<key_added>"]``
        Cell factors (n_obs x k): each cell's row of its own dataset's ``H_i``.
    ``varm[f"<key_added>_W"]``
        Shared gene loadings ``W`` (n_vars x k); zero for genes not used.
    ``varm[f"<key_added>_V"]``
        Dataset-specific loadings ``V_i`` stacked as (n_vars x k x n_batches), in the order of
        ``uns[key_added]["batches"]``.
    ``uns[key_added]``
        ``params`` (every argument that affected the result, the package version), ``batches``,
        ``objective`` (objective (1) on all cells given), ``history`` (a DataFrame, one row per
        mini-batch step: ``epoch``, ``objective`` (an estimate of (1) from the mini-batch, before
        the update), ``delta_W`` (relative change of W in that step), ``time`` (s)), and the
        sufficient statistics ``A`` (n_batches x k x k) and ``B`` (n_batches x n_vars x k), and
        ``timing``: seconds spent preparing the data (statistics pass, scaled files), training,
        solving the final factors, and reading data during training and the final pass.
    """
    lambda_ = _check_lambda(lambda_)
    batch_size = check_positive_int(batch_size, param="batch_size")
    hals_iter = check_positive_int(hals_iter, param="hals_iter")
    if max_epochs is None:
        max_epochs = 1 if init is not None else 5
    max_epochs = check_positive_int(max_epochs, param="max_epochs")
    key_added = check_key(key_added)
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, param="chunk_size")
    if isinstance(init, str | Path):
        init = OnlineINMFModel.load(init)
    elif init is not None and not isinstance(init, OnlineINMFModel):
        raise ValueError(
            f"init must be an OnlineINMFModel (tl.online_inmf(..., return_model=True)) or the path "
            f"of a saved one, got {type(init).__name__}."
        )
    single = isinstance(adata, AnnData)
    in_memory = single and not adata.isbacked
    if single and adata.isbacked and not copy and adata.file._filemode != "r+":
        raise ValueError(
            f"{adata.filename!r} is opened read-only (backed='r'), so the results cannot be written "
            "into it. Pass copy=True to get them as a new AnnData, or open the file with "
            "backed='r+'."
        )
    if not single and copy:
        logger.info("copy=True has no effect for lists or paths: the results are a new AnnData.")
    if single:
        on_disk = adata.isbacked
    else:
        entries = list(adata.values()) if isinstance(adata, dict) else adata
        entries = [entries] if isinstance(entries, str | Path) else entries
        on_disk = any(not isinstance(a, AnnData) or a.isbacked for a in entries)
    chunk = chunk_size or (_AUTO_CHUNK_ON_DISK if on_disk else 1)
    results_key = batch_key if (single or batch_key is not None) else "dataset"

    settings_ = {
        "lambda_": lambda_,
        "batch_size": batch_size,
        "hals_iter": hals_iter,
        "chunk_size": chunk,
    }
    clock = time.perf_counter()
    datasets, sources = [], []
    try:
        if in_memory and init is None and not preprocess:
            # the classic path: validated per-batch matrices of the (scaled) layer
            n_components = check_positive_int(n_components, param="n_components")
            split = _split_datasets(adata, batch_key, layer, mask_var, n_components)
            genes = adata.var_names[split.genes]
            model = new_model(n_components, **settings_, random_state=random_state, genes=genes)
            datasets = [
                io.Dataset(name, genes, io.MemoryRows(X), None, f"dataset {name!r}")
                for name, X in zip(split.batches, split.matrices, strict=True)
            ]
            sources = [d.source for d in datasets]
            prepared = time.perf_counter()
            model._train(datasets, sources, max_epochs)
            cells = split.cells
        else:
            datasets = io.collect_datasets(adata, batch_key=batch_key, layer=layer)
            if init is None:
                n_components = check_positive_int(n_components, param="n_components")
                if len(datasets) < 2:
                    raise ValueError(
                        "iNMF integrates two or more datasets, got one. Use tl.nmf for one dataset, "
                        "or continue a trained model on it with init=."
                    )
                for d in datasets:
                    if d.counts if preprocess is None else preprocess:
                        d.stats = io.streaming_stats(d)
                genes = io.select_genes(datasets, mask_var, any(d.stats for d in datasets))
                if n_components > len(genes):
                    raise ValueError(
                        f"n_components={n_components} is larger than the number of genes used "
                        f"({len(genes)}); choose fewer components or select more genes."
                    )
                model = new_model(n_components, **settings_, random_state=random_state, genes=genes)
            else:
                model = init
                model._core.chunk_size = chunk if chunk_size is not None else model._core.chunk_size
            sources = model._prepare(datasets, preprocess, write_scaled)
            prepared = time.perf_counter()
            model._train(datasets, sources, max_epochs)
            cells = [d.source.cells for d in datasets] if single else None
        trained = time.perf_counter()
        read_in_training = sum(s.read_seconds for s in sources)
        Hs, objective = final_factors(model, datasets, sources)
    finally:
        io.close_all(datasets, sources)
    timing = {
        "preparation": prepared - clock,
        "training": trained - prepared,
        "training_reading": read_in_training,
        "final_factors": time.perf_counter() - trained,
        "final_factors_reading": sum(s.read_seconds for s in sources) - read_in_training,
    }
    result = model_result(model, [d.name for d in datasets], Hs, objective)
    logger.info(
        "online iNMF: %d steps in total, objective %.6g on the data given",
        result.n_iter,
        objective,
    )
    params = {
        "n_components": model.n_components,
        "batch_key": batch_key,
        "layer": layer,
        "mask_var": mask_var if isinstance(mask_var, str) else None,
        "n_genes": len(model.genes),
        "lambda_": model._core.lambda_,
        "random_state": random_state if isinstance(random_state, int) else None,
        "n_iter": result.n_iter,
        "batch_size": model._core.batch_size,
        "max_epochs": max_epochs,
        "hals_iter": model._core.hals_iter,
        "chunk_size": model._core.chunk_size,
        "preprocess": preprocess,
        "continued": init is not None,
        "algorithm": "online",
    }
    if single and not (adata.isbacked and copy):
        target = adata.copy() if (copy and in_memory) else adata
        positions = io.gene_positions(
            io.Dataset("adata", target.var_names, None, None, "adata"), model.genes
        )
        split = _Datasets(None, [d.name for d in datasets], cells, positions)
        A = np.stack(result.A)
        B = np.zeros((len(datasets), target.n_vars, model.n_components))
        B[:, positions, :] = np.stack(result.B)
        own = {
            k: params[k]
            for k in (
                "batch_size",
                "max_epochs",
                "hals_iter",
                "chunk_size",
                "preprocess",
                "continued",
                "algorithm",
            )
        }
        _write_results(
            target,
            split,
            result,
            key_added,
            own,
            batch_key=batch_key,
            layer=layer,
            mask_var=mask_var,
            lambda_=model._core.lambda_,
            random_state=random_state,
            extra={"A": A, "B": B, "timing": timing},
        )
        if target.isbacked:
            _write_backed(target, key_added)
        out = target if copy else None
    else:
        out = results_anndata(
            model, datasets, result, key_added=key_added, batch_key=results_key, params=params
        )
        out.uns[key_added]["timing"] = timing
    if return_model:
        return model if out is None else (out, model)
    return out
