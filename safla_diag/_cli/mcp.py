"""
`safla-diag mcp queue|requeue|purge QUEUE`: what waits in an MCP failed-task queue, and operating
its dead letters. Safe while a worker runs: each change is one transaction, and it wakes the worker
(SQLite: the worker sees the commit within a second; PostgreSQL: NOTIFY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._redact import redact
from . import EXIT_FINDINGS, EXIT_OK, UsageError

if TYPE_CHECKING:
    from ..mcp_retry import QueueStats

__all__ = ["register", "run", "run_purge", "run_requeue"]

_SHOWN = 200  # characters of a task's arguments shown


def register(sub: Any) -> None:
    """Add the `mcp` command group."""
    p: argparse.ArgumentParser = sub.add_parser(
        "mcp",
        help="inspect and operate MCP retry queues",
        description="Inspect MCP retry queues and operate their dead letters.",
    )
    group = p.add_subparsers(dest="mcp_command", metavar="SUBCOMMAND")
    group.required = True
    q = group.add_parser(
        "queue",
        help="pending, in-flight and dead-lettered tasks of a queue",
        description=(
            "Show an MCP failed-task queue: pending, in flight, dead-lettered, the oldest task's "
            "age and when the next one is due; --show N lists tasks with their server, tool and "
            "arguments (secrets masked). The queue is opened read-only. Exit 0 when no task is "
            "dead-lettered, 1 when some are, 2 when the queue is missing or not a queue."
        ),
    )
    _queue_arg(q)
    q.add_argument(
        "--show", type=int, default=0, metavar="N", help="also list up to N pending and dead tasks"
    )
    q.set_defaults(func=run)
    r = group.add_parser(
        "requeue",
        help="give dead letters another round of retries",
        description=(
            "Make dead letters pending again, due now, with a fresh attempt count; a running "
            "worker picks them up. Prints how many were requeued. Exit 0, 2 on a bad queue."
        ),
    )
    _queue_arg(r)
    _ids_args(r, "requeue")
    r.set_defaults(func=run_requeue)
    d = group.add_parser(
        "purge",
        help="delete dead letters",
        description=(
            "Delete dead letters (never pending or running tasks). Prints how many were "
            "deleted. Exit 0, 2 on a bad queue."
        ),
    )
    _queue_arg(d)
    _ids_args(d, "purge")
    d.add_argument(
        "--older-than",
        metavar="AGE",
        type=_duration,
        help="only those dead at least this long: 90s, 30m, 12h, 7d or seconds",
    )
    d.set_defaults(func=run_purge)


def _queue_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="QUEUE", help="queue file (mcp_tasks.db) or postgresql:// URL")
    p.add_argument("--json", action="store_true", help="print JSON")


def _ids_args(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("ids", nargs="*", metavar="ID", help=f"task ids to {verb}")
    p.add_argument("--all", action="store_true", help=f"{verb} every dead letter")


_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,6})?)\s*(s|m|min|h|d|w)?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text[:40]!r} (try 90s, 30m, 12h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _check_target(target: str) -> None:
    from ..mcp_retry import is_postgres_url  # on use: the other commands never load the layer

    if "://" in target and not is_postgres_url(target):
        raise UsageError(f"{redact(target)}: give a queue file or a postgresql:// URL")


def _view(target: str) -> Any:
    from ..mcp_retry import inspect_store

    _check_target(target)
    try:
        return inspect_store(target)
    except ValueError as err:  # a schema name that is not a plain identifier
        raise UsageError(str(err)) from None


def _describe(payload: str) -> dict[str, Any]:
    """Server, tool and arguments of a stored task, secrets masked and long arguments cut."""
    try:
        task = json.loads(payload)
    except ValueError:
        return {}
    if not isinstance(task, dict):
        return {}
    out: dict[str, Any] = {}
    for key, names in (
        ("server", ("server", "server_id", "server_name")),
        ("tool", ("tool", "tool_name", "name", "method")),
    ):
        value = next((task[n] for n in names if isinstance(task.get(n), str)), None)
        out[key] = None if value is None else redact(value)
    args = next((task[n] for n in ("arguments", "args", "params") if n in task), None)
    text = None if args is None else redact(json.dumps(args, ensure_ascii=False))
    if text is not None and len(text) > _SHOWN:
        text = text[: _SHOWN - 3] + "..."
    out["arguments"] = text
    return out


def _row(t: Any, **extra: Any) -> dict[str, Any]:
    last = None if t.last_error is None else redact(t.last_error)
    return {"id": redact(t.id), "attempts": t.attempts, **extra, "last_error": last}


def _text(stats: QueueStats, listing: dict[str, list[dict[str, Any]]]) -> str:
    lines = [stats.to_text()]
    for title, rows in (("pending", listing.get("pending", [])), ("dead", listing.get("dead", []))):
        if rows:
            lines.append(f"{title} tasks:")
            for r in rows:
                what = " ".join(
                    f"{k}={r[k]}" for k in ("server", "tool", "arguments") if r.get(k) is not None
                )
                err = f"  last error: {r['last_error']}" if r.get("last_error") else ""
                lines.append(f"  {r['id']}  attempts={r['attempts']}  {what}{err}".rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run `mcp queue`."""
    if args.show < 0:
        raise UsageError("--show must not be negative")
    store = _view(args.file)
    try:
        now = time.time()
        stats = store.stats(now=now)
        listing: dict[str, list[dict[str, Any]]] = {}
        if args.show:
            listing["pending"] = [
                _row(t, leased=t.leased, **_describe(t.payload)) for t in store.pending(args.show)
            ]
            listing["dead"] = [
                _row(t, **_describe(t.payload)) for t in store.dead_letters(args.show)
            ]
    finally:
        store.close()
    if args.json:
        doc = {**stats.to_dict(), **({"tasks": listing} if listing else {})}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(_text(stats, listing) + "\n")
    return EXIT_FINDINGS if stats.dead else EXIT_OK


