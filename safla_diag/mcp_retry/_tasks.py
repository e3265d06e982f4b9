"""
MCPTaskRecovery: a durable failed-task queue and its retry worker.

Failed MCP calls are saved as rows of a :class:`~._store.TaskStore` (SQLite in WAL mode by
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
import hashlib
import json
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from .._aio import off_loop
from .._redact import redact
from ._backends import postgres_store_for
from ._guide import GuideImport, guide_task_id, parse_guide_file
from ._store import (
    ClaimedTask,
    NewTask,
    QueueStats,
    QueueStoreError,
    SQLiteTaskStore,
    TaskStore,
)
from ._util import call_host, describe_error, logger

__all__ = ["MCPTaskRecovery", "encode_task"]

_MAX_DEPTH = 64

T = TypeVar("T")


def _check_json(value: object, where: str, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not valid JSON")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string (JSON keys are strings)")
            _check_json(v, f"{where}[{k!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", depth + 1)
        return
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def encode_task(task: Mapping[str, Any]) -> tuple[str, str]:
    """
    Validate a task and return ``(id, payload_json)``; a missing id gets a fresh uuid.

    Raises:
        TypeError: The task is not a mapping, or holds something JSON cannot represent.
        ValueError: NaN or infinity, a bad id, or nesting too deep.
    """
    if not isinstance(task, Mapping):
        raise TypeError(f"a task must be a mapping, got {type(task).__name__}")
    t = dict(task)
    task_id = t.get("id")
    if task_id is None:
        task_id = t["id"] = uuid.uuid4().hex
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)):
        raise TypeError(f"task id must be a string or an int, got {type(task_id).__name__}")
    key = str(task_id)
    if not key or len(key) > 1024:
        raise ValueError("task id must be a non-empty string of at most 1024 characters")
    _check_json(t, "task")
    return key, json.dumps(t, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


ItemT = TypeVar("ItemT")


class _Coalescer(Generic[ItemT, T]):
    """
    Coalesce concurrent writes into one transaction (group commit): while one batch is being
    committed off the loop, the next one forms.
    """

    def __init__(self, flush: Callable[[list[ItemT]], Awaitable[list[T]]], name: str) -> None:
        self._flush_fn = flush
        self._name = name
        self._items: list[tuple[ItemT, asyncio.Future[T]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def put(self, item: ItemT) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        fut.add_done_callback(_consume)
        self._items.append((item, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name=self._name)
        # A cancelled caller does not abort the commit others wait for; its write is done or not,
        # as for a kill at that moment, and repeating it is harmless (ids are idempotent).
        return await asyncio.shield(fut)

    async def _flush(self) -> None:
        while self._items:
            batch, self._items = self._items, []
            try:
                results = await self._flush_fn([i for i, _ in batch])
            except BaseException as err:
                for _, fut in batch:
                    if not fut.done():
                        if isinstance(err, asyncio.CancelledError):
                            fut.cancel()
                        else:
                            fut.set_exception(err)
                if isinstance(err, asyncio.CancelledError):
                    for _, fut in self._items:
                        fut.cancel()
                    self._items = []
                    raise
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def aclose(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)


def _consume(fut: asyncio.Future[Any]) -> None:
    # Mark the exception retrieved: a saver cancelled meanwhile never will.
    if not fut.cancelled():
        fut.exception()


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
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self._saves: _Coalescer[NewTask, bool] = _Coalescer(
            self._put_batch, "safla_diag.mcp_retry.save"
        )
        self._acks: _Coalescer[tuple[str, str], None] = _Coalescer(
            self._ack_batch, "safla_diag.mcp_retry.ack"
        )
        self._wake: asyncio.Event | None = None
        self._verdicts: set[asyncio.Future[Any]] = set()

    def __repr__(self) -> str:
        return (
            f"<MCPTaskRecovery {redact(self.store.location)!r} max_retries={self.max_retries} "
            f"concurrency={self.concurrency}>"
        )

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
            self._opened = True
            if self._guide_file is not None and isinstance(self.store, SQLiteTaskStore):
                exists = await off_loop(self._guide_file.is_file)
                if exists:
                    self.last_import = await self.import_guide_file(self._guide_file)

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
        await self.store.close()
        self._opened = False

    async def __aenter__(self) -> MCPTaskRecovery:
        await self._ensure_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _wake_event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    # -- saving ---------------------------------------------------------------------------------

    def _delay(self, attempts: int) -> float:
        """The delay after ``attempts`` library attempts: doubling, capped, with equal jitter."""
        base = min(self.max_delay, self.retry_delay * (2.0 ** min(attempts, 60)))
        return base * (0.5 + 0.5 * self._rng.random())

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
        await self._ensure_open()
        now = self._clock()
        due = now + (self._delay(0) if delay is None else max(0.0, delay))
        new = await self._saves.put(NewTask(id=key, payload=payload, due_at=due))
        if new:
            logger.debug("saved failed MCP task %s", redact(key))
        self._wake_event().set()
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
        self._wake_event().set()
        return [k for k, _ in encoded]

    put_many = save_failed_tasks

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

    def _sync_store(self) -> SQLiteTaskStore:
        if not isinstance(self.store, SQLiteTaskStore):
            raise TypeError("use the async twins (afailed_tasks, adead_letters) with this store")
        return self.store

    @property
    def failed_tasks(self) -> list[dict[str, Any]]:
        """
        The queued tasks, soonest due first (reads the file: inside a loop, prefer ``afailed_tasks``).
        """
        return [json.loads(t.payload) for t in self._sync_store().pending_sync()]

    def dead_letters(self) -> list[dict[str, Any]]:
        """
        The dead-lettered tasks with ``last_error`` and ``attempts`` (inside a loop, prefer
        ``adead_letters``).
        """
        return [
            {**json.loads(d.payload), "last_error": d.last_error, "attempts": d.attempts}
            for d in self._sync_store().dead_letters_sync()
        ]

    async def stats(self) -> QueueStats:
        """Counts and times of the queue (pending, in flight, dead, oldest, next due)."""
        await self._ensure_open()
        return await self.store.stats(now=self._clock())

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
        store = self._sync_store()
        await self._ensure_open()
        report = await off_loop(self._import_sync, store, Path(path))
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

    def _import_sync(self, store: SQLiteTaskStore, path: Path) -> GuideImport:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        marker = f"imported:{path.resolve()}"
        if store.meta_sync(marker) == digest:
            return GuideImport(path=str(path), already_imported=True)
        parsed = parse_guide_file(data.decode("utf-8", errors="replace"))
        rows: dict[str, tuple[str, str, int]] = {}
        skipped: list[str] = []
        for n, item in enumerate(parsed.tasks):
            if not isinstance(item, dict):
                skipped.append(f"entry {n}: not a JSON object")
                continue
            if item.get("id") is None:
                item = {**item, "id": guide_task_id(item)}
            try:
                key, payload = encode_task(item)
            except (TypeError, ValueError) as err:
                skipped.append(f"entry {n}: {err}")
                continue
            count = item.get("retry_count", 1)
            # The guide counts the host's failure too: its retry_count is one more than our attempts.
            attempts = max(0, count - 1) if type(count) is int else 0
            if key in rows and rows[key][2] >= attempts:
                continue
            rows[key] = (key, payload, attempts)
        good = len(parsed.tasks) - len(skipped)
        imported = store.import_rows_sync(rows.values(), now=self._clock(), marker=(marker, digest))
        return GuideImport(
            path=str(path),
            found=len(parsed.tasks),
            imported=imported,
            duplicates=good - imported,
            skipped=tuple(skipped),
            truncated=parsed.truncated,
            problem=parsed.problem,
        )

    # -- running ----------------------------------------------------------------------------------

    async def _run_claimed(self, c: ClaimedTask, not_before: float | None = None) -> bool:
        """
        Run one claimed task and record the verdict; True on success.

        A failed task is next due after ``not_before`` (retry_once's start: not run again by the
        same call, even when the delay is 0 and the clock has not moved).
        """
        task: dict[str, Any] = json.loads(c.payload)
        try:
            if self.task_timeout is None:
                await call_host(self.execute, task)
            else:
                async with asyncio.timeout(self.task_timeout):
                    await call_host(self.execute, task)
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
        await self._verdict(self._acks.put((c.id, c.lease)))
        logger.info("MCP task %s succeeded on attempt %d", redact(c.id), c.attempts)
        return True

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
        wake = self._wake_event()
        running: dict[asyncio.Future[bool], ClaimedTask] = {}
        change: asyncio.Future[None] | None = None
        renew_every = self.lease_s / 3
        last_renew = time.monotonic()
        store_errors = 0
        try:
            while True:
                wake.clear()
                free = self.concurrency - len(running)
                nxt: float | None = None
                try:
                    if free > 0:
                        claimed = await self._claim(now=self._clock(), limit=free)
                        for c in claimed:
                            running[asyncio.ensure_future(self._run_claimed(c))] = c
                        if len(claimed) == free:
                            continue  # maybe more are due; the loop comes back when a slot frees
                        nxt = await self.store.next_due()
                    store_errors = 0
                except QueueStoreError as err:
                    store_errors += 1
                    pause = min(30.0, 0.1 * 2**store_errors)
                    logger.error("MCP task queue error, retrying in %.1fs: %s", pause, err)
                    nxt = self._clock() + pause
                timeout: float | None = None
                if nxt is not None:
                    timeout = max(0.0, nxt - self._clock())
                if running:
                    until_renew = max(0.0, last_renew + renew_every - time.monotonic())
                    timeout = until_renew if timeout is None else min(timeout, until_renew)
                if change is None:
                    change = asyncio.ensure_future(self.store.wait_for_change())
                woken = asyncio.ensure_future(wake.wait())
                try:
                    waiting: set[asyncio.Future[Any]] = {woken, change, *running}
                    done, _ = await asyncio.wait(
                        waiting,
                        timeout=timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    woken.cancel()
                if change in done:
                    if not change.cancelled() and change.exception() is not None:
                        logger.warning(
                            "MCP task queue notifications failed: %s",
                            describe_error(change.exception()),  # type: ignore[arg-type]
                        )
                    change = None
                for fut in [f for f in running if f.done()]:
                    del running[fut]
                    if not fut.cancelled() and fut.exception() is not None:
                        logger.error("MCP task worker error: %s", describe_error(fut.exception()))  # type: ignore[arg-type]
                if running and time.monotonic() - last_renew >= renew_every:
                    last_renew = time.monotonic()
                    leases = [(c.id, c.lease) for c in running.values()]
                    with contextlib.suppress(QueueStoreError):
                        await self.store.extend(leases, until=self._clock() + self.lease_s)
        finally:
            if change is not None:
                change.cancel()
            for fut in running:
                fut.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            await self._release([c for f, c in running.items() if f.cancelled()])
