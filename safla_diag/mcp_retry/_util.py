"""Helpers shared by the MCP retry modules: calling host callbacks, describing errors."""

from __future__ import annotations

import logging

from .._aio import call_host, is_async_callable
from .._redact import redact

__all__ = ["call_host", "describe_error", "is_async_callable", "logger"]

logger = logging.getLogger("safla_diag.mcp_retry")

_MAX_ERROR_CHARS = 2000


def describe_error(err: BaseException) -> str:
    """A short, redacted one-line description of an exception, for storage and logs."""
    text = str(err).strip()
    out = f"{type(err).__name__}: {text}" if text else type(err).__name__
    out = redact(" ".join(out.split()))
    if len(out) > _MAX_ERROR_CHARS:
        out = out[: _MAX_ERROR_CHARS - 3] + "..."
    return out
