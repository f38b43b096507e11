"""The commands: which function each one runs, how it reads its input and writes its output.

Every option comes from the function's signature and docstring (:mod:`._options`); what a
command handles itself (the data, ``copy``, a model, arrays) is listed in ``handled`` with the
reason, which the documentation prints.
"""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import UserError, atomic_path, check_h5ad, modality, read_data, write_data
from ._options import Option, add_options, keyword_arguments, options_of, plain_text

IN_PLACE = "the command writes OUT; IN is never changed"
DATA_IN = "read from IN"


@dataclass
class Command:
    """One ``scintegrate <name>`` command."""

    name: str
    func: Callable
    run: Callable[[argparse.Namespace, Command], None]
    handled: dict[str, str]
    arguments: Callable[[argparse.ArgumentParser], None]
    group: str = ""  # "plot" and "metrics" gather their commands under one word
    options: list[Option] = field(init=False)

    def __post_init__(self) -> None:
        self.options = options_of(self.func, self.handled)

    @property
    def takes_mudata(self) -> bool:
        """Whether the function takes a whole MuData as its data (by its first annotation)."""
        first = next(iter(inspect.signature(self.func).parameters.values()))
        return "MuData" in str(first.annotation)

    @property
    def summary(self) -> str:
        return plain_text((self.func.__doc__ or "").strip().splitlines()[0])

    @property
    def qualname(self) -> str:
        module = self.func.__module__.split(".")
        public = next((p for p in module[1:] if not p.startswith("_")), "")
        owner = self.func.__qualname__
        return f"{public}.{owner}" if public and "." not in owner else owner

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        self.arguments(parser)
        add_options(parser, self.options)

    def kwargs(self, args: argparse.Namespace) -> dict[str, Any]:
        return keyword_arguments(args, self.options)


# --- arguments shared by several commands ---------------------------------------------------


_OUTPUTS = {
    "OUT": "output file, the same kind as IN (may equal IN; written only on success)",
    "FIGURE": "the figure: .png, .svg or .pdf (written only on success)",
    "TABLE": "the scores: .tsv or .json (written only on success)",
}


def _in_out(parser: argparse.ArgumentParser, *, mod: bool = True, out: str = "OUT") -> None:
    parser.add_argument("input", metavar="IN", help="input .h5ad (AnnData) or .h5mu (MuData)")
    parser.add_argument("output", metavar=out, help=_OUTPUTS[out])
    if mod:
        parser.add_argument(
            "--mod", default=None, help="modality of an .h5mu input to work on (muon's mod)"
        )


def _model_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-out", default=None, metavar="FILE", help="also save the trained model to FILE"
    )


def _model_in(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--model-in",
        default=None,
        required=required,
        metavar="FILE",
        help="a model saved with --model-out" + ("" if required else " to continue training"),
    )


def record_command(data: Any, key: str, command_line: str) -> None:
    """Add the command line to ``uns[key]["params"]`` wherever the call recorded its params."""
    from .._version import __version__

    found = False
    for obj in [data, *getattr(data, "mod", {}).values()]:
        record = obj.uns.get(key)
        if isinstance(record, dict) and isinstance(record.get("params"), dict):
            record["params"]["command_line"] = command_line
            record["params"]["scintegrate_version"] = __version__
            found = True
    if not found:
        raise RuntimeError(f"the call wrote no uns[{key!r}]['params'] to record the command in")


def _save_model(model: Any, path: str | None) -> None:
    if path is None:
        return
    with atomic_path(path) as temporary:
        model.save(temporary)


def _load_model(cls: Any, path: str, **kwargs: Any) -> Any:
    from ._io import check_readable

    check_readable(path, what="model")
    return cls.load(path, **kwargs)


def _key_of(args: argparse.Namespace, kwargs: dict[str, Any]) -> str:
    return kwargs.get("key_added") or args.key_added


# --- runners ---------------------------------------------------------------------------------


