"""MuData input for tools written for one AnnData: each modality is a dataset.

:func:`stack_modalities` builds the AnnData that concatenating the modalities would give (cells
of every modality, the features they share, matched by name, and an ``obs`` column naming each
cell's dataset); the tool runs on it unchanged, and :func:`write_back` moves its slots onto the
MuData: per-modality ``obsm``/``varm``/``obs`` slots, and the cell embedding on the container
(``mdata.obsm``) where every container cell belongs to one modality. The same seed thus gives
the same factors for a MuData as for the equivalent concatenated AnnData.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    # features of one modality only, appended after the shared ones (UINMF's unshared
    # features): per modality, (its columns, the stacked rows)
    own: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


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
                # a container-only embedding: tl.scjmt wrote only mdata.obsm before 2026-12-07
                hint = (
                    " It is in mdata.obsm only: rerun the tool that wrote it, or copy each "
                    f"modality's rows there (mdata[{name!r}].obsm[{obsm_key!r}] = "
                    f"mdata.obsm[{obsm_key!r}][mdata.obs_names.get_indexer("
                    f"mdata[{name!r}].obs_names)])."
                    if obsm_key in mdata.obsm
                    else ""
                )
                raise ValueError(
                    f"{obsm_key!r} is not in mdata[{name!r}].obsm (keys: "
                    f"{', '.join(map(repr, list(mod.obsm)[:10])) or 'none'}); run the "
                    "integration on the MuData first." + hint
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
            shared = stacked.genes[name]
            full[shared] = values[: len(shared)]
            if name in stacked.own:
                columns, stacked_rows = stacked.own[name]
                full[columns] = values[stacked_rows]
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


def _user_batch_key(params: dict, batch_key: str | None) -> None:
    """Record the user's ``batch_key`` in place of the stacked data's own column."""
    params.pop("batch_key", None)
    if batch_key is not None:
        params["batch_key"] = batch_key
    params["datasets_from"] = "modalities" if batch_key is None else "modalities and batch_key"


def run_alignment_on_mudata(
    tool, mdata, *, use_rep: str, batch_key: str | None, copy: bool, key_added: str, **kwargs
):
    """Run an alignment tool (``pp.quantile_norm``, ``pp.centroid_align``) on the cell factors
    of every modality, stacked, and write the aligned factors and clusters back: every modality
    and the container get ``obsm[f"X_{key_added}"]`` and ``obs[f"{key_added}_clusters"]``, the
    container ``uns[key_added]``. Returns the copy with ``copy=True``, else ``None``."""
    from ._validation import check_key

    check_key(key_added)
    target = mdata.copy() if copy else mdata
    stacked = stack_modalities(target, batch_key=batch_key, obsm_key=use_rep, features=False)
    tool(stacked.adata, use_rep=use_rep, batch_key=stacked.batch_key, key_added=key_added, **kwargs)
    _user_batch_key(stacked.adata.uns[key_added]["params"], batch_key)
    write_back(
        target,
        stacked,
        key_added,
        obsm=[f"X_{key_added}"],
        obs=[f"{key_added}_clusters"],
        container_obsm=[f"X_{key_added}"],
    )
    return target if copy else None


OWNER_COLUMN = "unshared_owner"  # var column of the stacked mosaic: the owner of each feature


def _datasets_of(stacked: Stacked) -> dict[str, list[str]]:
    labels = stacked.adata.obs[stacked.batch_key].astype(str).to_numpy()
    return {name: list(dict.fromkeys(labels[rows])) for name, rows in stacked.rows.items()}


def _single_dataset(name: str, datasets: list[str], why: str) -> str:
    if len(datasets) != 1:
        raise ValueError(
            f"{why}, but modality {name!r} holds {len(datasets)} datasets (batch_key splits it: "
            f"{', '.join(map(repr, datasets[:5]))}); an unshared feature belongs to one dataset, "
            "so name the dataset that owns it (a mapping {'<mod>:<value>': features}, or an "
            "owner column holding the batch values)."
        )
    return datasets[0]


def _owners_from_column(mdata, stacked: Stacked, column: str) -> dict[str, np.ndarray]:
    """Per modality, the owner dataset of each of its features (``None``: not unshared) from
    its ``var[column]``: boolean (``True``: unshared in this modality's only dataset) or the
    owner (the modality, a dataset ``"<mod>:<value>"`` or a batch value; missing: not
    unshared)."""
    datasets = _datasets_of(stacked)
    owners = {}
    for name in stacked.mods:
        mod = mdata.mod[name]
        names = np.full(mod.n_vars, None, dtype=object)
        owners[name] = names
        if column not in mod.var.columns:
            continue
        series = mod.var[column]
        if pd.api.types.is_bool_dtype(series.dtype):
            marked = series.to_numpy()
            if marked.any():
                names[marked] = _single_dataset(
                    name, datasets[name], f"mdata[{name!r}].var[{column!r}] is boolean"
                )
            continue
        present = series.notna().to_numpy() & (series.astype(str).to_numpy() != "")
        for value in pd.unique(series[present].astype(str)):
            if value in datasets[name]:
                owner = value
            elif f"{name}:{value}" in datasets[name]:
                owner = f"{name}:{value}"
            elif value == name:
                owner = _single_dataset(
                    name, datasets[name], f"mdata[{name!r}].var[{column!r}] names the modality"
                )
            else:
                raise ValueError(
                    f"mdata[{name!r}].var[{column!r}] names {value!r}, which is not a dataset of "
                    f"that modality ({', '.join(map(repr, datasets[name]))}); a feature of a "
                    "modality can only be unshared in that modality's own datasets."
                )
            names[present & (series.astype(str).to_numpy() == value)] = owner
    if not any(column in mdata.mod[n].var.columns for n in stacked.mods):
        raise ValueError(
            f"unshared={column!r} is not a var column of any modality. Mark each modality's "
            "unshared features in a var column (boolean, or the dataset that owns the feature), "
            "pass a mapping {modality: feature names}, or unshared=None for none."
        )
    return owners


def _owners_from_mapping(mdata, stacked: Stacked, features) -> dict[str, np.ndarray]:
    """Per modality, the owner of each feature from ``{modality or dataset: features}``."""
    datasets = _datasets_of(stacked)
    owners = {n: np.full(mdata.mod[n].n_vars, None, dtype=object) for n in stacked.mods}
    for key, selected in features.items():
        key = str(key)
        if key in owners:
            name = key
            owner = _single_dataset(name, datasets[name], f"unshared names modality {key!r}")
        else:
            found = [n for n, names in datasets.items() if key in names]
            if not found:
                known = [d for n in stacked.mods for d in [n, *datasets[n]]]
                raise ValueError(
                    f"unshared names {key!r}, which is neither a modality nor a dataset of the "
                    f"MuData ({', '.join(map(repr, dict.fromkeys(known)))})."
                )
            name, owner = found[0], key
        mod = mdata.mod[name]
        values = np.asarray(selected)
        if values.dtype == bool:
            if values.shape != (mod.n_vars,):
                raise ValueError(
                    f"unshared[{key!r}] is a boolean mask of shape {values.shape}; it needs one "
                    f"entry per feature of mdata[{name!r}] ({mod.n_vars})."
                )
            where = np.flatnonzero(values)
        else:
            values = np.asarray([selected] if isinstance(selected, str) else values, dtype=object)
            where = mod.var_names.get_indexer(values.astype(str).ravel())
            if (where < 0).any():
                unknown = values.ravel()[where < 0]
                raise ValueError(
                    f"unshared[{key!r}] names {len(unknown)} features that are not in "
                    f"mdata[{name!r}].var_names ({', '.join(map(repr, unknown[:5]))})."
                )
        taken = np.flatnonzero(pd.notna(owners[name][where]))
        if len(taken):
            feature = mod.var_names[where[taken[0]]]
            raise ValueError(
                f"Feature {feature!r} of modality {name!r} is listed as unshared for "
                f"{owners[name][where[taken[0]]]!r} and for {owner!r}; an unshared feature "
                "belongs to one dataset."
            )
        owners[name][where] = owner
    return owners


def add_unshared(
    stacked: Stacked,
    mdata,
    *,
    unshared,
    mask_unshared: str | None,
    default_mask: str,
    layer: str | None,
) -> None:
    """Append every modality's unshared features (UINMF) to the stacked AnnData.

    ``unshared`` is a ``var`` column of the modalities or a mapping ``{modality or dataset:
    features}`` (see :func:`_owners_from_column`, :func:`_owners_from_mapping`);
    ``mask_unshared`` a boolean ``var`` column selecting among them (every one where a modality
    lacks ``default_mask``), or ``None`` for all. The selected features of modality ``m`` become
    columns ``"<m>:<feature>"`` holding its cells' values (zero in other modalities' cells),
    with the owning dataset in ``var[OWNER_COLUMN]``, as ``anndata.concat(join="outer")`` of the
    modalities would make them. A feature that every modality has is shared, never unshared.
    """
    adata = stacked.adata
    if isinstance(unshared, str):
        owners = _owners_from_column(mdata, stacked, unshared)
    elif isinstance(unshared, Mapping):
        owners = _owners_from_mapping(mdata, stacked, unshared)
    else:
        raise ValueError(
            "unshared must be the name of a var column of the modalities, a mapping "
            f"{{modality or dataset: feature names}}, or None; got {type(unshared).__name__}."
        )
    if mask_unshared is not None and not any(
        mask_unshared in mdata.mod[n].var.columns for n in stacked.mods
    ):
        if mask_unshared != default_mask:
            raise ValueError(
                f"mask_unshared={mask_unshared!r} is not a var column of any modality; pass a "
                "boolean column of the modalities, or None to use every unshared feature."
            )
        logger.info(
            "No modality has a %r column; mask_unshared selects every unshared feature.",
            mask_unshared,
        )
    shared = set(adata.var_names)
    use_layer = layer is not None and layer in adata.layers
    blocks, names, owner_names, start = [], [], [], adata.n_vars
    for name in stacked.mods:
        mod = mdata.mod[name]
        selected = pd.notna(owners[name])
        both = [f for f in mod.var_names[selected] if f in shared]
        if both:
            raise ValueError(
                f"Feature {both[0]!r} of modality {name!r} is marked unshared, but every "
                "modality has it, so it is shared; unmark it or rename it in one modality."
            )
        if mask_unshared is not None and mask_unshared in mod.var.columns:
            mask = mod.var[mask_unshared].to_numpy()
            if mask.dtype != bool:
                raise ValueError(
                    f"mdata[{name!r}].var[{mask_unshared!r}] must be boolean (True for the "
                    f"unshared features to use), got dtype {mask.dtype}."
                )
            selected &= mask
        columns = np.flatnonzero(selected)
        matrix = mod.layers[layer] if use_layer else mod.X
        blocks.append((stacked.rows[name], matrix[:, columns]))
        stacked.own[name] = (columns, np.arange(start, start + len(columns)))
        start += len(columns)
        names += [f"{name}:{f}" for f in mod.var_names[columns]]
        owner_names += list(owners[name][columns])
    n_extra = start - adata.n_vars
    if n_extra == 0:
        adata.var[OWNER_COLUMN] = pd.Series(None, index=adata.var_names, dtype=object)
        return
    if len(set(names) | shared) != len(names) + len(shared):
        raise ValueError(
            "An unshared feature's name '<mod>:<feature>' equals a shared feature's name; rename "
            "it in its modality."
        )
    sparse = sp.issparse(adata.X) or any(sp.issparse(b) for _, b in blocks)
    if sparse:
        parts, offset = [], 0
        for rows, block in blocks:
            block = sp.coo_matrix(block)
            parts.append((block.data, rows[block.row], block.col + offset))
            offset += block.shape[1]
        extra = sp.csr_matrix(
            (
                np.concatenate([p[0] for p in parts]),
                (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])),
            ),
            shape=(adata.n_obs, n_extra),
        )
        X = sp.hstack([sp.csr_matrix(adata.X), extra], format="csr")
    else:
        extra = np.zeros((adata.n_obs, n_extra), dtype=np.result_type(*[b for _, b in blocks]))
        offset = 0
        for rows, block in blocks:
            extra[np.ix_(rows, np.arange(offset, offset + block.shape[1]))] = np.asarray(block)
            offset += block.shape[1]
        X = np.hstack([np.asarray(adata.X), extra])
    var = pd.DataFrame(index=pd.Index(names))
    for column in adata.var.columns:
        var[column] = False if adata.var[column].dtype == bool else None
    var = pd.concat([adata.var, var])
    var[OWNER_COLUMN] = [None] * len(shared) + owner_names
    result = AnnData(X=X, obs=adata.obs, var=var)
    if use_layer:
        result.layers[layer] = X
    for entry, value in adata.obsm.items():
        result.obsm[entry] = value
    stacked.adata = result


def run_factor_markers_on_mudata(tool, mdata, key: str, *, batch_key, layer, copy, key_added, **kw):
    """``tl.factor_markers`` of a MuData integrated by ``tl.inmf``/``tl.online_inmf``: the
    modalities' cells and shared features stacked with their factors and loadings, the
    clusters written back to every modality and the container, the tables to the container."""
    from ._validation import check_key

    check_key(key_added)
    record = mdata.uns.get(key)
    if not isinstance(record, Mapping):
        raise ValueError(
            f"mdata.uns has no record {key!r}; run tl.inmf or tl.online_inmf on the MuData with "
            f"key_added={key!r} first, or pass the key you used."
        )
    if batch_key is None:
        batch_key = record.get("params", {}).get("batch_key")
    target = mdata.copy() if copy else mdata
    stacked = stack_modalities(target, batch_key=batch_key, layer=layer, obsm_key=f"X_{key}")
    first = stacked.mods[0]
    for entry in (f"{key}_W", f"{key}_V"):
        if entry not in target.mod[first].varm:
            raise ValueError(
                f"mdata[{first!r}].varm has no {entry!r}; run tl.inmf or tl.online_inmf on the "
                f"MuData with key_added={key!r} first."
            )
        stacked.adata.varm[entry] = np.asarray(target.mod[first].varm[entry])[stacked.genes[first]]
    own = dict(record)
    own["params"] = {**dict(record.get("params", {})), "batch_key": stacked.batch_key}
    stacked.adata.uns[key] = own
    tool(
        stacked.adata,
        key,
        batch_key=stacked.batch_key,
        layer=layer,
        key_added=key_added,
        copy=False,
        **kw,
    )
    params = stacked.adata.uns[key_added]["params"]
    _user_batch_key(params, batch_key)
    write_back(target, stacked, key_added, obs=[f"{key_added}_clusters"])
    return target if copy else None
