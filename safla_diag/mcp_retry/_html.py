"""
``_repr_html_`` of MCPConnectionRecovery and MCPTaskRecovery: what they hold in memory.

A notebook may render them while their loop runs, so nothing here awaits, reads a file or
queries a store: the connection states come from ``status()`` (counters in memory), the queue
from the last ``stats()`` the host awaited.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .._html_util import age, when
from .._redact import redact
from .._report import Num, html_block, html_table

if TYPE_CHECKING:
    from ._connection import MCPConnectionRecovery
    from ._tasks import MCPTaskRecovery

__all__ = ["connection_recovery_html", "task_recovery_html"]

_MAX_SERVERS = 50  # a notebook table, not a dump: the rest are counted


def connection_recovery_html(recovery: MCPConnectionRecovery) -> str:
    """One row per server seen: breaker state, recovery in flight, failures, last error."""
    now = time.time()
    status = recovery.status()
    rows = [
        (
            redact(server),
            s.get("state", "closed"),
            "yes" if s.get("recovering") else "no",
            Num(str(s.get("consecutive_failures", 0))),
            age(s.get("retry_after_s")) if s.get("state") == "open" else "-",
            when(s.get("last_success"), now=now),
            when(s.get("last_failure"), now=now),
            redact(str(s.get("last_error") or "-"))[:200],
        )
        for server, s in list(status.items())[:_MAX_SERVERS]
    ]
    down = sum(1 for s in status.values() if s.get("state") != "closed")
    notes = (
        [f"{len(status) - _MAX_SERVERS} more servers not shown"]
        if len(status) > _MAX_SERVERS
        else []
    )
    if not status:
        notes.append("no server seen yet")
    settings = (
        f"max_retries {recovery.max_retries}, retry delay {recovery.retry_delay:g}-"
        f"{recovery.max_delay:g} s, breaker cooldown {recovery.breaker_cooldown:g}-"
        f"{recovery.max_breaker_cooldown:g} s"
    )
    parts = [f"<p>{settings}</p>"]
    if rows:
        parts.append(
            html_table(
                ("server", "breaker", "recovering", "failures", "retry in", "last success",
                 "last failure", "last error"),
                rows,
            )
        )  # fmt: skip
    n = len(status)
    title = f"MCPConnectionRecovery: {n} server{'' if n == 1 else 's'}, {down} down"
    return html_block(title, *parts, notes=notes, ok=(down == 0) if status else None)


def task_recovery_html(recovery: MCPTaskRecovery) -> str:
    """The queue's location and settings, and the counts of the last ``stats()`` awaited."""
    state = html_table(
        ("", "value"),
        [
            ("queue", redact(recovery.store.location)),
            ("open", "yes" if recovery._opened else "no"),
            ("max retries", recovery.max_retries),
            ("retry delay s", Num(f"{recovery.retry_delay:g}-{recovery.max_delay:g}")),
            ("concurrency", recovery.concurrency),
            ("lease s", Num(f"{recovery.lease_s:g}")),
            ("task timeout s", "-" if recovery.task_timeout is None else recovery.task_timeout),
            ("verdicts in flight", len(recovery._verdicts) + len(recovery._acks)),
        ],
    )
    parts = [state]
    notes = []
    stats = recovery._last_stats
    if stats is not None:
        parts.append(stats._repr_html_())
    else:
        notes.append("no counts yet: `await recovery.stats()` reads them")
    if recovery.last_import is not None:
        parts.append(recovery.last_import._repr_html_())
    ok = None if stats is None else stats.dead == 0
    return html_block("MCPTaskRecovery", *parts, notes=notes, ok=ok)
