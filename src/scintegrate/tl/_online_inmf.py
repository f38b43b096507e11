"""``tl.online_inmf``: online iNMF on data in memory or on disk, from scratch or continuing a
model (the model itself: :mod:`._online_inmf_model`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from distributed import Client
    from mudata import MuData

from .._core._row_sources import MemoryRows
from .._docs import doc_params
from .._logging import logger
from .._utils._backed import is_writable, write_slots_to_file
from .._utils._dask import resolve_client
from .._utils._mudata import is_mudata, run_on_mudata
from .._utils._row_inputs import (
    LIGER_LAYER,
    LIGER_MASK,
    Dataset,
    close_all,
    collect_datasets,
    dataset_obs,
    gene_positions,
    is_dask_array,
    select_genes,
    streaming_stats,
)
from .._utils._slots import recorded_slots
from .._utils._validation import check_key, check_positive_int
from ._inmf_anndata import check_lambda, shared_params, split_datasets, write_results
from ._online_inmf_model import (
    OnlineINMFModel,
    final_factors,
    model_result,
    model_settings,
    new_model,
    prepare_sources,
    train,
)

_AUTO_CHUNK_ON_DISK = 1000  # cells per contiguous run of the epoch order for data on disk


def _results_anndata(datasets: list[Dataset], var_names: pd.Index, batch_key: str) -> AnnData:
    """A new AnnData for the results: obs of every dataset (concatenated, with ``batch_key``
    naming the dataset), var = the model's genes."""
    frames = []
    for d in datasets:
        obs = dataset_obs(d)
        obs[batch_key] = d.name
        frames.append(obs)
    obs = pd.concat(frames)
    obs[batch_key] = pd.Categorical(obs[batch_key], categories=[d.name for d in datasets])
    if not obs.index.is_unique:
        logger.warning("Cell names repeat across datasets; they are made unique in the results.")
        obs.index = pd.Index([f"{i}-{b}" for i, b in zip(obs.index, obs[batch_key], strict=True)])
    obs.index = obs.index.astype(str)
    return AnnData(obs=obs, var=pd.DataFrame(index=var_names))