def run_anndata_tool(args: argparse.Namespace, command: Command) -> None:
    """A tool that writes into an AnnData (or a modality of a MuData), in place."""
    data = read_data(args.input)
    adata = modality(data, args.mod, input_path=args.input, whole=command.takes_mudata)
    kwargs = command.kwargs(args)
    model_out = getattr(args, "model_out", None)
    if "return_model" in command.handled:
        kwargs["return_model"] = model_out is not None
    model = command.func(adata, **kwargs)
    record_command(adata, kwargs["key_added"], args.command_line)
    write_data(data, args.output)
    _save_model(model, model_out)


def run_mudata_tool(args: argparse.Namespace, command: Command) -> None:
    """A tool that integrates the modalities of a MuData."""
    from mudata import MuData

    data = read_data(args.input)
    if not isinstance(data, MuData):
        raise UserError(f"{command.name} integrates modalities: IN must be an .h5mu (MuData) file.")
    kwargs = command.kwargs(args)
    command.func(data, **kwargs)
    record_command(data, kwargs["key_added"], args.command_line)
    write_data(data, args.output)


def run_online_inmf(args: argparse.Namespace, command: Command) -> None:
    """One file in memory (datasets by ``--batch-key``), or several read from disk."""
    kwargs = command.kwargs(args)
    kwargs["return_model"] = args.model_out is not None
    kwargs["client"] = args.scheduler if args.scheduler is not None else False
    if args.model_in is not None:
        from ..tl import OnlineINMFModel

        kwargs["init"] = _load_model(OnlineINMFModel, args.model_in)
    inputs = args.inputs
    if len(inputs) == 1 and args.model_in is None:
        data = read_data(inputs[0])
        adata = modality(data, args.mod, input_path=inputs[0], whole=command.takes_mudata)
        returned = command.func(adata, **kwargs)
        model = returned
    else:
        if args.mod is not None:
            raise UserError("--mod needs a single .h5mu input; several inputs are .h5ad files.")
        paths = [str(check_h5ad(p)) for p in inputs]
        stems = [Path(p).name.removesuffix(".h5ad") for p in paths]
        if len(set(stems)) != len(stems):
            raise UserError(f"the inputs' file names name the datasets and must differ: {stems}")
        returned = command.func(paths, **kwargs)
        data, model = returned if isinstance(returned, tuple) else (returned, None)
    record_command(data, kwargs["key_added"], args.command_line)
    write_data(data, args.output)
    _save_model(model, args.model_out)


def run_model_transform(args: argparse.Namespace, command: Command) -> None:
    """Embed the cells of IN with a saved model; the factors go to ``obsm["X_<key>"]``."""
    from .._utils._slots import record_params, write_slots
    from .._utils._validation import check_key

    key = check_key(args.key_added)
    cls = _owner(command.func)
    load_kwargs = {"device": args.device} if "device" in vars(args) else {}
    model = _load_model(cls, args.model_in, **load_kwargs)
    data = read_data(args.input)
    adata = modality(data, args.mod, input_path=args.input, whole=command.takes_mudata)
    kwargs = command.kwargs(args)
    embedding = getattr(model, command.func.__name__)(adata, **kwargs)
    params = record_params(
        {**kwargs, "model": str(Path(args.model_in).name), "command_line": args.command_line}
    )
    write_slots(
        adata,
        key,
        obsm={f"X_{key}": np.asarray(embedding, dtype=np.float32)},
        uns={"params": params, "var_names": np.asarray(model.var_names, dtype=object)},
    )
    write_data(data, args.output)


def _owner(method: Callable) -> Any:
    from .. import tl

    return getattr(tl, method.__qualname__.split(".")[0])


