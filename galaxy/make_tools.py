"""Write the Galaxy tool XMLs of this folder from the ``scintegrate`` command line.

Run from the repository root: ``python galaxy/make_tools.py`` (``--check`` only compares and
exits 1 when a committed file differs; ``tests/galaxy`` does the same).

Every parameter of every tool comes from the command's options (:func:`scintegrate.cli.
_commands.build_commands`: the function's signature and numpydoc text) and from the extra
arguments the command adds with argparse (``--mod``, ``--labels-true``, ``--dpi``, ...), so the
Galaxy tools cannot drift from the Python API: a new keyword parameter appears here (in the
"Advanced options" section) the next time this script runs, and the test that compares the
committed XMLs with this script's output fails until it has. The files (IN, OUT, models, link
matrices, annotations) are the only arguments written by hand, in :data:`FILE_ARGUMENTS` and the
runner templates below; :mod:`tool_specs` holds what a signature cannot say (tests, help text,
citations, which parameters are shown outside the advanced section).

How an option becomes a Galaxy parameter (``kind`` is :class:`scintegrate.cli._options.Kind`):

==================================  ==========================================================
option                              Galaxy parameter, and what the command line receives
==================================  ==========================================================
boolean                             ``boolean`` with ``--flag``/``--no-flag`` as true/false value
boolean, default None               ``select`` default / yes / no; nothing passed for default
choices (``Literal``)               ``select``; ``none`` is one more option where None is allowed,
                                    ``true`` and ``false`` where a bool is
int or float                        ``integer``/``float``; ``optional`` where None is allowed (an
                                    empty field passes nothing, so the function's default holds)
int or float or None, default set   ``text`` taking a number or ``none`` (a number field cannot
                                    say None)
choices and numbers (``"median"``)  ``text`` checked by a regular expression
text                                ``text``; empty not allowed unless None is; quoted ``'$x'``
sequence or mapping                 ``text``, comma-separated values (``KEY=VALUE`` for a
                                    mapping), each passed as one quoted word
==================================  ==========================================================

Galaxy's default sanitizer maps quotes, ``$``, ``@`` and the other shell characters of a text
value to safe words, so single quotes are enough in the command, and an ``@FILE`` word (which
the command line would read names from) cannot reach it from a text field.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import tool_specs  # noqa: E402  (the hand-written table beside this script)

NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
INTEGER = r"[-+]?\d+"
PROFILE = "23.0"

# arguments of the commands that name files: the runner templates below write them by hand
FILE_ARGUMENTS = {"help", "input", "output", "inputs", "model_in", "model_out", "links"}


# --- a small XML writer (deterministic layout, CDATA for the command and the help) ------------


@dataclass
class E:
    """An XML element: tag, attributes in the order given, children, text or CDATA."""

    tag: str
    attrs: dict[str, Any] = field(default_factory=dict)
    children: list[E] = field(default_factory=list)
    text: str | None = None
    cdata: str | None = None

    def render(self, depth: int = 0) -> list[str]:
        pad = "    " * depth
        attrs = "".join(f' {k}="{_escape_attr(v)}"' for k, v in self.attrs.items() if v is not None)
        if self.cdata is not None:
            return [f"{pad}<{self.tag}{attrs}><![CDATA[{self.cdata}]]></{self.tag}>"]
        if self.text is not None:
            return [f"{pad}<{self.tag}{attrs}>{_escape_text(self.text)}</{self.tag}>"]
        if not self.children:
            return [f"{pad}<{self.tag}{attrs}/>"]
        lines = [f"{pad}<{self.tag}{attrs}>"]
        for child in self.children:
            lines += child.render(depth + 1)
        return [*lines, f"{pad}</{self.tag}>"]


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return _escape_text(str(value)).replace('"', "&quot;").replace("\n", " ")


def _document(root: E) -> str:
    return "\n".join(root.render()) + "\n"


# --- parameters -------------------------------------------------------------------------------


@dataclass
class Param:
    """One Galaxy parameter and how the command template passes it."""

    name: str
    flag: str | None
    element: E
    render: str  # value | if_set | boolean | tristate | words
    required: bool = False
    basic: bool = False

    def command(self, path: str) -> list[str]:
        """Cheetah lines passing the value of ``$path`` (e.g. ``advanced.max_iter``)."""
        var = f"${path}"
        flag = self.flag
        if self.render == "boolean":
            return [var]
        if self.render == "tristate":
            return [f"#if str({var}) != 'default':", var, "#end if"]
        if self.render == "value_number":
            return [f"{flag} {var}"]
        if self.render == "value":
            return [f"{flag} '{var}'"]
        if self.render == "if_set_number":
            return [f"#if str({var}).strip():", f"{flag} {var}", "#end if"]
        if self.render == "if_set":
            return [f"#if str({var}).strip():", f"{flag} '{var}'", "#end if"]
        if self.render == "words":
            return [
                f"#if str({var}).strip():",
                flag,
                f"#for $word in str({var}).split(','):",
                "#if $word.strip():",
                "'${word.strip()}'",
                "#end if",
                "#end for",
                "#end if",
            ]
        raise ValueError(self.render)


def _label(name: str, text: str) -> str:
    """A short label: the help's first phrase when it is short, else the name in words."""
    phrase = re.split(r"; |\. |: | \(|, ", text, maxsplit=1)[0].rstrip(".")
    if phrase and len(phrase) <= 60 and not phrase.startswith(('"', "'")):
        return _capitalized(phrase)
    return _name_label(name)


