"""`safla-diag services`: probe the configured services (and URLs given), or who holds a port."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import EXIT_FINDINGS, EXIT_OK, UsageError
from .doctor import positive_seconds

__all__ = ["register", "run"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {text!r}")
    return value


def register(sub: Any) -> None:
    """Add the `services` command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "services",
        help="probe Redis, PostgreSQL, HTTP and MCP services natively, all at once",
        description=(
            "Probe every service of the configuration (database_url, redis_url, mcp_servers, "
            "services) and any URL given, concurrently, each within the timeout. "
            "With --port, show which local process holds a port (address already in use). "
            "Exit 0 when all answer, 1 when one does not, 2 for usage errors."
        ),
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="extra targets, e.g. redis://host:6379")
    p.add_argument("--config", metavar="FILE", help="a .toml or .json configuration file")
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=None,
        metavar="S",
        help="seconds per probe (default: service_timeout from the configuration, else 5)",
    )
    p.add_argument(
        "--port",
        type=_port,
        action="append",
        default=[],
        metavar="N",
        help="show which local process holds port N (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _holders(ports: list[int]) -> tuple[list[str], list[dict[str, Any]]]:
    from ..checks import port_holders

    lines, rows = [], []
    for port in ports:
        holders = port_holders(port)
        if not holders:
            lines.append(f"port {port}: free (no visible process listens on it)")
        for h in holders:
            lines.append(f"port {port}: {h.describe()}")
        rows.append(
            {
                "port": port,
                "holders": [
                    {"pid": h.pid, "name": h.name, "address": h.address, "status": h.status}
                    for h in holders
                ],
            }
        )
    return lines, rows


def _configured_timeout(value: object) -> float:
    """The configuration's service_timeout when usable (finite, positive, at most 1e9), else 5."""
    from ..config import default

    fallback = float(default("service_timeout"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return fallback
    if not 0 < value <= 1e9:  # compared as given: an int of 400 digits has no float
        return fallback
    return float(value)


def run(args: argparse.Namespace) -> int:
    """Probe and print; exit 1 when a service is not ok."""
    import json

    from ..checks import check_external_services, parse_targets
    from ..config import load_configuration

    config: dict[str, Any] = {}
    if args.config is not None or not (args.urls or args.port):
        config = dict(load_configuration(args.config))
    # One target model: the configuration's targets keep their kind (an MCP server is probed as
    # one, as the doctor and the API do), and the URLs given join them under unique names.
    targets = parse_targets([*parse_targets(config), *parse_targets(list(args.urls))])
    if not targets and not args.port:
        raise UsageError("nothing to check: give --config FILE, URLs, or --port N")
    timeout = args.timeout
    if timeout is None:
        timeout = _configured_timeout(config.get("service_timeout"))
    port_lines, port_rows = _holders(args.port)
    report = check_external_services(targets, timeout=timeout) if targets else None
    if args.json:
        doc: dict[str, Any] = report.to_dict() if report is not None else {"ok": True}
        if args.port:
            doc["ports"] = port_rows
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        # The report aligns its own columns; painting() colours its status words.
        out = ([report.to_text()] if report is not None else []) + port_lines
        sys.stdout.write("\n".join(out) + "\n")
    return EXIT_OK if report is None or report else EXIT_FINDINGS
