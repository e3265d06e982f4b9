"""`safla-diag deps`: which dependencies are installed, at which version, and why not."""

from __future__ import annotations

import argparse
from typing import Any

from . import EXIT_FINDINGS, EXIT_OK

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the `deps` command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "deps",
        help="check the installed dependencies",
        description="Check that packages are installed, importable and recent enough "
        "(by default safla-diag's own runtime dependencies). Exit 1 when one is not.",
    )
    p.add_argument(
        "packages",
        nargs="*",
        metavar="PACKAGE",
        help="requirements to check instead, e.g. 'faiss-cpu>=1.15' redis",
    )
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument(
        "--no-import",
        dest="verify",
        action="store_false",
        help="only look at the metadata; do not import the packages (faster)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check and print the report; exit 0 when every package is usable, else 1."""
    from ..checks import check_dependencies

    report = check_dependencies(args.packages or None, verify=args.verify)
    print(report.to_json(indent=2) if args.json else report.to_text())
    return EXIT_OK if report else EXIT_FINDINGS
