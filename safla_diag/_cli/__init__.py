"""
The ``safla-diag`` command line.

One small module per command group; each has ``register(subparsers)`` that adds its parser and sets
``func`` to a ``run(args) -> int``. Errors the user can fix (a bad argument, a missing or malformed
file, an invalid configuration) print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._errors import ConfigurationError, SaflaDiagError
from .._redact import redact

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "UsageError", "main"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

# The command groups, in the order --help lists them. Each is a module of this package.
_GROUPS = ("doctor", "config", "deps", "services", "vector", "mcp", "logs")


class UsageError(Exception):
    """A problem with how the command was called; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line instead of argparse's usage dump.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser with every command group registered."""
    parser = _Parser(
        prog="safla-diag",
        description="Diagnose, monitor and repair SAFLA services.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for group in _GROUPS:
        module = importlib.import_module(f".{group}", __name__)
        module.register(sub)
    return parser


def _fail(message: str) -> int:
    sys.stderr.write(f"safla-diag: error: {redact(message)}\n")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 healthy, 1 findings, 2 usage or configuration error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigurationError as err:
        where = f" ({err.source})" if err.source else ""
        return _fail(f"invalid configuration{where}: " + "; ".join(err.issues))
    except (UsageError, SaflaDiagError) as err:
        return _fail(str(err))
    except OSError as err:
        name = f": {err.filename}" if getattr(err, "filename", None) else ""
        return _fail(f"{err.strerror or err}{name}")
    except KeyboardInterrupt:
        sys.stderr.write("safla-diag: interrupted\n")
        return 130
