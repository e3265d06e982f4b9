"""MCPConnectionRecovery against real asyncio servers on 127.0.0.1 that refuse, hang, reset or babble."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from safla_diag import MCPConnectionRecovery, MCPRecoveryError
from safla_diag.mcp_retry._connection import ServerUnavailable

pytestmark = pytest.mark.anyio


class Peer:
    """A tiny line-protocol server: HELLO -> OK (the initialize), PING -> PONG (the test)."""

    def __init__(self) -> None:
        self.mode = "healthy"
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self._hung: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        mode = self.mode
        try:
            if mode == "hang":
                self._hung.append(writer)
                return
            if mode == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            while line := await reader.readline():
                if mode == "garbage":
                    writer.write(b"\x00\xffNOT-MCP\n")
                elif line == b"HELLO\n":
                    writer.write(b"OK\n")
                elif line == b"PING\n":
                    writer.write(b"PONG\n" if self.mode != "sick" else b"SICK\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if mode != "hang":
                writer.close()

    async def stop(self) -> None:
        for w in self._hung:
            w.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    await p.start()
    yield p
    await p.stop()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, line: bytes) -> bytes:
        self.writer.write(line)
        await self.writer.drain()
        return await self.reader.readline()

    def close(self) -> None:
        self.writer.close()


class Host:
    """The host's connect/test callbacks, counting attempts."""

    def __init__(self) -> None:
        self.connects = 0
        self.conns: list[Conn] = []

    async def connect(self, cfg: dict[str, Any]) -> Conn:
        self.connects += 1
        reader, writer = await asyncio.open_connection("127.0.0.1", cfg["port"])
        conn = Conn(reader, writer)
        self.conns.append(conn)
        answer = await conn.ask(b"HELLO\n")
        if answer != b"OK\n":
            conn.close()
            raise ValueError(f"not an MCP server: {answer[:20]!r}")
        return conn

    async def test(self, conn: Conn) -> None:
        if await conn.ask(b"PING\n") != b"PONG\n":
            raise ConnectionError("ping failed")

    def close_all(self) -> None:
        for c in self.conns:
            c.close()


