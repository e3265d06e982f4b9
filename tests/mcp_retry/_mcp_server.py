"""
A tiny MCP server over stdio, built with the SDK, for the SDK-integration tests.

Tools: ``echo`` (read-only), ``add`` (not idempotent: appends to a ledger file), ``boom`` (raises:
a tool error result), ``sleep`` (answers after a delay), ``pid`` (its process id, so a test can
SIGSTOP or SIGKILL it). Every call's ``_meta`` task id is written to the ledger too.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

try:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # SDK 1.x
    from mcp.server.fastmcp import Context  # type: ignore[no-redef]
    from mcp.server.fastmcp import FastMCP as Server

from mcp.types import ToolAnnotations

LEDGER = os.environ.get("MCP_TEST_LEDGER", os.devnull)

server = Server("safla-test")


def _log(line: str) -> None:
    with open(LEDGER, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _task_id(ctx: Context[Any, Any] | None) -> str:
    try:
        meta = ctx.request_context.meta if ctx is not None else None
    except Exception:
        return "-"
    if meta is None:
        return "-"
    extra = getattr(meta, "model_extra", None) or {}
    if isinstance(meta, dict):
        extra = meta
    return str(extra.get("safla_diag/task_id", "-"))


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool()
def add(item: str, ctx: Context[Any, Any]) -> str:
    """Append an item to the ledger: a side effect that must not happen twice."""
    _log(f"add {item} {_task_id(ctx)}")
    return f"added {item}"


@server.tool()
def boom() -> str:
    """Fail."""
    raise RuntimeError("the tool failed")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def sleep(seconds: float) -> str:
    """Answer after a delay."""
    await asyncio.sleep(seconds)
    return "slept"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def pid() -> int:
    """This server's process id."""
    return os.getpid()


if __name__ == "__main__":
    sys.stderr.write(f"test MCP server {os.getpid()} up\n")
    server.run("stdio")
