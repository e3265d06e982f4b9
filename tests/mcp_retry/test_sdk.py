"""RecoveringSession against a real MCP server (the SDK's, over stdio) that answers, raises, hangs
(SIGSTOP) and dies (SIGKILL mid-call)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from mcp import StdioServerParameters, stdio_client

from safla_diag import MCPRecoveryError, MCPTaskRecovery
from safla_diag.mcp_retry._sdk import (
    TASK_ID_META_KEY,
    CallOutcome,
    OutcomeUnknown,
    RecoveringSession,
    classify_error,
)

pytestmark = pytest.mark.anyio

SERVER = Path(__file__).with_name("_mcp_server.py")


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def _is_error(result: Any) -> bool:
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


class Fleet:
    """Starts server children through the session; remembers their pids to clean up."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        self.pids: set[int] = set()
        self.params = StdioServerParameters(
            command=sys.executable,
            args=[str(SERVER)],
            env={"MCP_TEST_LEDGER": str(ledger), "PYTHONWARNINGS": "ignore"},
        )
        self.errlog = open(os.devnull, "w")  # noqa: SIM115 - closed in cleanup

    def transport(self) -> Any:
        return stdio_client(self.params, errlog=self.errlog)

    async def pid(self, s: RecoveringSession) -> int:
        pid = int(_text(await s.call_tool("pid")))
        self.pids.add(pid)
        return pid

    def cleanup(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.errlog.close()

    def ledger_lines(self) -> list[str]:
        return self.ledger.read_text().splitlines() if self.ledger.exists() else []


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    f = Fleet(tmp_path / "ledger.txt")
    yield f
    f.cleanup()


def _session(fleet: Fleet, **kw: Any) -> RecoveringSession:
    # Generous unless a test is about a timeout: on a loaded machine a healthy server child may
    # take seconds to answer, and a call timed out would re-create the session (and replay it).
    kw.setdefault("call_timeout", 30.0)
    kw.setdefault("ping_timeout", 30.0)
    kw.setdefault("initialize_timeout", 20.0)
    kw.setdefault("recovery", {"max_retries": 3, "retry_delay": 0.05})
    return RecoveringSession("test", fleet.transport, **kw)


async def test_answers_raises_and_carries_the_task_id(fleet: Fleet) -> None:
    """A healthy server answers; the task id reaches it in _meta; a tool error is an isError
    result and a protocol error is raised, neither re-creating the session."""
    async with _session(fleet) as s:
        assert _text(await s.call_tool("echo", {"text": "hi"})) == "hi"
        await s.call_tool("add", {"item": "x"}, task_id="task-42")
        pid = await fleet.pid(s)
        assert _is_error(await s.call_tool("boom"))
        # The SDK's server reports bad arguments and unknown tools as tool errors too.
        assert _is_error(await s.call_tool("echo", {"wrong": 1}))
        assert _is_error(await s.call_tool("no-such-tool"))
        assert await fleet.pid(s) == pid
        assert s.recovery.status()["test"]["generation"] == 1
    assert fleet.ledger_lines() == ["add x task-42"]
    assert TASK_ID_META_KEY.startswith("safla_diag/")


def _unread_pipe_bytes(pid: int) -> int:
    """Bytes waiting in the read ends of a process's pipes (its stdin, wherever it moved it)."""
    total = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("pipe:"):
                continue
            with open(f"/proc/{pid}/fdinfo/{name}") as info:
                flags = int(next(ln for ln in info if ln.startswith("flags:")).split()[1], 8)
            if flags & os.O_ACCMODE != os.O_RDONLY:
                continue
            fd = os.open(f"/proc/{pid}/fd/{name}", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            queued = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, queued)
            total += queued[0]
        finally:
            os.close(fd)
    return total


async def _until_request_queued(pid: int) -> None:
    """Poll, with a deadline, until bytes wait unread in a stopped server's stdin: the call is sent."""
    async with asyncio.timeout(10):
        while True:
            if _unread_pipe_bytes(pid) > 0:
                return
            await asyncio.sleep(0.01)


async def test_killed_mid_call_unsafe_tool_needs_decision(fleet: Fleet, tmp_path: Path) -> None:
    """SIGKILL during a non-idempotent call: not retried, saved as a dead letter needing a decision."""

    async def never(task: dict[str, Any]) -> None:
        raise AssertionError("must not run")

    queue = MCPTaskRecovery(tmp_path / "q.db", execute=never)
    async with _session(fleet, queue=queue, call_timeout=1.0) as s:
        pid = await fleet.pid(s)
        os.kill(pid, signal.SIGSTOP)
        call = asyncio.ensure_future(s.call_tool("add", {"item": "y"}, task_id="t-y"))
        await _until_request_queued(pid)
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            with pytest.raises(OutcomeUnknown) as err:
                await call
        assert err.value.saved and err.value.task["tool"] == "add"
        (dead,) = await queue.adead_letters()
        assert dead["id"] == "t-y" and "needs decision" in dead["last_error"]
        assert await queue.retry_once() == 0
        assert fleet.ledger_lines() == []  # the stopped server never ran it
    await queue.aclose()


async def test_frozen_then_killed_mid_call_safe_calls_recovered(fleet: Fleet) -> None:
    """SIGSTOP: the call times out, the ping times out, the session is re-created and the read-only
    call retried. Then SIGKILL while a read-only call is in flight: a new server, the call retried."""
    async with _session(fleet, call_timeout=1.0, ping_timeout=0.5) as s:
        first = await fleet.pid(s)
        os.kill(first, signal.SIGSTOP)
        async with asyncio.timeout(60):
            assert _text(await s.call_tool("echo", {"text": "thawed"})) == "thawed"
        second = await fleet.pid(s)
        assert second != first
        # A healthy child slower than call_timeout on a loaded machine costs one more recovery:
        # count the recoveries each fault caused, at least one each.
        thawed = s.recovery.status()["test"]["generation"]
        assert thawed >= 2
        with contextlib.suppress(ProcessLookupError):  # the transport may have reaped it already
            os.kill(first, signal.SIGKILL)
        call = asyncio.ensure_future(s.call_tool("sleep", {"seconds": 0.5}))
        await asyncio.sleep(0.2)
        os.kill(second, signal.SIGKILL)
        async with asyncio.timeout(60):
            assert _text(await call) == "slept"
        assert await fleet.pid(s) not in (first, second)
        assert s.recovery.status()["test"]["generation"] >= thawed + 1


async def test_server_that_cannot_start_raises_recovery_error(tmp_path: Path) -> None:
    """A command that is not an MCP server: bounded attempts, MCPRecoveryError, breaker open."""
    params = StdioServerParameters(command=sys.executable, args=["-c", "import sys; sys.exit(3)"])
    s = RecoveringSession(
        "broken",
        lambda: stdio_client(params, errlog=sys.stderr),
        initialize_timeout=5.0,
        recovery={"max_retries": 2, "retry_delay": 0.01},
    )
    async with asyncio.timeout(60):
        with pytest.raises(MCPRecoveryError):
            await s.call_tool("echo", {"text": "x"})
    assert s.recovery.status()["broken"]["state"] == "open"
    assert s.recovery.status()["broken"]["connect_attempts"] == 2
    await s.aclose()


def test_classify_sdk_errors() -> None:
    """SDK 1.x and 2.x errors map to the same outcomes."""
    from mcp import MCPError

    assert classify_error(MCPError(-32000, "Connection closed")) is CallOutcome.TRANSPORT_DEAD
    assert classify_error(MCPError(-32001, "Request timed out")) is CallOutcome.TIMEOUT
    assert classify_error(MCPError(408, "Timed out")) is CallOutcome.TIMEOUT
    assert classify_error(MCPError(-32602, "Invalid params")) is CallOutcome.PROTOCOL_ERROR
    assert classify_error(TimeoutError()) is CallOutcome.TIMEOUT
    assert classify_error(BrokenPipeError()) is CallOutcome.TRANSPORT_DEAD
    import anyio

    assert classify_error(anyio.ClosedResourceError()) is CallOutcome.TRANSPORT_DEAD
    assert classify_error(ValueError("x")) is CallOutcome.PROTOCOL_ERROR


class FakeSession:
    """A stand-in ClientSession whose call_tool misbehaves as told; counts calls."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls = 0

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def initialize(self) -> None:
        return None

    async def list_tools(self) -> Any:
        raise RuntimeError("no tools listed")

    async def send_ping(self) -> None:
        return None

    async def call_tool(self, name: str, args: Any, *, meta: Any = None) -> str:
        from mcp import MCPError

        self.calls += 1
        if self.behaviour == "protocol":
            raise MCPError(-32602, "Invalid params")
        if self.behaviour == "slow" and self.calls == 1:
            await asyncio.sleep(60)
        return "ok"


@contextlib.asynccontextmanager
async def _no_transport() -> AsyncIterator[tuple[None, None]]:
    yield None, None


async def test_protocol_error_raised_without_retry() -> None:
    """A protocol error (invalid params) is raised at once: one call, no recovery."""
    fake = FakeSession("protocol")
    s = RecoveringSession("f", _no_transport, session_factory=lambda r, w: fake)
    from mcp import MCPError

    with pytest.raises(MCPError):
        await s.call_tool("x", safe=True)
    assert fake.calls == 1 and s.recovery.status()["f"]["generation"] == 1
    await s.aclose()


async def test_timeout_with_live_ping(tmp_path: Path) -> None:
    """A call that times out while pings answer: unsafe -> needs decision; safe -> retried."""
    fake = FakeSession("slow")
    queue = MCPTaskRecovery(tmp_path / "q.db", execute=lambda t: None)
    s = RecoveringSession(
        "f", _no_transport, session_factory=lambda r, w: fake, call_timeout=0.05, queue=queue
    )
    with pytest.raises(OutcomeUnknown) as err:
        await s.call_tool("write", {"a": 1}, task_id="w1")
    assert err.value.outcome is CallOutcome.TIMEOUT and err.value.saved
    assert s.recovery.status()["f"]["generation"] == 1  # the session was kept
    fake.calls = 0
    assert await s.call_tool("read", safe=True) == "ok"
    assert fake.calls == 2
    assert [d["id"] for d in await queue.adead_letters()] == ["w1"]
    await s.aclose()
    await queue.aclose()