class Sleeps:
    """An injectable sleep that records the backoff and yields without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _recovery(host: Host, sleeps: Sleeps, **kw: Any) -> MCPConnectionRecovery:
    kw.setdefault("connect_timeout", 0.2)
    kw.setdefault("test_timeout", 0.2)
    return MCPConnectionRecovery(
        kw.pop("max_retries", 3),
        0.5,
        connect=host.connect,
        test=host.test,
        max_delay=4.0,
        sleep=sleeps,
        close=Conn.close,
        **kw,
    )


async def test_healthy_server_connects_once(peer: Peer) -> None:
    """A healthy server: one attempt, a tested connection, the breaker closed."""
    host, sleeps = Host(), Sleeps()
    rec = _recovery(host, sleeps)
    conn = await rec.recover_connection("a", {"port": peer.port})
    assert isinstance(conn, Conn) and host.connects == 1 and sleeps.delays == []
    s = rec.status()["a"]
    assert s["state"] == "closed" and s["generation"] == 1 and not s["recovering"]
    rec.check("a")
    host.close_all()


@pytest.mark.parametrize("mode", ["refuse", "hang", "reset", "garbage", "sick"])
async def test_faulty_server_bounded_and_raises(peer: Peer, mode: str) -> None:
    """Each kind of fault: exactly max_retries attempts, capped backoff, MCPRecoveryError."""
    peer.mode = mode
    port = _closed_port() if mode == "refuse" else peer.port
    host, sleeps = Host(), Sleeps()
    rec = _recovery(host, sleeps, max_retries=4)
    async with asyncio.timeout(10):
        with pytest.raises(MCPRecoveryError) as err:
            await rec.recover_connection("srv", {"port": port})
    assert isinstance(err.value, ConnectionError)
    assert host.connects == 4 and len(sleeps.delays) == 3
    # Full jitter under a doubling ceiling, capped by max_delay.
    for i, d in enumerate(sleeps.delays):
        assert 0 <= d <= min(4.0, 0.5 * 2**i)
    assert rec.status()["srv"]["state"] == "open"
    assert "srv" in rec.failed_connections
    host.close_all()


async def test_hundred_callers_one_connect_per_backoff_step() -> None:
    """100 concurrent callers of a refusing server: one attempt per step, all get the same error."""
    host, sleeps = Host(), Sleeps()
    rec = _recovery(host, sleeps, max_retries=3)
    port = _closed_port()
    results = await asyncio.gather(
        *(rec.recover_connection("srv", {"port": port}) for _ in range(100)),
        return_exceptions=True,
    )
    assert host.connects == 3 and len(sleeps.delays) == 2
    assert all(isinstance(r, ServerUnavailable) for r in results)
    assert len({id(r) for r in results}) == 1
    assert rec.status()["srv"]["generation"] == 1


async def test_server_back_mid_recovery_everyone_gets_one_connection(peer: Peer) -> None:
    """The server comes back after two refusals: 100 callers share the one recovered connection."""
    host, sleeps = Host(), Sleeps()
    port = _closed_port()
    cfg = {"port": port}

    async def sleep(delay: float) -> None:
        await sleeps(delay)
        if len(sleeps.delays) == 2:
            cfg["port"] = peer.port  # the server is back for the third attempt

    rec = _recovery(host, sleeps, max_retries=5)
    rec._sleep = sleep
    conns = await asyncio.gather(*(rec.recover_connection("s", cfg) for _ in range(100)))
    assert host.connects == 3 and len({id(c) for c in conns}) == 1
    # A late caller holding the old, failed connection gets the new one without reconnecting.
    assert await rec.recover_connection("s", cfg, failed=object()) is conns[0]
    assert host.connects == 3
    host.close_all()


async def test_breaker_opens_fails_fast_then_half_open_probe(peer: Peer) -> None:
    """Give-up opens the breaker; callers fail fast; after the cool-down one probe decides."""
    host, sleeps, clock = Host(), Sleeps(), Clock()
    rec = _recovery(host, sleeps, max_retries=2, breaker_cooldown=10, clock=clock)
    dead = {"port": _closed_port()}
    with pytest.raises(ServerUnavailable) as err:
        await rec.recover_connection("s", dead)
    assert not err.value.circuit_open and err.value.attempts == 2
    assert rec.status()["s"]["state"] == "open"
    # Open: the gate and new recoveries fail fast, without touching the server.
    with pytest.raises(ServerUnavailable) as fast:
        rec.check("s")
    assert fast.value.circuit_open and fast.value.retry_after == 10
    with pytest.raises(ServerUnavailable):
        await rec.recover_connection("s", dead)
    assert host.connects == 2 and not rec.is_available("s")
    # Half-open after the cool-down: one probe attempt shared by all; it fails, cool-down doubles.
    clock.t += 10
    assert rec.is_available("s")
    results = await asyncio.gather(
        *(rec.recover_connection("s", dead) for _ in range(20)), return_exceptions=True
    )
    assert host.connects == 3 and all(isinstance(r, ServerUnavailable) for r in results)
    assert rec.status()["s"]["state"] == "open"
    assert rec.status()["s"]["retry_after_s"] == 20
    # The server is back: after the cool-down, the probe succeeds and the breaker closes.
    clock.t += 20
    conn = await rec.recover_connection("s", {"port": peer.port})
    assert isinstance(conn, Conn) and host.connects == 4
    assert rec.status()["s"]["state"] == "closed" and "s" not in rec.failed_connections
    rec.check("s")
    host.close_all()


async def test_cancelling_one_caller_keeps_the_recovery_for_others() -> None:
    """One caller cancelled: the others still get the connection; all cancelled: recovery stops."""
    gate = asyncio.Event()
    started = asyncio.Event()
    cancelled: list[bool] = []
    stopped = asyncio.Event()

    async def connect(cfg: object) -> str:
        started.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            stopped.set()
            raise
        return "conn"

    rec = MCPConnectionRecovery(connect=connect, sleep=Sleeps())
    callers = [asyncio.ensure_future(rec.recover_connection("s", {})) for _ in range(3)]
    await started.wait()
    callers[0].cancel()
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == ["conn", "conn"]
    assert cancelled == []

    gate.clear()
    started.clear()
    rec2 = MCPConnectionRecovery(connect=connect, sleep=Sleeps())
    callers = [asyncio.ensure_future(rec2.recover_connection("s", {})) for _ in range(2)]
    await started.wait()
    for c in callers:
        c.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    async with asyncio.timeout(5):
        await stopped.wait()
    assert cancelled == [True]
    assert rec2.status()["s"]["recovering"] is False


async def test_caller_arriving_as_an_abandoned_recovery_winds_down_is_not_cancelled() -> None:
    """A caller that joins just after the last waiter left gets a fresh recovery, not its CancelledError."""
    started = asyncio.Event()
    calls = 0

    async def connect(cfg: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await asyncio.Event().wait()  # hangs until cancelled
        return f"conn{calls}"

    rec = MCPConnectionRecovery(connect=connect, sleep=Sleeps())
    first = asyncio.ensure_future(rec.recover_connection("s", {}))
    await started.wait()
    first.cancel()  # the only waiter: its recovery is abandoned...
    second = asyncio.ensure_future(rec.recover_connection("s", {}))  # ...as this caller arrives
    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(5):
        assert await second == "conn2"
    assert rec.status()["s"]["state"] == "closed"


async def test_keyboard_interrupt_and_cancellation_never_retried() -> None:
    """KeyboardInterrupt or CancelledError from connect ends the recovery at once, unretried."""
    calls = 0
    exc: type[BaseException] = KeyboardInterrupt

    async def connect(cfg: object) -> None:
        nonlocal calls
        calls += 1
        raise exc

    rec = MCPConnectionRecovery(connect=connect, sleep=Sleeps())
    # Carried out of the recovery task and re-raised in the caller's frame.
    with pytest.raises(KeyboardInterrupt):
        await rec.recover_connection("s", {})
    assert calls == 1
    exc = asyncio.CancelledError
    with pytest.raises(asyncio.CancelledError):
        await rec.recover_connection("s", {})
    assert calls == 2
    assert rec.status()["s"]["recovering"] is False


async def test_sync_callbacks_and_timeouts_on_by_default() -> None:
    """Plain callables work (run off the loop); timeouts are set by default."""
    rec = MCPConnectionRecovery(connect=lambda cfg: ("conn", cfg), test=lambda conn: None)
    assert rec.connect_timeout and rec.test_timeout
    assert await rec.recover_connection("s", 1) == ("conn", 1)


async def test_error_messages_are_redacted() -> None:
    """Secrets in a connect error never reach the error, the status or failed_connections."""

    async def connect(cfg: object) -> None:
        raise ConnectionError("cannot reach https://user:hunter2@mcp.example/")

    rec = MCPConnectionRecovery(1, 0, connect=connect, sleep=Sleeps())
    with pytest.raises(MCPRecoveryError) as err:
        await rec.recover_connection("s", {})
    assert "hunter2" not in str(err.value)
    assert "hunter2" not in str(rec.status())
    assert "hunter2" not in repr(rec)


async def test_bad_arguments() -> None:
    """Zero attempts or negative delays are refused."""
    with pytest.raises(ValueError):
        MCPConnectionRecovery(0, connect=lambda c: c)
    with pytest.raises(ValueError):
        MCPConnectionRecovery(1, -1.0, connect=lambda c: c)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_timeout": 0},
        {"connect_timeout": float("nan")},
        {"connect_timeout": -1.0},
        {"test_timeout": float("inf")},
        {"breaker_cooldown": float("nan")},
        {"max_breaker_cooldown": float("nan")},
        {"retry_delay": float("nan")},
    ],
)
def test_bad_timeouts_and_cooldowns_refused(kwargs: dict[str, float]) -> None:
    """A zero or NaN timeout, or a NaN cool-down (a breaker that never blocks), is a ValueError."""
    with pytest.raises(ValueError):
        MCPConnectionRecovery(connect=lambda cfg: None, **kwargs)  # type: ignore[arg-type]


async def test_system_exit_from_connect_reaches_the_caller() -> None:
    """A SystemExit raised by the host's connect reaches the caller as SystemExit, loop intact."""

    async def connect(cfg: Any) -> Any:
        raise SystemExit(3)

    rec = MCPConnectionRecovery(connect=connect)
    with pytest.raises(SystemExit) as err:
        await rec.recover_connection("s", {})
    assert err.value.code == 3
    await asyncio.sleep(0)  # the loop still runs
    assert rec.status("s")["s"]["recovering"] is False
