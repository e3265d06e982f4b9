"""MCP retry queues: connection recovery, a durable failed-task queue, MCP SDK sessions."""

from __future__ import annotations

from ._connection import MCPConnectionRecovery
from ._sdk import OutcomeUnknown, RecoveringSession
from ._tasks import MCPTaskRecovery

__all__ = ["MCPConnectionRecovery", "MCPTaskRecovery", "OutcomeUnknown", "RecoveringSession"]
