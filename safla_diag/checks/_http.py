"""
The http and mcp probes, on a deliberately small HTTP/1.1 client over asyncio streams.

One request per connection (``Connection: close``), redirects followed only on the same host,
bodies capped, and server-sent-event streams read only as far as the answer we wait for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs

from .._redact import redact
from ._budget import READ_BUDGET, oversized
from ._net import Outcome, Phase, ProbeFailure, connect, printable, ssl_context
from ._targets import DEFAULT_PORTS, Target, make_target

__all__ = ["HTTPResponse", "probe_http", "probe_mcp", "request"]

_NOT_HTTP = "an MCP answer is a few kilobytes: check that the URL is the MCP endpoint"
_MAX_REDIRECTS = 3
_MCP_PROTOCOL = "2025-03-26"
_STATUS_LINE = re.compile(rb"^HTTP/(\d)(?:\.(\d))? (\d{3})(?: (.*))?$")


@attrs.frozen
class HTTPResponse:
    """Status, headers (lower-case names) and the body read so far."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def _host_header(target: Target) -> str:
    assert target.host is not None
    try:
        host = target.host.encode("idna").decode("ascii")
    except UnicodeError as err:
        raise ProbeFailure(
            Outcome(
                False,
                "invalid",
                f"{target.host!r} is not a valid host name ({err})",
                "fix the host in the URL",
            )
        ) from err
    if ":" in host:
        host = f"[{host}]"
    if target.port != DEFAULT_PORTS.get(target.scheme):
        host = f"{host}:{target.port}"
    return host


