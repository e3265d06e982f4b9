"""PerformanceMonitor: O(1) request recording over a window."""

from __future__ import annotations

__all__ = [
    "PerformanceMonitor",
]


class PerformanceMonitor:
    """STUB: replaced by its issue's work."""
