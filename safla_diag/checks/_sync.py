"""The one bridge from sync callers to our coroutines, for the sync twins the contract lists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


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
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