def _path(target: Target) -> str:
    parts = urlsplit(target.url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


async def _read_head(reader: asyncio.StreamReader, phase: Phase) -> tuple[int, str, dict[str, str]]:
    phase.name = "waiting for the HTTP status line"
    line = await reader.readline()
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    m = _STATUS_LINE.match(line.rstrip(b"\r\n"))
    if m is None:
        raise ProbeFailure(
            Outcome(
                False,
                "protocol",
                f"not an HTTP server: it answered {printable(line)!r}",
                "the port belongs to another service, or needs https://",
            )
        )
    headers: dict[str, str] = {}
    phase.name = "reading HTTP headers"
    size = 0
    for _ in range(200):
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        size += len(raw)
        if size > READ_BUDGET:
            raise oversized("HTTP headers", size, "check that the URL is the service's endpoint")
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(m.group(3)), (m.group(4) or b"").decode("latin-1"), headers


class _Lines:
    """
    Hands ``done`` each run of complete lines once, as they arrive.

    Checking the whole body after every read made a peer that drips one byte at a time cost
    quadratic time, with the loop frozen while the body was parsed again and again.
    """

    def __init__(self, done: Callable[[bytes], bool] | None) -> None:
        self.done = done
        self.checked = 0

    def __call__(self, body: bytearray) -> bool:
        if self.done is None:
            return False
        end = body.rfind(b"\n", self.checked)
        if end < 0:
            return False
        fresh = bytes(body[self.checked : end + 1])
        self.checked = end + 1
        return self.done(fresh)


async def _read_body(
    reader: asyncio.StreamReader,
    headers: Mapping[str, str],
    phase: Phase,
    done: Callable[[bytes], bool] | None,
) -> bytes:
    phase.name = "reading the HTTP body"
    body = bytearray()
    seen = _Lines(done)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            if not size_line:
                break
            digits = size_line.split(b";")[0].strip() or b"0"
            try:
                size = int(digits, 16) if len(digits) <= 16 else READ_BUDGET + 1
            except ValueError:
                raise ProbeFailure(
                    Outcome(False, "protocol", f"bad HTTP chunk size {printable(digits)!r}", None)
                ) from None
            if size == 0:
                break
            if len(body) + size > READ_BUDGET:
                raise oversized("an HTTP chunk", size, _NOT_HTTP)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
            if seen(body):
                break
        return bytes(body)
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        if len(length) > 18 or int(length) > READ_BUDGET:
            raise oversized("an HTTP body", int(length) if len(length) <= 18 else 10**18, _NOT_HTTP)
        return await reader.readexactly(int(length))
    while len(body) < READ_BUDGET:
        chunk = await reader.read(READ_BUDGET - len(body))
        if not chunk:
            break
        body += chunk
        if seen(body):
            return bytes(body)
    if done is not None and len(body) >= READ_BUDGET:
        # A stream that fills the budget without the awaited answer is not a slow healthy peer:
        # cut it here rather than hand a truncated stream on as if it had ended.
        raise oversized("a streamed answer without the awaited message", len(body), _NOT_HTTP)
    return bytes(body)


async def request(
    target: Target,
    phase: Phase,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    done: Callable[[bytes], bool] | None = None,
    read_body: bool = True,
) -> HTTPResponse:
    """
    Send one HTTP request on a fresh connection and read the answer.

    Args:
        target: Where to send it (http or https).
        phase: Progress, for timeout messages.
        method: The method.
        body: A request body.
        headers: Extra request headers.
        done: For streamed bodies: stop reading once this returns True for the body so far.
            A GET that answers ``text/event-stream`` without ``done`` stops after the headers.
            ``done`` sees each run of complete lines once, never the whole body again.
        read_body: False when only the status and headers matter (a health GET).
    """
    assert target.host is not None and target.port is not None
    host_header = _host_header(target)
    tls = ssl_context(target.query) if target.scheme == "https" else None
    reader, writer = await connect(target.host, target.port, phase, tls=tls)
    try:
        lines = [
            f"{method} {_path(target)} HTTP/1.1",
            f"Host: {host_header}",
            "User-Agent: safla-diag",
            "Connection: close",
        ]
        if target.username is not None or target.password is not None:
            raw = f"{target.username or ''}:{target.password or ''}".encode()
            lines.append("Authorization: Basic " + base64.b64encode(raw).decode())
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        phase.name = f"sending {method}"
        await writer.drain()
        status, reason, head = await _read_head(reader, phase)
        streamed = "text/event-stream" in head.get("content-type", "")
        if (
            not read_body
            or method == "HEAD"
            or status in (204, 304)
            or status < 200
            or (streamed and not done)
        ):
            data = b""
        else:
            data = await _read_body(reader, head, phase, done)
        return HTTPResponse(status, reason, head, data)
    finally:
        writer.close()


def _same_host(a: Target, b: Target) -> bool:
    return (a.host or "").lower() == (b.host or "").lower()


async def _get_following(target: Target, phase: Phase) -> tuple[HTTPResponse, Target]:
    current = target
    for _ in range(_MAX_REDIRECTS + 1):
        resp = await request(current, phase, read_body=False)
        location = resp.headers.get("location")
        if resp.status not in (301, 302, 303, 307, 308) or not location:
            return resp, current
        nxt = make_target(target.name, urljoin(current.url, location))
        if nxt.error is not None or nxt.kind != "http":
            raise ProbeFailure(
                Outcome(
                    False,
                    "redirect",
                    f"HTTP {resp.status} to an unusable location {redact(location)[:120]!r}",
                    "point the URL at the final location",
                )
            )
        if not _same_host(target, nxt):
            raise ProbeFailure(
                Outcome(
                    False,
                    "redirect",
                    f"HTTP {resp.status} redirect to another host ({nxt.display}), not followed",
                    "point the URL at the final location",
                )
            )
        current = nxt
    raise ProbeFailure(
        Outcome(False, "redirect", "too many redirects", "point the URL at the final location")
    )


def _status_outcome(resp: HTTPResponse, what: str = "HTTP") -> Outcome:
    line = f"{what} {resp.status} {resp.reason}".rstrip()
    if 200 <= resp.status < 300:
        return Outcome(True, "ok", line)
    hint = {
        401: "the endpoint wants credentials: check the token or user in the URL",
        403: "the endpoint refuses this client: check credentials and allow-lists",
        404: "the path does not exist: check the health path in the URL",
        429: "the service is rate limiting: slow down or raise its limits",
        502: "a proxy in front cannot reach the service behind it",
        503: "the service is up but not ready (starting, overloaded or in maintenance)",
        504: "a proxy in front timed out waiting for the service",
    }.get(resp.status)
    if hint is None and resp.status >= 500:
        hint = "the service fails internally: check its log"
    return Outcome(False, "http_error", line, hint)


async def probe_http(target: Target, phase: Phase) -> Outcome:
    """GET the URL; 2xx is healthy. Redirects are followed on the same host only."""
    resp, _final = await _get_following(target, phase)
    return _status_outcome(resp)


def _jsonrpc(body: bytes, content_type: str, want_id: int) -> dict[str, Any] | None:
    candidates: list[bytes] = []
    if "text/event-stream" in content_type:
        for line in body.replace(b"\r\n", b"\n").split(b"\n"):
            if line.startswith(b"data:"):
                candidates.append(line[5:].strip())
    else:
        candidates.append(body)
    for raw in candidates:
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        for item in msg if isinstance(msg, list) else [msg]:
            if isinstance(item, dict) and item.get("id") == want_id:
                return item
    return None


async def _rpc(
    target: Target,
    phase: Phase,
    payload: dict[str, Any],
    session: str | None,
) -> tuple[HTTPResponse, dict[str, Any] | None]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": _MCP_PROTOCOL,
    }
    if session:
        headers["Mcp-Session-Id"] = session
    want = payload.get("id")
    ctype: list[str] = []

    def done(data: bytes) -> bool:
        return want is not None and _jsonrpc(data, "text/event-stream", want) is not None

    resp = await request(
        target,
        phase,
        method="POST",
        body=json.dumps(payload).encode(),
        headers=headers,
        done=done if want is not None else None,
    )
    ctype.append(resp.headers.get("content-type", ""))
    if want is None:
        return resp, None
    return resp, _jsonrpc(resp.body, ctype[0], want)


