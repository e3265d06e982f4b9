"""Helpers shared by the MCP retry modules: calling host callbacks, describing errors."""

from __future__ import annotations

import logging

from .._aio import call_host, is_async_callable
from .._redact import describe_error

__all__ = ["call_host", "describe_error", "is_async_callable", "logger"]

logger = logging.getLogger("safla_diag.mcp_retry")
