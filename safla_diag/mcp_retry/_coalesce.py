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
