"""The command line cannot drift from the Python API: every keyword parameter of every tool has
an option with the docstring's text, the signature's default and the Literal's choices."""

from __future__ import annotations

import argparse
import inspect
import re
import typing

import pytest

import scintegrate as si
from scintegrate.cli import build_parser
from scintegrate.cli._commands import NOT_COMMANDS, build_commands
from scintegrate.cli._options import NONE_WORD, flag_of, read_kind

PARSER, COMMANDS = build_parser()


def _subparser(full_name: str) -> argparse.ArgumentParser:
    parser = PARSER
    for word in full_name.split():
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


def _actions(full_name: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in _subparser(full_name)._actions}


def _docstring_text(func, name: str) -> str:
    """The parameter's text read straight from the docstring (independently of cli._options)."""
    doc = inspect.cleandoc(func.__doc__)
    params = doc.split("Parameters\n----------\n", 1)[1]
    params = re.split(r"\n(?:Returns|Notes|Examples|References|See Also)\n-+\n", params)[0]
    blocks = re.split(r"\n(?=\S)", params)
    for block in blocks:
        head, _, body = block.partition("\n")
        if name in [n.strip() for n in head.split(",")]:
            text = re.sub(r":\w+:`~?([^`]+)`", r"\1", body).replace("``", "")
            return " ".join(text.split())
    raise AssertionError(f"{name} not documented")


def test_every_tool_plot_and_metric_has_a_command():
    names = {c.func for c in COMMANDS.values()}
    for namespace in ("tl", "pp", "pl", "metrics"):
        module = getattr(si, namespace)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or f"{namespace}.{name}" in NOT_COMMANDS:
                continue
            assert obj in names, f"{namespace}.{name} has no command"
    # models embed new cells from the command line too
    assert {si.tl.OnlineINMFModel.transform, si.tl.ETMModel.transform} <= names


CASES = [
    (full, name, param)
    for full, command in COMMANDS.items()
    for name, param in inspect.signature(command.func).parameters.items()
    if name != "self"
]


@pytest.mark.parametrize(("full", "name", "param"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_each_parameter_is_an_option_or_handled(full, name, param):
    command = COMMANDS[full]
    actions = _actions(full)
    if name in command.handled:
        assert command.handled[name], f"{full}: {name} handled without a reason"
        if name in actions:  # an option of the command's own (a file instead of a matrix)
            assert actions[name].help.startswith(_docstring_text(command.func, name))
        return
    assert name in actions, f"{full}: parameter {name} has no option"
    action = actions[name]
    assert action.option_strings[0] == flag_of(name)
    # help: the docstring's text of that parameter
    assert action.help.replace("%%", "%") == _docstring_text(command.func, name)
    # default: the signature's (required options for parameters without one)
    if param.default is inspect.Parameter.empty:
        assert action.required
    else:
        assert action.default == param.default or (action.default is param.default is None), (
            f"{full} {flag_of(name)} default {action.default!r} != {param.default!r}"
        )
    # choices: the Literal's values are accepted, other words are not (unless free text is)
    kind = read_kind(param.annotation)
    literal = re.search(r"Literal\[([^\]]*)\]", str(param.annotation))
    if literal:
        values = [eval(v) for v in literal.group(1).split(",")]
        assert list(kind.choices) == values
        if action.type is not None:
            for value in values:
                assert action.type(str(value)) == value
            if str not in kind.scalars:
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type("not-a-choice")
    # types: the default given as a word comes back as the default
    if action.type is not None and param.default not in (None, inspect.Parameter.empty):
        assert action.type(str(param.default)) == param.default
        assert type(action.type(str(param.default))) is type(param.default)
    if kind.optional and param.default is not None and action.type is not None:
        assert action.type(NONE_WORD) is None
    if kind.boolean and not (kind.scalars or kind.choices or kind.sequence):
        assert isinstance(action, argparse.BooleanOptionalAction)
    elif kind.boolean:  # a bool beside other kinds: the words true and false
        assert action.type("false") is False and action.type("true") is True


def test_types_follow_annotations():
    assert read_kind("int").scalars == (int,)
    assert read_kind("int | float | None").scalars == (int, float)
    assert read_kind("float | Literal['median']").choices == ("median",)
    kind = read_kind("str | Mapping[str, str | None] | None")
    assert kind.mapping is str and kind.optional
    assert read_kind("Sequence[int]").sequence == (int,)
    assert not read_kind("np.ndarray").expressible
    assert not read_kind(inspect.Parameter.empty).expressible


def test_a_parameter_without_a_command_line_form_must_be_handled():
    from scintegrate.cli._options import options_of

    def tool(adata, *, weights: typing.Any = None):
        """Tool.

        Parameters
        ----------
        adata
            Data.
        weights
            Weights.
        """

    with pytest.raises(TypeError, match="weights"):
        options_of(tool, {"adata": "IN"})
    assert options_of(tool, {"adata": "IN", "weights": "not on the command line"}) == []


def test_parsing_gives_the_python_values():
    parser = _subparser("mmdma")
    args = parser.parse_args(
        ["in.h5mu", "out.h5mu", "--layer", "rna=counts", "atac=none", "--bandwidth", "2.5"]
    )
    assert args.layer == {"rna": "counts", "atac": None}
    assert args.bandwidth == 2.5
    args = parser.parse_args(["in.h5mu", "out.h5mu", "--bandwidth", "median", "--mods", "a", "b"])
    assert args.bandwidth == "median" and args.mods == ["a", "b"]
    args = _subparser("quantile-norm").parse_args(
        ["i.h5ad", "o.h5ad", "--batch-key", "b", "--use-dims", "0", "--reference", "none"]
    )
    assert args.use_dims == [0] and args.reference is None
    args = _subparser("online-inmf").parse_args(["a.h5ad", "b.h5ad", "o.h5ad", "--layer", "none"])
    assert args.inputs == ["a.h5ad", "b.h5ad"] and args.layer is None
    assert args.mask_var == "liger_highly_variable"


def test_commands_are_built_once_per_function():
    functions = [c.func for c in build_commands()]
    assert len(functions) == len(set(functions))
