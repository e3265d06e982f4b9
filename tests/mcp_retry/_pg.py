"""Helpers for the PostgreSQL backend's tests: one schema per test, dropped afterwards."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest


def drop_schema(url: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def sql(url: str, query: str, params: object = None) -> list[tuple[object, ...]]:
    """Run one statement on its own connection and return its rows (empty when it has none)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


@pytest.fixture(name="pg_schema")
def pg_schema_fixture(postgres_url: str) -> Iterator[str]:
    """A fresh schema name for this test (created by the store under test), dropped afterwards."""
    schema = "t_" + uuid.uuid4().hex[:12]
    yield schema
    drop_schema(postgres_url, schema)


@pytest.fixture(name="pg_queue_url")
def pg_queue_url_fixture(postgres_url: str, pg_schema: str) -> str:
    """The URL of a queue in this test's own schema."""
    return f"{postgres_url}?schema={pg_schema}"


async def poll(cond: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait until ``cond()`` is true, checking every 10 ms; TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            if await cond():
                return
            await asyncio.sleep(0.01)


class Proxy:
    """
    A TCP proxy on 127.0.0.1 in front of PostgreSQL that the test can cut and restore.

    While cut, every open connection is closed and new ones are accepted and closed at once, as
    when the network or the server goes away.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self.target = (host, port)
        self.up = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, schema: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test?schema={schema}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._pipes |= {writer, up_w}
        for src, dst in ((reader, up_w), (up_r, writer)):
            t = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
            self._pipes.discard(dst)

    def cut(self) -> None:
        self.up = False
        for w in list(self._pipes):
            w.transport.abort()
        self._pipes.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
