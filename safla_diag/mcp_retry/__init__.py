"""MCP retry queues: connection recovery and a durable failed-task queue."""

from __future__ import annotations

from ._connection import MCPConnectionRecovery
from ._tasks import MCPTaskRecovery

__all__ = ["MCPConnectionRecovery", "MCPTaskRecovery"]
