"""MemoryMonitor: process, system and cgroup memory."""

from __future__ import annotations

__all__ = [
    "MemoryMonitor",
]


class MemoryMonitor:
    """STUB: replaced by its issue's work."""
