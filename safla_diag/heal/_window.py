"""
A bounded tracemalloc window: trace for a while, report the allocation sites that grew, stop.

tracemalloc slows allocation-heavy code several times, so it is never left on: the window starts
it (unless the host already traces, in which case the host's tracing is used and left alone),
takes a snapshot, waits, takes another, and stops it again, also when the wait is cancelled.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from .._aio import off_loop

__all__ = ["trace_growth"]

_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
    # The window's own bookkeeping (snapshots, asyncio's handles while it waits) is not the leak.
    tracemalloc.Filter(False, os.path.join(os.path.dirname(__file__), "*")),
)


def _snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces(_IGNORED)


async def trace_growth(
    *, window_s: float, frames: int, top: int, sleep: Callable[[float], Awaitable[None]]
) -> list[dict[str, Any]]:
    """
    Trace allocations for ``window_s`` seconds and return the sites that grew, largest first.

    Args:
        window_s: How long to trace.
        frames: Frames per traceback (when the window starts tracemalloc).
        top: How many sites to return.
        sleep: The awaitable sleep (the healer's, so stopping it ends the window).

    Returns:
        ``{"site": "file:line", "size_diff_kb", "count_diff", "size_kb"}`` per site that grew.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(frames)
    try:
        # Snapshots of a big heap take a while: off the loop, so the host keeps serving.
        first = await off_loop(_snapshot)
        await sleep(window_s)
        second = await off_loop(_snapshot)
    finally:
        if started:
            tracemalloc.stop()
    grown = [s for s in second.compare_to(first, "lineno") if s.size_diff > 0]
    grown.sort(key=lambda s: s.size_diff, reverse=True)
    out = []
    for stat in grown[:top]:
        frame = stat.traceback[0]
        out.append(
            {
                "site": f"{frame.filename}:{frame.lineno}",
                "size_diff_kb": round(stat.size_diff / 1024, 1),
                "count_diff": stat.count_diff,
                "size_kb": round(stat.size / 1024, 1),
            }
        )
    return out
