"""
The worker loop of :meth:`MCPTaskRecovery.retry_failed_tasks`, as a few named steps: reap what
finished, fill the free slots with claimed tasks, sleep until something happens, renew leases.

A sleeping worker awaits one future, which a save, a finished task, a change by another writer or a
timer resolves: no wait over every running task, no task per wake-up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import TYPE_CHECKING

from ._backoff import Backoff
from ._model import ClaimedTask, QueueStoreError
from ._util import describe_error, logger

if TYPE_CHECKING:
    from ._tasks import MCPTaskRecovery

__all__ = ["Wake", "Worker"]

#: Batches claimed ahead when every task of the last claim has finished (short tasks).
AHEAD = 1


class Wake:
    """
    A flag raised by every save (and requeue) and the futures of the workers sleeping on it: an
    :class:`asyncio.Event` without its task and callbacks per wait.
    """

    __slots__ = ("flag", "sleepers")

    def __init__(self) -> None:
        self.flag = False
        self.sleepers: set[asyncio.Future[None]] = set()

    def set(self) -> None:
        """Raise the flag and wake the sleeping workers."""
        self.flag = True
        if self.sleepers:
            for fut in self.sleepers:
                if not fut.done():
                    fut.set_result(None)
            self.sleepers.clear()

    def clear(self) -> None:
        """Lower the flag."""
        self.flag = False


def _poke(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class Worker:
    """One run of :meth:`MCPTaskRecovery.retry_failed_tasks`: its state and its steps."""

    def __init__(self, rec: MCPTaskRecovery) -> None:
        self.rec = rec
        self.wake = rec._wake
        self.running: dict[asyncio.Future[bool], ClaimedTask] = {}
        self.finished: list[asyncio.Future[bool]] = []
        self.ready: collections.deque[ClaimedTask] = collections.deque()  # claimed ahead
        self.change: asyncio.Future[None] | None = None
        # What a sleeping worker awaits: set by a save, a finished task, a change or a timer.
        self.kick: asyncio.Future[None] | None = None
        self.renew_every = rec.lease_s / 3
        self.last_renew = time.monotonic()
        self.store_errors = 0
        self.pause = Backoff(0.2, 30.0)
        # A claim in flight while the tasks of the last one run (short tasks, a store that groups
        # writes by itself): its tasks start as slots free.
        self.ahead: asyncio.Future[list[ClaimedTask]] | None = None
        self.reaped = False  # some task has finished
        coalesces = getattr(rec.store, "coalesces", None)
        self.store_coalesces = coalesces if callable(coalesces) else (lambda: False)

    async def run(self) -> None:
        """Reap, fill the free slots, sleep until something happens, renew; until cancelled."""
        try:
            while True:
                self.wake.clear()
                self._reap()
                more, next_due = await self._fill()
                if more:
                    continue  # maybe more are due; the loop comes back when a slot frees
                await self._sleep(next_due)
                await self._renew()
        finally:
            await self._stop()

    async def _fill(self) -> tuple[bool, float | None]:
        """
        Start claimed tasks in the free slots, claiming more when none wait; return (maybe more
        due now, next due time).

        When every task of the last claim has finished already (short tasks), the claim takes a
        second batch ahead, started as slots free without another trip to the store: twice the
        tasks per commit. Those wait at most one round of short tasks (their leases are renewed
        with the others'; a stopping worker gives them back, the claim's attempt counted, as for a
        claim cancelled mid-way). Slow tasks are never claimed ahead: another worker may run them.
        With a store that groups writes by itself (SQLite's compiled committer), the claim after a
        full one of short tasks is handed over at once: it commits while they run, with their acks.
        """
        rec = self.rec
        # Every task started before has finished (and some have): short tasks.
        short = not self.running and self.reaped
        free = rec.concurrency - len(self.running)
        ready = self.ready
        while free > 0 and ready:
            self._start(ready.popleft())
            free -= 1
        try:
            next_due = None
            if free > 0:
                ahead = self.ahead
                if ahead is not None:
                    limit = rec.concurrency
                    if not ahead.done():
                        # Not cancelled with us: a stopping worker's _stop waits for it and gives
                        # its tasks back.
                        await asyncio.wait((ahead,))
                    self.ahead = None
                    claimed = ahead.result()  # a failed claim is handled below, once
                else:
                    limit = free if self.running else free + AHEAD * rec.concurrency
                    claimed = await rec._claim(now=rec._clock(), limit=limit)
                full = len(claimed) == limit
                if full and short and self.store_coalesces():
                    # The next claim commits while these run: no round trip between batches.
                    # Made first, so it is handed over before these tasks take their turns.
                    self.ahead = asyncio.ensure_future(
                        rec.store.claim(
                            now=rec._clock(),
                            limit=rec.concurrency,
                            lease_s=rec.lease_s,
                            max_attempts=rec.max_retries,
                        )
                    )
                for c in claimed[:free]:
                    self._start(c)
                ready.extend(claimed[free:])
                if full:
                    return True, None
                if not claimed:
                    next_due = await rec.store.next_due()
                # With tasks just claimed, their ends wake us to look again (or _sleep's cap).
            self.store_errors = 0
            return False, next_due
        except QueueStoreError as err:
            pause = self.pause.base(self.store_errors)
            self.store_errors += 1
            logger.error("MCP task queue error, retrying in %.1fs: %s", pause, err)
            return False, rec._clock() + pause

    def _start(self, c: ClaimedTask) -> None:
        fut = asyncio.get_running_loop().create_task(self.rec._run_claimed(c, await_ack=False))
        fut.add_done_callback(self._task_done)
        self.running[fut] = c

    def _task_done(self, fut: asyncio.Future[bool]) -> None:
        self.finished.append(fut)
        _poke(self.kick)

    def _changed(self, fut: asyncio.Future[None]) -> None:
        _poke(self.kick)

    async def _sleep(self, next_due: float | None) -> None:
        """Wait for a save, a notification, a finished task, the next due time or a renewal."""
        timeout: float | None = None
        if next_due is not None:
            timeout = max(0.0, next_due - self.rec._clock())
        if self.running:
            until_renew = max(0.0, self.last_renew + self.renew_every - time.monotonic())
            if next_due is None:  # not read while tasks run: look again within a second
                until_renew = min(until_renew, 1.0)
            timeout = until_renew if timeout is None else min(timeout, until_renew)
        if self.change is None:
            self.change = asyncio.ensure_future(self.rec.store.wait_for_change())
            self.change.add_done_callback(self._changed)
        if self.finished or self.wake.flag or self.change.done() or timeout == 0:
            await asyncio.sleep(0)  # something happened already: look again, after others ran
            return
        loop = asyncio.get_running_loop()
        self.kick = kick = loop.create_future()
        self.wake.sleepers.add(kick)
        timer = None if timeout is None else loop.call_later(timeout, _poke, kick)
        try:
            await kick
        finally:
            self.kick = None
            self.wake.sleepers.discard(kick)
            if timer is not None:
                timer.cancel()

    def _reap(self) -> None:
        """Forget finished tasks and a fired change notification, logging their failures."""
        change = self.change
        if change is not None and change.done():
            if not change.cancelled() and change.exception() is not None:
                logger.warning(
                    "MCP task queue notifications failed: %s",
                    describe_error(change.exception()),  # type: ignore[arg-type]
                )
            self.change = None
        finished, self.finished = self.finished, []
        if finished:
            self.reaped = True
        for fut in finished:
            del self.running[fut]
            if not fut.cancelled() and fut.exception() is not None:
                logger.error("MCP task worker error: %s", describe_error(fut.exception()))  # type: ignore[arg-type]

    async def _renew(self) -> None:
        """Renew the leases of running tasks every third of a lease."""
        if self.running and time.monotonic() - self.last_renew >= self.renew_every:
            self.last_renew = time.monotonic()
            ahead = self.ahead
            if ahead is not None and ahead.done() and not ahead.cancelled():
                self.ahead = None  # its tasks wait with the others, and are renewed with them
                if ahead.exception() is None:
                    self.ready.extend(ahead.result())
            leases = [(c.id, c.lease) for c in (*self.running.values(), *self.ready)]
            with contextlib.suppress(QueueStoreError):
                await self.rec.store.extend(leases, until=self.rec._clock() + self.rec.lease_s)

    async def _stop(self) -> None:
        """Stop listening, cancel the running tasks and give back the leases of those stopped."""
        if self.change is not None:
            self.change.cancel()
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            # A claim handed over commits anyway: its tasks are given back with the others.
            await asyncio.gather(ahead, return_exceptions=True)
            if not ahead.cancelled() and ahead.exception() is None:
                self.ready.extend(ahead.result())
        for fut in self.running:
            fut.remove_done_callback(self._task_done)
            fut.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        stopped = [c for f, c in self.running.items() if f.cancelled()]
        await self.rec._release([*stopped, *self.ready])
