"""Tiny asyncio peers on 127.0.0.1 that misbehave on purpose: hang, reset, lie, fake a protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run ``handler`` for each connection on a free port; yield the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(wrapped, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextlib.contextmanager
def hanging_port() -> Iterator[int]:
    """A socket that listens but never accepts: the kernel completes the handshake, nobody talks."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound and released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read what comes, never answer."""
    while await reader.read(1024):
        pass


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the first bytes with a TCP reset."""
    await reader.read(1)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def ssh_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speak the wrong protocol: an SSH banner, whatever is asked."""
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
    await writer.drain()
    await reader.read(1024)


async def _resp_command(reader: asyncio.StreamReader) -> list[str]:
    head = await reader.readline()
    if not head.startswith(b"*"):
        raise asyncio.IncompleteReadError(head, None)
    parts = []
    for _ in range(int(head[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2].decode())
    return parts


def fake_redis(replies: dict[str, bytes]) -> Handler:
    """A RESP server answering each command name with a scripted reply (default +OK / +PONG)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                cmd = await _resp_command(reader)
                name = cmd[0].upper()
                default = b"+PONG\r\n" if name == "PING" else b"+OK\r\n"
                writer.write(replies.get(name, default))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up (or failed its TLS handshake): that is how probes end
        finally:
            writer.close()

    return handler


def pg_error(code: str, message: str) -> bytes:
    """An ErrorResponse message with severity FATAL, an SQLSTATE and a message."""
    fields = b"SFATAL\0VFATAL\0C" + code.encode() + b"\0M" + message.encode() + b"\0\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


def fake_postgres(first: bytes, after_password: bytes | None = None) -> Handler:
    """Read a StartupMessage, answer ``first``; then answer a password message with ``after_password``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            (size,) = struct.unpack("!i", await reader.readexactly(4))
            body = await reader.readexactly(size - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest: no
                writer.write(b"N")
                continue
            break
        writer.write(first)
        await writer.drain()
        if after_password is not None:
            kind = await reader.readexactly(1)
            (size,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(size - 4)
            assert kind == b"p"
            writer.write(after_password)
            await writer.drain()
        await reader.read(1024)

    return handler


def auth_request(code: int, extra: bytes = b"") -> bytes:
    """An AuthenticationRequest of the given type."""
    payload = struct.pack("!i", code) + extra
    return b"R" + struct.pack("!i", len(payload) + 4) + payload


Route = tuple[int, dict[str, str], bytes]


def fake_http(routes: Callable[[str, str, dict[str, str], bytes], Route]) -> Handler:
    """An HTTP/1.1 server: ``routes(method, path, headers, body) -> (status, headers, body)``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        method, path, _ = line.split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = raw.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        status, out_headers, out = routes(method, path, headers, body)
        head = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in out_headers.items()]
        if out_headers.get("Transfer-Encoding") == "chunked":
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(out[i : i + 7]), out[i : i + 7])
                for i in range(0, len(out), 7)
            )
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + chunks + b"0\r\n\r\n")
        else:
            head.append(f"Content-Length: {len(out)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + out)
        await writer.drain()

    return handler


def mcp_routes(*, sse: bool = False, session: str = "s-1") -> Callable[..., Route]:
    """Routes of a minimal MCP-over-HTTP server at /mcp (initialize, notifications, ping)."""

    def routes(method: str, path: str, headers: dict[str, str], body: bytes) -> Route:
        if path != "/mcp":
            return 404, {}, b"not found"
        if method == "DELETE":
            return 200, {}, b""
        if method != "POST":
            return 405, {}, b""
        msg = json.loads(body)
        if "id" not in msg:
            return 202, {}, b""
        if msg["method"] == "initialize":
            result = {
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {},
                "serverInfo": {"name": "fake-mcp", "version": "1"},
            }
        elif headers.get("mcp-session-id") != session:
            return 400, {}, b"missing session"
        else:
            result = {}
        answer = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        out_headers = {"Mcp-Session-Id": session}
        if sse:
            out_headers |= {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
            return 200, out_headers, b"event: message\r\ndata: " + answer + b"\r\n\r\n"
        out_headers["Content-Type"] = "application/json"
        return 200, out_headers, answer

    return routes
