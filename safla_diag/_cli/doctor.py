"""`safla-diag doctor`: the whole diagnosis, as text or JSON; exit 0 healthy, 1 findings, 2 config."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

__all__ = ["positive_seconds", "register", "run"]


def positive_seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def register(sub: Any) -> None:
    """Add the `doctor` command."""
    from ..config import default

    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="diagnose this machine and the configured services",
        description=(
            "Check Python and platform, dependencies, memory, CPU, disk, the configuration "
            "(with --config), and every configured service, vector index, MCP queue and log. "
            "Exit 0 when healthy, 1 when something needs attention, 2 for usage or "
            "configuration errors."
        ),
    )
    p.add_argument("--config", metavar="FILE", help="a .toml or .json configuration file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=float(default("service_timeout")),
        metavar="S",
        help="seconds per service probe when the configuration sets no service_timeout "
        f"(default {default('service_timeout'):g})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the diagnosis and print it."""
    from ..diagnosis import Diagnostics

    report = Diagnostics(args.config, timeout=args.timeout).doctor()
    sys.stdout.write((report.to_json() if args.json else report.to_text()) + "\n")
    return report.exit_code
