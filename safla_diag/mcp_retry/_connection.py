"""MCPConnectionRecovery: single-flight reconnects with backoff."""

from __future__ import annotations

__all__ = [
    "MCPConnectionRecovery",
]


class MCPConnectionRecovery:
    """STUB: replaced by its issue's work."""
