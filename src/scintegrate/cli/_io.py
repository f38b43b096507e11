"""Files of the command line: read ``.h5ad``/``.h5mu`` by extension, write atomically."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATA_SUFFIXES = (".h5ad", ".h5mu")


class UserError(Exception):
    """A mistake in the command's input; printed as one line, exit status 2."""


def data_suffix(path: str | Path, *, what: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise UserError(
            f"{what} {str(path)!r} must end in .h5ad (AnnData) or .h5mu (MuData), got "
            f"{suffix or 'no extension'!r}."
        )
    return suffix


def check_readable(path: str | Path, *, what: str = "input") -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} file {str(path)!r} does not exist.")
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r} is not a file.")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} file {str(path)!r} cannot be read (permission denied).")
    return path


def read_data(path: str | Path, *, what: str = "input") -> Any:
    """An AnnData (``.h5ad``) or MuData (``.h5mu``) read into memory.

    A damaged file (truncated, not HDF5, not AnnData) becomes a :class:`UserError` naming it.
    """
    suffix = data_suffix(path, what=what)
    path = check_readable(path, what=what)
    try:
        if suffix == ".h5ad":
            import anndata as ad

            return ad.read_h5ad(path)
        import mudata

        return mudata.read_h5mu(path)
    except (OSError, KeyError, ValueError, TypeError) as err:
        kind = "an AnnData" if suffix == ".h5ad" else "a MuData"
        raise UserError(f"cannot read {str(path)!r} as {kind} file: {_one_line(err)}") from err


def check_h5ad(path: str | Path, *, what: str = "input") -> Path:
    """A readable ``.h5ad`` path that opens as an AnnData (for tools that read files
    themselves)."""
    if data_suffix(path, what=what) != ".h5ad":
        raise UserError(f"{what} {str(path)!r} must be an .h5ad file.")
    path = check_readable(path, what=what)
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("X", "obs", "var") if k not in f]
    except OSError as err:
        raise UserError(f"cannot read {str(path)!r} as an AnnData file: {_one_line(err)}") from err
    if missing:
        raise UserError(f"{str(path)!r} is not an AnnData file (no {', '.join(missing)}).")
    return path


def modality(data: Any, mod: str | None, *, input_path: str, whole: bool = False) -> Any:
    """The data a tool works on: ``data`` itself, or its modality ``mod`` of a MuData (a MuData
    without ``mod`` is passed whole to tools that take one, ``whole=True``)."""
    from mudata import MuData

    if isinstance(data, MuData):
        names = list(data.mod)
        if mod is None and whole:
            return data
        if mod is None:
            raise UserError(
                f"{input_path!r} is a MuData with modalities {names}; choose one with --mod."
            )
        if mod not in data.mod:
            raise UserError(f"{input_path!r} has no modality {mod!r}; it has {names}.")
        return data.mod[mod]
    if mod is not None:
        raise UserError(f"--mod {mod} needs an .h5mu input; {input_path!r} is an AnnData.")
    return data


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target``, moved onto it only when the block succeeds.

    A run that fails (an exception, Ctrl-C, SIGTERM turned into SystemExit by the command line)
    removes the temporary file and leaves ``target`` as it was, so there is never a partial
    output, and an input that is also the output stays intact until the new file is complete.
    """
    target = Path(target)
    if not target.parent.is_dir():
        raise UserError(f"the folder of the output {str(target)!r} does not exist.")
    if target.is_dir():
        raise UserError(f"the output {str(target)!r} is a folder; give a file name.")
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial{target.suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_data(data: Any, target: str | Path) -> None:
    """Write an AnnData or MuData atomically; the output kind must match the extension."""
    from mudata import MuData

    suffix = data_suffix(target, what="output")
    is_mudata = isinstance(data, MuData)
    if (suffix == ".h5mu") != is_mudata:
        kind = "a MuData (.h5mu)" if is_mudata else "an AnnData (.h5ad)"
        raise UserError(f"the result is {kind}; name the output {str(target)!r} accordingly.")
    with atomic_path(target) as temporary:
        if is_mudata:
            data.write_h5mu(temporary)
        else:
            data.write_h5ad(temporary)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
