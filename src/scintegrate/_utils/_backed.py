"""Results of a tool written into the file of a backed AnnData (opened ``backed="r+"``).

A backed AnnData holds everything but ``.X`` in memory: a tool writes its slots there with
:func:`~scintegrate._utils._slots.write_slots` as for any AnnData, then :func:`write_slots_to_file`
makes its file say the same. Only anndata's public API is used: the file manager's item access
(``adata.file[...]``, which hands out h5py groups) and :func:`anndata.io.write_elem`.
"""

from __future__ import annotations

from collections.abc import Sequence

from anndata import AnnData

from ._slots import recorded_slots

# slots written as entries of a group of the file (as ``uns[key]["slots"]`` names them)
_ELEMENT_GROUPS = ("obsm", "varm", "obsp", "varp", "layers")


def is_writable(adata: AnnData) -> bool:
    """Whether the file of a backed AnnData is open for writing (``backed="r+"``); a closed
    file is reopened in its mode first, as anndata does when ``.X`` is read."""
    if not adata.file.is_open:
        adata.file.open()
    return adata.file["/"].file.mode == "r+"


def _split(entry: str) -> tuple[str, str]:
    group, _, name = entry.partition(":")
    if group not in _ELEMENT_GROUPS:  # a programming error in a tool, not a user error
        raise TypeError(f"write_slots_to_file cannot write the slot {entry!r} of a backed AnnData")
    return group, name


def write_slots_to_file(adata: AnnData, key: str, replaced: Sequence[str] = ()) -> None:
    """Write ``uns[key]`` and the slots it records from memory into the backed file, after
    removing from the file the ``replaced`` slots (those of an earlier call with ``key``, as
    :func:`recorded_slots` listed them before the new call wrote)."""
    from anndata.io import write_elem

    root = adata.file["/"]
    for group, name in map(_split, replaced):
        if f"{group}/{name}" in adata.file:
            del adata.file[f"{group}/{name}"]
    for group, name in map(_split, recorded_slots(adata, key)):
        if group not in adata.file:
            write_elem(root, group, {})
        if f"{group}/{name}" in adata.file:
            del adata.file[f"{group}/{name}"]
        write_elem(adata.file[group], name, getattr(adata, group)[name])
    if "uns" not in adata.file:
        write_elem(root, "uns", {})
    if f"uns/{key}" in adata.file:
        del adata.file[f"uns/{key}"]
    write_elem(adata.file["uns"], key, adata.uns[key])
    root.file.flush()
