"""MemoryProfiler: tracemalloc snapshots and growth analysis."""

from __future__ import annotations

__all__ = [
    "MemoryProfiler",
]


class MemoryProfiler:
    """STUB: replaced by its issue's work."""
