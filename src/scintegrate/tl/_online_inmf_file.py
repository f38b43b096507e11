"""The file format of :class:`~scintegrate.tl.OnlineINMFModel` (HDF5): the one module that writes
and reads it.

Layout (format ``scintegrate.online_inmf``, version 1). Root attributes: ``format``,
``format_version``, ``scintegrate_version`` (the package that wrote the file), and as JSON text
``settings`` (``k``, ``lambda_``, ``batch_size``, ``hals_iter``, ``chunk_size``), ``rng_state``,
``names``, ``steps``, ``epochs``, ``scaled_on_the_fly`` (names of the datasets scaled from
counts), plus ``elapsed`` (seconds). Datasets: ``W`` (genes x k); ``V``, ``B``, ``B_old``
(datasets x genes x k); ``A``, ``A_old`` (datasets x k x k); ``genes`` (strings); groups
``history`` (one float64 array per column) and ``scaling`` (each scaled dataset's per-gene
``1 / rms``). Files written before ``scintegrate_version`` was recorded read the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._core.online_inmf import OnlineINMF
from .._version import __version__

FORMAT = "scintegrate.online_inmf"
FORMAT_VERSION = 1
_STACKED = ("V", "A", "B", "A_old", "B_old")


def write_model_file(
    path: str | Path,
    core: OnlineINMF,
    var_names: pd.Index,
    scaling: dict[str, np.ndarray | None],
) -> None:
    """Write the model's whole state, its genes and its per-dataset scaling to ``path``."""
    import h5py

    path = Path(path)
    state = core.get_state()
    try:
        with h5py.File(path, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["scintegrate_version"] = __version__
            f.attrs["settings"] = json.dumps(state["settings"])
            f.attrs["rng_state"] = json.dumps(state["rng_state"])
            f.attrs["names"] = json.dumps(state["names"])
            f.attrs["steps"] = json.dumps(state["steps"])
            f.attrs["epochs"] = json.dumps(state["epochs"])
            f.attrs["elapsed"] = state["elapsed"]
            f.create_dataset("W", data=state["W"])
            for name in _STACKED:
                f.create_dataset(name, data=state[name])
            history = f.create_group("history")
            for key, values in state["history"].items():
                history.create_dataset(key, data=np.asarray(values, dtype=np.float64))
            f.create_dataset(
                "genes", data=np.asarray(var_names, dtype=object), dtype=h5py.string_dtype()
            )
            group = f.create_group("scaling")
            for name, inv_rms in scaling.items():
                if inv_rms is not None:
                    group.create_dataset(name, data=inv_rms)
            f.attrs["scaled_on_the_fly"] = json.dumps(
                [name for name, inv_rms in scaling.items() if inv_rms is not None]
            )
    except OSError as error:
        raise ValueError(f"Cannot write the model to {str(path)!r}: {error}.") from None


def read_model_file(
    path: str | Path,
) -> tuple[OnlineINMF, pd.Index, dict[str, np.ndarray | None]]:
    """The state, genes and scaling of a file written by :func:`write_model_file`; anything
    else (another file, a damaged or incomplete one, a newer format) gives a ValueError."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"Cannot read an online iNMF model from {str(path)!r}: {error}.") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(
                f"{str(path)!r} is not an online iNMF model saved by scintegrate "
                "(OnlineINMFModel.save writes them)."
            )
        version = f.attrs.get("format_version")
        if version != FORMAT_VERSION:
            written_by = f.attrs.get("scintegrate_version", "an unknown version")
            raise ValueError(
                f"{str(path)!r} holds an online iNMF model in format version {version}, written "
                f"by scintegrate {written_by}; this is scintegrate {__version__}, which reads "
                f"format version {FORMAT_VERSION}. Load it with the version that wrote it."
            )
        try:
            state = {
                key: json.loads(f.attrs[key])
                for key in ("settings", "rng_state", "names", "steps", "epochs")
            }
            state["elapsed"] = f.attrs["elapsed"]
            state["W"] = f["W"][()]
            for name in _STACKED:
                state[name] = f[name][()]
            state["history"] = {key: list(f["history"][key][()]) for key in f["history"]}
            var_names = pd.Index(
                [g.decode() if isinstance(g, bytes) else g for g in f["genes"][()]]
            )
            on_the_fly = set(json.loads(f.attrs["scaled_on_the_fly"]))
            scaling = {
                name: (f["scaling"][name][()] if name in on_the_fly else None)
                for name in state["names"]
            }
            core = OnlineINMF.from_state(state)
        except (KeyError, OSError, TypeError, ValueError) as error:
            raise ValueError(
                f"The online iNMF model in {str(path)!r} is incomplete or damaged ({error})."
            ) from None
    if len(var_names) != core.W.shape[0]:
        raise ValueError(
            f"The online iNMF model in {str(path)!r} is damaged: {len(var_names)} genes for "
            f"{core.W.shape[0]} rows of W."
        )
    return core, var_names, scaling
