"""MCP retry queues: connection recovery, a durable failed-task queue, MCP SDK sessions."""

from __future__ import annotations

from ._backends import inspect_store as inspect_store
from ._backends import is_postgres_url as is_postgres_url
from ._backends import store_for as store_for
from ._connection import MCPConnectionRecovery
from ._guide import GuideImport
from ._model import QueueStats
from ._model import QueueView as QueueView
from ._sdk import OutcomeUnknown, RecoveringSession
from ._tasks import MCPTaskRecovery

# The facade's names; the other names imported above are this layer's interface to the layers
# above it (diagnosis, _cli): importable from ``safla_diag.mcp_retry``, not public.
__all__ = [
    "GuideImport",
    "MCPConnectionRecovery",
    "MCPTaskRecovery",
    "OutcomeUnknown",
    "QueueStats",
    "RecoveringSession",
]
