"""MuData input for tools written for one AnnData: each modality is a dataset.

:func:`stack_modalities` builds the AnnData that concatenating the modalities would give (cells
of every modality, the features they share, matched by name, and an ``obs`` column naming each
cell's dataset); the tool runs on it unchanged, and :func:`write_back` moves its slots onto the
MuData: per-modality ``obsm``/``varm``/``obs`` slots, and the cell embedding on the container
(``mdata.obsm``) where every container cell belongs to one modality. The same seed thus gives
the same factors for a MuData as for the equivalent concatenated AnnData.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._logging import logger

DATASET_COLUMN = "dataset"  # obs column of the stacked AnnData when batch_key is None


def is_mudata(data) -> bool:
    try:
        from mudata import MuData
    except ImportError:  # pragma: no cover - mudata is a dependency
        return False
    return isinstance(data, MuData)


@dataclass
class Stacked:
    """The stacked AnnData and where its cells and features come from."""

    adata: AnnData
    mods: list[str]
    rows: dict[str, np.ndarray]  # the stacked rows of each modality's cells
    genes: dict[str, np.ndarray]  # each modality's column of every stacked feature
    batch_key: str  # obs column of ``adata`` naming each cell's dataset


def stack_modalities(
    mdata,
    *,
    batch_key: str | None,
    layer: str | None = None,
    var_columns: Sequence[str] = (),
    obsm_key: str | None = None,
    features: bool = True,
) -> Stacked:
    """One AnnData with the cells of every modality.

    ``features=True``: ``X`` (and ``layers[layer]`` when every modality has that layer; when
    none has it, their ``.X``) on the features every modality has,
    matched by name, in the first modality's order, with each ``var_columns`` column that any
    modality has (a boolean column is true where it is true in any modality, missing counts as
    false). ``obsm_key``: that ``obsm`` entry of every modality, stacked. The datasets are the
    modalities, or ``<mod>:<value>`` of their ``obs[batch_key]``.
    """
    mods = list(mdata.mod)
    if len(mods) == 0:
        raise ValueError("The MuData has no modalities.")
    shared = None
    if features:
        for name in mods:
            names = mdata.mod[name].var_names
            if not names.is_unique:
                raise ValueError(
                    f"mdata[{name!r}].var_names repeat; make them unique "
                    "(mdata[mod].var_names_make_unique()) so features can be matched by name."
                )
            shared = names if shared is None else shared[shared.isin(names)]
        if len(shared) == 0:
            raise ValueError(
                f"The modalities {mods} share no features (var_names); a MuData is integrated "
                "on the features every modality has (e.g. RNA genes and ATAC gene activity)."
            )
    # a layer every modality has, or (when none has it) each modality's .X, as concatenating
    # AnnData objects without the layer would give
    has_layer = [layer is not None and layer in mdata.mod[n].layers for n in mods]
    use_layer = all(has_layer)
    if features and any(has_layer) and not use_layer:
        missing = [n for n, has in zip(mods, has_layer, strict=True) if not has]
        raise ValueError(
            f"layers[{layer!r}] is missing in modalities {missing}; every modality needs it "
            "(or none, to use each modality's .X)."
        )
    pieces, obs_frames, embeddings, rows, genes = [], [], [], {}, {}
    start = 0
    for name in mods:
        mod = mdata.mod[name]
        if batch_key is None:
            labels = np.full(mod.n_obs, name, dtype=object)
        else:
            if batch_key not in mod.obs.columns:
                raise ValueError(
                    f"batch_key={batch_key!r} is not a column of mdata[{name!r}].obs (columns: "
                    f"{', '.join(map(repr, mod.obs.columns[:10]))}); with a MuData each modality "
                    "is a dataset, and batch_key splits each one further."
                )
            labels = np.asarray(
                [f"{name}:{v}" for v in mod.obs[batch_key].astype(str)], dtype=object
            )
        obs = pd.DataFrame({DATASET_COLUMN: labels}, index=[f"{name}:{c}" for c in mod.obs_names])
        obs_frames.append(obs)
        rows[name] = np.arange(start, start + mod.n_obs)
        start += mod.n_obs
        if features:
            columns = mod.var_names.get_indexer(shared)
            genes[name] = columns
            matrix = mod.layers[layer] if use_layer else mod.X
            if matrix is None:
                raise ValueError(f"mdata[{name!r}].X is empty; pass layer= naming the data.")
            pieces.append(matrix[:, columns])
        if obsm_key is not None:
            if obsm_key not in mod.obsm:
                raise ValueError(
                    f"{obsm_key!r} is not in mdata[{name!r}].obsm (keys: "
                    f"{', '.join(map(repr, list(mod.obsm)[:10])) or 'none'}); run the "
                    "integration on the MuData first."
                )
            embeddings.append(np.asarray(mod.obsm[obsm_key]))
    obs = pd.concat(obs_frames)
    # categories in modality order, as anndata.concat({mod: ...}, label=...) orders them
    labels = obs[DATASET_COLUMN].to_numpy()
    obs[DATASET_COLUMN] = pd.Categorical(labels, categories=list(dict.fromkeys(labels)))
    if features:
        X = (
            sp.vstack([sp.csr_matrix(p) for p in pieces], format="csr")
            if any(sp.issparse(p) for p in pieces)
            else np.vstack([np.asarray(p) for p in pieces])
        )
        var = pd.DataFrame(index=shared)
        for column in var_columns:
            values = [
                mdata.mod[n].var[column].to_numpy()[genes[n]]
                for n in mods
                if column in mdata.mod[n].var.columns
            ]
            if values and all(v.dtype == bool for v in values):
                var[column] = np.logical_or.reduce(values)
        stacked = AnnData(X=X, obs=obs, var=var)
        if use_layer:
            stacked.layers[layer] = X
    else:  # embeddings only; one empty placeholder feature, as an AnnData needs features
        stacked = AnnData(X=sp.csr_matrix((len(obs), 1)), obs=obs, var=pd.DataFrame(index=["-"]))
    if obsm_key is not None:
        widths = {e.shape[1] for e in embeddings}
        if len(widths) != 1:
            raise ValueError(
                f"obsm[{obsm_key!r}] has different widths in the modalities ({widths})."
            )
        stacked.obsm[obsm_key] = np.vstack(embeddings)
    return Stacked(stacked, mods, rows, genes, DATASET_COLUMN)


def container_rows(mdata, mods: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Each modality's rows in ``mdata.obs``, or ``None`` when a container cell is in several
    modalities (paired data: one container row cannot hold two datasets' factors)."""
    positions = {}
    seen = np.zeros(mdata.n_obs, dtype=int)
    for name in mods:
        index = mdata.obs_names.get_indexer(mdata.mod[name].obs_names)
        if (index < 0).any():
            raise ValueError(
                f"Cells of mdata[{name!r}] are missing from mdata.obs; call mdata.update() after "
                "changing a modality."
            )
        positions[name] = index
        seen[index] += 1
    if (seen > 1).any():
        return None
    return positions


