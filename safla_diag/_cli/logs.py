"""`safla-diag logs scan`: level counts, time windows, pattern matches and top error templates."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

from . import EXIT_FINDINGS, EXIT_OK, UsageError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the `logs` command group."""
    p: argparse.ArgumentParser = sub.add_parser(
        "logs", help="analyse log files", description="Analyse log files."
    )
    group = p.add_subparsers(dest="logs_command", metavar="SUBCOMMAND")
    group.required = True
    scan = group.add_parser(
        "scan",
        help="count levels and show the top message templates",
        description=(
            "Count records per level, match a pattern and show the top message templates of the "
            "chosen levels. Plain and JSON-lines logs, gzip files, globs and '-' for standard "
            "input. Exit 0 when no record of the chosen levels is found, 1 when some are."
        ),
    )
    scan.add_argument("files", nargs="+", metavar="FILE", help="log files, globs, or - for stdin")
    scan.add_argument(
        "--since",
        metavar="WHEN",
        help="only records at or after WHEN: a duration (30m, 1h, 2d) or an ISO date/time",
    )
    scan.add_argument(
        "--grep",
        metavar="REGEX",
        help="count lines matching REGEX (e.g. 'slow|timeout|latency') and show a few",
    )
    scan.add_argument(
        "--levels",
        default="ERROR,CRITICAL",
        metavar="LIST",
        help="comma-separated levels whose templates to show (default: ERROR,CRITICAL)",
    )
    scan.add_argument(
        "--top", type=int, default=20, metavar="N", help="templates to show (default 20)"
    )
    scan.add_argument("--json", action="store_true", help="print the report as JSON")
    scan.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `logs scan`."""
    from ..logs import analyze_logs  # here, not at import: `--help` and the other commands

    levels = tuple(lv.strip() for lv in args.levels.split(",") if lv.strip())
    if not levels:
        raise UsageError("--levels needs at least one level name")
    if args.top < 0:
        raise UsageError("--top must not be negative")
    try:
        report = analyze_logs(
            args.files, since=args.since, levels=levels, pattern=args.grep, top=args.top
        )
    except ValueError as err:
        raise UsageError(str(err)) from err
    if not report.files and report.skipped:
        first = report.skipped[0]
        more = f" (and {len(report.skipped) - 1} more)" if len(report.skipped) > 1 else ""
        raise UsageError(f"nothing to analyse: {first.path}: {first.reason}{more}")
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        width = max(80, shutil.get_terminal_size((120, 24)).columns)
        sys.stdout.write(report.to_text(width=width))
    found = sum(report.counts.get(lv, 0) for lv in report.levels)
    return EXIT_FINDINGS if found else EXIT_OK
