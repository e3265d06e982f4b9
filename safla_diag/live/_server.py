"""
serve(): the live endpoint on a small HTTP/1.1 server of pure asyncio, in the host's loop.

It serves only what the endpoint needs, defensively: GET/HEAD without a body, one request per
connection (``Connection: close``), a request head of at most 8 KiB that must arrive within
``header_timeout`` seconds in total (a client dripping one byte at a time is cut off when that
deadline passes, however steadily it drips), at most ``max_connections`` at once (others are
closed at once), and a response that must be taken within ``write_timeout``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import unquote

from .._redact import describe_error
from ._app import AppOptions, LiveApp, check_token, is_loopback

if TYPE_CHECKING:
    import asyncio

__all__ = ["LiveServer", "serve"]

logger = logging.getLogger("safla_diag.live")

_MAX_HEAD = 8192
_MAX_HEADERS = 64
_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}  # fmt: skip


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_head(head: bytes) -> tuple[str, str, str, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    try:
        method, target, version = lines[0].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest(400, "malformed request line") from None
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(505, "HTTP/1.0 or HTTP/1.1 only")
    if not target.startswith("/"):
        raise _BadRequest(400, "the target must be a path")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        headers.append((name.lower(), value.strip()))
        if len(headers) > _MAX_HEADERS:
            raise _BadRequest(431, "too many header lines")
    for name, value in headers:
        if name == b"transfer-encoding":
            raise _BadRequest(501, "request bodies are not accepted")
        if name == b"content-length" and value.strip() not in (b"0", b""):
            raise _BadRequest(413, "request bodies are not accepted")
    return method, target, version, headers


class LiveServer:
    """
    The standalone live endpoint: ``async with serve(diag) as server:`` or ``await serve(...)``.

    ``.port`` is the port it listens on (useful with ``port=0``); ``aclose()`` stops it, closes
    the connections and stops the LoopMonitor it started.
    """

    def __init__(
        self,
        app: LiveApp,
        *,
        host: str,
        port: int,
        header_timeout: float,
        write_timeout: float,
        max_connections: int,
    ) -> None:
        self.app = app
        self.host = host
        self._port = port
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._server else "new"
        return f"<LiveServer {state} {self.host}:{self.port}>"

    @property
    def port(self) -> int:
        """The port the server listens on (the one chosen by the system for ``port=0``)."""
        return self._port

    async def start(self) -> LiveServer:
        """Start listening (idempotent); return the server."""
        import asyncio

        if self._closed:
            raise RuntimeError("this server was closed; call serve() again")
        if self._server is None:
            await self.app.startup()
            try:
                self._server = await asyncio.start_server(
                    self._accept, self.host, self._port, limit=_MAX_HEAD, backlog=64
                )
            except BaseException:
                await self.app.shutdown()
                raise
            self._port = self._server.sockets[0].getsockname()[1]
            logger.info("live endpoint listening on %s:%d", self.host, self._port)
        return self

    def __await__(self) -> Generator[Any, None, LiveServer]:
        return self.start().__await__()

    async def __aenter__(self) -> LiveServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, cancel the connections in progress, stop what the app started."""
        import asyncio

        if self._closed:
            return
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections))
        if server is not None:
            await server.wait_closed()
        await self.app.shutdown()

    async def serve_forever(self) -> None:
        """Serve until cancelled (then close)."""
        import asyncio

        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    # ------------------------------------------------------------------ connections
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        task = asyncio.current_task()
        if len(self._connections) >= self.max_connections or task is None:
            writer.close()  # over the limit: refused at once rather than queued
            return
        self._connections.add(task)
        try:
            await self._serve_one(reader, writer)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            logger.debug("live connection failed: %s", describe_error(err))
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError, asyncio.CancelledError):
                pass

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        try:
            # One deadline for the whole head: dripping bytes does not extend it.
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.header_timeout)
            method, target, version, headers = _parse_head(head[:-4])
        except TimeoutError:
            await self._reply(writer, 408, b"request head too slow\n")
            return
        except asyncio.LimitOverrunError:
            await self._reply(writer, 431, b"request head too large\n")
            return
        except asyncio.IncompleteReadError:
            return  # the client went away
        except _BadRequest as bad:
            await self._reply(writer, bad.status, f"{bad}\n".encode())
            return
        path, _, query = target.partition("?")
        peer = writer.get_extra_info("peername")
        sock = writer.get_extra_info("sockname")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version[5:],
            "method": method.upper(),
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": (peer[0], peer[1]) if isinstance(peer, tuple) else None,
            "server": (sock[0], sock[1]) if isinstance(sock, tuple) else None,
        }
        sent: list[dict[str, Any]] = []
        done = asyncio.Event()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        try:
            await self.app(scope, receive, send)
        finally:
            done.set()
        start = next((m for m in sent if m["type"] == "http.response.start"), None)
        if start is None:
            await self._reply(writer, 500, b"no response\n")
            return
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        await self._write(writer, start["status"], start.get("headers", []), body)

    async def _reply(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        await self._write(writer, status, headers, body)

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        import asyncio

        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}".encode()]
        lines += [name + b": " + value for name, value in headers if name != b"connection"]
        lines.append(b"connection: close")
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        try:
            await asyncio.wait_for(writer.drain(), self.write_timeout)
        except (TimeoutError, OSError):
            pass  # a reader too slow or gone: the connection is closed by the caller


def serve(
    diagnostics: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    header_timeout: float = 5.0,
    write_timeout: float = 10.0,
    max_connections: int = 32,
    **app_options: Unpack[AppOptions],
) -> LiveServer:
    """
    Serve the live endpoint on a plain asyncio server in the running loop.

    Use it as ``async with serve(diag) as server:`` (stopped on exit) or
    ``server = await serve(diag)`` (then ``await server.aclose()``). Without a ``loop_monitor``
    the server starts a LoopMonitor of its own and stops it on close.

    Args:
        diagnostics: The service's :class:`Diagnostics`.
        host: The address to bind; loopback by default. Any other needs a ``token``.
        port: The port; 0 lets the system choose (read ``server.port``).
        header_timeout: Seconds a client has to send its whole request head.
        write_timeout: Seconds a client has to take the response.
        max_connections: Connections served at once; more are closed at once.
        **app_options: The options of :func:`asgi_app`: ``token`` (the Bearer token the
            ``/metrics`` and ``/debug/*`` endpoints require), ``registry``, ``loop_monitor``,
            ``objects``, ``ready_ttl_s``, ``max_profile_s``.

    Returns:
        The server (awaitable and an async context manager).

    Raises:
        ValueError: When ``host`` is not loopback and no token is given, for a weak token, or
            for bad limits.
    """
    if not isinstance(host, str) or not host:
        raise ValueError("host must be an address or host name")
    token = app_options.get("token")
    check_token(token)
    if token is None and not is_loopback(host):
        raise ValueError(
            f"binding the live endpoint to {host!r}, which is not loopback, needs a token "
            "(serve(..., token=...)): it shows stacks, profiles and the doctor's report"
        )
    for name, v in (("header_timeout", header_timeout), ("write_timeout", write_timeout)):
        if not (isinstance(v, int | float) and 0 < v < math.inf):
            raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
    if (
        isinstance(max_connections, bool)
        or not isinstance(max_connections, int)
        or max_connections < 1
    ):
        raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0-65535, got {port!r}")
    app = LiveApp(diagnostics, **app_options)
    return LiveServer(
        app,
        host=host,
        port=port,
        header_timeout=float(header_timeout),
        write_timeout=float(write_timeout),
        max_connections=max_connections,
    )