def write_back(
    mdata,
    stacked: Stacked,
    key: str,
    *,
    obsm: Sequence[str] = (),
    varm: Sequence[str] = (),
    obs: Sequence[str] = (),
    container_obsm: Sequence[str] = (),
) -> None:
    """Move the slots a tool wrote into ``stacked.adata`` under ``key`` onto the MuData.

    ``obsm``/``obs`` entries go to every modality (its own cells' rows), ``varm`` entries to
    every modality's features (zero for features a modality does not share), and
    ``container_obsm`` entries and ``obs`` columns also to the container when each of its cells
    is in one modality. ``uns[key]`` goes to the container. A second call replaces the slots of
    the first (they are recorded in ``mdata.uns[key]["slots"]``).
    """
    from ._slots import write_slots

    source = stacked.adata
    modalities = {}
    for name in stacked.mods:
        mod = mdata.mod[name]
        rows = stacked.rows[name]
        groups: dict[str, dict] = {"obsm": {}, "varm": {}, "obs": {}}
        for entry in obsm:
            groups["obsm"][entry] = np.asarray(source.obsm[entry])[rows]
        for column in obs:
            values = source.obs[column].iloc[rows]
            groups["obs"][column] = pd.Series(
                values.to_numpy(), index=mod.obs_names, dtype=values.dtype
            )
        for entry in varm:
            values = np.asarray(source.varm[entry])
            full = np.zeros((mod.n_vars, *values.shape[1:]))
            full[stacked.genes[name]] = values
            groups["varm"][entry] = full
        modalities[name] = groups
    container = {"obsm": {}, "obs": {}}
    positions = container_rows(mdata, stacked.mods)
    if positions is None:
        if container_obsm or obs:
            logger.info(
                "Some cells are in several modalities (paired data); the results are written to "
                "each modality only, not to mdata.obsm."
            )
    else:
        for entry in container_obsm:
            values = np.asarray(source.obsm[entry])
            full = np.full((mdata.n_obs, values.shape[1]), np.nan)
            for name in stacked.mods:
                full[positions[name]] = values[stacked.rows[name]]
            container["obsm"][entry] = full
        for column in obs:
            values = source.obs[column]
            full = pd.Series(pd.NA, index=mdata.obs_names, dtype=object)
            for name in stacked.mods:
                full.iloc[positions[name]] = (
                    values.iloc[stacked.rows[name]].astype(object).to_numpy()
                )
            container["obs"][column] = (
                pd.Categorical(full, categories=values.cat.categories)
                if isinstance(values.dtype, pd.CategoricalDtype)
                else full
            )
    record = {k: v for k, v in source.uns[key].items() if k != "slots"}
    record["mods"] = np.asarray(stacked.mods, dtype=object)
    write_slots(mdata, key, uns=record, modalities=modalities, **container)


