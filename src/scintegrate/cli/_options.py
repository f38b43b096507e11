"""Command-line options derived from a function's signature and numpydoc text.

One mechanism for every command, so that the command line cannot drift from the Python API:
each keyword parameter becomes an option whose type, default and choices come from the
signature (annotations are read as written, without importing the names they mention) and
whose help is the parameter's docstring text. Parameters the command line cannot express
(arrays, models, callables, ``copy``) are handled by the command itself, which says how.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docstring_parser

# annotation names that stand for a value the command line can give
_SCALARS = {"int": int, "float": float, "str": str, "Path": str}
_SEQUENCES = {"Sequence", "list", "tuple"}
_MAPPINGS = {"Mapping", "dict"}
NONE_WORD = "none"  # spelled on the command line where None is allowed but not the default


@dataclass(frozen=True)
class Kind:
    """What the command line can pass for one parameter, read from its annotation."""

    scalars: tuple[type, ...] = ()  # accepted scalar types, in the order they are tried
    choices: tuple[Any, ...] = ()  # Literal values
    boolean: bool = False
    sequence: tuple[type, ...] = ()  # element types of an accepted Sequence[...]
    mapping: type | None = None  # value type of an accepted Mapping[str, ...]
    optional: bool = False  # None is accepted

    @property
    def expressible(self) -> bool:
        return bool(self.scalars or self.choices or self.boolean or self.sequence or self.mapping)


def _members(node: ast.expr) -> list[ast.expr]:
    """The members of a ``A | B | C`` annotation."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _members(node.left) + _members(node.right)
    return [node]


def _name(node: ast.expr) -> str:
    return ast.unparse(node)


def _element_types(node: ast.expr) -> tuple[type, ...]:
    types = []
    for member in _members(node):
        if _name(member) in _SCALARS:
            types.append(_SCALARS[_name(member)])
    return tuple(types)


def read_kind(annotation: Any) -> Kind:
    """Parse an annotation (a string under ``from __future__ import annotations``)."""
    if annotation is inspect.Parameter.empty:
        return Kind()
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    scalars: list[type] = []
    choices: list[Any] = []
    sequence: tuple[type, ...] = ()
    mapping = None
    boolean = optional = False
    for member in _members(ast.parse(text, mode="eval").body):
        name = _name(member)
        if name == "None":
            optional = True
        elif name == "bool":
            boolean = True
        elif name in _SCALARS:
            scalars.append(_SCALARS[name])
        elif isinstance(member, ast.Subscript):
            outer = _name(member.value)
            inner = member.slice
            if outer == "Literal":
                values = inner.elts if isinstance(inner, ast.Tuple) else [inner]
                choices.extend(ast.literal_eval(v) for v in values)
            elif outer in _SEQUENCES and not isinstance(inner, ast.Tuple):
                sequence = _element_types(inner)
            elif outer in _MAPPINGS and isinstance(inner, ast.Tuple) and len(inner.elts) == 2:
                values = _element_types(inner.elts[1])
                mapping = values[0] if values else None
        # anything else (arrays, models, generators, data frames) has no command-line form
    # an int-or-float parameter takes either; str last, so that numbers stay numbers
    order = {int: 0, float: 1, str: 2}
    return Kind(
        scalars=tuple(sorted(set(scalars), key=order.__getitem__)),
        choices=tuple(choices),
        boolean=boolean,
        sequence=sequence,
        mapping=mapping,
        optional=optional,
    )


def flag_of(name: str) -> str:
    """``lambda_`` -> ``--lambda``, ``n_components`` -> ``--n-components``."""
    return "--" + name.rstrip("_").replace("_", "-")


def plain_text(description: str) -> str:
    """Docstring text for a terminal: roles and backquotes removed, whitespace collapsed."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", description)
    text = text.replace("``", "")
    return " ".join(text.split())


def parameter_docs(func: Callable) -> dict[str, str]:
    """Each documented parameter's text (``a, b`` entries give both names the same text)."""
    parsed = docstring_parser.parse(
        func.__doc__ or "", style=docstring_parser.DocstringStyle.NUMPYDOC
    )
    docs = {}
    for param in parsed.params:
        for name in param.arg_name.split(","):
            docs[name.strip()] = plain_text(param.description or "")
    return docs


@dataclass(frozen=True)
class Option:
    """One command-line option for one keyword parameter of a function."""

    name: str
    kind: Kind
    default: Any  # inspect.Parameter.empty: a required option
    help: str

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    def convert(self, word: str) -> Any:
        """A single word to the value the function expects."""
        kind = self.kind
        if kind.optional and word == NONE_WORD:
            return None
        if kind.boolean and word.lower() in ("true", "false"):  # a bool beside other kinds
            return word.lower() == "true"
        if word in [str(c) for c in kind.choices]:
            return next(c for c in kind.choices if str(c) == word)
        for scalar in kind.scalars:
            try:
                return scalar(word)
            except ValueError:
                continue
        accepted = []
        if kind.choices:
            accepted.append("one of " + ", ".join(map(str, kind.choices)))
        accepted += [{int: "an integer", float: "a number"}.get(t, "text") for t in kind.scalars]
        if kind.boolean:
            accepted.append("true or false")
        if kind.optional:
            accepted.append(repr(NONE_WORD))
        raise argparse.ArgumentTypeError(f"{word!r} is not {' or '.join(accepted)}")


