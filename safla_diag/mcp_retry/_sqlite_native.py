"""
The SQLite store's hot writes (saves, claims, acks) committed off the interpreter lock.

A :class:`NativeLane` hands those writes to the compiled committer (``_native.c``): one connection
of its own to the queue file and a thread that never takes the interpreter lock. Every write waiting
is committed in one transaction, as on the store's Python thread, but the SQLite work runs while the
loop runs Python (that thread needs the lock at every statement, and so only gets on while the loop
waits). Results come back through a pipe the loop reads.

The committer uses the SQLite that Python's sqlite3 module loaded (one SQLite in the process, so its
file locks stay coherent across the connections). Where it was not built, or that SQLite cannot be
found, or ``SAFLA_DIAG_PURE`` is set, the store stays in Python, with the same results.

A group that fails is committed by nobody: each write in it is then run again on the store's Python
connection, one by one, and meets its own outcome there (the error a caller sees is the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

from ._model import ClaimedTask, NewTask
from ._util import logger

__all__ = ["NativeLane", "Redo", "bound", "native"]

_loaded: ModuleType | bool | None = False


def native() -> ModuleType | None:
    """The compiled committer bound to Python's SQLite, or None (not built, not bindable, or
    ``SAFLA_DIAG_PURE`` set)."""
    if os.environ.get("SAFLA_DIAG_PURE", "") not in ("", "0"):
        return None
    return bound()


def bound() -> ModuleType | None:
    """The compiled committer bound to Python's SQLite, or None where it cannot be (looked up
    once)."""
    global _loaded
    if _loaded is False:
        try:
            import _sqlite3

            from . import _native

            _native.load(_sqlite3.__file__)
            _loaded = _native
        except (ImportError, OSError, AttributeError) as err:
            logger.debug("the queue commits in Python: %s", err)
            _loaded = None
    return _loaded  # type: ignore[return-value]


class Redo:
    """The result of a write whose group failed: nothing of it was committed; run it again."""

    __slots__ = ("code", "message")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"<Redo SQLite code {self.code}: {self.message}>"


class NativeLane:
    """
    The committer of one store, bound to the loop that opened it: see :meth:`start`.
    """

    def __init__(self, committer: Any, rfd: int, wfd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._committer = committer
        self._rfd, self._wfd = rfd, wfd
        self._futs: dict[int, asyncio.Future[Any]] = {}
        self._tokens = itertools.count()
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name="safla_diag.mcp_retry.commit", daemon=True
        )
        loop.add_reader(rfd, self._on_results)  # first: a loop without readers stops us here
        self._thread.start()

    @classmethod
    async def start(
        cls,
        mod: ModuleType,
        path: str,
        *,
        setup: str,
        insert: str,
        claim: str,
        ack: str,
        run: Callable[..., Awaitable[Any]],
    ) -> NativeLane:
        """
        Open the committer's connection (with ``run``, off the loop) and start its thread.

        Args:
            mod: The compiled module.
            path: The queue file (open, migrated and in WAL mode already).
            setup: PRAGMAs for the committer's connection (synchronous, cache, checkpoints, timeout).
            insert, claim, ack: The statements of a save, a claim and an ack (the store's own).
            run: Runs a blocking call off the loop (the store's own thread).

        Raises:
            OSError: The file cannot be opened or set up (the store stays in Python).
        """
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        try:
            os.set_blocking(rfd, False)
            os.set_blocking(wfd, False)
            committer = await run(mod.Committer, path, setup, insert, claim, ack, wfd)
            return cls(committer, rfd, wfd, loop)
        except BaseException:
            os.close(rfd)
            os.close(wfd)
            raise

    def __repr__(self) -> str:
        groups, ops = self._committer.counts()
        return f"<NativeLane groups={groups} writes={ops} waiting={len(self._futs)}>"

    def _serve(self) -> None:
        try:
            self._committer.serve()
        except BaseException:  # a bug: the writes handed over are settled by close()
            logger.exception("the queue's committer stopped")

    def usable(self) -> bool:
        """Whether the calling coroutine may hand writes over (the lane's loop, not closed)."""
        if self._closed:
            return False
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def _submit(self, method: Any, *args: Any) -> asyncio.Future[Any]:
        token = next(self._tokens)
        fut = self.loop.create_future()
        self._futs[token] = fut
        try:
            method(token, *args)
        except BaseException:
            del self._futs[token]
            raise
        return fut

    def put(self, tasks: Sequence[NewTask], now: float) -> asyncio.Future[list[bool] | Redo]:
        """Hand saves over; the future holds, per task, whether it was new."""
        rows = tasks if type(tasks) is list else list(tasks)
        return self._submit(self._committer.put, rows, now)

    def claim(
        self, lease: str, until: float, now: float, limit: int
    ) -> asyncio.Future[list[tuple[str, str, int]] | Redo]:
        """Hand a claim over; the future holds the claimed rows (id, payload, attempts)."""
        return self._submit(self._committer.claim, lease, until, now, limit)

    def ack(self, ids: list[str]) -> asyncio.Future[int | Redo]:
        """Hand acks over; the future holds how many tasks were deleted."""
        return self._submit(self._committer.ack, ids)

    def _on_results(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._rfd, 4096):
                pass
        self._settle(self._committer.take())

    def _settle(self, results: list[tuple[int, bool, Any]]) -> None:
        futs = self._futs
        for token, ok, value in results:
            fut = futs.pop(token, None)
            if fut is None or fut.done():
                continue  # its caller was cancelled meanwhile (the write is done all the same)
            fut.set_result(value if ok else Redo(*value))

    async def aclose(self, wait: Callable[..., Awaitable[Any]]) -> None:
        """
        Commit what was handed over, then close the connection. ``wait`` runs a blocking call off
        the loop (the store's own thread). Writes handed over and never committed (the committer
        failed) are told to run again elsewhere.
        """
        if self._closed:
            return
        self._closed = True
        self._committer.close()
        joined = asyncio.ensure_future(wait(self._thread.join))
        joined.add_done_callback(self._finish)
        await asyncio.shield(joined)  # cancelled meanwhile: the lane still finishes

    def _finish(self, joined: asyncio.Future[None]) -> None:
        self.loop.remove_reader(self._rfd)
        self._settle(self._committer.take())
        for fut in self._futs.values():
            if not fut.done():
                fut.set_result(Redo(0, "the queue's committer stopped"))
        self._futs.clear()
        if not joined.cancelled() and joined.exception() is not None:
            logger.warning("the queue's committer did not stop: %s", joined.exception())
        if self._thread.is_alive():
            return  # its pipe stays open: the thread may still write to it
        os.close(self._rfd)
        os.close(self._wfd)


def claimed(
    rows: list[tuple[str, str, int]], lease: str, until: float, max_attempts: int
) -> tuple[list[ClaimedTask], list[str]]:
    """Claimed rows as tasks, and the ids past their last attempt (to be dead-lettered)."""
    tasks = [ClaimedTask(i, p, a, lease, until) for i, p, a in rows if a <= max_attempts]
    exhausted = [i for i, _, a in rows if a > max_attempts] if len(tasks) < len(rows) else []
    return tasks, exhausted
