"""
Event-loop helpers shared by every layer.

The host owns the loop (STYLE.md §8): blocking work goes to the loop's default executor with the
caller's contextvars copied, and host callbacks that may be sync or async are called once and
awaited only when what they return is awaitable.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["call_host", "is_async_callable", "maybe_await", "off_loop"]

T = TypeVar("T")


async def off_loop(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """
    Run blocking ``fn(*args, **kwargs)`` in the running loop's default executor.

    The caller's contextvars are copied into the call, as structlog's async log methods do.
    """
    import asyncio  # lazily: layers that only need is_async_callable must not pay for asyncio

    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
    return await loop.run_in_executor(None, functools.partial(ctx.run, call))


async def maybe_await(value: Any) -> Any:
    """Await ``value`` when it is awaitable; return it as it is otherwise."""
    if inspect.isawaitable(value):
        return await value
    return value


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (sees through partials and ``__call__``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


async def call_host(fn: Callable[..., Any], /, *args: Any) -> Any:
    """
    Call a host callback once, wherever it may block, and await its result if it is awaitable.

    A coroutine function is called on the loop; anything else runs in the loop's default executor
    (it may block), and what it returns is awaited when awaitable (a lambda returning a coroutine).
    """
    result = fn(*args) if is_async_callable(fn) else await off_loop(fn, *args)
    return await maybe_await(result)
