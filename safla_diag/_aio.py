"""
Event-loop helpers shared by every layer.

The host owns the loop (STYLE.md §8), and its default executor too: the library's own blocking work
(file reads, SQLite, psutil scans, faiss I/O) runs on a small bounded pool of its own, with the
caller's contextvars copied, so that work of ours that hangs (a peer, a disk, a pipe) can never take
a thread the host needs. Its threads are daemons: a thread stuck in a system call never holds the
process past its end. Host callbacks that may be sync or async are called once and awaited only
when what they return is awaitable.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "MAX_WORKERS",
    "call_host",
    "is_async_callable",
    "library_executor",
    "maybe_await",
    "off_loop",
    "run_sync",
    "running_loop",
]

T = TypeVar("T")


MAX_WORKERS = 8
"""Threads of the library's own pool at most; more work waits in its queue."""


class DaemonPool(ThreadPoolExecutor):
    """
    A bounded thread pool of daemon threads, started one at a time as work arrives.

    Unlike ``ThreadPoolExecutor``'s, whose threads the interpreter joins at exit, a thread stuck in
    a system call (a read that never returns) does not keep the process alive. Work waits in a
    queue when every thread is busy; a future cancelled before it starts is dropped. It derives
    from ThreadPoolExecutor only because ``loop.set_default_executor`` accepts nothing else; it
    replaces every method that runs work.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        import queue

        super().__init__(max_workers=max_workers, thread_name_prefix=name)  # starts no thread

        self._cap = max_workers
        self._label = name
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; start a thread when none is idle and the cap allows."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._jobs.put((future, functools.partial(fn, *args, **kwargs)))
            if self._idle == 0 and self._started < self._cap:
                self._started += 1
                threading.Thread(
                    target=self._work, name=f"{self._label}_{self._started}", daemon=True
                ).start()
            else:
                self._idle = max(0, self._idle - 1)
        return future

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            future, call = item
            result = None
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as err:  # handed to the waiter, as ThreadPoolExecutor does
                    future.set_exception(err)
                else:
                    future.set_result(result)
            del future, call, item, result  # keep nothing alive while idle
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; idle threads end. Never waits for a busy thread."""
        with self._lock:
            self._closed = True
            threads = self._started
        if cancel_futures:
            while True:
                try:
                    item = self._jobs.get_nowait()
                except Exception:  # queue.Empty
                    break
                if item is not None:
                    item[0].cancel()
        for _ in range(threads):
            self._jobs.put(None)


_pool: DaemonPool | None = None
_pool_lock = threading.Lock()


def library_executor() -> DaemonPool:
    """The library's own bounded pool, made on first use (and made again in a forked child)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DaemonPool(MAX_WORKERS, "safla_diag")
        return _pool


def _forget_pool() -> None:
    # A forked child has none of the parent's threads: it starts a pool of its own.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


async def off_loop(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """
    Run blocking ``fn(*args, **kwargs)`` on the library's own bounded pool, never the host's.

    The caller's contextvars are copied into the call, as structlog's async log methods do. When
    the caller is cancelled before the call starts, it never runs.
    """
    import asyncio  # lazily: layers that only need is_async_callable must not pay for asyncio

    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
    return await loop.run_in_executor(library_executor(), functools.partial(ctx.run, call))


async def _in_default_executor(fn: Callable[..., T], /, *args: Any) -> T:
    import asyncio

    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(None, functools.partial(ctx.run, fn, *args))


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
    (it may block: the host's own code belongs on the host's executor, not on the library's pool,
    where it could starve the library's file and queue I/O), and what it returns is awaited when
    awaitable (a lambda returning a coroutine).
    """
    result = fn(*args) if is_async_callable(fn) else await _in_default_executor(fn, *args)
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
    # Daemon threads: a name lookup stuck in getaddrinfo must not hold the process at its exit.
    executor = DaemonPool(MAX_WORKERS, "asyncio")
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


def running_loop() -> tuple[Any, Any]:
    """
    The ``asyncio`` module and the loop running in this thread, each None when there is none.

    asyncio is looked up, not imported: code that never touched it (a sync host recording
    requests) does not pay for loading it, and a loop cannot run without it being imported.
    """
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None, None
    try:
        return aio, aio.get_running_loop()
    except RuntimeError:
        return aio, None
