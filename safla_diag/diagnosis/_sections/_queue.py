"""The MCP queue section: what waits, what is dead-lettered, whether a worker seems to run."""

from __future__ import annotations

import os
import time
from typing import Any

from ..._aio import off_loop
from ..._errors import DependencyError, QueueStoreError
from ..._redact import redact
from .._context import Context, Outcome, duration, plural
from .._report import Finding, finding

__all__ = ["applies", "mcp_queue"]

# A task due this long ago and still waiting means that no worker is retrying the queue.
_OVERDUE_S = 600.0


def applies(ctx: Context) -> bool:
    """The section runs when ``mcp_task_queue`` is configured."""
    return ctx.settings.mcp_task_queue is not None


async def mcp_queue(ctx: Context) -> Outcome:
    """Open the queue read-only and report its state."""
    from ...mcp_retry import is_postgres_url, store_for

    location = ctx.settings.mcp_task_queue
    assert location is not None
    shared = is_postgres_url(location)
    if "://" in location and not shared:
        return {"location": redact(location)}, [
            finding(
                "mcp_queue",
                "error",
                f"mcp_task_queue {location}: neither a queue file nor a postgresql:// URL",
                "give a file path (mcp_tasks.db) or postgresql://user@host/db[?schema=NAME]",
            )
        ]
    if not shared and not await off_loop(os.path.exists, location):
        return {"location": location, "exists": False}, [
            finding("mcp_queue", "info", f"no queue file at {location} yet: nothing has failed")
        ]
    try:
        # Read-only: never creates, converts or migrates anything (a file, a schema).
        store = store_for(location, readonly=True)
    except ValueError as err:  # a malformed URL, or a schema name that is not an identifier
        return {"location": redact(location)}, [
            finding(
                "mcp_queue",
                "error",
                f"mcp_task_queue: {err}",
                "fix the URL: its host, port or schema parameter",
            )
        ]
    shown = store.location
    inspect_cmd = f"safla-diag mcp queue {shown} --show 10"
    try:
        now = time.time()
        stats = await store.stats(now=now)
    except DependencyError as err:  # psycopg, for a PostgreSQL queue
        return {"location": shown}, [finding("mcp_queue", "warning", f"{shown}: {err}")]
    except QueueStoreError as err:
        if err.missing:
            return {"location": shown, "exists": False}, [
                finding("mcp_queue", "info", f"no queue in {shown} yet: nothing has failed")
            ]
        if shared:
            hint = "check the database (see the services section) and the schema in the URL"
        else:
            hint = (
                "move the file aside and let the service create a new queue; "
                f"inspect it with: {inspect_cmd}"
            )
        return {"location": shown, "exists": True}, [finding("mcp_queue", "error", str(err), hint)]
    finally:
        await store.close()
    facts: dict[str, Any] = stats.to_dict(now=now)
    oldest = facts["oldest_age_s"]
    age = f", oldest saved {duration(oldest)} ago" if oldest is not None else ""
    summary = f"{shown}: {stats.pending} pending, {stats.in_flight} in flight{age}"
    findings: list[Finding] = []
    if stats.dead:
        findings.append(
            finding(
                "mcp_queue",
                "warning",
                f"{plural(stats.dead, 'task')} dead-lettered after their retries failed; {summary}",
                f"read their last errors: {inspect_cmd}",
            )
        )
    overdue = None if stats.next_due_at is None else now - stats.next_due_at
    if stats.pending and overdue is not None and overdue > _OVERDUE_S:
        findings.append(
            finding(
                "mcp_queue",
                "warning",
                f"a pending task has been due for {duration(overdue)}: "
                "no worker seems to be retrying this queue",
                "check that the service runs retry_failed_tasks() (and that its MCP servers "
                f"are up); {inspect_cmd}",
            )
        )
    if not findings:
        findings.append(finding("mcp_queue", "info", f"{summary}, {stats.dead} dead-lettered"))
    facts["waiting"] = stats.pending + stats.in_flight
    return facts, findings
