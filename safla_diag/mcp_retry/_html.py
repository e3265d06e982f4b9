"""``QueueStats._repr_html_``: counts, and times as readable ages rather than epoch numbers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .._html_util import age, when
from .._redact import redact
from .._report import html_block, html_table

if TYPE_CHECKING:
    from ._store import QueueStats

__all__ = ["queue_stats_html"]


def queue_stats_html(stats: QueueStats, *, now: float | None = None) -> str:
    """The queue's counts and its oldest and next-due tasks, for Jupyter."""
    now = time.time() if now is None else now
    oldest = None if stats.oldest_created_at is None else now - stats.oldest_created_at
    due = None if stats.next_due_at is None else stats.next_due_at - now
    due_text = "-" if due is None else ("now" if due <= 0 else f"in {age(due)}")
    rows: list[tuple[str, object]] = [
        ("pending", stats.pending),
        ("in flight", stats.in_flight),
        ("dead letters", stats.dead),
        ("oldest task", "-" if oldest is None else f"{age(oldest)} old"),
        ("oldest saved at", when(stats.oldest_created_at, now=now)),
        ("next due", due_text),
    ]
    ok = stats.dead == 0
    return html_block(
        f"MCP task queue {redact(stats.location)}", html_table(("", "value"), rows), ok=ok
    )
