"""
The notification side of a PostgreSQL queue: one ``LISTEN`` connection per replica's worker.

Saves, retries, requeues and released leases ``NOTIFY`` the queue's channel; an idle worker waits in
:meth:`PgListener.wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._lazy import import_optional
from ._backoff import Backoff
from ._model import QueueStoreError
from ._pgtarget import PgTarget, describe_pg_error, logger

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgListener"]


class PgListener:
    """
    Listens on a queue's channel, reconnecting with backoff when the connection is lost.

    Args:
        target: The queue.
        connect: Opens a connection (raises QueueStoreError when PostgreSQL cannot be reached).
    """

    def __init__(
        self, target: PgTarget, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]
    ) -> None:
        self.target = target
        self._connect = connect
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._backoff = Backoff(0.1, 30.0)
        self.closed = False

    def __repr__(self) -> str:
        return f"<PgListener {self.target.location!r}>"

    async def close(self) -> None:
        """Stop listening; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def wait(self) -> None:
        """
        Return when any replica saved a task, scheduled a retry or gave leases back.

        The first call (and the first after a lost connection) starts listening and returns at
        once, so that nothing saved before listening began is missed: the caller looks again.
        Cancelling the wait stops listening until the next call. When PostgreSQL cannot be reached
        this keeps trying with backoff, and returns once it listens again.
        """
        pg = import_optional("psycopg")
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            conn = self._conn
            try:
                async with contextlib.aclosing(conn.notifies(stop_after=1)) as gen:
                    async for _ in gen:
                        break
                # Drain what else is buffered: one wake-up covers them all.
                async with contextlib.aclosing(conn.notifies(timeout=0)) as gen:
                    async for _ in gen:
                        pass
                return
            except asyncio.CancelledError:
                await self.close()
                raise
            except pg.Error as err:
                await self.close()
                logger.warning(
                    "MCP task queue %s: lost the notification connection (%s); reconnecting",
                    self.target.location,
                    describe_pg_error(err),
                )
        if self.closed:
            # Closed meanwhile (the worker is stopping): listen no more, wait to be cancelled.
            await asyncio.get_running_loop().create_future()
        failures = 0
        while True:
            delay = self._backoff.delay(failures)
            failures += 1
            try:
                conn = await self._connect()
            except QueueStoreError as err:
                logger.warning("%s; retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
                continue
            try:
                await conn.execute(f'LISTEN "{self.target.channel}"')
            except pg.Error as err:
                with contextlib.suppress(Exception):
                    await conn.close()
                logger.warning(
                    "%s: cannot listen (%s); retrying in %.1fs",
                    self.target.location,
                    describe_pg_error(err),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            self._conn = conn
            return