@doc_params
def online_inmf(
    adata: AnnData | MuData | str | Path | list | dict,
    n_components: int = 20,
    *,
    batch_key: str | None = None,
    layer: str | None = LIGER_LAYER,
    mask_var: str | np.ndarray | list[str] | None = LIGER_MASK,
    lambda_: float = 5.0,
    batch_size: int = 5000,
    max_epochs: int | None = None,
    hals_iter: int = 1,
    chunk_size: int | None = None,
    preprocess: bool | None = None,
    write_scaled: str | Path | None = None,
    init: OnlineINMFModel | str | Path | None = None,
    return_model: bool = False,
    client: Client | str | bool | None = None,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "inmf",
    copy: bool = False,
) -> AnnData | OnlineINMFModel | tuple[AnnData, OnlineINMFModel] | None:
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

    1. **Data larger than memory.** Pass h5ad or zarr paths (AnnData's ``write_h5ad`` /
       ``write_zarr``), zarr groups, backed AnnData objects (``read_h5ad(..., backed="r")``, CSR
       ``.X``), AnnData objects whose ``.X`` (or ``layer``) is a Dask array of CSR chunks (as
       ``anndata.experimental.read_elem_lazy`` returns), or a list/dict of them, one per
       dataset. Mini-batches are read from disk as a few contiguous runs of ``chunk_size``
       cells (the epoch order shuffles runs, not cells, so compressed chunks are not decoded
       once per cell). Raw counts are LIGER-normalised and scaled per mini-batch from statistics gathered
       in one streaming pass (and the variable genes chosen from them); with ``write_scaled`` the
       scaled data is written once to chunked files in that directory and read from there.
    2. **New datasets.** ``init=model`` (a model returned with ``return_model=True``, or the path
       of a saved one) continues training: new datasets get a new ``V_i`` while ``W`` and the
       earlier datasets' ``V_i``, ``A_i``, ``B_i`` are kept; one epoch by default. The per-step
       change of ``W`` is in the history (``delta_W``).
    3. **New cells.** :meth:`OnlineINMFModel.transform` solves cells with the model fixed.

    **On a Dask cluster** (``client``): the passes that grow with the number of cells, the
    statistics pass over raw counts (library sizes, variable genes, scaling) and the final
    solve of every cell's factors, run as tasks over ranges of rows on the workers, which read
    their rows from the files themselves (or compute their slice of a Dask array); ``W`` and
    ``V_i`` are broadcast to the workers once. The sequential updates of ``W`` and ``V_i`` stay
    in this process, with the next mini-batch read while the current one is computed. Same
    statistics and genes as in one process, factors equal to floating-point tolerance; a task
    whose worker dies is run again. Data in memory is sent to the workers in ranges; files are
    not (the workers must see the same paths). See the "Scaling out" page of the documentation.

    Parameters
    ----------
    adata
        The data: an AnnData with one dataset per value of ``obs[batch_key]`` (in memory,
        backed, or with a Dask array as ``.X``), or an h5ad or zarr path or a zarr group, or a
        list or dict (``{name: data}``) of AnnData objects, paths and zarr groups, one per
        dataset (names: the dict keys, the file names without ``.h5ad``/``.zarr``, or
        ``dataset_<i>``).
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
    client
        Where the statistics pass and the final solve run: ``None`` (default) on the active
        ``dask.distributed`` client if one exists (``distributed.Client(...)`` made it the
        default), else in this process; ``False``: always in this process; a
        ``distributed.Client``, or a scheduler address such as ``"tcp://10.0.0.1:8786"`` (a
        client is opened for the call and closed after): on that cluster. Needs
        ``pip install 'scintegrate[dask]'``.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    What is returned depends on the input, ``copy`` and ``return_model``:

    * a single AnnData in memory: ``None``, the slots below written into ``adata``; with
      ``copy=True`` the modified copy;
    * a backed AnnData opened ``backed="r+"``: ``None``, the slots written into ``adata`` and its
      file (a read-only one, ``backed="r"``, is refused); with ``copy=True`` a new AnnData as for
      lists;
    * a list, dict or path, one per dataset: a new AnnData of results, with the datasets' ``obs``
      (concatenated, plus ``obs[batch_key]`` naming the dataset, ``"dataset"`` by default) and the
      model's genes as ``var``;
    * with ``return_model=True``: the :class:`OnlineINMFModel` alone where ``None`` would be
      returned, otherwise the tuple ``(result, model)``.

    The slots, in ``adata`` (only the genes used when the result is a new AnnData):

    ``adata.obsm[f"X_{key_added}"]``
        Cell factors (n_obs x k): each cell's row of its own dataset's ``H_i``.
    ``adata.varm[f"{key_added}_W"]``
        Shared gene loadings ``W`` (n_vars x k); zero for genes not used.
    ``adata.varm[f"{key_added}_V"]``
        Dataset-specific loadings ``V_i`` stacked as (n_vars x k x n_batches), in the order of
        ``uns[key_added]["batches"]``.
    ``adata.uns[key_added]``
        ``params`` (every argument that affected the result, the package version), ``batches``,
        ``objective`` (objective (1) on all cells given), ``history`` (a DataFrame, one row per
        mini-batch step: ``epoch``, ``objective`` (an estimate of (1) from the mini-batch, before
        the update), ``delta_W`` (relative change of W in that step), ``time`` (s)), and the
        sufficient statistics ``A`` (n_batches x k x k) and ``B`` (n_batches x n_vars x k), and
        ``timing``: seconds spent preparing the data (statistics pass, scaled files), training,
        solving the final factors, and reading data during training and the final pass.

    A :class:`~mudata.MuData` is integrated as in :func:`inmf`: each modality a dataset (split
    further by ``batch_key``), on the features the modalities share, matched by name, with the
    same factors as their concatenation; the slots go to every modality's ``obsm``/``varm``, the
    cell factors also to ``mdata.obsm[f"X_{key_added}"]``, and ``uns`` to the container.

    A second call with the same ``key_added`` replaces every slot of the first.
    """
    if is_mudata(adata):
        return run_on_mudata(
            online_inmf,
            adata,
            key_added=key_added,
            copy=copy,
            mask_var=mask_var,
            layer=layer,
            batch_key=batch_key,
            n_components=n_components,
            lambda_=lambda_,
            batch_size=batch_size,
            max_epochs=max_epochs,
            hals_iter=hals_iter,
            chunk_size=chunk_size,
            preprocess=preprocess,
            write_scaled=write_scaled,
            init=init,
            return_model=return_model,
            client=client,
            random_state=random_state,
        )
    lambda_ = check_lambda(lambda_)
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
    if single:  # a Dask matrix (the layer, or .X read as counts when the layer is absent)
        matrix = adata.layers[layer] if layer in adata.layers else adata.X
        lazy = is_dask_array(matrix)
    else:
        lazy = False
    in_memory = single and not adata.isbacked
    if single and adata.isbacked and not copy and not is_writable(adata):
        raise ValueError(
            f"{adata.filename!r} is opened read-only (backed='r'), so the results cannot be written "
            "into it. Pass copy=True to get them as a new AnnData, or open the file with "
            "backed='r+'."
        )
    if not single and copy:
        logger.info("copy=True has no effect for lists or paths: the results are a new AnnData.")
    if single:
        on_disk = adata.isbacked or lazy
    else:
        entries = list(adata.values()) if isinstance(adata, dict) else adata
        entries = entries if isinstance(entries, list | tuple) else [entries]
        on_disk = any(
            not isinstance(a, AnnData) or a.isbacked or is_dask_array(a.X) for a in entries
        )
    chunk = chunk_size or (_AUTO_CHUNK_ON_DISK if on_disk else 1)
    results_key = batch_key if (single or batch_key is not None) else "dataset"

    training = {
        "lambda_": lambda_,
        "batch_size": batch_size,
        "hals_iter": hals_iter,
        "chunk_size": chunk,
        "random_state": random_state,
    }
    clock = time.perf_counter()
    datasets, sources = [], []
    client, owned_client = resolve_client(client)
    try:
        if in_memory and not lazy and init is None and not preprocess:
            # the classic path: validated per-batch matrices of the (scaled) layer
            n_components = check_positive_int(n_components, param="n_components")
            split = split_datasets(adata, batch_key, layer, mask_var, n_components)
            genes = adata.var_names[split.genes]
            model = new_model(n_components, **training, var_names=genes)
            datasets = [
                Dataset(name, genes, MemoryRows(X), None, f"dataset {name!r}")
                for name, X in zip(split.batches, split.matrices, strict=True)
            ]
            sources = [d.source for d in datasets]
            prepared = time.perf_counter()
            train(model, datasets, sources, max_epochs)
            cells = split.cells
        else:
            datasets = collect_datasets(adata, batch_key=batch_key, layer=layer)
            if init is None:
                n_components = check_positive_int(n_components, param="n_components")
                if len(datasets) < 2:
                    raise ValueError(
                        "iNMF integrates two or more datasets, got one. Use tl.nmf for one dataset, "
                        "or continue a trained model on it with init=."
                    )
                for d in datasets:
                    if d.counts if preprocess is None else preprocess:
                        d.stats = streaming_stats(d, client)
                genes = select_genes(datasets, mask_var, any(d.stats for d in datasets))
                if n_components > len(genes):
                    raise ValueError(
                        f"n_components={n_components} is larger than the number of genes used "
                        f"({len(genes)}); choose fewer components or select more genes."
                    )
                model = new_model(n_components, **training, var_names=genes)
            else:
                model = init
            sources = prepare_sources(model, datasets, preprocess, write_scaled, client=client)
            prepared = time.perf_counter()
            train(
                model,
                datasets,
                sources,
                max_epochs,
                chunk_size=chunk_size,
                prefetch=client is not None,
            )
            cells = [d.source.cells for d in datasets] if single else None
        trained = time.perf_counter()
        read_in_training = sum(s.read_seconds for s in sources)
        Hs, objective = final_factors(model, datasets, sources, client)
    finally:
        close_all(datasets, sources)
        if owned_client:
            client.close()
    timing = {
        "preparation": prepared - clock,
        "training": trained - prepared,
        "training_reading": read_in_training,
        "final_factors": time.perf_counter() - trained,
        "final_factors_reading": sum(s.read_seconds for s in sources) - read_in_training,
    }
    batches = [d.name for d in datasets]
    result = model_result(model, batches, Hs, objective)
    logger.info(
        "online iNMF: %d steps in total, objective %.6g on the data given",
        result.n_iter,
        objective,
    )
    used = model_settings(model)
    params = shared_params(
        result,
        batch_key=batch_key,
        layer=layer,
        mask_var=mask_var,
        n_genes=len(model.var_names),
        lambda_=used["lambda_"],
        random_state=random_state,
    )
    params.update(
        batch_size=used["batch_size"],
        max_epochs=max_epochs,
        hals_iter=used["hals_iter"],
        chunk_size=used["chunk_size"],
        preprocess=preprocess,
        continued=init is not None,
        algorithm="online",
        dask_workers=0 if client is None else len(client.ncores()),
    )
    if single and not (adata.isbacked and copy):
        target = adata.copy() if (copy and in_memory) else adata
        positions = gene_positions(target.var_names, model.var_names, name="adata")
        replaced = recorded_slots(target, key_added)
        write_results(
            target,
            key_added,
            result,
            batches=batches,
            params=params,
            cells=cells,
            genes=positions,
            extra={"timing": timing},
        )
        if target.isbacked:
            write_slots_to_file(target, key_added, replaced)
        out = target if copy else None
    else:
        out = _results_anndata(datasets, model.var_names, results_key)
        write_results(
            out, key_added, result, batches=batches, params=params, extra={"timing": timing}
        )
    if return_model:
        return model if out is None else (out, model)
    return out
