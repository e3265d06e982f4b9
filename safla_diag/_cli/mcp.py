"""`safla-diag mcp queue FILE`: what waits in an MCP failed-task queue."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .._redact import redact
from ..mcp_retry import QueueStats, inspect_store
from . import EXIT_FINDINGS, EXIT_OK, UsageError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the `mcp` command group."""
    p: argparse.ArgumentParser = sub.add_parser(
        "mcp", help="inspect MCP retry queues", description="Inspect MCP retry queues."
    )
    group = p.add_subparsers(dest="mcp_command", metavar="SUBCOMMAND")
    group.required = True
    q = group.add_parser(
        "queue",
        help="pending, in-flight and dead-lettered tasks of a queue file",
        description=(
            "Show an MCP failed-task queue: pending, in flight, dead-lettered, the oldest task's "
            "age and when the next one is due. The file is opened read-only. Exit 0 when no task "
            "is dead-lettered, 1 when some are, 2 when the file is missing or not a queue."
        ),
    )
    q.add_argument("file", metavar="FILE", help="queue file (mcp_tasks.db) or postgresql:// URL")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument(
        "--show", type=int, default=0, metavar="N", help="also list up to N pending and dead tasks"
    )
    q.set_defaults(func=run)


def _text(stats: QueueStats, listing: dict[str, list[dict[str, Any]]]) -> str:
    lines = [stats.to_text()]
    for title, rows in (("pending", listing.get("pending", [])), ("dead", listing.get("dead", []))):
        if rows:
            lines.append(f"{title} tasks:")
            for r in rows:
                err = f"  last error: {r['last_error']}" if r.get("last_error") else ""
                lines.append(f"  {r['id']}  attempts={r['attempts']}{err}")
    return "\n".join(lines)


def _err(text: str | None) -> str | None:
    return None if text is None else redact(text)


def run(args: argparse.Namespace) -> int:
    """Run `mcp queue`."""
    target: str = args.file
    if "://" in target and not target.lower().startswith(("postgresql://", "postgres://")):
        raise UsageError(f"{redact(target)}: give a queue file or a postgresql:// URL")
    if args.show < 0:
        raise UsageError("--show must not be negative")
    store = inspect_store(target)
    try:
        now = time.time()
        stats = store.stats(now=now)
        listing: dict[str, list[dict[str, Any]]] = {}
        if args.show:
            listing["pending"] = [
                {
                    "id": t.id,
                    "attempts": t.attempts,
                    "leased": t.leased,
                    "last_error": _err(t.last_error),
                }
                for t in store.pending(args.show)
            ]
            listing["dead"] = [
                {"id": t.id, "attempts": t.attempts, "last_error": _err(t.last_error)}
                for t in store.dead_letters(args.show)
            ]
    finally:
        store.close()
    if args.json:
        doc = {**stats.to_dict(), **({"tasks": listing} if listing else {})}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(_text(stats, listing) + "\n")
    return EXIT_FINDINGS if stats.dead else EXIT_OK