def _read_names(word: str) -> list[str]:
    """``@FILE``: one name per line of FILE."""
    path = Path(word[1:])
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{word!r}: no file {str(path)!r} to read names from")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class _ListAction(argparse.Action):
    """``nargs="+"`` for Sequence and Mapping parameters: ``KEY=VALUE`` pairs for a mapping, a
    single scalar stays a scalar where the parameter takes one, ``@FILE`` reads names."""

    def __init__(self, *args: Any, option: Option, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.option = option

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        option, kind = self.option, self.option.kind
        words = []
        for word in values:
            words.extend(_read_names(word) if word.startswith("@") else [word])
        if kind.mapping is not None and any("=" in w for w in words):
            pairs = {}
            for word in words:
                key, sep, value = word.partition("=")
                if not sep or not key:
                    parser.error(f"{option_string}: expected KEY=VALUE pairs, got {word!r}")
                pairs[key] = None if value == NONE_WORD else _convert(parser, kind.mapping, value)
            setattr(namespace, self.dest, pairs)
            return
        if len(words) == 1 and (
            kind.scalars or kind.choices or (kind.optional and words[0] == NONE_WORD)
        ):
            setattr(namespace, self.dest, _option_value(parser, option, words[0], option_string))
            return
        element = kind.sequence[0] if kind.sequence else str
        setattr(namespace, self.dest, [_convert(parser, element, w) for w in words])


def _convert(parser: argparse.ArgumentParser, kind: type, word: str) -> Any:
    try:
        return kind(word)
    except ValueError:
        parser.error(f"{word!r} is not {'an integer' if kind is int else 'a number'}")


def _option_value(parser, option: Option, word: str, option_string: str | None) -> Any:
    try:
        return option.convert(word)
    except argparse.ArgumentTypeError as err:
        parser.error(f"argument {option_string}: {err}")


def options_of(func: Callable, handled: Mapping[str, str] = ()) -> list[Option]:
    """An option for every parameter of ``func`` except those in ``handled``.

    ``handled`` maps the parameters the command takes care of itself (the data, ``copy``, a
    model) to the reason. A parameter that is neither expressible nor handled is an error, so a
    new parameter cannot silently miss its option.
    """
    docs = parameter_docs(func)
    options = []
    for name, param in inspect.signature(func).parameters.items():
        if name in handled or name == "self":
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{func.__qualname__}: **{name} must be handled by the command")
        kind = read_kind(param.annotation)
        if not kind.expressible:
            raise TypeError(
                f"{func.__qualname__}: parameter {name!r} ({param.annotation}) has no "
                "command-line form; the command must handle it"
            )
        if name not in docs:
            raise TypeError(f"{func.__qualname__}: parameter {name!r} is not documented")
        options.append(Option(name, kind, param.default, docs[name]))
    return options


def add_options(parser: argparse.ArgumentParser, options: list[Option]) -> None:
    """Add the options to an argparse parser; each stores under the parameter's own name."""
    for option in options:
        kind = option.kind
        text = option.help.replace("%", "%%")
        common = {"dest": option.name, "help": text}
        if option.required:
            common["required"] = True
        else:
            common["default"] = option.default
        if kind.boolean and not (kind.scalars or kind.choices or kind.sequence):
            parser.add_argument(option.flag, action=argparse.BooleanOptionalAction, **common)
        elif kind.sequence or kind.mapping is not None:
            parser.add_argument(
                option.flag, nargs="+", action=_ListAction, option=option, metavar="VALUE", **common
            )
        else:
            metavar = None
            if kind.choices and not (kind.scalars or kind.optional):
                words = (["true", "false"] if kind.boolean else []) + list(map(str, kind.choices))
                metavar = "{" + ",".join(words) + "}"
            parser.add_argument(
                option.flag,
                type=_typed(option),
                metavar=metavar or option.name.rstrip("_").upper(),
                **common,
            )


def _typed(option: Option) -> Callable[[str], Any]:
    def convert(word: str) -> Any:
        return option.convert(word)

    convert.__name__ = option.name  # argparse names the type in its messages
    return convert


def keyword_arguments(args: argparse.Namespace, options: list[Option]) -> dict[str, Any]:
    """The parsed options as keyword arguments of the function."""
    return {option.name: getattr(args, option.name) for option in options}
