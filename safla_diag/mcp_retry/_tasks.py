"""MCPTaskRecovery: a durable failed-task queue and its retry worker."""

from __future__ import annotations

__all__ = [
    "MCPTaskRecovery",
]


class MCPTaskRecovery:
    """STUB: replaced by its issue's work."""
