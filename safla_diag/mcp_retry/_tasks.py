"""
MCPTaskRecovery: a durable failed-task queue and its retry worker.

Failed MCP calls are saved as rows of a :class:`~._model.TaskStore` (SQLite in WAL mode by
default). ``save_failed_task`` returns once the row is committed; concurrent saves share commits
(group commit). The worker, ``retry_failed_tasks()``, runs in the host's loop: it claims due tasks
with a lease (the claim counts the attempt), runs them with a concurrency limit, deletes them on
success, reschedules them with backoff on failure and dead-letters them after ``max_retries``
attempts. It sleeps until the next task is due, wakes early when one is saved, renews the leases of
the tasks it runs, and on cancellation gives its leases back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._aio import is_async_callable, maybe_await
from .._redact import redact
from ._backends import postgres_store_for
from ._backoff import Backoff
from ._coalesce import Coalescer
from ._encode import decode_task, encode_task
from ._guide import GuideImport, import_guide
from ._model import INF, ClaimedTask, NewTask, QueueStats, QueueStoreError, TaskStore
from ._postgres import PostgresQueueView, PostgresTaskStore
from ._sqlite import SQLiteQueue
from ._sqlite_store import SQLiteTaskStore
from ._threads import ThreadLane
from ._util import describe_error, logger
from ._worker import Wake, Worker

__all__ = ["MCPTaskRecovery", "encode_task"]

T = TypeVar("T")


class MCPTaskRecovery:
    """
    A durable queue of failed MCP tasks and the worker that retries them.

    A task is a JSON-serialisable mapping; its ``id`` (generated when absent) is its idempotency key.
    The library retries a task at most ``max_retries`` times (it already failed once in the host),
    with delays growing from ``retry_delay`` to ``max_delay`` with jitter, then dead-letters it with
    its last error.

    Args:
        persistence_file: The queue file (SQLite, WAL mode). A ``.json`` path is taken as the
            guide's ``mcp_tasks.json``: the queue lives beside it as ``.db`` and the JSON file is
            imported once. A guide file ``<stem>.json`` beside the queue file is imported too.
        execute: The host's coroutine function (or callable) that runs one task and raises on
            failure; it receives the saved mapping, with its ``id``.
        max_retries: Attempts the library makes per task.
        retry_delay: The first delay; each failed attempt doubles it.
        max_delay: The cap of the delay.
        lease_s: How long a claim lasts before another worker may take the task over; a running
            task's lease is renewed every third of it.
        concurrency: Tasks run at once by the worker.
        synchronous: ``"NORMAL"`` (commits survive the process being killed) or ``"FULL"`` (they
            also survive power loss, slower).
        task_timeout: Seconds after which a running task counts as failed; None for no limit.
        store: Another :class:`TaskStore` backend in place of the SQLite file.
        clock: Wall-clock seconds (injectable for tests).
        rng: Random source for the jitter (injectable for tests).

    Raises:
        ValueError: Bad numbers.
    """

    def __init__(
        self,
        persistence_file: str | os.PathLike[str] = "mcp_tasks.db",
        *,
        execute: Callable[[dict[str, Any]], Any],
        max_retries: int = 3,
        retry_delay: float = 1.0,
        max_delay: float = 300.0,
        lease_s: float = 60.0,
        concurrency: int = 4,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        task_timeout: float | None = None,
        store: TaskStore | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if max_retries < 1:
            raise ValueError("max_retries must be at least 1")
        if not (retry_delay >= 0 and max_delay >= retry_delay):
            raise ValueError("need 0 <= retry_delay <= max_delay")
        if not lease_s > 0:
            raise ValueError("lease_s must be positive")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.execute = execute
        self.max_retries = max_retries
        self.retry_delay = float(retry_delay)
        self.max_delay = float(max_delay)
        self.lease_s = float(lease_s)
        self.concurrency = concurrency
        self.task_timeout = task_timeout
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff = Backoff(self.retry_delay, self.max_delay, jitter=True, rng=self._rng)
        self._guide_file: Path | None = None
        store = store if store is not None else postgres_store_for(persistence_file)
        if store is None:
            if "://" in os.fspath(persistence_file):
                # A database URL selects another backend (PostgreSQL comes with its own issue).
                raise ValueError(
                    f"unsupported queue location {redact(os.fspath(persistence_file))!r}: "
                    "give a file path, or a TaskStore as store="
                )
            path = Path(persistence_file)
            if path.suffix.lower() == ".json":
                self._guide_file, path = path, path.with_suffix(".db")
            else:
                self._guide_file = path.with_suffix(".json")
            store = SQLiteTaskStore(path, synchronous=synchronous)
        self.store: TaskStore = store
        self.last_import: GuideImport | None = None
        self._last_stats: QueueStats | None = None  # for _repr_html_, which never queries
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self._saves: Coalescer[NewTask, bool] = Coalescer(
            self._put_batch, "safla_diag.mcp_retry.save"
        )
        self._acks: Coalescer[tuple[str, str], None] = Coalescer(
            self._ack_batch, "safla_diag.mcp_retry.ack", lost=_acks_lost
        )
        self._wake = Wake()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that opened the queue
        self._verdicts: set[asyncio.Future[Any]] = set()
        # Threads of our own: a host's blocking execute (which may hang) and file reads never
        # park threads in the host's default executor, nor block the store's thread.
        self._host_threads = ThreadLane("safla_diag.mcp_retry.execute", concurrency)
        self._execute_kind: tuple[object, bool] = (None, False)
        self._file_thread = ThreadLane("safla_diag.mcp_retry.files")

    def __repr__(self) -> str:
        return (
            f"<MCPTaskRecovery {redact(self.store.location)!r} max_retries={self.max_retries} "
            f"concurrency={self.concurrency}>"
        )

    def _repr_html_(self) -> str:
        from ._html import task_recovery_html

        return task_recovery_html(self)

    # -- lifecycle ------------------------------------------------------------------------------

    async def _ensure_open(self) -> None:
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._opened:
                return  # type: ignore[unreachable]  # another caller opened it meanwhile
            await self.store.open()
            self._loop = asyncio.get_running_loop()
            self._opened = True
            if self._guide_file is not None:
                await self._import_beside()

    async def _import_beside(self) -> None:
        """Import the guide file beside the queue, if any; a failure costs no task, only a log."""
        assert self._guide_file is not None
        try:
            if await self._file_thread.run(self._guide_file.is_file):
                self.last_import = await self.import_guide_file(self._guide_file)
        except (OSError, QueueStoreError) as err:
            logger.warning(
                "guide task file %s not imported (the queue works without it): %s",
                redact(str(self._guide_file)),
                describe_error(err),
            )

    async def _put_batch(self, items: list[NewTask]) -> list[bool]:
        return await self.store.put_many(items, now=self._clock())

    async def _ack_batch(self, leases: list[tuple[str, str]]) -> list[None]:
        if len(leases) == 1:
            await self.store.ack(*leases[0])
        else:
            await self.store.ack_many(leases)
        return [None] * len(leases)

    async def aclose(self) -> None:
        """Finish pending saves, acks and verdicts, and close the store."""
        await self._saves.aclose()
        await self._acks.aclose()
        if self._verdicts:
            await asyncio.gather(*self._verdicts, return_exceptions=True)
        try:
            await self.store.close()
        finally:
            self._host_threads.close()
            self._file_thread.close()
            self._opened = False

    def close(self) -> None:
        """
        Close the queue for a host without a loop (after :meth:`save_failed_task_sync` and the
        blocking accessors); idempotent. With a loop, use :meth:`aclose`, which also finishes the
        saves and acks in flight.
        """
        if isinstance(self.store, SQLiteTaskStore):
            self.store.sync.close()  # PostgreSQL: the blocking calls keep no connection open
        self._host_threads.close()
        self._file_thread.close()

    async def __aenter__(self) -> MCPTaskRecovery:
        await self._ensure_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- saving ---------------------------------------------------------------------------------

    def _delay(self, attempts: int) -> float:
        """The delay after ``attempts`` library attempts: doubling, capped, with equal jitter."""
        return self._backoff.delay(attempts)

    async def save_failed_task(self, task: Mapping[str, Any], *, delay: float | None = None) -> str:
        """
        Save a failed task for retry; return only once it is durable.

        Saving a task whose id is already queued or dead-lettered stores nothing new, so a save whose
        outcome is unknown (the process was killed, the call was cancelled) can simply be repeated.

        Args:
            task: A JSON-serialisable mapping; an ``id`` is generated when it has none.
            delay: Seconds until the first retry; by default ``retry_delay`` with jitter.

        Returns:
            The task's id.

        Raises:
            TypeError: The task is not a mapping or holds something JSON cannot represent.
            ValueError: NaN or infinity in the task, or a bad id.
            QueueStoreError: The queue file is corrupt, foreign or cannot be written.
        """
        key, payload = encode_task(task)
        if not self._opened:
            await self._ensure_open()
        item, _ = self._new_task(key, payload, delay)
        _saved(key, await self._saves.submit(item))
        self._wake.set()
        return key

    def _new_task(self, key: str, payload: str, delay: float | None) -> tuple[NewTask, float]:
        """The row of a task saved now, due after ``delay`` (by default the first retry delay)."""
        now = self._clock()
        due = now + (self._delay(0) if delay is None else max(0.0, delay))
        return NewTask(key, payload, due), now

    def save_failed_task_sync(self, task: Mapping[str, Any], *, delay: float | None = None) -> str:
        """
        :meth:`save_failed_task` for a host without an event loop (a thread, a plain script):
        blocking, one commit per call, on the calling thread; durable when it returns.

        It wakes this object's worker (running in another thread's loop) and, through the
        queue, every other worker on it. On PostgreSQL it opens a short connection of its own
        and needs the queue to exist (any worker, save or ``safla-diag mcp queue`` creates it).
        Inside a running loop, await :meth:`save_failed_task` instead: this would block it.

        Args:
            task: A JSON-serialisable mapping; an ``id`` is generated when it has none.
            delay: Seconds until the first retry; by default ``retry_delay`` with jitter.

        Returns:
            The task's id.

        Raises:
            TypeError: The task is not a mapping or holds something JSON cannot represent.
            ValueError: NaN or infinity in the task, or a bad id.
            QueueStoreError: The queue cannot be written (or, on PostgreSQL, does not exist).
        """
        key, payload = encode_task(task)
        item, now = self._new_task(key, payload, delay)
        with self._view() as view:
            _saved(key, view.put_many([item], now=now)[0])
        loop = self._loop
        if loop is not None:  # this process's worker: the file's own connection sees no change
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(self._wake.set)
        return key

    async def save_failed_tasks(self, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        """
        Save many failed tasks in one durable transaction (group commit for bursts).

        Args:
            tasks: JSON-serialisable mappings, as for :meth:`save_failed_task`.

        Returns:
            Their ids, in order.

        Raises:
            TypeError: A task is not a mapping or not JSON-serialisable (nothing is saved).
            ValueError: NaN or infinity in a task, or a bad id (nothing is saved).
            QueueStoreError: The queue file is corrupt, foreign or cannot be written.
        """
        encoded = [encode_task(t) for t in tasks]
        await self._ensure_open()
        now = self._clock()
        items = [NewTask(id=k, payload=p, due_at=now + self._delay(0)) for k, p in encoded]
        await self.store.put_many(items, now=now)
        self._wake.set()
        return [k for k, _ in encoded]

    async def save_needs_decision(self, task: Mapping[str, Any], *, reason: str) -> bool:
        """
        Save a task that must not be retried automatically straight into the dead letters.

        For a call whose outcome is unknown (it may have run) and that is not safe to repeat: a
        human or the host decides, from ``dead_letters()``, whether to run it again.

        Args:
            task: A JSON-serialisable mapping, as for :meth:`save_failed_task`.
            reason: Why it needs a decision; stored as its last error (redacted).

        Returns:
            False when its id was already known (nothing stored).
        """
        key, payload = encode_task(task)
        await self._ensure_open()
        now = self._clock()
        return await self.store.put_dead(
            NewTask(id=key, payload=payload, due_at=now), error=redact(reason), now=now
        )

    # -- reading --------------------------------------------------------------------------------

    async def load_failed_tasks(self) -> int:
        """
        Open the queue (importing a guide ``mcp_tasks.json`` once) and return how many tasks wait.

        Raises:
            QueueStoreError: The queue file is corrupt or foreign (it is left untouched).
        """
        await self._ensure_open()
        stats = await self.store.stats(now=self._clock())
        n = stats.pending + stats.in_flight
        logger.info("%d failed MCP tasks queued in %s", n, redact(self.store.location))
        return n

    async def afailed_tasks(self) -> list[dict[str, Any]]:
        """The queued tasks (each the saved mapping with its id), soonest due first."""
        await self._ensure_open()
        return [json.loads(t.payload) for t in await self.store.pending()]

    async def adead_letters(self) -> list[dict[str, Any]]:
        """The dead-lettered tasks: each saved mapping plus ``last_error`` and ``attempts``."""
        await self._ensure_open()
        return [
            {**json.loads(d.payload), "last_error": d.last_error, "attempts": d.attempts}
            for d in await self.store.dead_letters()
        ]

    @contextlib.contextmanager
    def _view(self) -> Iterator[SQLiteQueue | PostgresQueueView]:
        """
        A blocking view of the queue (reads, and the blocking save): the SQLite file's own
        connection, or a short PostgreSQL connection.
        """
        if isinstance(self.store, SQLiteTaskStore):
            yield self.store.sync
        elif isinstance(self.store, PostgresTaskStore):
            view = PostgresQueueView.of(self.store.target)
            try:
                yield view
            finally:
                view.close()
        else:
            raise TypeError("use the async twins (afailed_tasks, adead_letters) with this store")

    @property
    def failed_tasks(self) -> list[dict[str, Any]]:
        """
        The queued tasks, soonest due first (blocking: inside a loop, prefer ``afailed_tasks``).
        """
        with self._view() as view:
            return [json.loads(t.payload) for t in view.pending()]

    def dead_letters(self) -> list[dict[str, Any]]:
        """
        The dead-lettered tasks with ``last_error`` and ``attempts`` (blocking: inside a loop,
        prefer ``adead_letters``).
        """
        with self._view() as view:
            return [
                {**json.loads(d.payload), "last_error": d.last_error, "attempts": d.attempts}
                for d in view.dead_letters()
            ]

    # -- operating dead letters -------------------------------------------------------------------

    async def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """
        Give dead letters (all of them, or those ``ids``) another round: pending again, due now,
        with a fresh attempt count (``max_retries`` more attempts). Idle workers are woken.

        Args:
            ids: Task ids; ids that are not dead letters (pending, running, unknown) are left alone.

        Returns:
            How many dead letters were requeued.
        """
        await self._ensure_open()
        n = await self.store.requeue_dead(None if ids is None else list(ids), now=self._clock())
        if n:
            logger.info("requeued %d dead-lettered MCP tasks", n)
            self._wake.set()
        return n

    async def purge_dead(
        self,
        ids: Iterable[str] | None = None,
        *,
        older_than: float | datetime.timedelta | None = None,
    ) -> int:
        """
        Delete dead letters (all of them, or those ``ids``); pending and running tasks are never
        touched.

        Args:
            ids: Task ids; ids that are not dead letters are left alone.
            older_than: Only those dead for at least this long (seconds or a timedelta).

        Returns:
            How many dead letters were deleted.

        Raises:
            ValueError: A negative or NaN ``older_than``.
        """
        if isinstance(older_than, datetime.timedelta):
            older_than = older_than.total_seconds()
        if older_than is not None and not older_than >= 0:
            raise ValueError(f"older_than must be a non-negative duration, got {older_than!r}")
        await self._ensure_open()
        cutoff = INF if older_than is None else self._clock() - older_than
        n = await self.store.purge_dead(None if ids is None else list(ids), dead_before=cutoff)
        if n:
            logger.info("purged %d dead-lettered MCP tasks", n)
        return n

    async def stats(self) -> QueueStats:
        """Counts and times of the queue (pending, in flight, dead, oldest, next due)."""
        await self._ensure_open()
        stats = await self.store.stats(now=self._clock())
        self._last_stats = stats
        return stats

    # -- guide import -----------------------------------------------------------------------------

    async def import_guide_file(self, path: str | os.PathLike[str]) -> GuideImport:
        """
        Import the tasks of a guide-format ``mcp_tasks.json`` once; the file is left in place.

        A truncated file is reported (a warning and ``GuideImport.truncated``) and every complete
        task before the damage is imported. The same content is never imported twice.

        Args:
            path: The guide's JSON file.

        Returns:
            What was found, imported, skipped.
        """
        await self._ensure_open()
        report = await import_guide(
            self.store, Path(path), now=self._clock(), lane=self._file_thread
        )
        if report.truncated or report.problem:
            logger.warning(
                "guide task file %s: %s; imported %d of %d recovered tasks",
                redact(report.path),
                report.problem,
                report.imported,
                report.found,
            )
        elif report.imported:
            logger.info(
                "imported %d tasks from guide file %s", report.imported, redact(report.path)
            )
        return report

    # -- running ----------------------------------------------------------------------------------

    async def _run_claimed(
        self, c: ClaimedTask, not_before: float | None = None, *, await_ack: bool = True
    ) -> bool:
        """
        Run one claimed task and record the verdict; True on success.

        A failed task is next due after ``not_before`` (retry_once's start: not run again by the
        same call, even when the delay is 0 and the clock has not moved). Without ``await_ack``
        (the worker) a success returns once its ack is queued for the next group commit, so the
        slot is free for the next claim, which then shares that commit; the ack is tracked until
        committed (:meth:`_release` and :meth:`aclose` wait for it) and a failed one is logged
        (the task runs again once its lease expires: at least once).
        """
        task: dict[str, Any] = decode_task(c.payload)
        try:
            if self.task_timeout is None:
                fn = self.execute
                if self._execute_kind[0] is fn and self._execute_kind[1]:
                    await fn(task)  # a coroutine function, known as one: no frame between
                else:
                    await self._call_execute(task)
            else:
                async with asyncio.timeout(self.task_timeout):
                    await self._call_execute(task)
        except Exception as err:
            error = describe_error(err)
            now = self._clock()
            due = now + self._delay(c.attempts)
            if not_before is not None and due <= not_before:
                due = math.nextafter(not_before, math.inf)
            outcome = await self._verdict(
                self.store.fail(
                    c.id,
                    c.lease,
                    error=error,
                    now=now,
                    next_attempt_at=due,
                    max_attempts=self.max_retries,
                )
            )
            if outcome == "dead":
                logger.error(
                    "MCP task %s failed %d times, dead-lettered: %s",
                    redact(c.id),
                    c.attempts,
                    error,
                )
            else:
                logger.warning(
                    "MCP task %s attempt %d/%d failed (%s): %s",
                    redact(c.id),
                    c.attempts,
                    self.max_retries,
                    "retry scheduled" if outcome == "retry" else "lease lost",
                    error,
                )
            return False
        # Not shielded: a cancelled caller cancels only its own future, the ack stays in its batch
        # (and _release waits for that batch before giving back the leases of cancelled tasks).
        if await_ack:
            await self._acks.put((c.id, c.lease))
        else:
            self._acks.submit_nowait((c.id, c.lease))
        if logger.isEnabledFor(logging.INFO):
            logger.info("MCP task %s succeeded on attempt %d", redact(c.id), c.attempts)
        return True

    async def _call_execute(self, task: dict[str, Any]) -> None:
        """The host's execute: a coroutine function on the loop, anything else on our threads."""
        fn = self.execute
        if self._execute_kind[0] is not fn:
            self._execute_kind = (fn, is_async_callable(fn))
        if self._execute_kind[1]:
            await self.execute(task)
        else:
            await maybe_await(await self._host_threads.run(self.execute, task))

    async def retry_once(self) -> int:
        """
        Run the tasks due now (with the concurrency limit) and return how many were run.

        Tasks rescheduled meanwhile are not run again in the same call.

        Raises:
            QueueStoreError: The queue file is corrupt or foreign.
        """
        await self._ensure_open()
        start = self._clock()
        ran = 0
        while True:
            claimed = await self._claim(now=start, limit=self.concurrency)
            if not claimed:
                return ran
            await self._run_batch(claimed, start)
            ran += len(claimed)

    async def _claim(self, *, now: float, limit: int) -> list[ClaimedTask]:
        """Claim due tasks; when cancelled meanwhile, give back what the claim took anyway."""
        op = asyncio.ensure_future(
            self.store.claim(
                now=now, limit=limit, lease_s=self.lease_s, max_attempts=self.max_retries
            )
        )
        try:
            return await asyncio.shield(op)
        except asyncio.CancelledError:
            # The claim runs off the loop (or on the server) and may commit after all: its leases
            # would then be held for lease_s by a worker that has stopped.
            with contextlib.suppress(Exception):
                await self._release(await asyncio.shield(op))
            raise

    async def _run_batch(self, claimed: Sequence[ClaimedTask], start: float) -> None:
        tasks = [asyncio.ensure_future(self._run_claimed(c, start)) for c in claimed]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._release([c for c, t in zip(claimed, tasks, strict=True) if t.cancelled()])
            raise

    async def _verdict(self, op: Awaitable[T]) -> T:
        # Once the task has run, its verdict is recorded even if we are cancelled meanwhile:
        # otherwise a task that succeeded would be run again.
        fut = asyncio.ensure_future(op)
        self._verdicts.add(fut)
        fut.add_done_callback(self._verdicts.discard)
        return await asyncio.shield(fut)

    async def _release(self, claimed: Sequence[ClaimedTask]) -> None:
        # The verdicts and acks recorded so far reach the store first: a task that succeeded is
        # deleted, not given back to be run again.
        await self._acks.aclose()
        if self._verdicts:
            await asyncio.shield(asyncio.gather(*self._verdicts, return_exceptions=True))
        if not claimed:
            return
        leases = [(c.id, c.lease) for c in claimed]
        # Shielded: this runs while we are being cancelled, and must reach the store.
        with contextlib.suppress(Exception):
            await asyncio.shield(self.store.release(leases, now=self._clock()))
        logger.info("released %d MCP task leases", len(leases))

    async def retry_failed_tasks(self) -> None:
        """
        Retry failed tasks until cancelled, in the host's loop.

        Claims due tasks up to ``concurrency`` at a time, sleeps until the next one is due (a save
        wakes it early), renews the leases of running tasks, and on cancellation stops the running
        tasks and gives their leases back before re-raising.

        Raises:
            QueueStoreError: The queue file is corrupt or foreign.
        """
        await self._ensure_open()
        await Worker(self).run()


def _saved(key: str, new: bool) -> None:
    if new and logger.isEnabledFor(logging.DEBUG):  # redacting costs more than the save
        logger.debug("saved failed MCP task %s", redact(key))


def _acks_lost(err: BaseException, n: int) -> None:
    if not isinstance(err, asyncio.CancelledError):
        logger.error(
            "%d MCP task acks not recorded (those tasks run again once their leases expire): %s",
            n,
            describe_error(err),
        )
