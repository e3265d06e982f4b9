"""check_external_services against the real Redis and PostgreSQL, and peers that misbehave."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import ServiceReport, acheck_external_services, check_external_services
from safla_diag.checks._ports import port_holders
from safla_diag.checks._targets import make_target, parse_targets

from ._servers import (
    auth_request,
    closed_port,
    fake_http,
    fake_postgres,
    fake_redis,
    hang,
    hanging_port,
    mcp_routes,
    pg_error,
    reset,
    serve,
    ssh_banner,
)

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-Pa55"


async def one(url: str, timeout: float = 3.0) -> object:
    report = await acheck_external_services({"svc": url}, timeout=timeout)
    assert len(report.results) == 1
    return report.results[0]


def assert_no_secret(report: ServiceReport) -> None:
    for text in (report.to_json(), report.to_text(), repr(report), report._repr_html_()):
        assert SECRET not in text
    for r in report.results:
        assert SECRET not in repr(r)


# --- redis ---------------------------------------------------------------------------------


@pytest.mark.services
async def test_redis_up(redis_url: str) -> None:
    """The real Redis answers PING: ok, with PONG in the detail."""
    r = await one(redis_url)
    assert r.ok and r.status == "ok" and "PONG" in r.detail and r.kind == "redis"


@pytest.mark.services
async def test_redis_password_but_server_has_none(redis_url: str) -> None:
    """A password the server does not need still connects, and says the URL is off."""
    url = redis_url.replace("redis://", f"redis://:{SECRET}@")
    report = await acheck_external_services({"redis": url})
    assert report.ok
    assert "requires none" in report.results[0].detail
    assert_no_secret(report)


async def test_redis_wrong_password() -> None:
    """WRONGPASS: reachable, authentication failed, and the password is shown nowhere."""
    wrong = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    async with serve(fake_redis({"AUTH": wrong})) as port:
        report = await acheck_external_services(
            {"cache": f"redis://app:{SECRET}@127.0.0.1:{port}/0"}
        )
    r = report.results[0]
    assert not report and r.status == "auth_failed" and "reachable" in r.detail
    assert "password" in (r.hint or "")
    assert_no_secret(report)


async def test_redis_noauth_without_password() -> None:
    """NOAUTH on PING without a password in the URL says to put one there."""
    async with serve(fake_redis({"PING": b"-NOAUTH Authentication required.\r\n"})) as port:
        r = await one(f"redis://127.0.0.1:{port}")
    assert r.status == "auth_failed" and "NOAUTH" in r.detail and "redis_url" in r.hint


async def test_redis_loading_is_rejecting() -> None:
    """A Redis loading its dataset is reachable but rejecting."""
    reply = b"-LOADING Redis is loading the dataset in memory\r\n"
    async with serve(fake_redis({"PING": reply})) as port:
        r = await one(f"redis://127.0.0.1:{port}")
    assert not r.ok and r.status == "rejecting"


async def test_redis_on_closed_port_is_refused() -> None:
    """Nothing listening: refused, with the start-the-service hint."""
    r = await one(f"redis://127.0.0.1:{closed_port()}")
    assert r.status == "refused" and "start the service" in r.hint


async def test_rediss_against_plain_server_is_a_tls_failure() -> None:
    """rediss:// against a server without TLS fails as tls/reset/protocol, never hangs forever."""
    async with serve(ssh_banner) as port:
        r = await one(f"rediss://127.0.0.1:{port}", timeout=2)
    assert not r.ok and r.status in ("tls", "reset", "protocol", "timeout")


# --- postgresql ----------------------------------------------------------------------------


@pytest.mark.services
async def test_postgres_up(postgres_url: str) -> None:
    """The real PostgreSQL accepts connections and answers SELECT 1."""
    r = await one(postgres_url)
    assert r.ok and "SELECT 1" in r.detail and r.kind == "postgres"


