"""
The live diagnostics endpoint as an ASGI application (mount it in FastAPI/Starlette, or let
:func:`serve` run it on a plain asyncio server).

Endpoints (GET and HEAD only: no endpoint changes anything)::

    /healthz                 the loop answers (liveness)
    /readyz                  no error in the doctor's verdict (cached a few seconds): readiness
    /metrics                 Prometheus text of the registry
    /debug/doctor            the doctor's report: JSON, or HTML for a browser
    /debug/profile?seconds=N a CPU profile of the loop's thread over N s: speedscope JSON,
                             pstats (format=pstats), text or HTML; one at a time, N capped
    /debug/loop              the LoopMonitor's lag and stalls with stacks
    /debug/tasks             every asyncio task with its stack

Security: with a token, every endpoint but ``/healthz`` and ``/readyz`` needs
``Authorization: Bearer <token>`` (compared in constant time); without one, those endpoints answer
loopback clients only. ``/readyz`` says ready or not, and why only to an authorised client. Every
response passes through :func:`redact`.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import math
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypedDict, Unpack
from urllib.parse import parse_qs

from .._aio import off_loop
from .._redact import describe_error, redact, redact_value
from .._report import to_json
from ..monitoring import LoopMonitor
from ..profiling import CPUProfiler, ProfileReport
from ._prometheus import hub_for, register_prometheus

__all__ = ["AppOptions", "LiveApp", "asgi_app", "is_loopback"]

logger = logging.getLogger("safla_diag.live")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_PUBLIC = frozenset({"/healthz", "/readyz"})
_MAX_TASKS = 2000
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def check_token(token: object) -> bytes | None:
    """The token as the expected header value, or None; ValueError for a useless token."""
    if token is None:
        return None
    if not isinstance(token, str) or len(token) < 16 or not token.isprintable() or " " in token:
        raise ValueError("token must be a printable string of at least 16 characters, no spaces")
    return b"Bearer " + token.encode()


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.status = status
        self.body = body
        self.headers = [
            (b"content-type", content_type.encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            *((k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()),
        ]


def _text(status: int, text: str, **headers: str) -> _Response:
    return _Response(status, redact(text).encode(), "text/plain; charset=utf-8", **headers)


def _json(status: int, data: Any) -> _Response:
    body = to_json(redact_value(data), indent=2)
    return _Response(status, redact(body).encode(), "application/json")


def _page(status: int, title: str, body_html: str) -> _Response:
    # Our reports' HTML may carry a small inline script (a sortable table): it runs by a
    # per-response nonce, and nothing else does (no other script, no external resource).
    nonce = secrets.token_urlsafe(16)
    body_html = body_html.replace("<script>", f'<script nonce="{nonce}">')
    doc = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd}pre{background:#f6f8fa;padding:8px}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    csp = f"{_CSP}; script-src 'nonce-{nonce}'"
    return _Response(
        status, redact(doc).encode(), "text/html; charset=utf-8", content_security_policy=csp
    )


def _wants_html(scope: Scope, query: dict[str, str]) -> bool:
    fmt = query.get("format")
    if fmt is not None:
        return fmt == "html"
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


def _frames_of(task: Any, limit: int = 30) -> list[str]:
    out = []
    for frame in task.get_stack(limit=limit):
        out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
    return out


def _speedscope(report: ProfileReport, name: str) -> dict[str, Any]:
    """The report as a speedscope file (the profiling layer's own export when it has one)."""
    own = getattr(report, "to_speedscope", None)
    if callable(own):
        return own()  # type: ignore[no-any-return]
    # A flat "evented" profile: each function's own time laid end to end, heaviest first.
    rows = sorted(report.rows, key=lambda r: -r.tottime)
    frames, events, at = [], [], 0.0
    for i, r in enumerate(rows):
        frames.append({"name": r.function, "file": r.file, "line": r.line})
        events.append({"type": "O", "frame": i, "at": at})
        at += r.tottime
        events.append({"type": "C", "frame": i, "at": at})
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "evented",
                "name": name,
                "unit": "seconds",
                "startValue": 0.0,
                "endValue": at,
                "events": events,
            }
        ],
        "exporter": "safla_diag",
        "name": name,
    }


class AppOptions(TypedDict, total=False):
    """The options of :func:`asgi_app` (and of :func:`serve`, which passes them on)."""

    token: str | None
    registry: Any
    loop_monitor: LoopMonitor | None
    objects: Iterable[Any]
    ready_ttl_s: float
    max_profile_s: float