def _operate(
    args: argparse.Namespace,
    action: str,
    op: Callable[[Any, list[str] | None], Awaitable[int]],
    **facts: Any,
) -> int:
    from ..mcp_retry import is_postgres_url, store_for

    if bool(args.ids) == bool(args.all):
        raise UsageError(f"give the ids to {action}, or --all (not both)")
    target: str = args.file
    _check_target(target)
    if not is_postgres_url(target) and not os.path.exists(target):
        raise UsageError(f"{target}: no such MCP task queue file")
    ids: list[str] | None = None if args.all else list(args.ids)
    try:
        store = store_for(target)
    except ValueError as err:
        raise UsageError(str(err)) from None

    async def main() -> int:
        try:
            await store.open()
            return await op(store, ids)
        finally:
            await store.close()

    n = asyncio.run(main())
    what = "every dead letter" if ids is None else f"{len(ids)} id(s) asked"
    verb = {"requeue": "requeued", "purge": "purged"}[action]
    if args.json:
        doc = {"action": action, "queue": store.location, "count": n, "ids": ids, **facts}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        age = facts.get("older_than_s")
        cond = f", dead for at least {age:g}s" if age is not None else ""
        sys.stdout.write(f"{verb} {n} dead letter(s) in {store.location} ({what}{cond})\n")
    return EXIT_OK


def run_requeue(args: argparse.Namespace) -> int:
    """Run `mcp requeue`."""
    return _operate(args, "requeue", lambda store, ids: store.requeue_dead(ids, now=time.time()))


def run_purge(args: argparse.Namespace) -> int:
    """Run `mcp purge`."""
    age: float | None = args.older_than
    cutoff = float("inf") if age is None else time.time() - age
    return _operate(
        args,
        "purge",
        lambda store, ids: store.purge_dead(ids, dead_before=cutoff),
        older_than_s=age,
    )
