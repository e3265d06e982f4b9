"""Helpers shared by the MCP retry modules: calling host callbacks, describing errors."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from .._redact import redact

__all__ = ["call_host", "describe_error", "is_async_callable", "logger"]

logger = logging.getLogger("safla_diag.mcp_retry")

_MAX_ERROR_CHARS = 2000


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (sees through partials and ``__call__``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


async def call_host(fn: Callable[..., Any], *args: Any) -> Any:
    """
    Call a host callback once, wherever it may block, and await its result if it is awaitable.

    A coroutine function is called on the loop; anything else runs in the loop's default executor
    (it may block), and what it returns is awaited when awaitable (a lambda returning a coroutine).
    """
    if is_async_callable(fn):
        result = fn(*args)
    else:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        result = await loop.run_in_executor(None, functools.partial(ctx.run, fn, *args))
    if inspect.isawaitable(result):
        result = await result
    return result


def describe_error(err: BaseException) -> str:
    """A short, redacted one-line description of an exception, for storage and logs."""
    text = str(err).strip()
    out = f"{type(err).__name__}: {text}" if text else type(err).__name__
    out = redact(" ".join(out.split()))
    if len(out) > _MAX_ERROR_CHARS:
        out = out[: _MAX_ERROR_CHARS - 3] + "..."
    return out
