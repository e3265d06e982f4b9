"""
Small bounded thread pools of the MCP layer's own, never the host's default executor.

The queue's blocking I/O (SQLite) runs on the store's own thread, and a host's plain (blocking)
``execute`` on a pool sized by the worker's concurrency. So host work that hangs can park only
those threads: it never starves the queue (a save still commits) nor the host's default executor
(its other ``run_in_executor`` calls). Threads are daemons: a thread stuck in host code never keeps
the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._util import logger

__all__ = ["ThreadLane"]

T = TypeVar("T")

_Job = (
    tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[[], Any]]
    | tuple[None, None, None, Callable[[], Any]]
)


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return  # the caller was cancelled meanwhile
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Pool:
    """One generation of a lane's threads and their job queue (a closed lane starts a new one)."""

    __slots__ = ("idle", "jobs", "threads")

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.threads = 0
        self.idle = 0


class ThreadLane:
    """
    Up to ``max_threads`` daemon threads that run blocking calls for coroutines, in order.

    Threads start on demand and stay for reuse until :meth:`close`. A coroutine awaiting a call
    may be cancelled; the call then finishes on its thread and its result is dropped.

    Args:
        name: The threads' name prefix (shown in thread dumps).
        max_threads: The bound.
    """

    def __init__(self, name: str, max_threads: int = 1) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.name = name
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self._pool = _Pool()

    def __repr__(self) -> str:
        return f"<ThreadLane {self.name} threads={self._pool.threads}/{self.max_threads}>"

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on one of the lane's threads and return its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        ctx = contextvars.copy_context()
        call = (lambda: fn(*args, **kwargs)) if kwargs else (lambda: fn(*args))
        self._put((loop, fut, ctx, call))
        return await fut

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on one of the lane's threads, without waiting; it must not raise."""
        self._put((None, None, None, fn))

    def _put(self, job: _Job) -> None:
        with self._lock:
            pool = self._pool
            pool.jobs.put(job)
            spawn = pool.idle == 0 and pool.threads < self.max_threads
            if spawn:
                pool.threads += 1
                pool.idle += 1
        if spawn:
            name = f"{self.name}-{pool.threads}"
            threading.Thread(target=self._work, args=(pool,), name=name, daemon=True).start()

    def _work(self, pool: _Pool) -> None:
        while True:
            job = pool.jobs.get()
            if job is None:
                return
            with self._lock:
                pool.idle -= 1
            if job[0] is None:  # posted: settles its own futures
                try:
                    job[3]()
                except BaseException:  # a bug; the thread must live on, or later calls hang
                    logger.exception("a posted job failed on %s", self.name)
                del job
                with self._lock:
                    pool.idle += 1
                continue
            loop, fut, ctx, call = job
            try:
                result: tuple[bool, Any] = (True, ctx.run(call))
            except BaseException as err:  # delivered to the awaiting coroutine
                result = (False, err)
            del job, call
            try:
                loop.call_soon_threadsafe(_settle, fut, *result)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more
            del result
            with self._lock:
                pool.idle += 1

    def close(self) -> None:
        """Let the lane's threads end once the calls queued before are done; idempotent."""
        with self._lock:
            pool, self._pool = self._pool, _Pool()
        for _ in range(pool.threads):
            pool.jobs.put(None)
