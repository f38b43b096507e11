"""The ``scintegrate`` command: one command per ``tl``/``pp`` function, plus ``plot``, ``metrics``
and ``demo``, for pipelines (Galaxy, Snakemake, Nextflow).

``scintegrate <command> IN OUT [options]``: IN and OUT are ``.h5ad`` or ``.h5mu`` files; the
options are the function's keyword parameters (see :mod:`._options`). Logs and progress go to
stderr, stdout stays empty. A user error prints one line ``scintegrate <command>: error: ...``
and exits with status 2 (the traceback only with ``--debug``); OUT is written to a temporary file
beside it and moved into place only when everything succeeded, and IN is never modified.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import shlex
import signal
import sys
from collections.abc import Iterator

from ._io import UserError

PROG = "scintegrate"
# exceptions that report a mistake in the input: one line, exit status 2
_USER_ERRORS = (UserError, ValueError, TypeError, KeyError, FileNotFoundError)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of the other user errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output and errors")
    group.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    group.add_argument("--verbose", action="store_true", help="debug messages")
    group.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32, width=100)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser of every command, and the commands by their full name."""
    from ._commands import build_commands

    parser = _Parser(
        prog=PROG,
        description="Integration of single-cell data for pipelines: one command per step, "
        "one file in, one file out.",
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = top.add_parser(
        "demo",
        help="online iNMF of SNARE-seq RNA with ATAC of other nuclei (offline)",
        formatter_class=_formatter,
    )
    _demo_arguments(demo)
    _common(demo)
    groups = {
        "plot": top.add_parser("plot", help="draw a pl function's figure to PNG, SVG or PDF"),
        "metrics": top.add_parser("metrics", help="score an integration into a TSV or JSON file"),
    }
    sub = {
        name: g.add_subparsers(
            dest="subcommand", metavar="FUNCTION", required=True, parser_class=_Parser
        )
        for name, g in groups.items()
    }
    commands = {}
    for command in build_commands():
        where = sub[command.group] if command.group else top
        full = f"{command.group} {command.name}".strip()
        child = where.add_parser(
            command.name,
            help=command.summary,
            description=f"{command.summary} (scintegrate.{command.qualname})",
            formatter_class=_formatter,
        )
        child.set_defaults(full_name=full)
        command.add_to(child)
        _common(child)
        commands[full] = command
    return parser, commands


def documentation_parser() -> argparse.ArgumentParser:
    """The parser, for the documentation (sphinx-argparse), its help texts escaped for RST (they
    are plain text, in which ``|x|`` or ``lambda_`` would be RST markup)."""
    parser = build_parser()[0]

    def escape(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if action.help and action.help is not argparse.SUPPRESS:
                action.help = re.sub(r"([\\|*_`])", r"\\\1", action.help)
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    escape(child)

    escape(parser)
    return parser


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from .._demo import run_demo
    from ._options import add_options, options_of

    parser.add_argument("--out", default="scintegrate_demo", help="folder for the demo's files")
    add_options(parser, options_of(run_demo, {"out_dir": "--out"}))


_SIGNALLED: list[int] = []  # signals received during the current command


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM (a pipeline cancelling the job) unwinds like Ctrl-C, so that temporary output
    is removed."""

    def stop(signum, frame):
        # remembered: compiled code (numba) turns an exception raised inside it into another
        _SIGNALLED.append(signum)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _output_settings(args: argparse.Namespace) -> Iterator[None]:
    """Logs to stderr at the level asked for, progress bars unless --quiet; restored afterwards
    (``main`` may be called from Python)."""
    import warnings

    from .._logging import logger
    from .._settings import settings

    saved = (list(logger.handlers), logger.propagate, logger.level, settings.progress_bar)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers = [handler]
    logger.propagate = False
    if args.quiet:
        settings.progress_bar = False
    settings.verbosity = "warning" if args.quiet else "debug" if args.verbose else "info"
    try:
        with warnings.catch_warnings():
            if not args.verbose:
                # notices about the libraries' own future defaults, not about the user's data
                warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")
                warnings.filterwarnings("ignore", message="Cannot join columns", module="mudata")
                warnings.filterwarnings(
                    "ignore", message="Sparse (CSR tensor support|invariant checks)"
                )
            yield
    finally:
        logger.handlers, logger.propagate, logger.level, settings.progress_bar = saved


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scintegrate`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:  # answer without building every command's parser
        from .._version import __version__

        print(__version__)
        return 0
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .._version import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    name = "demo" if args.command == "demo" else args.full_name
    args.command_line = shlex.join([PROG, *argv])
    _SIGNALLED.clear()
    try:
        with _terminate_cleanly(), _output_settings(args):
            if args.command == "demo":
                from .._demo import run_demo
                from ._options import keyword_arguments, options_of

                options = options_of(run_demo, {"out_dir": "--out"})
                run_demo(args.out, **keyword_arguments(args, options))
            else:
                command = commands[name]
                command.run(args, command)
    except BaseException as err:
        if _SIGNALLED:  # terminated, whatever the signal became on its way up
            signum = _SIGNALLED[0]
            sys.stderr.write(
                f"{PROG} {name}: terminated (signal {signum}); no output was written\n"
            )
            return 128 + signum
        if isinstance(err, KeyboardInterrupt):
            sys.stderr.write(f"{PROG} {name}: interrupted; no output was written\n")
            return 130
        if not isinstance(err, _USER_ERRORS) or args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        text = " ".join(str(message).split()) or type(err).__name__
        sys.stderr.write(f"{PROG} {name}: error: {text}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
