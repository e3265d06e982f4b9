"""
:class:`SQLiteTaskStore`: the :class:`~._model.TaskStore` of a SQLite file, the blocking
:class:`~._sqlite.SQLiteQueue` run on the store's own thread (never the host's default executor).
Saves, claims and acks of the loop that opened it go to the compiled committer where it was built
(:mod:`._sqlite_native`): the same statements, committed off the interpreter lock.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from typing_extensions import Unpack

from .._redact import redact
from ._model import (
    INF,
    ClaimedTask,
    DeadLetter,
    NewTask,
    Outcome,
    QueueStats,
    QueueStoreError,
    StoredTask,
)
from ._sqlite import _ACK, _CLAIM, _INSERT, SQLiteOptions, SQLiteQueue
from ._sqlite_native import NativeLane, Redo, claimed, native
from ._threads import ThreadLane
from ._util import describe_error, logger

__all__ = ["SQLiteTaskStore"]

T = TypeVar("T")

_Write = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _redone(kind: str, redo: object) -> None:
    """Note a write the committer's group failed, which runs again on the Python path (where a
    SQLite error reaches its caller as it would have there: only the others are worth a log)."""
    if isinstance(redo, Redo) and redo.code == 0:
        logger.warning("MCP task queue %s run again on the Python path: %s", kind, redo.message)
    else:
        logger.debug("MCP task queue %s run again on the Python path: %r", kind, redo)


def _settle_all(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.done():
            continue  # its caller was cancelled meanwhile (the write is done all the same)
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class SQLiteTaskStore:
    """
    The :class:`~._model.TaskStore` of a SQLite file: a :class:`SQLiteQueue` run off the loop.

    Args:
        path: The queue file.
        **options: As for :class:`SQLiteQueue` (``synchronous``, ``readonly``, ``busy_timeout_s``).
    """

    #: How often an idle worker looks for commits by other processes or objects (seconds).
    poll_s = 0.25

    def __init__(self, path: str | os.PathLike[str], **options: Unpack[SQLiteOptions]) -> None:
        self.sync = SQLiteQueue(path, **options)
        # SQLite calls run on the store's own thread, never in the host's default executor.
        self._lane = ThreadLane("safla_diag.mcp_retry.sqlite")
        self._seen: int | None = None
        # Writes waiting for the store's thread: it commits all of them in one transaction.
        self._group: list[_Write] = []
        self._group_lock = threading.Lock()
        # Saves, claims and acks of the loop that opened the store, committed off the interpreter
        # lock where the committer was built (None: all on the Python thread above).
        self._native: NativeLane | None = None

    def __repr__(self) -> str:
        return f"<SQLiteTaskStore {self.sync!r}>"

    @property
    def location(self) -> str:
        """The queue file."""
        return self.sync.location

    @property
    def path(self) -> Path:
        """The queue file."""
        return self.sync.path

    async def open(self) -> None:
        """See :meth:`SQLiteQueue.open`; also notes the file's version, to see others' commits."""
        await self._lane.run(self.sync.open)
        if self._seen is None:
            self._seen = await self._lane.run(self.sync.data_version)
        if self._native is None and not self.sync.readonly:
            self._native = await self._start_native()

    async def _start_native(self) -> NativeLane | None:
        mod = native()
        if mod is None:
            return None
        sync = self.sync
        try:
            return await NativeLane.start(
                mod,
                os.fspath(sync.path),
                setup="; ".join(sync.writer_pragmas()),
                insert=_INSERT,
                claim=_CLAIM,
                ack=_ACK,
                run=self._lane.run,
            )
        except (OSError, RuntimeError) as err:
            logger.info(
                "the queue %s commits in Python: %s", redact(self.location), describe_error(err)
            )
            return None

    async def close(self) -> None:
        """See :meth:`SQLiteQueue.close`; the store's threads end."""
        try:
            lane, self._native = self._native, None
            if lane is not None:
                await lane.aclose(self._lane.run)
            await self._lane.run(self.sync.close)
        finally:
            self._lane.close()
            self._seen = None

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking call on the store's own thread (guide import, file checks)."""
        return await self._lane.run(fn, *args, **kwargs)

    async def _write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """
        Run a write on the store's thread in the next group: the writes that arrive while one
        group commits (saves, claims, acks, verdicts, from every coroutine) share the next commit.
        Returns once the commit holding it is done.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        call = functools.partial(fn, *args, **kwargs)
        with self._group_lock:
            self._group.append((loop, fut, call))
            first = len(self._group) == 1
        if first:
            self._lane.post(self._commit_group)
        return await fut

    def _commit_group(self) -> None:
        """On the store's thread: commit the writes waiting, then settle their futures at once."""
        with self._group_lock:
            group, self._group = self._group, []
        if not group:
            return
        try:
            outcomes = self.sync.run_group([call for _, _, call in group])
            if len(outcomes) != len(group):
                raise RuntimeError("a group commit lost track of its writes")
        except BaseException as err:  # KeyboardInterrupt and the like: every write gets it
            outcomes = [(False, err)] * len(group)
        settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]]
        settled = {}
        for (loop, fut, _), (ok, value) in zip(group, outcomes, strict=True):
            settled.setdefault(loop, []).append((fut, ok, value))
        del group, outcomes
        for loop, results in settled.items():
            try:
                loop.call_soon_threadsafe(_settle_all, results)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

    def coalesces(self) -> bool:
        """Whether saves, claims and acks handed over now are grouped by the committer itself
        (every write waiting goes into its next transaction): the calling loop's own lane."""
        lane = self._native
        return lane is not None and lane.usable()

    async def put_many(self, tasks: Sequence[NewTask], *, now: float) -> list[bool]:
        """See :meth:`SQLiteQueue.put_many`."""
        lane = self._native
        if lane is not None and tasks and lane.usable():
            out = await lane.put(tasks, now)
            if type(out) is list:
                return out
            _redone("save", out)
        return await self._write(self.sync.put_many, tasks, now=now)

    async def put_dead(self, task: NewTask, *, error: str, now: float) -> bool:
        """See :meth:`SQLiteQueue.put_dead`."""
        return await self._write(self.sync.put_dead, task, error=error, now=now)

    async def claim(
        self, *, now: float, limit: int, lease_s: float, max_attempts: int
    ) -> list[ClaimedTask]:
        """See :meth:`SQLiteQueue.claim`."""
        lane = self._native
        if lane is not None and limit > 0 and lane.usable():
            until = now + lease_s
            lease = os.urandom(12).hex()
            rows = await lane.claim(lease, until, now, limit)
            if type(rows) is list:
                tasks, exhausted = claimed(rows, lease, until, max_attempts)
                if exhausted:
                    await self._bury(exhausted, now=now, max_attempts=max_attempts)
                return tasks
            _redone("claim", rows)
        return await self._write(
            self.sync.claim, now=now, limit=limit, lease_s=lease_s, max_attempts=max_attempts
        )

    async def _bury(self, ids: list[str], *, now: float, max_attempts: int) -> None:
        """Dead-letter claimed tasks past their last attempt; on failure a later claim does."""
        try:
            await self._write(self.sync.bury_expired, ids, now=now, max_attempts=max_attempts)
        except QueueStoreError as err:
            # Their leases expire and the next claim takes them again, and buries them then.
            logger.warning("%d MCP tasks past their last attempt not dead-lettered yet: %s",
                           len(ids), describe_error(err))  # fmt: skip

    async def extend(self, leases: Sequence[tuple[str, str]], *, until: float) -> None:
        """See :meth:`SQLiteQueue.extend`."""
        await self._write(self.sync.extend, leases, until=until)

    async def ack(self, task_id: str, lease: str) -> bool:
        """See :meth:`SQLiteQueue.ack`."""
        lane = self._native
        if lane is not None and lane.usable():
            n = await lane.ack([task_id])
            if type(n) is int:
                return n == 1
            _redone("ack", n)
        return await self._write(self.sync.ack, task_id, lease)

    async def ack_many(self, leases: Sequence[tuple[str, str]]) -> int:
        """See :meth:`SQLiteQueue.ack_many`."""
        lane = self._native
        if lane is not None and leases and lane.usable():
            n = await lane.ack([i for i, _ in leases])
            if type(n) is int:
                return n
            _redone("ack", n)
        return await self._write(self.sync.ack_many, leases)

    async def fail(
        self,
        task_id: str,
        lease: str,
        *,
        error: str,
        now: float,
        next_attempt_at: float,
        max_attempts: int,
    ) -> Outcome:
        """See :meth:`SQLiteQueue.fail`."""
        return await self._write(
            self.sync.fail,
            task_id,
            lease,
            error=error,
            now=now,
            next_attempt_at=next_attempt_at,
            max_attempts=max_attempts,
        )

    async def release(self, leases: Sequence[tuple[str, str]], *, now: float) -> None:
        """See :meth:`SQLiteQueue.release`."""
        await self._write(self.sync.release, leases, now=now)

    async def next_due(self) -> float | None:
        """See :meth:`SQLiteQueue.next_due`."""
        return await self._lane.run(self.sync.next_due)

    async def pending(self, limit: int | None = None) -> list[StoredTask]:
        """See :meth:`SQLiteQueue.pending`."""
        return await self._lane.run(self.sync.pending, limit)

    async def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """See :meth:`SQLiteQueue.dead_letters`."""
        return await self._lane.run(self.sync.dead_letters, limit)

    async def stats(self, *, now: float) -> QueueStats:
        """See :meth:`SQLiteQueue.stats`."""
        return await self._lane.run(self.sync.stats, now=now)

    async def requeue_dead(self, ids: Sequence[str] | None = None, *, now: float) -> int:
        """See :meth:`SQLiteQueue.requeue_dead`."""
        return await self._lane.run(self.sync.requeue_dead, ids, now=now)

    async def purge_dead(
        self, ids: Sequence[str] | None = None, *, dead_before: float = INF
    ) -> int:
        """See :meth:`SQLiteQueue.purge_dead`."""
        return await self._lane.run(self.sync.purge_dead, ids, dead_before=dead_before)

    async def meta(self, key: str) -> str | None:
        """See :meth:`SQLiteQueue.meta`."""
        return await self._lane.run(self.sync.meta, key)

    async def set_meta(self, key: str, value: str) -> None:
        """See :meth:`SQLiteQueue.set_meta`."""
        await self._lane.run(self.sync.set_meta, key, value)

    async def import_rows(self, rows: Sequence[tuple[str, str, int]], *, now: float) -> int:
        """See :meth:`SQLiteQueue.import_rows`."""
        return await self._lane.run(self.sync.import_rows, rows, now=now)

    async def wait_for_change(self) -> None:
        """
        Return when another connection (another process, or another object in this one) committed.

        SQLite has no notifications: ``PRAGMA data_version`` (which changes when another connection
        commits) is read every :attr:`poll_s` on the store's thread, a few microseconds each.
        """
        if self._seen is None:
            self._seen = await self._lane.run(self.sync.data_version)
        while True:
            await asyncio.sleep(self.poll_s)
            version = await self._lane.run(self.sync.data_version)
            if version != self._seen:
                self._seen = version
                return
