"""Writing results into AnnData in a form that survives write_h5ad / read_h5ad."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def h5ad_safe(value: Any) -> Any:
    """Convert a params value to something h5ad can store; ``None`` entries are dropped upstream."""
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        if all(isinstance(v, str) for v in value):
            return np.asarray(value, dtype=object)
        return {str(i): h5ad_safe(v) for i, v in enumerate(value)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def record_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters for ``uns[key]["params"]``: None dropped, tuples as arrays, plus the version."""
    from .._version import __version__

    out = h5ad_safe(dict(params))
    out["scintegrate_version"] = __version__
    return out


def history_frame(history: Mapping[str, list]) -> pd.DataFrame:
    """Training history as a DataFrame, one row per recorded iteration."""
    frame = pd.DataFrame({k: np.asarray(v) for k, v in history.items()})
    frame.index = frame.index.astype(str)  # h5ad needs string indices
    return frame


# the AnnData attributes a tool may write into, by the name used in ``uns[key]["slots"]``
_GROUPS = ("obs", "var", "obsm", "varm", "obsp", "varp", "layers")


def write_slots(
    target,
    key: str,
    *,
    uns: Mapping[str, Any],
    modalities: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    **groups: Mapping[str, Any] | None,
) -> None:
    """Replace every slot of an earlier call with the same ``key``, then write these.

    The one way a tool writes its results. ``target`` is an AnnData or a MuData; ``groups`` maps
    an attribute (``obs``, ``var``, ``obsm``, ``varm``, ``obsp``, ``varp``, ``layers``) to the
    entries to set; ``modalities`` maps a modality name of a MuData to such groups for that
    modality. ``uns`` becomes ``target.uns[key]``, which also records the slots written (as
    ``"slots"``: strings ``"obsm:X_key"`` or ``"mod:rna:varm:key_W"``) so that the next call
    with this key first removes exactly those, even when it writes fewer. Call it last, after
    every check, so that a failing call leaves ``target`` as it was.
    """
    for entry in recorded_slots(target, key):
        _remove_slot(target, entry)

    written: list[str] = []
    for prefix, obj, obj_groups in [("", target, groups)] + [
        (f"mod:{mod}:", target.mod[mod], mod_groups)
        for mod, mod_groups in (modalities or {}).items()
    ]:
        for group, entries in obj_groups.items():
            if group not in _GROUPS:  # a programming error in a tool, not a user error
                raise TypeError(f"write_slots got an unknown slot group {group!r}")
            if not entries:
                continue
            attribute = getattr(obj, group)
            for name, value in entries.items():
                attribute[name] = value
                written.append(f"{prefix}{group}:{name}")
    record = dict(uns)
    record["slots"] = np.asarray(written, dtype=object)
    target.uns[key] = record


def recorded_slots(target, key: str) -> list[str]:
    """The slots ``uns[key]`` records as written by the last call with ``key`` (none if absent)."""
    record = target.uns.get(key)
    if not isinstance(record, Mapping) or "slots" not in record:
        return []
    return [str(entry) for entry in np.asarray(record["slots"], dtype=object).ravel()]


def _remove_slot(target, entry: str) -> None:
    """Remove one slot named as in ``uns[key]["slots"]``, if it is still there."""
    parts = entry.split(":")
    obj = target
    if parts[0] == "mod" and len(parts) >= 4:
        mod = getattr(target, "mod", {})
        if parts[1] not in mod:
            return
        obj, parts = mod[parts[1]], parts[2:]
    group, name = parts[0], ":".join(parts[1:])
    if group not in _GROUPS:
        return
    attribute = getattr(obj, group)
    if group in ("obs", "var"):
        if name in attribute.columns:
            del attribute[name]
    elif name in attribute:
        del attribute[name]
