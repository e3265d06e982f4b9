"""Group commit: concurrent writes coalesced into one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
ItemT = TypeVar("ItemT")


class Coalescer(Generic[ItemT, T]):
    """
    Coalesce concurrent writes into one transaction (group commit): while one batch is being
    committed off the loop, the next one forms.

    Each write has a future of its own and the batch is committed by a task of the coalescer's:
    a caller cancelled while it waits cancels only its own future, never the commit the others
    wait for. Its write is done or not, as for a kill at that moment; repeating it is harmless
    (ids are idempotent). No ``asyncio.shield`` (an extra task and callbacks per write) is needed.
    """

    __slots__ = ("_flush_fn", "_flusher", "_futs", "_items", "_lost", "_name")

    def __init__(
        self,
        flush: Callable[[list[ItemT]], Awaitable[list[T]]],
        name: str,
        *,
        lost: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self._flush_fn = flush
        self._name = name
        self._lost = lost  # told of a failed batch's writes nobody awaits (submit_nowait)
        self._items: list[ItemT] = []
        self._futs: list[asyncio.Future[T] | None] = []
        self._flusher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Writes waiting for the next batch."""
        return len(self._items)

    def submit(self, item: ItemT) -> asyncio.Future[T]:
        """Queue a write; its future is settled once its batch has committed (or failed)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._items.append(item)
        self._futs.append(fut)
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = loop.create_task(self._flush(), name=self._name)
        return fut

    def submit_nowait(self, item: ItemT) -> None:
        """Queue a write nobody awaits (no future): a failure goes to ``lost``; :meth:`aclose`
        waits for it like for the others."""
        self._items.append(item)
        self._futs.append(None)
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name=self._name)

    async def put(self, item: ItemT) -> T:
        """Queue a write and return its result once its batch has committed."""
        return await self.submit(item)

    async def _flush(self) -> None:
        while self._items:
            batch, futs = self._items, self._futs
            self._items, self._futs = [], []
            try:
                results = await self._flush_fn(batch)
            except BaseException as err:
                cancelled = isinstance(err, asyncio.CancelledError)
                unawaited = 0
                for fut in futs:
                    if fut is None:
                        unawaited += 1
                    elif not fut.done():
                        if cancelled:
                            fut.cancel()
                        else:
                            fut.set_exception(err)
                            fut.add_done_callback(_consume)
                if unawaited and self._lost is not None:
                    self._lost(err, unawaited)
                if cancelled:
                    for fut in self._futs:
                        if fut is not None:
                            fut.cancel()
                    self._items, self._futs = [], []
                    raise
                continue
            for fut, result in zip(futs, results, strict=True):
                if fut is not None and not fut.done():
                    fut.set_result(result)

    async def aclose(self) -> None:
        """Wait until the writes queued so far are committed (or have failed)."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)


def _consume(fut: asyncio.Future[Any]) -> None:
    # Mark the exception retrieved: a writer cancelled meanwhile never will.
    if not fut.cancelled():
        fut.exception()
