"""
The ``safla-diag`` command line.

One small module per command group; each has ``register(subparsers)`` that adds its parser and sets
``func`` to a ``run(args) -> int``. Errors the user can fix (a bad argument, a missing or malformed
file, an invalid configuration) print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json as _json
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._errors import ConfigurationError, SaflaDiagError
from .._redact import redact
from . import _term

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "UsageError", "main"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

# The command groups, in the order --help lists them. Each is a module of this package.
_GROUPS = ("doctor", "config", "deps", "services", "vector", "mcp", "logs")


class UsageError(Exception):
    """A problem with how the command was called; printed as one line, exit 2."""


class _ArgumentError(Exception):
    """argparse refused the command line; main() prints it (as JSON too with --json)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line instead of argparse's usage dump (printed by main()).
        raise _ArgumentError(self.prog, message)


def _version() -> str:
    from .. import __version__

    return f"safla-diag {__version__}"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """
    Build the parser with every command group registered, or with only the group ``only``: a
    command then loads its own layer, not every layer's (``logs scan`` needs neither the
    configuration's schema nor the checks).
    """
    parser = _Parser(
        prog="safla-diag",
        description="Diagnose, monitor and repair SAFLA services.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v the library's warnings and info, -vv debug (by default only its "
        "errors: the report already says what the warnings would)",
    )
    parser.add_argument(
        "--version", action="version", version=_version(), help="print the version and exit"
    )
    parser.add_argument(
        "--color",
        "--colour",
        dest="color",
        choices=_term.COLOR_CHOICES,
        default="auto",
        help="colour the status words of text output: auto (a terminal, unless NO_COLOR is "
        "set), always or never (default: auto)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for group in _GROUPS if only is None else (only,):
        module = importlib.import_module(f".{group}", __name__)
        module.register(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """
    A command registered without a description shows its one-line help in its ``--help``, and
    every command also takes ``--color`` after its name (the global value unless given there).
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                if not child.description and helps.get(name):
                    text = str(helps[name])
                    child.description = text[:1].upper() + text[1:] + "."
                if not any("--color" in a.option_strings for a in child._actions):
                    child.add_argument(
                        "--color",
                        "--colour",
                        dest="color",
                        choices=_term.COLOR_CHOICES,
                        default=argparse.SUPPRESS,
                        help="colour the status words: auto, always or never (default: auto)",
                    )
                _describe(child)


def _fail(message: str, *, json_out: bool = False, prog: str = "safla-diag") -> int:
    text = redact(message)
    sys.stderr.write(f"{prog}: error: {text}\n")
    if json_out:
        # A script that asked for JSON gets JSON on stdout, failure included.
        sys.stdout.write(_json.dumps({"error": text, "exit_code": EXIT_USAGE}) + "\n")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 healthy, 1 findings, 2 usage or configuration error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_group_of(argv))
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as err:
        return _fail(f"{err} (see --help)", json_out="--json" in argv, prog=err.prog)
    json_out = bool(getattr(args, "json", False))
    _term.configure(color=args.color, json=json_out)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # The library warns about what the command's own output reports; say it once.
    package = logging.getLogger("safla_diag")
    before = package.level
    package.setLevel(logging.ERROR if args.verbose == 0 else level)
    try:
        return _run(args, json_out)
    finally:
        package.setLevel(before)


def _group_of(argv: Sequence[str]) -> str | None:
    """The command group named on the command line, or None (none, or not one of ours: the full
    parser then lists them all in its help or its error)."""
    values = False  # the next word is the value of --color
    for word in argv:
        if values:
            values = False
        elif word in ("--color", "--colour"):
            values = True
        elif word == "--" or not word.startswith("-"):
            return word if word in _GROUPS else None
        elif word in ("-h", "--help", "--version"):
            return None
    return None


def _run(args: argparse.Namespace, json_out: bool) -> int:
    try:
        with _term.painting():
            return int(args.func(args))
    except ConfigurationError as err:
        where = f" ({err.source})" if err.source else ""
        return _fail(f"invalid configuration{where}: " + "; ".join(err.issues), json_out=json_out)
    except (UsageError, SaflaDiagError) as err:
        return _fail(str(err), json_out=json_out)
    except OSError as err:
        name = f": {err.filename}" if getattr(err, "filename", None) else ""
        return _fail(f"{err.strerror or err}{name}", json_out=json_out)
    except KeyboardInterrupt:
        sys.stderr.write("safla-diag: interrupted\n")
        return 130