def run_gene_activity(args: argparse.Namespace, command: Command) -> None:
    """h5ad: the gene activity AnnData (links in its ``uns``); h5mu: the MuData with the activity
    added as a modality named ``key_added`` and the links on the ATAC modality."""
    from mudata import MuData

    data = read_data(args.input)
    kwargs = command.kwargs(args)
    if args.links is not None:
        kwargs["links"] = _read_links(args.links)
    if isinstance(data, MuData):
        activity = command.func(data, **kwargs)
        data.mod[kwargs["key_added"]] = activity
        data.update()
        record_command(data, kwargs["key_added"], args.command_line)
        write_data(data, args.output)
    else:
        activity = command.func(data, copy=True, **kwargs)
        record_command(activity, kwargs["key_added"], args.command_line)
        write_data(activity, args.output)


def _read_links(path: str) -> Any:
    import scipy.sparse as sp

    from ._io import check_readable

    check_readable(path, what="links")
    try:
        return sp.load_npz(path)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path!r} as a scipy sparse .npz matrix: {err}") from err


def run_plot(args: argparse.Namespace, command: Command) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = Path(args.output).suffix.lower()
    if suffix not in (".png", ".svg", ".pdf"):
        raise UserError(f"the figure {args.output!r} must end in .png, .svg or .pdf.")
    data = read_data(args.input)
    adata = modality(data, args.mod, input_path=args.input, whole=command.takes_mudata)
    figure = command.func(adata, **command.kwargs(args), show=False, return_fig=True)
    with atomic_path(args.output) as temporary:
        figure.savefig(temporary, dpi=args.dpi, bbox_inches="tight", format=suffix[1:])
    plt.close(figure)


def _metric_frame(name: str, value: Any, kwargs: dict[str, Any]) -> Any:
    """The scores as a table: one row per score (a vector of scores gets the list option it
    follows as a column, e.g. one row per ``n_neighbors``)."""
    import pandas as pd

    if np.ndim(value) == 1:
        values = np.asarray(value, dtype=float)
        frame = pd.DataFrame({"metric": name, "value": values})
        for option, given in kwargs.items():
            if isinstance(given, list | tuple) and len(given) == len(values):
                frame.insert(1, option, given)
                break
        return frame
    if isinstance(value, pd.DataFrame):
        plain = isinstance(value.index, pd.RangeIndex) and value.index.name is None
        frame = value.reset_index(drop=plain)  # a named index (factor, resolution) is kept
        frame.insert(0, "metric", name)
        return frame
    return pd.DataFrame({"metric": [name], "value": [float(value)]})


def _labels(obj: Any, column: str, *, what: str) -> np.ndarray:
    if column not in obj.obs:
        raise UserError(f"{what}: no obs column {column!r} (columns: {list(obj.obs.columns)})")
    return obj.obs[column].to_numpy()


def _paired_parts(args: argparse.Namespace, data: Any) -> tuple[Any, Any]:
    """The two sets of cells compared by a pairing metric: two modalities of a MuData, or two
    values of an obs column of an AnnData."""
    from mudata import MuData

    first, second = args.parts
    if isinstance(data, MuData):
        missing = [m for m in (first, second) if m not in data.mod]
        if missing:
            raise UserError(f"{args.input!r} has no modality {missing[0]!r} ({list(data.mod)}).")
        return data.mod[first], data.mod[second]
    if args.batch_key is None:
        raise UserError("an .h5ad input needs --batch-key naming the obs column of --parts.")
    batches = _labels(data, args.batch_key, what="--batch-key").astype(str)
    parts = []
    for value in (first, second):
        mask = batches == value
        if not mask.any():
            raise UserError(f"obs[{args.batch_key!r}] has no cells of {value!r}.")
        parts.append(data[mask])
    return parts[0], parts[1]


def _rep(obj: Any, key: str, *, what: str) -> np.ndarray:
    if key not in obj.obsm:
        raise UserError(f"{what}: no obsm[{key!r}] (obsm: {list(obj.obsm)}).")
    return np.asarray(obj.obsm[key])


