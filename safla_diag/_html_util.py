"""Small formatting helpers shared by the ``_repr_html_`` hooks of several layers."""

from __future__ import annotations

import math
import time

__all__ = ["age", "when"]


def age(seconds: float | None) -> str:
    """A duration for people: ``42 s``, ``7 min``, ``3.5 h``, ``2.1 d``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = abs(seconds)
    if s < 90:
        text = f"{s:.0f} s"
    elif s < 90 * 60:
        text = f"{s / 60:.0f} min"
    elif s < 48 * 3600:
        text = f"{s / 3600:.1f} h"
    else:
        text = f"{s / 86400:.1f} d"
    return text


def when(timestamp: float | None, *, now: float | None = None) -> str:
    """A wall-clock time as ``2026-12-02 12:46:25 UTC (7 min ago)``; ``-`` when unknown."""
    if timestamp is None or not math.isfinite(timestamp):
        return "-"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    delta = now - timestamp
    rel = f"{age(delta)} ago" if delta >= 0 else f"in {age(delta)}"
    return f"{stamp} ({rel})"
