"""`safla-diag logs`: STUB, replaced by its issue's work."""

from __future__ import annotations

import argparse
from typing import Any

from . import UsageError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the `logs` command."""
    p: argparse.ArgumentParser = sub.add_parser("logs", help="(not built yet)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    raise UsageError("'logs' is not available in this version yet")
