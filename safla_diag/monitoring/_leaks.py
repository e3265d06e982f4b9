"""MemoryLeakDetector: a robust trend test over the RSS history."""

from __future__ import annotations

__all__ = [
    "LeakAnalysis",
    "MemoryLeakDetector",
]


class LeakAnalysis:
    """STUB: replaced by its issue's work."""


class MemoryLeakDetector:
    """STUB: replaced by its issue's work."""
