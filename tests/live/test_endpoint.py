"""The live endpoint in-process: security, limits, formats, on a real loopback socket."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from html.parser import HTMLParser
from typing import Any

import pytest

from safla_diag import Diagnostics, LoopMonitor, PerformanceMonitor, asgi_app, serve

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-0123456789"


async def http(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A minimal real HTTP/1.1 client on a socket: status, headers (lower-case), body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    hdrs = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), hdrs, body


class _Balanced(HTMLParser):
    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def assert_html(body: bytes, csp: str) -> None:
    """Balanced markup; any script carries the nonce the CSP allows, and nothing is loaded."""
    parser = _Balanced()
    parser.feed(body.decode())
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    assert "default-src 'none'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp)
    scripts = re.findall(rb"<script([^>]*)>", body)
    for attrs in scripts:
        assert nonce is not None and attrs == f' nonce="{nonce.group(1)}"'.encode()
    assert b"src=" not in body and b"<link" not in body


@pytest.fixture
def registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


async def test_non_loopback_bind_needs_a_token(registry: Any) -> None:
    """0.0.0.0 without a token is refused before binding; with one, it serves, checking it."""
    diag = Diagnostics()
    for host in ("0.0.0.0", "::", "example.com", "10.1.2.3"):
        with pytest.raises(ValueError, match="token"):
            serve(diag, host=host)
    with pytest.raises(ValueError, match="16 characters"):
        serve(diag, host="0.0.0.0", token="short")
    async with serve(diag, host="0.0.0.0", token=TOKEN, registry=registry) as server:
        assert (await http(server.port, "/healthz"))[0] == 200
        status, headers, _ = await http(server.port, "/metrics")
        assert status == 401
        assert headers["www-authenticate"].startswith("Bearer")
        bad = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
        assert (await http(server.port, "/debug/loop", headers=bad))[0] == 401
        good = {"Authorization": "Bearer " + TOKEN}
        assert (await http(server.port, "/debug/loop", headers=good))[0] == 200
        status, _, body = await http(server.port, "/readyz")
        assert body in (b"ready\n", b"not ready\n")  # the verdict only, no details
        status, _, body = await http(server.port, "/readyz", headers=good)
        assert "errors" in json.loads(body)


async def test_without_a_token_only_loopback_clients_are_served(registry: Any) -> None:
    """Mounted without a token, the app refuses non-loopback clients (probes stay open)."""
    app = asgi_app(Diagnostics(), registry=registry)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for path, expected in (("/metrics", 403), ("/debug/tasks", 403), ("/healthz", 200)):
        sent.clear()
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                 "headers": [], "client": ("203.0.113.7", 5555)}  # fmt: skip
        await app(scope, receive, send)
        assert sent[0]["status"] == expected


async def test_nothing_changes_state(registry: Any) -> None:
    """Only GET and HEAD are served; HEAD sends headers without a body; unknown paths are 404."""
    async with serve(Diagnostics(), registry=registry) as server:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, _ = await http(server.port, "/debug/profile", method=method)
            assert status == 405
            assert headers["allow"] == "GET, HEAD"
        status, headers, body = await http(server.port, "/healthz", method="HEAD")
        assert (status, body, headers["content-length"]) == (200, b"", "3")
        assert (await http(server.port, "/admin"))[0] == 404


async def test_a_dripping_client_does_not_hold_the_server(registry: Any) -> None:
    """
    A client sending one byte at a time is cut off at the head deadline; others are served.

    It gets a 408, or a reset when its drip outlives the connection.
    """
    async with serve(Diagnostics(), registry=registry, header_timeout=1.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200

        async def drip() -> int:
            for i, byte in enumerate(request):
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except (ConnectionError, OSError):
                    return i
                if reader.at_eof():
                    return i
                await asyncio.sleep(0.02)
            return len(request)

        dripping = asyncio.create_task(drip())
        assert (await http(server.port, "/healthz"))[0] == 200  # served meanwhile
        try:
            answer = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:
            # The server closed with the client's later bytes unread, so its kernel answered them
            # with a reset, which may overtake the 408 in the client's buffer: cut off all the same.
            pass
        else:
            assert answer.startswith(b"HTTP/1.1 408")
        sent = await asyncio.wait_for(dripping, 10)
        assert sent < len(request)  # cut off long before the drip would have ended
        writer.close()


async def test_limits_on_the_request(registry: Any) -> None:
    """A huge head is 431, a body 413, garbage 400; none of them reaches the app."""
    async with serve(Diagnostics(), registry=registry) as server:
        big = {"X-Big": "a" * 20000}
        assert (await http(server.port, "/healthz", headers=big))[0] == 431
        assert (await http(server.port, "/healthz", headers={"Content-Length": "5"}))[0] == 413
        chunked = {"Transfer-Encoding": "chunked"}
        assert (await http(server.port, "/healthz", headers=chunked))[0] == 501
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x16\x03\x01 garbage\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400")
        writer.close()


async def test_profile_one_at_a_time_and_capped(registry: Any) -> None:
    """A second profile while one runs is 409; too long or not a number is 400; formats work."""
    async with serve(Diagnostics(), registry=registry, max_profile_s=5) as server:
        first = asyncio.create_task(http(server.port, "/debug/profile?seconds=1&format=text"))
        await asyncio.sleep(0.3)
        assert (await http(server.port, "/debug/profile?seconds=1"))[0] == 409
        assert (await first)[0] == 200
        for bad in ("seconds=6", "seconds=nan", "seconds=-1", "seconds=x", "format=exe"):
            assert (await http(server.port, f"/debug/profile?{bad}"))[0] == 400
        status, headers, body = await http(server.port, "/debug/profile?seconds=0.2&format=pstats")
        assert status == 200
        assert headers["content-type"] == "application/octet-stream"
        assert len(body) > 0
        status, headers, body = await http(
            server.port, "/debug/profile?seconds=0.2", headers={"Accept": "text/html"}
        )
        assert headers["content-type"].startswith("text/html")
        assert_html(body, headers["content-security-policy"])


async def test_responses_are_redacted(registry: Any) -> None:
    """Secrets in names, configuration and stacks never leave in a response."""
    config = {"redis_url": "redis://:hunter2@127.0.0.1:1/0"}
    mon = PerformanceMonitor(10)
    mon.record_request(0.1)
    diag = Diagnostics(config, sections=["configuration"])
    async with serve(diag, registry=registry, objects=[("postgresql://u:hunter2@db/x", mon)]) as s:
        hold = asyncio.Event()

        async def holder(password: str = "hunter2") -> None:
            await hold.wait()

        task = asyncio.create_task(holder(), name="token=hunter2")
        try:
            await asyncio.sleep(0)
            for path in ("/metrics", "/debug/doctor", "/debug/tasks", "/debug/doctor?format=html"):
                _status, _, body = await http(s.port, path)
                assert b"hunter2" not in body, path
        finally:
            hold.set()
            await task


async def test_html_pages_are_well_formed(registry: Any) -> None:
    """Every HTML page is balanced markup with no script, served with a strict CSP."""
    async with serve(Diagnostics(sections=["platform"]), registry=registry) as server:
        for path in ("/", "/debug/doctor", "/debug/loop", "/debug/tasks"):
            status, headers, body = await http(server.port, path, headers={"Accept": "text/html"})
            assert status in (200, 503)
            assert headers["content-type"].startswith("text/html")
            assert_html(body, headers["content-security-policy"])


async def test_lifespan_runs_the_apps_loop_monitor(registry: Any) -> None:
    """Through the ASGI lifespan the app starts its LoopMonitor, and stops it on shutdown."""
    app = asgi_app(Diagnostics(), registry=registry)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    running = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.sleep(0.05)
    assert outbox[-1]["type"] == "lifespan.startup.complete"
    assert app.loop_monitor is not None and app.loop_monitor.running
    assert any(t.name == "safla_diag-loop-watchdog" for t in threading.enumerate())
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(running, 10)
    assert outbox[-1]["type"] == "lifespan.shutdown.complete"
    assert not any(t.name == "safla_diag-loop-watchdog" for t in threading.enumerate())


async def test_serve_as_an_awaitable_with_a_given_monitor(registry: Any) -> None:
    """await serve(...) starts it; .port is the chosen port; the host's LoopMonitor is shown."""
    mon = LoopMonitor()
    mon.start()
    try:
        server = await serve(Diagnostics(), registry=registry, loop_monitor=mon)
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5):
                pass
            data = json.loads((await http(server.port, "/debug/loop"))[2])
            assert data["stats"]["running"] is True
        finally:
            await server.aclose()
        assert mon.running  # the host's monitor: the server leaves it alone
    finally:
        mon.stop()


async def test_a_failing_doctor_is_a_redacted_500_and_is_retried(registry: Any) -> None:
    """A doctor that raises gives a one-line redacted 500; the next probe runs it again."""

    class BrokenDoctor:
        calls = 0

        async def adoctor(self) -> Any:
            BrokenDoctor.calls += 1
            raise RuntimeError("postgresql://app:hunter2@db/x refused")

    async with serve(BrokenDoctor(), registry=registry) as server:
        for expected_calls in (1, 2):
            status, _, body = await http(server.port, "/readyz")
            assert status == 500
            assert b"hunter2" not in body
            assert b"RuntimeError" in body
            assert BrokenDoctor.calls == expected_calls