def run_metric(args: argparse.Namespace, command: Command) -> None:
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".tsv", ".json"):
        raise UserError(f"the metrics file {args.output!r} must end in .tsv or .json.")
    data = read_data(args.input)
    kwargs = command.kwargs(args)
    handled = command.handled
    if "x" in handled:  # two embeddings: cells of one part against the other
        x, y = _paired_parts(args, data)
        if "pair_key" in vars(args) and args.pair_key is not None:
            x, y = _pair(x, y, args.pair_key)
        elif command.func.__name__ in ("foscttm", "neighborhood_overlap"):
            if not np.array_equal(np.asarray(x.obs_names), np.asarray(y.obs_names)):
                raise UserError(
                    "the two parts must hold the same cells in the same order (paired): give "
                    "--pair-key, an obs column whose values pair the cells."
                )
        if "labels_x" in handled:
            kwargs["labels_x"] = _labels(x, args.labels_x, what="--labels-x")
            kwargs["labels_y"] = _labels(y, args.labels_y, what="--labels-y")
        value = command.func(
            _rep(x, args.use_rep, what=args.parts[0]),
            _rep(y, args.use_rep, what=args.parts[1]),
            **kwargs,
        )
    else:
        adata = modality(data, args.mod, input_path=args.input, whole=command.takes_mudata)
        if "labels_true" in handled:
            true = _labels(adata, args.labels_true, what="--labels-true")
            pred = _labels(adata, args.labels_pred, what="--labels-pred")
            value = command.func(true, pred, **kwargs)
        elif "adata" in handled:  # purity takes columns and the AnnData
            value = command.func(adata=adata, **kwargs)
        else:
            value = command.func(adata, **kwargs)
    frame = _metric_frame(command.name, value, kwargs)
    with atomic_path(args.output) as temporary:
        if suffix == ".tsv":
            frame.to_csv(temporary, sep="\t", index=False)
        else:
            from .._version import __version__

            record = {
                "metric": command.name,
                "results": frame.drop(columns="metric").to_dict(orient="records"),
                "params": {k: _jsonable(v) for k, v in kwargs.items() if not _is_array(v)},
                "input": str(args.input),
                "command_line": args.command_line,
                "scintegrate_version": __version__,
            }
            temporary.write_text(json.dumps(record, indent=2) + "\n")


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _pair(x: Any, y: Any, pair_key: str) -> tuple[Any, Any]:
    """Order ``y`` so that row i pairs with row i of ``x`` by the values of ``obs[pair_key]``."""
    left = _labels(x, pair_key, what="--pair-key").astype(str)
    right = _labels(y, pair_key, what="--pair-key").astype(str)
    if len(set(left)) != len(left) or len(set(right)) != len(right):
        raise UserError(f"obs[{pair_key!r}] must name each cell of a part once.")
    common = [v for v in left if v in set(right)]
    if not common:
        raise UserError(f"no value of obs[{pair_key!r}] is shared by the two parts.")
    position_x = {v: i for i, v in enumerate(left)}
    position_y = {v: i for i, v in enumerate(right)}
    return x[[position_x[v] for v in common]], y[[position_y[v] for v in common]]


# --- extra arguments of some commands ---------------------------------------------------------


def _gene_activity_arguments(parser: argparse.ArgumentParser) -> None:
    _in_out(parser, mod=False)
    from .. import pp
    from ._options import parameter_docs

    text = parameter_docs(pp.gene_activity)["links"]
    parser.add_argument(
        "--links",
        default=None,
        metavar="FILE",
        help=f"{text} Here: a .npz file written by scipy.sparse.save_npz.".replace("%", "%%"),
    )


