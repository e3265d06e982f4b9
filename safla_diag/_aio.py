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
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["call_host", "is_async_callable", "maybe_await", "off_loop", "run_sync"]

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
    """
    Whether calling ``fn`` returns a coroutine: coroutine functions, partials of them, and objects
    whose type has an ``async def __call__`` (the one test the whole package uses).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return False
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the type's, not the instance's
    return call is not None and inspect.iscoroutinefunction(call)


async def call_host(fn: Callable[..., Any], /, *args: Any) -> Any:
    """
    Call a host callback once, wherever it may block, and await its result if it is awaitable.

    A coroutine function is called on the loop; anything else runs in the loop's default executor
    (it may block), and what it returns is awaited when awaitable (a lambda returning a coroutine).
    """
    result = fn(*args) if is_async_callable(fn) else await off_loop(fn, *args)
    return await maybe_await(result)


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]], name: str, async_name: str) -> T:
    """
    Run a coroutine to completion for a caller that has no event loop.

    This is the only place the library runs a loop, and only for the sync twins of the contract
    (``check_external_services``, ``Diagnostics.doctor``). Inside a running loop (a service,
    Jupyter) it refuses, because blocking that loop would stall the host: await the async twin.

    Unlike ``asyncio.run``, it does not wait for executor threads on the way out: a name lookup
    stuck in ``getaddrinfo`` (a dead DNS server) must not hold the answer past its timeout. Such a
    thread finishes on its own, after the result has been returned.

    Args:
        factory: Makes the coroutine; called only once we know we may run it.
        name: The sync function's name, for the error message.
        async_name: The async twin to recommend.

    Returns:
        What the coroutine returned.

    Raises:
        RuntimeError: When called from inside a running event loop.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            f"{name}() cannot run inside a running event loop (it would block it); "
            f"use `await {async_name}(...)` instead"
        )
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="asyncio")
    loop.set_default_executor(executor)
    try:
        return loop.run_until_complete(factory())
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    import asyncio

    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