def run_on_mudata(
    tool,
    mdata,
    *,
    key_added: str,
    copy: bool,
    mask_var=None,
    layer=None,
    batch_key: str | None = None,
    **kwargs,
):
    """Run an iNMF tool (``tl.inmf``/``tl.online_inmf``) on the stacked modalities and write
    its slots onto the MuData (a copy with ``copy=True``, which is returned)."""
    target = mdata.copy() if copy else mdata
    columns = [mask_var] if isinstance(mask_var, str) else []
    stacked = stack_modalities(target, batch_key=batch_key, layer=layer, var_columns=columns)
    returned = tool(
        stacked.adata,
        batch_key=stacked.batch_key,
        layer=layer,
        mask_var=mask_var,
        key_added=key_added,
        copy=False,
        **kwargs,
    )
    params = stacked.adata.uns[key_added]["params"]
    params.pop("batch_key", None)  # the stacked data's own column; the user's is recorded below
    if batch_key is not None:
        params["batch_key"] = batch_key
    params["datasets_from"] = "modalities" if batch_key is None else "modalities and batch_key"
    write_back(
        target,
        stacked,
        key_added,
        obsm=[f"X_{key_added}"],
        varm=[f"{key_added}_W", f"{key_added}_V"],
        container_obsm=[f"X_{key_added}"],
    )
    model = returned  # online iNMF with return_model=True returns the model here
    if copy:
        return (target, model) if model is not None else target
    return model


MODALITY_COLUMN = "modality"


def container_anndata(mdata, columns: Sequence[str] = ()) -> AnnData:
    """An AnnData of the container's cells for plotting: ``obs`` (a copy) with a ``modality``
    column and each requested column that is not in ``mdata.obs`` gathered from the modalities
    that have it (``"<mod>:<column>"`` as muon names pulled columns, or a plain column name found
    in several modalities); ``obsm``, ``obsp`` and ``uns`` share the container's entries."""
    obs = mdata.obs.copy()
    positions = {name: mdata.obs_names.get_indexer(mdata.mod[name].obs_names) for name in mdata.mod}
    if MODALITY_COLUMN not in obs.columns:
        labels = pd.Series(pd.NA, index=obs.index, dtype=object)
        for name, rows in positions.items():
            current = labels.iloc[rows]
            labels.iloc[rows] = np.where(current.isna(), name, current.astype(str) + "+" + name)
        obs[MODALITY_COLUMN] = pd.Categorical(labels)
    for column in columns:
        if column in obs.columns:
            continue
        mod, sep, name = column.partition(":")
        sources = [mod] if sep and mod in mdata.mod else [m for m in mdata.mod]
        field = name if sep and mod in mdata.mod else column
        found = [m for m in sources if field in mdata.mod[m].obs.columns]
        if not found:
            continue  # not an obs column: scanpy may still find it as a gene, or refuse it
        values = pd.Series(pd.NA, index=obs.index, dtype=object)
        for m in found:
            values.iloc[positions[m]] = mdata.mod[m].obs[field].astype(object).to_numpy()
        obs[column] = (
            pd.Categorical(values)
            if not pd.api.types.is_numeric_dtype(mdata.mod[found[0]].obs[field])
            else pd.to_numeric(values)
        )
    view = AnnData(obs=obs, var=pd.DataFrame(index=["-"]), X=sp.csr_matrix((len(obs), 1)))
    for name, value in mdata.obsm.items():
        view.obsm[name] = value
    for name, value in mdata.obsp.items():
        view.obsp[name] = value
    view.uns.update(mdata.uns)
    return view


def copy_back(view: AnnData, mdata) -> None:
    """The ``obsm``, ``obsp`` and ``uns`` entries a plot wrote into the view, into the
    container."""
    for name, value in view.obsm.items():
        if name not in mdata.obsm or mdata.obsm[name] is not value:
            mdata.obsm[name] = value
    for name, value in view.obsp.items():
        if name not in mdata.obsp or mdata.obsp[name] is not value:
            mdata.obsp[name] = value
    for name, value in view.uns.items():
        if name not in mdata.uns or mdata.uns[name] is not value:
            mdata.uns[name] = value
