"""The one bridge from sync callers to our coroutines, for the sync twins the contract lists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]], name: str, async_name: str) -> T:
    """
    Run a coroutine to completion for a caller that has no event loop.

    This is the only place the library starts a loop, and only for the sync twins of the contract
    (``check_external_services``, ``Diagnostics.doctor``). Inside a running loop (a service, Jupyter)
    it refuses, because blocking that loop would stall the host: await the async twin instead.

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
        return asyncio.run(factory())
    raise RuntimeError(
        f"{name}() cannot run inside a running event loop (it would block it); "
        f"use `await {async_name}(...)` instead"
    )
