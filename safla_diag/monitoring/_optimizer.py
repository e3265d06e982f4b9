"""VectorMemoryOptimizer: registered caches and garbage collection."""

from __future__ import annotations

__all__ = [
    "VectorMemoryOptimizer",
]


class VectorMemoryOptimizer:
    """STUB: replaced by its issue's work."""