@pytest.mark.services
async def test_postgres_missing_database(postgres_url: str) -> None:
    """A database that does not exist: not_found, with createdb in the next step."""
    r = await one(postgres_url.rsplit("/", 1)[0] + "/no_such_db_safla")
    assert r.status == "not_found" and "no_such_db_safla" in r.detail and "createdb" in r.hint


@pytest.mark.services
async def test_postgres_unknown_role(postgres_url: str) -> None:
    """An unknown user is an authentication finding, not a crash."""
    r = await one(postgres_url.replace("postgres@", "no_such_role_x@"))
    assert r.status == "auth_failed" and "no_such_role_x" in r.detail


@pytest.mark.parametrize(
    ("code", "status", "word"),
    [
        ("57P03", "rejecting", "starting up"),
        ("53300", "rejecting", "too many"),
        ("28P01", "auth_failed", "password"),
        ("28000", "auth_failed", "pg_hba"),
        ("XX000", "error", "XX000"),
    ],
)
async def test_postgres_startup_errors_are_classified(code: str, status: str, word: str) -> None:
    """ErrorResponses during startup map to pg_isready-like classes with a next step."""
    message = {
        "57P03": "the database system is starting up",
        "53300": "sorry, too many clients already",
    }
    async with serve(fake_postgres(pg_error(code, message.get(code, "nope")))) as port:
        r = await one(f"postgresql://app@127.0.0.1:{port}/db")
    assert r.status == status
    assert word in r.detail + (r.hint or "")


async def test_postgres_wrong_password_via_driver() -> None:
    """With a password requested, psycopg authenticates; a wrong password is auth_failed."""
    first = auth_request(5, b"salt")
    async with serve(
        fake_postgres(first, pg_error("28P01", 'password authentication failed for user "app"'))
    ) as port:
        report = await acheck_external_services(
            {"db": f"postgresql://app:{SECRET}@127.0.0.1:{port}/db"}
        )
    r = report.results[0]
    assert r.status == "auth_failed" and "password" in r.detail
    assert_no_secret(report)


async def test_postgres_closed_port() -> None:
    """Nothing listening on the database port: refused."""
    r = await one(f"postgresql://u@127.0.0.1:{closed_port()}/db")
    assert r.status == "refused"


# --- misbehaving peers ---------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "postgresql", "http", "tcp"])
async def test_hanging_peer_times_out_with_phase(scheme: str) -> None:
    """A peer that accepts and never answers: timeout, naming what the probe waited for."""
    with hanging_port() as port:
        r = await one(f"{scheme}://127.0.0.1:{port}/0", timeout=0.5)
    if scheme == "tcp":  # a connect is all tcp asks for: the kernel completes it
        assert r.ok
    else:
        assert r.status == "timeout" and "waiting" in r.detail and r.hint


@pytest.mark.parametrize("scheme", ["redis", "postgresql", "http"])
async def test_reset_peer(scheme: str) -> None:
    """A peer that resets the connection is reported as such."""
    async with serve(reset) as port:
        r = await one(f"{scheme}://127.0.0.1:{port}/0")
    assert r.status == "reset"


@pytest.mark.parametrize("scheme", ["redis", "postgresql", "http"])
async def test_wrong_protocol_names_the_port_holder(scheme: str) -> None:
    """The wrong protocol on a local port: 'not a X server', and the process holding the port."""
    async with serve(ssh_banner) as port:
        r = await one(f"{scheme}://127.0.0.1:{port}/0")
    assert r.status == "protocol" and "SSH-2.0" in r.detail
    assert f"pid {os.getpid()}" in r.detail


async def test_port_holders_finds_our_listener() -> None:
    """port_holders names this process for a port it listens on."""
    async with serve(hang) as port:
        holders = await asyncio.get_running_loop().run_in_executor(None, port_holders, port)
    assert any(h.pid == os.getpid() and h.status == "LISTEN" for h in holders)
    assert port_holders(closed_port()) == []