def _online_inmf_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        metavar="IN",
        nargs="+",
        help="one .h5ad/.h5mu (datasets by --batch-key) or several .h5ad files, one per dataset, "
        "read from disk (datasets named by their file names)",
    )
    parser.add_argument("output", metavar="OUT", help="output .h5ad (or .h5mu for an .h5mu IN)")
    parser.add_argument("--mod", default=None, help="modality of an .h5mu input to work on")
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a Dask scheduler (e.g. tcp://10.0.0.1:8786): the statistics pass and "
        "the final factors run as tasks on its workers, which must see the input paths; needs "
        "pip install 'scintegrate[dask]'",
    )
    _model_in(parser, required=False)
    _model_out(parser)


def _transform_arguments(default_key: str) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(parser: argparse.ArgumentParser) -> None:
        _in_out(parser)
        _model_in(parser, required=True)
        parser.add_argument(
            "--key-added",
            default=default_key,
            help="prefix of the slots written: obsm['X_<key>'] and uns['<key>']",
        )

    return arguments


def _etm_transform_arguments(parser: argparse.ArgumentParser) -> None:
    from .. import tl

    _transform_arguments("etm")(parser)
    load_device = options_of(tl.ETMModel.load, {"path": "--model-in"})
    add_options(parser, load_device)


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    _in_out(parser, out="FIGURE")
    parser.add_argument("--dpi", type=int, default=150, help="resolution of a .png figure")


def _documented(parser, func: Callable, name: str, here: str, **kwargs: Any) -> None:
    """An option of the command's own for parameter ``name``: its docstring text, then how the
    command line gives it."""
    from ._options import flag_of, parameter_docs

    text = f"{parameter_docs(func)[name]} Here: {here}"
    parser.add_argument(flag_of(name), help=text.replace("%", "%%"), **kwargs)


def _metric_arguments(kind: str, func: Callable) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(parser: argparse.ArgumentParser) -> None:
        _in_out(parser, mod=kind in ("single", "columns"), out="TABLE")
        column = {"required": True, "metavar": "COLUMN"}
        if kind == "columns":
            _documented(parser, func, "labels_true", "an obs column of IN.", **column)
            _documented(parser, func, "labels_pred", "an obs column of IN.", **column)
        if kind in ("pairs", "transfer"):
            parser.add_argument(
                "--use-rep",
                required=True,
                metavar="KEY",
                help="obsm key of the embedding of both parts",
            )
            parser.add_argument(
                "--parts",
                nargs=2,
                required=True,
                metavar=("X", "Y"),
                help="the two parts: modalities of an .h5mu, or two values of "
                "--batch-key of an .h5ad",
            )
            parser.add_argument(
                "--batch-key",
                default=None,
                metavar="COLUMN",
                help="obs column whose values --parts names (.h5ad input)",
            )
            parser.add_argument(
                "--pair-key",
                default=None,
                metavar="COLUMN",
                help="obs column whose values pair cells across the parts "
                "(by default the parts are paired row by row)",
            )
        if kind == "transfer":
            _documented(parser, func, "labels_x", "an obs column of part X.", **column)
            _documented(parser, func, "labels_y", "an obs column of part Y.", **column)

    return arguments


# --- the list of commands --------------------------------------------------------------------

# public functions that are not commands, and why
NOT_COMMANDS = {
    "metrics.leiden_clusters": "a clustering, not a score; tl tools and metrics ari/nmi use it",
}