def _name_label(name: str) -> str:
    return _capitalized(name.rstrip("_").replace("_", " "))


def _capitalized(text: str) -> str:
    """Upper-case the first letter unless the first word has capitals of its own (kNN, t-SNE)."""
    first = text.split(" ", 1)[0]
    return text if first != first.lower() else text[0].upper() + text[1:]


def _default_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(_default_text(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _regex(expression: str, message: str) -> E:
    return E("validator", {"type": "regex", "message": message}, text=expression)


def _list_regex(item: str) -> str:
    return rf"^\s*{item}(\s*,\s*{item})*\s*$"


def _param_name(name: str) -> dict[str, str]:
    """``argument`` names the parameter; ``name`` only where the two would differ."""
    flag = "--" + name.rstrip("_").replace("_", "-")
    implied = flag[2:].replace("-", "_")
    attrs = {"name": name} if implied != name else {}
    return {**attrs, "argument": flag}


def option_param(option: Any) -> Param:
    """The Galaxy parameter of one :class:`scintegrate.cli._options.Option`."""
    kind = option.kind
    default = None if option.required else option.default
    help_text = option.help
    attrs: dict[str, Any] = _param_name(option.name)
    children: list[E] = []
    numeric = [t for t in kind.scalars if t in (int, float)]
    has_str = str in kind.scalars
    if kind.boolean and not (kind.scalars or kind.choices or kind.sequence):
        if option.default is None:
            attrs |= {"type": "select", "label": _label(option.name, help_text)}
            children = [
                E(
                    "option",
                    {"value": "default", "selected": True},
                    text="default (decided by the tool)",
                ),
                E("option", {"value": option.flag}, text="yes"),
                E("option", {"value": "--no-" + option.flag[2:]}, text="no"),
            ]
            render = "tristate"
        else:
            attrs |= {
                "type": "boolean",
                "truevalue": option.flag,
                "falsevalue": "--no-" + option.flag[2:],
                "checked": bool(option.default),
                "label": _label(option.name, help_text),
            }
            render = "boolean"
    elif kind.sequence or kind.mapping is not None:
        item_types = set(kind.sequence) | set(numeric) | ({kind.mapping} if kind.mapping else set())
        attrs |= {"type": "text", "label": _label(option.name, help_text)}
        if default is not None:
            attrs["value"] = _default_text(default)
        if kind.optional or default is None:
            attrs["optional"] = True
        how = "Comma-separated values"
        if kind.mapping is not None:
            how += ", or KEY=VALUE pairs (one value per key)"
        help_text = f"{help_text} ({how}.)"
        if not (has_str or str in item_types or kind.mapping is not None):
            item = INTEGER if item_types == {int} else NUMBER
            if kind.optional:
                item = f"({item}|none)"
            children.append(_regex(_list_regex(item), "Give comma-separated numbers."))
        render = "words"
    elif kind.choices and not kind.scalars:
        attrs |= {"type": "select", "label": _label(option.name, help_text)}
        for choice in kind.choices:
            opt = {"value": str(choice)}
            if choice == default:
                opt["selected"] = True
            children.append(E("option", opt, text=str(choice)))
        if kind.boolean:  # a bool beside the choices: the command line takes true / false
            for word, value in (("true", True), ("false", False)):
                opt = {"value": word}
                if default is value:
                    opt["selected"] = True
                children.append(E("option", opt, text=word))
        if kind.optional:
            children.append(E("option", {"value": "none"}, text="none"))
        render = "value"
    elif kind.choices or (numeric and kind.optional and default is not None and not has_str):
        # a number or a word: a text field checked by a regular expression
        words = [re.escape(str(c)) for c in kind.choices]
        if kind.optional:
            words.append("none")
        item = INTEGER if numeric == [int] else NUMBER
        attrs |= {
            "type": "text",
            "value": _default_text(default),
            "label": _label(option.name, help_text),
        }
        accepted = " or ".join(
            [*(f'"{c}"' for c in kind.choices), "a number", *(['"none"'] if kind.optional else [])]
        )
        help_text = f"{help_text} ({accepted}.)"
        if not has_str:
            children.append(_regex(rf"^\s*({'|'.join([*words, item])})\s*$", f"Give {accepted}."))
        else:
            children.append(E("validator", {"type": "empty_field"}))
        render = "value"
    elif numeric and not has_str:
        attrs |= {"type": "integer" if numeric == [int] else "float"}
        if default is not None:
            attrs["value"] = _default_text(default)
        elif option.required:  # Galaxy's number fields need a value: the smallest index
            attrs["value"] = "0"
        elif not kind.optional:
            raise TypeError(f"option {option.name}: a number without a default has no form here")
        if kind.optional:
            attrs["optional"] = True
        attrs["label"] = _label(option.name, help_text)
        render = "if_set_number" if kind.optional else "value_number"
    elif has_str:
        attrs |= {"type": "text"}
        if default is not None:
            attrs["value"] = str(default)
        attrs["label"] = _label(option.name, help_text)
        if kind.optional:
            attrs["optional"] = True
            if default is not None:
                help_text += ' (Type "none" for None.)'
            render = "if_set"
        else:
            children.append(E("validator", {"type": "empty_field"}))
            render = "value"
    else:
        raise TypeError(f"option {option.name}: no Galaxy form for {kind}")
    attrs["help"] = help_text
    return Param(option.name, option.flag, E("param", attrs, children), render, option.required)


def argparse_param(action: argparse.Action) -> Param:
    """The Galaxy parameter of an extra argparse argument (``--mod``, ``--parts``, ...)."""
    name = action.dest
    help_text = (action.help or "").replace("%%", "%")
    attrs: dict[str, Any] = _param_name(name)
    attrs["argument"] = action.option_strings[0]
    children: list[E] = []
    if isinstance(action, argparse._StoreTrueAction):
        attrs |= {
            "type": "boolean",
            "truevalue": action.option_strings[0],
            "falsevalue": "",
            "checked": False,
        }
        render = "boolean"
    elif action.nargs not in (None, "?"):
        attrs |= {"type": "text"}
        count = {2: "Two"}.get(action.nargs, "Several")
        help_text = f"{help_text} ({count} comma-separated values.)"
        if not action.required:
            attrs["optional"] = True
        elif action.default is None:
            children.append(E("validator", {"type": "empty_field"}))
        render = "words"
    elif action.type is int:
        attrs |= {"type": "integer", "value": action.default}
        if action.default is None:
            attrs["optional"] = True
        render = "if_set_number" if action.default is None else "value_number"
    else:
        attrs |= {"type": "text"}
        if action.default is not None:
            attrs["value"] = action.default
        if action.required or action.default is not None:
            children.append(E("validator", {"type": "empty_field"}))
            render = "value"
        else:
            attrs["optional"] = True
            render = "if_set"
    label = _label(name, help_text)
    attrs = {
        **{k: v for k, v in attrs.items() if k != "help"},
        "label": label,
        "help": help_text[0].upper() + help_text[1:],
    }
    return Param(
        name, action.option_strings[0], E("param", attrs, children), render, bool(action.required)
    )


def _single(option: Any) -> Any:
    """The option without its sequence form: one value (``Function.single``)."""
    return dataclasses.replace(
        option,
        kind=dataclasses.replace(option.kind, sequence=()),
        help=option.help + " (One value here.)",
    )


def extra_actions(command: Any) -> list[argparse.Action]:
    """The arguments a command adds with argparse besides its function's options."""
    parser = argparse.ArgumentParser(add_help=False)
    command.arguments(parser)
    option_names = {o.name for o in command.options}
    return [a for a in parser._actions if a.dest not in option_names]


# --- tools ------------------------------------------------------------------------------------


@dataclass
class Form:
    """The parameters of one function: those shown first, then an "Advanced options" section."""

    basic: list[Param]
    advanced: list[Param]

    def elements(self) -> list[E]:
        out = [p.element for p in self.basic]
        if self.advanced:
            out.append(
                E(
                    "section",
                    {"name": "advanced", "title": "Advanced options", "expanded": False},
                    [p.element for p in self.advanced],
                )
            )
        return out

    def command(self, prefix: str = "") -> list[str]:
        lines = []
        for p in self.basic:
            lines += p.command(f"{prefix}{p.name}")
        for p in self.advanced:
            lines += p.command(f"{prefix}advanced.{p.name}")
        return lines

    def find(self, name: str) -> tuple[list[str], Param] | None:
        for p in self.basic:
            if p.name == name:
                return [], p
        for p in self.advanced:
            if p.name == name:
                return ["advanced"], p
        return None


def build_form(command: Any, spec: tool_specs.Function) -> Form:
    handled = set(spec.handled)
    params = [
        argparse_param(a) for a in extra_actions(command) if a.dest not in FILE_ARGUMENTS | handled
    ]
    params += [
        option_param(_single(o) if o.name in spec.single else o)
        for o in command.options
        if o.name not in handled
    ]
    names = {p.name for p in params}
    unknown = (
        (set(spec.basic) | set(spec.handled))
        - names
        - {a.dest for a in extra_actions(command)}
        - {o.name for o in command.options}
    )
    if unknown:
        raise KeyError(
            f"{command.name}: tool_specs names parameters the command lacks: {sorted(unknown)}"
        )
    for p in params:
        p.basic = p.required or p.name in spec.basic or p.name == "mod"
    # parameters documented together ("lr, lr_decay: ...") share a first phrase: name them
    labels = [p.element.attrs["label"] for p in params]
    for p in params:
        if labels.count(p.element.attrs["label"]) > 1:
            p.element.attrs["label"] = _name_label(p.name)
    return Form([p for p in params if p.basic], [p for p in params if not p.basic])


SETUP = """export OMP_NUM_THREADS="\\${GALAXY_SLOTS:-1}" OPENBLAS_NUM_THREADS="\\${GALAXY_SLOTS:-1}" MKL_NUM_THREADS="\\${GALAXY_SLOTS:-1}" &&
export NUMBA_NUM_THREADS="\\$(( \\${GALAXY_SLOTS:-1} < \\$(nproc) ? \\${GALAXY_SLOTS:-1} : \\$(nproc) ))" &&
export MPLBACKEND=Agg &&"""


def macros_xml(version: str) -> str:
    cites = []
    for key, (kind, value) in tool_specs.CITATIONS.items():
        cites.append(
            E(
                "xml",
                {"name": f"citation_{key}"},
                [
                    E(
                        "citation",
                        {"type": kind},
                        cdata=value if kind == "bibtex" else None,
                        text=None if kind == "bibtex" else value,
                    )
                ],
            )
        )
    root = E(
        "macros",
        children=[
            E("token", {"name": "@TOOL_VERSION@"}, text=version),
            E("token", {"name": "@VERSION_SUFFIX@"}, text=str(tool_specs.VERSION_SUFFIX)),
            E("token", {"name": "@PROFILE@"}, text=PROFILE),
            E(
                "xml",
                {"name": "requirements"},
                [
                    E(
                        "requirements",
                        children=[
                            E(
                                "requirement",
                                {"type": "package", "version": "@TOOL_VERSION@"},
                                text="scintegrate",
                            )
                        ],
                    )
                ],
            ),
            E(
                "xml",
                {"name": "stdio"},
                [
                    E(
                        "stdio",
                        children=[
                            E(
                                "exit_code",
                                {
                                    "range": ":-1",
                                    "level": "fatal",
                                    "description": "Killed by a signal",
                                },
                            ),
                            E(
                                "exit_code",
                                {
                                    "range": "1",
                                    "level": "fatal",
                                    "description": "Unexpected error (a bug in scintegrate?): see the traceback in the tool's standard error",
                                },
                            ),
                            E(
                                "exit_code",
                                {
                                    "range": "2",
                                    "level": "fatal",
                                    "description": "Invalid input or parameter: the tool's standard error says which and why",
                                },
                            ),
                            E(
                                "exit_code",
                                {
                                    "range": "3:",
                                    "level": "fatal",
                                    "description": "Interrupted or failed",
                                },
                            ),
                        ],
                    )
                ],
            ),
            E(
                "xml",
                {"name": "version_command"},
                [E("version_command", text="scintegrate --version")],
            ),
            E(
                "xml",
                {"name": "creator"},
                [
                    E(
                        "creator",
                        children=[
                            E(
                                "organization",
                                {
                                    "name": "scintegrate developers",
                                    "url": "https://github.com/scverse/scintegrate",
                                },
                            )
                        ],
                    )
                ],
            ),
            E("token", {"name": "@SETUP@"}, cdata=SETUP),
            *cites,
        ],
    )
    return _document(root)


def _data_param(name: str, formats: str, label: str, help_text: str = "", **extra: Any) -> E:
    attrs = {"name": name, "type": "data", "format": formats, **extra, "label": label}
    if help_text:
        attrs["help"] = help_text
    return E("param", attrs)


INPUT_HELP = "An AnnData (h5ad) file, or a MuData (h5mu) file with the modality chosen below."


def _input_ext_lines(var: str = "input") -> list[str]:
    return [
        f"#set $ext = 'h5mu' if ${var}.is_of_type('h5mu') else 'h5ad'",
        f"ln -s '${var}' 'input.$ext' &&",
    ]


def tool_xml(spec: tool_specs.Tool, commands: dict[str, Any]) -> str:
    """The XML text of one tool."""
    runner = spec.runner
    inputs: list[E] = []
    outputs: list[E] = []
    lines: list[str] = ["@SETUP@"]
    forms: dict[str, Form] = {}
    if spec.command in ("plot", "metrics"):
        for fname, fspec in spec.functions.items():
            forms[fname] = build_form(commands[f"{spec.command} {fname}"], fspec)
    else:
        forms[""] = build_form(commands[spec.command], spec.functions[""])
    cond_name = {"plot": "plot", "metrics": "metric"}.get(spec.command)

    # inputs and the lines before the command
    if runner == "online_inmf":
        inputs.append(
            _data_param(
                "inputs",
                "h5ad,h5mu",
                "Datasets",
                "One file with the datasets in an obs column (batch key), or several AnnData files, one per dataset, read from disk in mini-batches (each dataset is named by its file name).",
                multiple=True,
            )
        )
        inputs.append(
            _data_param(
                "model_in",
                "h5",
                "Continue training this model",
                "A model saved by this tool; its datasets' factors are updated with the new data (online iNMF scenarios 2 and 3).",
                optional=True,
            )
        )
        lines += [
            "#import re",
            "mkdir inputs &&",
            "#set $names = []",
            "#for $i, $dataset in enumerate($inputs):",
            "#set $ext = 'h5mu' if $dataset.is_of_type('h5mu') else 'h5ad'",
            "#set $name = re.sub(r'\\.(h5ad|h5mu)$', '', re.sub(r'[^A-Za-z0-9_.-]', '_', str($dataset.element_identifier))) or 'dataset'",
            "#if $name in $names:",
            "#set $name = '%s_%d' % ($name, $i + 1)",
            "#end if",
            "#silent $names.append('inputs/%s.%s' % ($name, $ext))",
            "ln -s '$dataset' '${names[-1]}' &&",
            "#end for",
            "#if $model_in:",
            "ln -s '$model_in' 'model_in.h5' &&",
            "#end if",
            "#set $ext = 'h5mu' if $inputs[0].is_of_type('h5mu') else 'h5ad'",
        ]
    elif runner == "mudata":
        inputs.append(
            _data_param(
                "input", "h5mu", "Multimodal data", "A MuData (h5mu) file holding both modalities."
            )
        )
        lines += ["#set $ext = 'h5mu'", "ln -s '$input' 'input.$ext' &&"]
    else:
        inputs.append(_data_param("input", "h5ad,h5mu", "Annotated data", INPUT_HELP))
        lines += _input_ext_lines()
    if runner == "transform":
        model_format, model_file = spec.model
        inputs.append(
            _data_param("model_in", model_format, "Model", "A model saved by the training tool.")
        )
        lines.append(f"ln -s '$model_in' '{model_file}' &&")
    if runner == "gene_activity":
        inputs.append(
            E(
                "conditional",
                {"name": "features"},
                [
                    E(
                        "param",
                        {"name": "source", "type": "select", "label": "Link peaks to genes by"},
                        [
                            E(
                                "option",
                                {"value": "annotation", "selected": True},
                                text="a gene annotation (GTF, GFF or BED)",
                            ),
                            E(
                                "option",
                                {"value": "links"},
                                text="a ready genes x peaks link matrix (npz)",
                            ),
                        ],
                    ),
                    E(
                        "when",
                        {"value": "annotation"},
                        [
                            _data_param(
                                "annotation",
                                "gtf,gff3,gff,bed,tabular",
                                "Gene annotation",
                                "GTF/GFF (rows of feature type gene, name from gene_name), BED6 (chrom, start, end, name, score, strand) or a tab-separated table whose header names chrom, start, end, strand and gene_name.",
                            ),
                            _data_param(
                                "genes",
                                "txt",
                                "Genes to report",
                                "One gene name per line, in the order wanted (e.g. the RNA genes); genes absent from the annotation get all-zero activity. Default: every gene of the annotation.",
                                optional=True,
                            ),
                        ],
                    ),
                    E(
                        "when",
                        {"value": "links"},
                        [
                            _data_param(
                                "links",
                                "npz",
                                "Link matrix",
                                "A genes x peaks matrix saved with scipy.sparse.save_npz, its columns in the order of the peaks.",
                            ),
                            _data_param(
                                "genes",
                                "txt",
                                "Genes of the link matrix",
                                "The names of its rows, one per line.",
                            ),
                        ],
                    ),
                ],
            )
        )
        lines += [
            "#if str($features.source) == 'annotation':",
            "#if $features.annotation.is_of_type('gtf'):",
            "#set $annotation = 'annotation.gtf'",
            "#elif $features.annotation.is_of_type('gff3', 'gff'):",
            "#set $annotation = 'annotation.gff'",
            "#elif $features.annotation.is_of_type('bed'):",
            "#set $annotation = 'annotation.bed'",
            "#else:",
            "#set $annotation = 'annotation.tsv'",
            "#end if",
            "ln -s '$features.annotation' '$annotation' &&",
            "#end if",
        ]

    # the function's parameters
    if cond_name:
        whens = []
        choices = []
        for fname, form in forms.items():
            fspec = spec.functions[fname]
            choices.append(
                E(
                    "option",
                    {"value": fname, "selected": fname == spec.default_function or None},
                    text=fspec.label,
                )
            )
            whens.append(E("when", {"value": fname}, form.elements()))
        inputs.append(
            E(
                "conditional",
                {"name": cond_name},
                [
                    E(
                        "param",
                        {"name": "function", "type": "select", "label": spec.function_label},
                        choices,
                    ),
                    *whens,
                ],
            )
        )
    else:
        inputs += forms[""].elements()

    # the command
    ext = "$ext"
    if runner == "online_inmf":
        lines.append("scintegrate online-inmf")
        lines += ["#for $path in $names:", "'$path'", "#end for", f"'output.{ext}'"]
        lines += [
            "#if $model_in:",
            "--model-in 'model_in.h5'",
            "#end if",
            "#if $model_out:",
            "--model-out 'model_out.h5'",
            "#end if",
        ]
    elif cond_name:
        out_file = {"plot": "'figure.$output_format'", "metrics": "'scores.$output_format'"}[
            spec.command
        ]
        lines.append(
            f"scintegrate {spec.command} '$" + cond_name + ".function' 'input.$ext' " + out_file
        )
    else:
        lines.append(f"scintegrate {spec.command} 'input.{ext}' 'output.{ext}'")
    if runner == "transform":
        lines.append(f"--model-in '{spec.model[1]}'")
    if runner == "etm":
        lines += ["#if $model_out:", "--model-out 'model_out.pt'", "#end if"]
    if runner == "gene_activity":
        lines += [
            "#if str($features.source) == 'annotation':",
            "--annotation '$annotation'",
            "#if $features.genes:",
            "--genes '@$features.genes'",
            "#end if",
            "#else:",
            "--links '$features.links'",
            "--genes '@$features.genes'",
            "#end if",
        ]
    if cond_name:
        for i, (fname, form) in enumerate(forms.items()):
            lines.append(f"{'#if' if i == 0 else '#elif'} str(${cond_name}.function) == '{fname}':")
            lines += form.command(f"{cond_name}.")
        lines.append("#end if")
    else:
        lines += forms[""].command()
    lines.append("--quiet &&")
    if cond_name:
        what = {"plot": "figure", "metrics": "scores"}[spec.command]
        lines.append(f"mv '{what}.$output_format' '${what}'")
    else:
        lines.append(f"mv 'output.{ext}' '$output'")
    if runner == "online_inmf":
        lines += ["#if $model_out:", "&& mv 'model_out.h5' '$model'", "#end if"]
    if runner == "etm":
        lines += ["#if $model_out:", "&& mv 'model_out.pt' '$model'", "#end if"]
    command = "\n".join(_indent_cheetah(lines))

    # outputs
    if runner in ("online_inmf", "etm"):
        inputs.insert(
            1 if runner == "etm" else 2,
            E(
                "param",
                {
                    "name": "model_out",
                    "type": "boolean",
                    "checked": False,
                    "label": "Also output the trained model",
                    "help": {
                        "online_inmf": "To project new cells with scintegrate online iNMF "
                        "projection, or to continue training with new datasets here.",
                        "etm": "To embed new cells with scintegrate scETM embedding.",
                    }[runner],
                },
            ),
        )
    label = "${tool.name} on ${on_string}"
    if cond_name:
        what = {"plot": "figure", "metrics": "scores"}[spec.command]
        formats = {
            "plot": [("png", "png"), ("svg", "svg"), ("pdf", "pdf")],
            "metrics": [("tsv", "tabular"), ("json", "json")],
        }[spec.command]
        inputs.append(
            E(
                "param",
                {"name": "output_format", "type": "select", "label": "Output format"},
                [
                    E("option", {"value": v, "selected": i == 0 or None}, text=f)
                    for i, (v, f) in enumerate(formats)
                ],
            )
        )
        outputs.append(
            E(
                "data",
                {
                    "name": what,
                    "format": formats[0][1],
                    "label": f"${{tool.name}} (${{{cond_name}.function}}) on ${{on_string}}",
                },
                [
                    E(
                        "change_format",
                        children=[
                            E("when", {"input": "output_format", "value": v, "format": f})
                            for v, f in formats[1:]
                        ],
                    )
                ],
            )
        )
        if spec.command == "plot":
            pass
    else:
        source = "inputs" if runner == "online_inmf" else "input"
        outputs.append(E("data", {"name": "output", "format_source": source, "label": label}))
    if runner in ("online_inmf", "etm"):
        model_format = "h5" if runner == "online_inmf" else "binary"
        outputs.append(
            E(
                "data",
                {
                    "name": "model",
                    "format": model_format,
                    "label": "${tool.name} on ${on_string}: model",
                },
                [E("filter", text="model_out")],
            )
        )

    # tests
    tests = [_test_element(spec, t, forms, cond_name, inputs) for t in spec.tests]

    root = E(
        "tool",
        {
            "id": f"scintegrate_{spec.command.replace('-', '_')}",
            "name": spec.name,
            "version": "@TOOL_VERSION@+galaxy@VERSION_SUFFIX@",
            "profile": "@PROFILE@",
            "license": "BSD-3-Clause",
        },
        [
            E("description", text=spec.description),
            E("macros", children=[E("import", text="macros.xml")]),
            E("expand", {"macro": "requirements"}),
            E("expand", {"macro": "stdio"}),
            E("expand", {"macro": "version_command"}),
            E("command", cdata="\n" + command + "\n    "),
            E("inputs", children=inputs),
            E("outputs", children=outputs),
            E("tests", children=tests),
            E("help", cdata="\n" + _help(spec, commands) + "\n    "),
            E(
                "citations",
                children=[E("expand", {"macro": f"citation_{c}"}) for c in spec.citations],
            ),
            E("expand", {"macro": "creator"}),
        ],
    )
    return _document(root)


def _indent_cheetah(lines: Iterable[str]) -> list[str]:
    """Indent the command by its ``#if``/``#for`` blocks (Galaxy joins the lines with spaces)."""
    out, depth = [], 0
    for line in lines:
        if line.startswith(("#end", "#else", "#elif")):
            depth -= 1
        out.append("    " * (depth + 1) + line if not line.startswith("@") else line)
        if line.startswith(("#if", "#for", "#else", "#elif")):
            depth += 1
    return out


def _test_element(
    spec: tool_specs.Tool,
    test: tool_specs.Test,
    forms: dict[str, Form],
    cond_name: str | None,
    inputs: list[E],
) -> E:
    attrs: dict[str, Any] = {"expect_num_outputs": test.expect_num_outputs}
    if test.expect_exit_code is not None:
        attrs = {"expect_exit_code": test.expect_exit_code, "expect_failure": True}
    children: list[E] = []
    params = dict(test.params)
    form = forms[test.function or ""]
    top_names = [_name_of(p) for p in inputs if p.tag == "param"]
    # top-level data and other parameters, in the order of the inputs
    for name in top_names:
        if name in params:
            children.append(_test_param(name, params.pop(name)))
    if spec.runner == "gene_activity" and "features" in params:
        features = params.pop("features")
        children.append(
            E("conditional", {"name": "features"}, [_test_param(k, v) for k, v in features.items()])
        )
    basic, advanced = [], []
    for name in list(params):
        found = form.find(name)
        if found is None:
            raise KeyError(f"{spec.command} test: no parameter {name!r}")
        (advanced if found[0] else basic).append(_test_param(name, params.pop(name)))
    inner = basic + ([E("section", {"name": "advanced"}, advanced)] if advanced else [])
    if cond_name:
        children.insert(
            len([c for c in children if _name_of(c) in ("input", "inputs", "model_in")]),
            E("conditional", {"name": cond_name}, [_test_param("function", test.function), *inner]),
        )
    else:
        children += inner
    for output, assertions in test.outputs.items():
        out_attrs = {"name": output}
        if output in test.ftypes:
            out_attrs["ftype"] = test.ftypes[output]
        children.append(
            E(
                "output",
                out_attrs,
                [E("assert_contents", children=[E(tag, a) for tag, a in assertions])],
            )
        )
    if test.stderr:
        children.append(
            E("assert_stderr", children=[E("has_text", {"text": t}) for t in test.stderr])
        )
    return E("test", attrs, children)


def _name_of(param: E) -> str:
    """A parameter's name: ``name``, or the one its ``argument`` implies."""
    return param.attrs.get("name") or param.attrs["argument"].lstrip("-").replace("-", "_")


def _test_param(name: str, value: Any) -> E:
    if isinstance(value, tool_specs.File):
        attrs = {"name": name, "value": ",".join(value.names), "ftype": value.ftype}
        return E("param", attrs)
    if isinstance(value, bool):
        value = "true" if value else "false"
    return E("param", {"name": name, "value": _default_text(value)})


def _help(spec: tool_specs.Tool, commands: dict[str, Any]) -> str:
    if spec.command in ("plot", "metrics"):
        words = f"``scintegrate {spec.command} FUNCTION``"
        functions = "\n".join(
            f"- **{f.label}** (``{spec.command} {name}``, Python ``scintegrate.{commands[f'{spec.command} {name}'].qualname}``): {commands[f'{spec.command} {name}'].summary}"
            for name, f in spec.functions.items()
        )
        body = spec.help.strip() + "\n\n**Functions**\n\n" + functions
    else:
        words = f"``scintegrate {spec.command}``"
        command = commands[spec.command]
        body = (
            f"**What it does**\n\n{command.summary} (Python: ``scintegrate.{command.qualname}``)\n\n"
            + spec.help.strip()
        )
    footer = (
        "**Command line**\n\n"
        f"This tool runs {words}; each parameter is the option of the same name (shown beside it), "
        "and its help is the function's documentation. A parameter left empty keeps the "
        "function's default. An invalid input or parameter stops the tool with exit status 2 and "
        "a one-line message in its standard error."
    )
    return body + "\n\n" + footer


def generate() -> dict[str, str]:
    """File name -> text of every file this script writes."""
    from scintegrate._version import __version__
    from scintegrate.cli._commands import build_commands

    commands = {f"{c.group} {c.name}".strip(): c for c in build_commands()}
    covered = set()
    files = {"macros.xml": macros_xml(__version__)}
    for spec in tool_specs.TOOLS:
        files[f"scintegrate_{spec.command.replace('-', '_')}.xml"] = tool_xml(spec, commands)
        covered |= {f"{spec.command} {f}".strip() for f in spec.functions}
    missing = set(commands) - covered - set(tool_specs.UNAVAILABLE)
    if missing:
        raise KeyError(
            f"commands without a Galaxy tool (add them to tool_specs.TOOLS): {sorted(missing)}"
        )
    return files


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    files = generate()
    stale = [
        name
        for name, text in files.items()
        if not (HERE / name).is_file() or (HERE / name).read_text() != text
    ]
    if "--check" in argv:
        for name in stale:
            print(
                f"galaxy/{name} differs from make_tools.py's output; run python galaxy/make_tools.py"
            )
        return 1 if stale else 0
    for name in stale:
        (HERE / name).write_text(files[name])
        print(f"wrote galaxy/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