async def probe_mcp(target: Target, phase: Phase) -> Outcome:
    """
    Ask an MCP server over HTTP to ``initialize``, then ``ping`` it in that session.

    An endpoint that does not speak MCP over HTTP at that path is still checked with a GET: 2xx
    (a health path, or a legacy SSE endpoint) counts as "the endpoint answers".
    """
    phase.name = "MCP initialize"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": _MCP_PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "safla-diag", "version": "0"},
        },
    }
    resp, answer = await _rpc(target, phase, init, None)
    if answer is None:
        if resp.status in (401, 403):
            return _status_outcome(resp, "MCP initialize: HTTP")
        get, _final = await _get_following(target, phase)
        out = _status_outcome(get)
        if out.ok:
            return Outcome(
                True,
                "ok",
                f"endpoint answers HTTP {get.status} (no MCP over HTTP at this path: "
                f"initialize got HTTP {resp.status})",
            )
        return Outcome(
            False,
            out.status,
            f"not an MCP endpoint: initialize got HTTP {resp.status}, GET got HTTP {get.status}",
            "check the MCP server's URL and path (often /mcp)"
            if get.status == 404 or out.hint is None
            else out.hint,
        )
    if "error" in answer:
        err = answer["error"] if isinstance(answer["error"], dict) else {}
        return Outcome(
            False,
            "protocol",
            f"MCP initialize refused: {redact(str(err.get('message', err)))[:160]}",
            "check the protocol version the server supports",
        )
    result = answer.get("result") if isinstance(answer.get("result"), dict) else {}
    assert isinstance(result, dict)
    info = result.get("serverInfo") if isinstance(result.get("serverInfo"), dict) else {}
    assert isinstance(info, dict)
    version = result.get("protocolVersion", "?")
    who = f"{info.get('name', '?')} (MCP {version})"
    session = resp.headers.get("mcp-session-id")
    try:
        phase.name = "MCP ping"
        await _rpc(
            target, phase, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session
        )
        _resp, pong = await _rpc(
            target, phase, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, session
        )
    finally:
        if session:
            try:
                await request(target, phase, method="DELETE", headers={"Mcp-Session-Id": session})
            except (OSError, asyncio.IncompleteReadError, ProbeFailure):
                pass
    if pong is not None and "result" in pong:
        return Outcome(True, "ok", f"{who} answered initialize and ping")
    return Outcome(
        False,
        "protocol",
        f"{who} answered initialize but not ping",
        "the server may be overloaded or an old MCP version",
    )