def test_five_probes_two_hanging_bounded_by_timeout(redis_url: str, postgres_url: str) -> None:
    """Five probes, two hanging, timeout=1: about a second, the two marked timed out."""
    with hanging_port() as h1, hanging_port() as h2:
        targets = {
            "redis": redis_url,
            "database": postgres_url,
            "hung-redis": f"redis://127.0.0.1:{h1}",
            "hung-http": f"http://127.0.0.1:{h2}/health",
            "closed": f"tcp://127.0.0.1:{closed_port()}",
        }
        t0 = time.perf_counter()
        report = check_external_services(targets, timeout=1)
        took = time.perf_counter() - t0
    status = {r.name: r.status for r in report.results}
    assert status == {
        "redis": "ok",
        "database": "ok",
        "hung-redis": "timeout",
        "hung-http": "timeout",
        "closed": "refused",
    }
    assert took < 3  # bounded by the timeout, not the sum of timeouts; not a timing test
    assert report.elapsed_s <= took


# --- http and mcp --------------------------------------------------------------------------


def _http_routes(
    method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    table = {
        "/health": (200, {}, b"ok"),
        "/chunked": (200, {"Transfer-Encoding": "chunked"}, b"a chunked body, long enough"),
        "/down": (503, {}, b"maintenance"),
        "/same": (302, {"Location": "/health"}, b""),
        "/away": (302, {"Location": "http://elsewhere.invalid/health"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
    }
    return table.get(path, (404, {}, b"no"))


@pytest.mark.parametrize(
    ("path", "ok", "status"),
    [
        ("/health", True, "ok"),
        ("/chunked", True, "ok"),
        ("/down", False, "http_error"),
        ("/nope", False, "http_error"),
        ("/same", True, "ok"),
        ("/away", False, "redirect"),
        ("/loop", False, "redirect"),
    ],
)
async def test_http_statuses_and_redirects(path: str, ok: bool, status: str) -> None:
    """2xx is healthy; errors carry a hint; redirects are followed on the same host only."""
    async with serve(fake_http(_http_routes)) as port:
        r = await one(f"http://127.0.0.1:{port}{path}")
    assert (r.ok, r.status) == (ok, status)
    if not ok:
        assert r.hint


@pytest.mark.parametrize("sse", [False, True])
async def test_mcp_initialize_and_ping(sse: bool) -> None:
    """An MCP server over HTTP answers initialize and ping, in JSON or as an SSE stream."""
    async with serve(fake_http(mcp_routes(sse=sse))) as port:
        report = await acheck_external_services(
            {"mcp_servers": [{"name": "search", "url": f"http://127.0.0.1:{port}/mcp"}]}
        )
    r = report["mcp:search"]
    assert r.ok and "fake-mcp" in r.detail and "ping" in r.detail and r.kind == "mcp"


async def test_mcp_health_endpoint_counts_as_answering() -> None:
    """An MCP URL that is a plain health endpoint answers: ok, saying it is not MCP there."""
    async with serve(fake_http(_http_routes)) as port:
        r = (
            await acheck_external_services({"mcp_servers": [f"http://127.0.0.1:{port}/health"]})
        ).results[0]
    assert r.ok and "no MCP" in r.detail


async def test_mcp_wrong_path_is_a_finding() -> None:
    """An MCP URL whose path does not exist is not ok, and says to check the path."""
    async with serve(fake_http(_http_routes)) as port:
        r = (
            await acheck_external_services({"mcp_servers": [f"http://127.0.0.1:{port}/wrong"]})
        ).results[0]
    assert not r.ok and "path" in r.hint


# --- odd input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "statuses"),
    [
        ("redis://no-such-host.invalid:6379", {"dns_failed"}),
        ("http://bücher.invalid/health", {"dns_failed"}),
        ("http://a..b/", {"invalid"}),
        ("http://" + "x" * 70 + ".invalid/", {"invalid", "dns_failed"}),
        ("redis://127.0.0.1:99999", {"invalid"}),
        ("redis://127.0.0.1:0", {"invalid"}),
        ("tcp://127.0.0.1", {"invalid"}),
        ("tcp://[::1]:1", {"refused", "unreachable", "error"}),
        ("gopher://host/", {"invalid"}),
        ("no scheme at all", {"invalid"}),
        ("http://", {"invalid"}),
        ("redis://127.0.0.1/notanumber", {"invalid"}),
        ("unix:///no/such/redis.sock", {"refused"}),
        ("dns://localhost", {"ok"}),
    ],
)
async def test_odd_targets_give_a_finding_each(url: str, statuses: set[str]) -> None:
    """Unresolvable, unicode, out-of-range, port-less and malformed targets: a result each, no exception."""
    r = await one(url, timeout=2)
    assert r.status in statuses
    assert r.detail


async def test_ipv6_loopback() -> None:
    """A server on ::1 is reached through an IPv6 literal URL."""
    try:
        ctx = serve(fake_redis({}), host="::1")
        port = await ctx.__aenter__()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        r = await one(f"redis://[::1]:{port}")
    finally:
        await ctx.__aexit__(None, None, None)
    assert r.ok and r.target == f"redis://[::1]:{port}"


async def test_non_string_urls_are_findings() -> None:
    """A service whose URL is not a string is an invalid result, not a crash."""
    report = await acheck_external_services({"a": None, "b": 42, "c": ["x"]})
    assert [r.status for r in report.results] == ["invalid"] * 3


def test_config_mapping_names_its_services() -> None:
    """From a configuration: database, redis, every MCP server, the queue URL, extra services."""
    cfg = {
        "database_url": "postgresql://u@db/x",
        "redis_url": "redis://cache",
        "vector_dimension": 3,
        "mcp_servers": ["http://a/mcp", {"name": "search", "url": "http://b/mcp"}],
        "mcp_task_queue": "postgresql://u@db/queue",
        "services": {"vector-store": "http://vs:8000/health"},
        "service_timeout": 2,
    }
    names = [t.name for t in parse_targets(cfg)]
    assert names == ["database", "redis", "mcp:1", "mcp:search", "mcp_task_queue", "vector-store"]
    assert parse_targets({"mcp_task_queue": "/var/lib/q.db"}) == []


def test_bad_arguments_raise_type_and_value_errors() -> None:
    """Targets of the wrong type and non-positive timeouts are programmer errors."""
    with pytest.raises(TypeError):
        check_external_services(42)
    with pytest.raises(TypeError):
        check_external_services("redis://x")
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            check_external_services({}, timeout=bad)
    with pytest.raises(TypeError):
        check_external_services({}, timeout=True)


async def test_sync_twin_refuses_a_running_loop() -> None:
    """Inside a running loop, the sync twin says to await the async one, and leaks no coroutine."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="acheck_external_services"):
            check_external_services({})


def test_empty_report_is_ok_and_serialises() -> None:
    """No targets: an ok, empty report whose JSON round-trips."""
    report = check_external_services({})
    assert report and report.results == []
    assert json.loads(report.to_json())["results"] == []


@given(st.text(max_size=200))
def test_make_target_never_raises(text: str) -> None:
    """Any text becomes a Target, with an error when it cannot be probed."""
    t = make_target("x", text)
    assert t.kind == "invalid" or t.error is None


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.none(), st.integers(), st.text(max_size=60), st.lists(st.text(max_size=5))),
        max_size=5,
    )
)
def test_parse_targets_never_raises_on_mappings(m: dict[str, object]) -> None:
    """Any {name: value} mapping gives one target per entry."""
    assert len(parse_targets(m)) == len(m)


@pytest.fixture(scope="module")
def real_mcp_url() -> Iterator[str]:
    """The MCP SDK's own server over streamable HTTP, in a child process killed at the end."""
    pytest.importorskip("mcp.server.mcpserver")
    port = closed_port()
    script = Path(__file__).with_name("_mcp_server.py")
    child = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)  # polling a child's port: there is no event to wait on
        else:
            pytest.fail(f"MCP server did not start: {child.stderr.read() if child.stderr else ''}")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stderr:
            child.stderr.close()


async def test_real_mcp_server(real_mcp_url: str) -> None:
    """The MCP SDK's server answers our initialize and ping; its root path is a finding."""
    root = real_mcp_url.rsplit("/", 1)[0] + "/"
    report = await acheck_external_services({"mcp_servers": [real_mcp_url, root]}, timeout=5)
    good, bad = report.results
    assert good.ok and "real-mcp" in good.detail and "ping" in good.detail
    assert not bad.ok and "/mcp" in (bad.hint or "")


def test_sync_twin_does_not_wait_for_stuck_executor_threads() -> None:
    """A blocking call stuck in an executor thread (a dead DNS server) does not hold the result."""
    from safla_diag._aio import run_sync

    release = threading.Event()

    async def stuck() -> str:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(0.1):
                await loop.run_in_executor(None, release.wait, 30)
        except TimeoutError:
            return "timed out"
        return "finished"

    t0 = time.perf_counter()
    try:
        assert run_sync(stuck, "f", "af") == "timed out"
        took = time.perf_counter() - t0
    finally:
        release.set()
    assert took < 15  # far below the 30 s the thread would block; not a timing test


@pytest.fixture
def tls_server_context(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_rediss_speaks_tls(tls_server_context: ssl.SSLContext) -> None:
    """rediss:// does a TLS handshake: a self-signed certificate is rejected unless told not to verify."""
    handler = fake_redis({})
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls_server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        strict = await one(f"rediss://127.0.0.1:{port}/0")
        lax = await one(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none")
    finally:
        server.close()
        await server.wait_closed()
    assert strict.status == "tls" and "certificate" in strict.detail
    assert lax.ok and "PONG" in lax.detail


@pytest.mark.services
async def test_postgres_sslmode_require_without_server_ssl(postgres_url: str) -> None:
    """sslmode=require against a server without SSL: a tls finding, not a crash."""
    r = await one(postgres_url + "?sslmode=require")
    assert r.status in ("tls", "ok")  # ok only where the server has ssl on
    if r.status == "tls":
        assert "does not accept SSL" in r.detail


async def test_redis_over_a_unix_socket(tmp_path: Path) -> None:
    """unix:// targets reach a Redis on a socket file; a missing file is refused."""
    path = tmp_path / "redis.sock"
    server = await asyncio.start_unix_server(fake_redis({}), str(path))
    try:
        r = await one(f"unix://{path}")
    finally:
        server.close()
        await server.wait_closed()
    assert r.ok and r.kind == "redis"


def test_to_text_columns_line_up() -> None:
    """Names, targets and latencies of different widths (a wide character too): columns align."""
    from safla_diag import ServiceResult

    results = [
        ServiceResult(name="a", target="tcp://127.0.0.1:1", ok=False, latency_s=0.0112,
                      detail="connection refused", status="refused", hint="start it"),
        ServiceResult(name="数据库-main", target="postgresql://127.0.0.1:5432/test", ok=True,
                      latency_s=1.5, detail="accepting", status="ok"),
        ServiceResult(name="redis", target="redis://127.0.0.1:6379/0", ok=True,
                      latency_s=0.0004, detail="PONG", status="ok"),
    ]  # fmt: skip
    text = ServiceReport(results=results, timeout=5.0, elapsed_s=1.6).to_text()
    lines = text.splitlines()
    assert lines[0] == "services: 2 of 3 ok in 1.60 s (timeout 5 s)"
    rows = [lines[1], lines[3], lines[4]]
    assert [r.split()[0] for r in rows] == ["FAIL", "ok", "ok"]
    # latencies are right-aligned: each ends in the same display column
    from safla_diag._report import cell_width

    ends = {cell_width(r[: r.index(" ms") + 3]) for r in rows}
    assert len(ends) == 1
    assert [r[r.index(" ms") + 5 :].split()[0] for r in rows] == ["refused", "ok", "ok"]
    assert lines[2].strip() == "next: start it"
    assert lines[2].index("next") == rows[0].index("a ")
    assert all(line == line.rstrip() for line in lines)