def build_commands() -> list[Command]:
    from .. import metrics, pl, pp, tl

    anndata = {"adata": DATA_IN, "copy": IN_PLACE}
    mudata = {"mdata": DATA_IN, "copy": IN_PLACE}
    model = {"return_model": "--model-out FILE saves the model"}
    plot = {
        "adata": DATA_IN,
        "ax": "a new figure",
        "show": "written to FIGURE",
        "return_fig": "written to FIGURE",
        "kwargs": "scanpy's styling: use Python",
    }
    commands = [
        Command("nmf", tl.nmf, run_anndata_tool, anndata, _in_out),
        Command("inmf", tl.inmf, run_anndata_tool, anndata, _in_out),
        Command("uinmf", tl.uinmf, run_anndata_tool, anndata, _in_out),
        Command(
            "online-inmf",
            tl.online_inmf,
            run_online_inmf,
            anndata
            | model
            | {
                "init": "--model-in FILE continues a saved model",
                "client": "--scheduler ADDRESS runs the data passes on a Dask cluster",
            },
            _online_inmf_arguments,
        ),
        Command(
            "online-inmf-project",
            tl.OnlineINMFModel.transform,
            run_model_transform,
            {"data": DATA_IN, "client": "the command line projects in this process"},
            _transform_arguments("inmf"),
        ),
        Command(
            "etm", tl.etm, run_anndata_tool, anndata | model, lambda p: (_in_out(p), _model_out(p))
        ),
        Command(
            "etm-embed",
            tl.ETMModel.transform,
            run_model_transform,
            {"data": DATA_IN},
            _etm_transform_arguments,
        ),
        Command("mmdma", tl.mmdma, run_mudata_tool, mudata, lambda p: _in_out(p, mod=False)),
        Command("scjmt", tl.scjmt, run_mudata_tool, mudata, lambda p: _in_out(p, mod=False)),
        Command("liger-preprocess", pp.liger_preprocess, run_anndata_tool, anndata, _in_out),
        Command("liger-unshared", pp.liger_unshared, run_anndata_tool, anndata, _in_out),
        Command("quantile-norm", pp.quantile_norm, run_anndata_tool, anndata, _in_out),
        Command("centroid-align", pp.centroid_align, run_anndata_tool, anndata, _in_out),
        Command("factor-markers", tl.factor_markers, run_anndata_tool, anndata, _in_out),
        Command(
            "gene-activity",
            pp.gene_activity,
            run_gene_activity,
            anndata | {"links": "--links FILE (a .npz matrix)"},
            _gene_activity_arguments,
        ),
    ]
    for name in pl.__all__:
        commands.append(
            Command(
                name.replace("_", "-"),
                getattr(pl, name),
                run_plot,
                plot,
                _plot_arguments,
                group="plot",
            )
        )
    metric_kinds = {
        "ari": ("single", {"data": DATA_IN}),
        "nmi": ("single", {"data": DATA_IN}),
        "cluster_agreement": ("single", {"data": DATA_IN}),
        "alignment_score": ("single", {"data": DATA_IN}),
        "agreement": ("single", {"data": DATA_IN, "X": "the matrix of IN (--layer)"}),
        "purity": ("single", {"adata": DATA_IN}),
        "dataset_specificity": ("single", {"adata": DATA_IN}),
        "scib": ("single", {"adata": DATA_IN}),
        "adjusted_rand_index": (
            "columns",
            {"labels_true": "--labels-true COLUMN", "labels_pred": "--labels-pred COLUMN"},
        ),
        "normalized_mutual_info": (
            "columns",
            {"labels_true": "--labels-true COLUMN", "labels_pred": "--labels-pred COLUMN"},
        ),
        "foscttm": (
            "pairs",
            {
                "x": "--use-rep and --parts",
                "y": "--use-rep and --parts",
                "per_cell": "a command writes one score",
            },
        ),
        "neighborhood_overlap": (
            "pairs",
            {"x": "--use-rep and --parts", "y": "--use-rep and --parts"},
        ),
        "label_transfer_accuracy": (
            "transfer",
            {
                "x": "--use-rep and --parts",
                "y": "--use-rep and --parts",
                "labels_x": "--labels-x COLUMN",
                "labels_y": "--labels-y COLUMN",
            },
        ),
    }
    for name in metrics.__all__:
        if f"metrics.{name}" in NOT_COMMANDS:
            continue
        kind, handled = metric_kinds[name]
        commands.append(
            Command(
                name.replace("_", "-"),
                getattr(metrics, name),
                run_metric,
                handled,
                _metric_arguments(kind, getattr(metrics, name)),
                group="metrics",
            )
        )
    return commands