class LiveApp:
    """
    The ASGI application behind :func:`asgi_app`; see the module notes for the endpoints.

    It also speaks the ASGI lifespan protocol: on startup it starts its own LoopMonitor (when it
    made one), on shutdown it stops it and cancels a doctor run in flight.
    """

    def __init__(
        self,
        diagnostics: Any,
        *,
        token: str | None = None,
        registry: Any = None,
        loop_monitor: LoopMonitor | None = None,
        objects: Iterable[Any] = (),
        ready_ttl_s: float = 5.0,
        max_profile_s: float = 30.0,
    ) -> None:
        if not hasattr(diagnostics, "adoctor"):
            raise TypeError(
                f"asgi_app() needs a Diagnostics (with adoctor()), got {type(diagnostics).__name__}"
            )
        for name, v in (("ready_ttl_s", ready_ttl_s), ("max_profile_s", max_profile_s)):
            if not (isinstance(v, int | float) and 0 < v < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
        self.diagnostics = diagnostics
        self._expected = check_token(token)
        self.ready_ttl_s = float(ready_ttl_s)
        self.max_profile_s = float(max_profile_s)
        self.loop_monitor = loop_monitor
        self._own_monitor = False
        self._registry = registry
        self._objects = list(objects)
        if loop_monitor is not None:
            self._objects.append(loop_monitor)
        self._registered = False
        self._report: Any = None
        self._report_at = -math.inf
        self._doctor: Any = None  # the doctor run in flight, shared by every caller
        self._profiling = False

    def __repr__(self) -> str:
        auth = "token" if self._expected is not None else "loopback only"
        return f"<LiveApp {auth} loop_monitor={self.loop_monitor is not None}>"

    # ------------------------------------------------------------------ plumbing
    def _prom_registry(self) -> Any:
        if self._registry is None:
            from .._lazy import import_optional

            self._registry = import_optional("prometheus_client").REGISTRY
        if not self._registered:
            if self._objects:
                register_prometheus(*self._objects, registry=self._registry)
            self._registered = True
        return self._registry

    def _authorised(self, scope: Scope) -> tuple[bool, _Response | None]:
        if self._expected is not None:
            given = b""
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    given = value
            if hmac.compare_digest(given, self._expected):
                return True, None
            return False, _text(401, "unauthorised: send Authorization: Bearer <token>\n",
                                www_authenticate='Bearer realm="safla-diag"')  # fmt: skip
        client = scope.get("client")
        if client is None or is_loopback(str(client[0])):
            return True, None
        return False, _text(403, "forbidden: this endpoint answers loopback clients only\n")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return  # websockets and the rest: not ours
        try:
            response = await self._handle(scope)
        except Exception as err:
            logger.warning("live endpoint %s failed: %s", redact(scope.get("path", "")),
                           describe_error(err))  # fmt: skip
            response = _text(500, f"internal error: {describe_error(err)}\n")
        body = b"" if scope.get("method") == "HEAD" else response.body
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as err:
                    await send({"type": "lifespan.startup.failed", "message": describe_error(err)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Start a LoopMonitor of our own when none was given (the host's loop is running)."""
        if self.loop_monitor is None:
            self.loop_monitor = LoopMonitor()
            self._own_monitor = True
            self._objects.append(self.loop_monitor)
            self._registered = False
        if self._own_monitor and not self.loop_monitor.running:
            self.loop_monitor.start()

    async def shutdown(self) -> None:
        """Stop our own LoopMonitor and a doctor run in flight."""
        if self._own_monitor and self.loop_monitor is not None:
            self.loop_monitor.stop()
        doctor, self._doctor = self._doctor, None
        if doctor is not None and not doctor.done():
            import asyncio

            doctor.cancel()
            await asyncio.wait([doctor])  # its outcome is moot; our own cancellation propagates

    # ------------------------------------------------------------------ routing
    async def _handle(self, scope: Scope) -> _Response:
        method = scope.get("method", "GET")
        path = scope.get("path", "/")
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed: these endpoints only read\n", allow="GET, HEAD")
        raw_query = scope.get("query_string", b"")[:2048].decode("latin-1")
        query = {k: v[0] for k, v in parse_qs(raw_query, max_num_fields=20).items()}
        if path == "/healthz":
            return _text(200, "ok\n")
        if path == "/favicon.ico":  # browsers ask; an empty answer keeps their console clean
            return _Response(204, b"", "image/x-icon")
        authorised, refusal = self._authorised(scope)
        if path == "/readyz":
            return await self._readyz(authorised)
        if refusal is not None:
            return refusal
        if path == "/metrics":
            return await self._metrics()
        if path == "/debug/doctor":
            return await self._doctor_page(scope, query)
        if path == "/debug/profile":
            return await self._profile(scope, query)
        if path == "/debug/loop":
            return self._loop_page(scope, query)
        if path == "/debug/tasks":
            return self._tasks_page(scope, query)
        if path in ("/", "/debug", "/debug/"):
            return self._index()
        return _text(404, "not found\n")

    def _index(self) -> _Response:
        links = "".join(
            f"<li><a href='{p}'>{p}</a></li>"
            for p in ("/healthz", "/readyz", "/metrics", "/debug/doctor", "/debug/loop",
                      "/debug/tasks", "/debug/profile?seconds=5&format=html")
        )  # fmt: skip
        return _page(200, "safla-diag live", f"<ul>{links}</ul>")

    # ------------------------------------------------------------------ doctor and readiness
    async def _verdict(self, *, wait: bool) -> Any:
        """
        The doctor's report, at most ``ready_ttl_s`` old when possible.

        One doctor runs at a time, shared by every caller. With ``wait=False`` a stale report is
        returned at once while a fresh one is made (a probe must answer within its timeout).
        """
        import asyncio

        fresh = time.monotonic() - self._report_at < self.ready_ttl_s
        if fresh:
            return self._report
        if self._doctor is None or self._doctor.done():
            self._doctor = asyncio.ensure_future(self._run_doctor())
            # A failure is seen by whoever awaits it, or by nobody (a stale verdict was served):
            # either way it must not end as "exception was never retrieved".
            self._doctor.add_done_callback(_retrieve)
        if self._report is not None and not wait:
            return self._report
        return await asyncio.shield(self._doctor)

    async def _run_doctor(self) -> Any:
        report = await self.diagnostics.adoctor()
        self._report, self._report_at = report, time.monotonic()
        return report

    async def _readyz(self, authorised: bool) -> _Response:
        report = await self._verdict(wait=False)
        # Ready unless something is broken: a warning (a busy CPU, a slow probe) is no reason to
        # take the replica out of the load balancer, an error (a service down, a damaged index,
        # a queue that cannot be opened) is.
        errors = [f for f in report.findings if f.severity == "error"]
        ready = not errors
        status = 200 if ready else 503
        if not authorised:
            return _text(status, "ready\n" if ready else "not ready\n")
        return _json(
            status,
            {
                "ready": ready,
                "errors": [f"{f.section}: {f.message}" for f in errors],
                "warnings": [
                    f"{f.section}: {f.message}" for f in report.findings if f.severity == "warning"
                ],
            },
        )

    async def _doctor_page(self, scope: Scope, query: dict[str, str]) -> _Response:
        report = await self._verdict(wait=True)
        status = 200 if report.ok else 503
        if _wants_html(scope, query):
            return _page(status, "Doctor", report._repr_html_())
        return _json(status, report.to_dict())

    # ------------------------------------------------------------------ metrics
    async def _metrics(self) -> _Response:
        from .._lazy import import_optional

        prom = import_optional("prometheus_client")
        registry = self._prom_registry()
        hub = hub_for(registry)
        if hub is not None:
            await hub.refresh()
        text = prom.generate_latest(registry).decode("utf-8", "replace")
        return _Response(200, redact(text).encode(), prom.CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ profile
    async def _profile(self, scope: Scope, query: dict[str, str]) -> _Response:
        import asyncio

        try:
            seconds = float(query.get("seconds", "5"))
        except ValueError:
            seconds = math.nan
        if not (0 < seconds <= self.max_profile_s):
            return _text(400, f"seconds must be a number in (0, {self.max_profile_s:g}]\n")
        fmt = query.get("format") or ("html" if _wants_html(scope, {}) else "speedscope")
        if fmt not in ("speedscope", "pstats", "text", "html", "json"):
            return _text(400, "format must be speedscope, pstats, text, html or json\n")
        if self._profiling:
            return _text(409, "a profile is already being taken; try again when it ends\n",
                         retry_after=str(math.ceil(self.max_profile_s)))  # fmt: skip
        self._profiling = True
        profiler = CPUProfiler(log_level=None, label=f"live profile {seconds:g}s")
        try:
            # cProfile follows the thread: everything the loop runs meanwhile is profiled.
            profiler.start_profiling()
            try:
                await asyncio.sleep(seconds)
            finally:
                profiler.stop_profiling()
        finally:
            self._profiling = False
        report = profiler.last_report
        if report is None:
            return _text(409, "another profiler was active on the loop's thread\n")
        if fmt == "html":
            return _page(200, f"CPU profile over {seconds:g} s", report._repr_html_())
        if fmt == "text":
            return _text(200, report.to_text())
        if fmt == "json":
            return _json(200, report.to_dict())
        if fmt == "pstats":
            body = await off_loop(_pstats_bytes, report)
            return _Response(200, body, "application/octet-stream",
                             content_disposition='attachment; filename="profile.pstats"')  # fmt: skip
        return _json(200, _speedscope(report, f"safla-diag live profile ({seconds:g} s)"))

    # ------------------------------------------------------------------ loop and tasks
    def _loop_page(self, scope: Scope, query: dict[str, str]) -> _Response:
        mon = self.loop_monitor
        if mon is None:
            return _json(404, {"error": "no LoopMonitor: pass loop_monitor= to asgi_app(), "
                                        "run its ASGI lifespan, or use serve()"})  # fmt: skip
        if _wants_html(scope, query):
            stacks = "".join(
                f"<h3>{e['count']}x, up to {e['duration_s'] * 1e3:.0f} ms</h3>"
                f"<pre>{html.escape(chr(10).join(e['stack']))}</pre>"
                for e in mon.stalls()
            )
            return _page(200, "Event loop", mon._repr_html_() + stacks)
        return _json(200, mon.to_dict())

    def _tasks_page(self, scope: Scope, query: dict[str, str]) -> _Response:
        import asyncio

        tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
        rows: list[dict[str, Any]] = []
        for t in tasks[:_MAX_TASKS]:
            coro = t.get_coro()
            rows.append(
                {
                    "name": t.get_name(),
                    "coro": getattr(coro, "__qualname__", type(coro).__name__),
                    "done": t.done(),
                    "stack": _frames_of(t),
                }
            )
        if _wants_html(scope, query):
            body = "".join(
                f"<h3>{html.escape(r['name'])}: {html.escape(r['coro'])}</h3>"
                f"<pre>{html.escape(chr(10).join(r['stack']))}</pre>"
                for r in rows
            )
            return _page(200, f"{len(tasks)} asyncio tasks", body)
        return _json(200, {"count": len(tasks), "shown": len(rows), "tasks": rows})


def _retrieve(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        logger.warning("the doctor behind /readyz failed: %s", describe_error(fut.exception()))


def _pstats_bytes(report: ProfileReport) -> bytes:
    with tempfile.TemporaryDirectory(prefix="safla-profile-") as tmp:
        path = Path(tmp) / "profile.pstats"
        report.save(path)
        return path.read_bytes()


def asgi_app(diagnostics: Any, **options: Unpack[AppOptions]) -> LiveApp:
    """
    The live diagnostics endpoint as an ASGI application, to mount in FastAPI or Starlette.

    Args:
        diagnostics: The service's :class:`Diagnostics` (its doctor backs ``/readyz`` and
            ``/debug/doctor``).
        **options: Keyword options, each optional.
            ``token``: when given, every endpoint but ``/healthz`` and ``/readyz`` needs
            ``Authorization: Bearer <token>`` (at least 16 characters). Without one, they answer
            loopback clients only.
            ``registry``: the Prometheus registry ``/metrics`` shows; the global one by default.
            ``loop_monitor``: the LoopMonitor ``/debug/loop`` shows; without one, the app starts
            its own when its ASGI lifespan starts.
            ``objects``: monitors and recovery objects to register with that registry (see
            :func:`register_prometheus`).
            ``ready_ttl_s``: how long a doctor verdict is reused by ``/readyz`` (5 s).
            ``max_profile_s``: the longest profile ``/debug/profile`` takes (30 s).

    Returns:
        The ASGI application.

    Raises:
        ValueError: For a token shorter than 16 characters or with spaces, or bad durations.
        TypeError: When ``diagnostics`` has no ``adoctor()``.
    """
    return LiveApp(diagnostics, **options)
