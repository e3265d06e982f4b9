"""
Optional integration with the official MCP Python SDK (``pip install 'safla-diag[mcp]'``).

:class:`RecoveringSession` wraps a ``ClientSession``: every ``call_tool``, ``initialize`` and ping
runs under a timeout (the SDK sets none, and a frozen server is otherwise never detected); outcomes
are classified the same way for SDK 1.x and 2.x; the task id travels in the request's ``_meta``; a
call whose outcome is unknown (a timeout or a drop mid-call) is retried automatically only when the
tool is read-only or idempotent, and otherwise handed to the queue as "needs decision"; and a dead
session is re-created and re-initialised single-flight through :class:`MCPConnectionRecovery`.

The SDK's transports run anyio task groups that must be entered and left by the same task, so each
session lives in a small owner task of ours in the host's loop; it ends when the session is closed
or its transport dies.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from .._errors import MCPRecoveryError, OutcomeUnknown
from .._lazy import import_optional
from .._redact import redact
from ._connection import MCPConnectionRecovery
from ._util import describe_error, logger

if TYPE_CHECKING:
    from ._tasks import MCPTaskRecovery

__all__ = [
    "TASK_ID_META_KEY",
    "CallOutcome",
    "OutcomeUnknown",
    "RecoveringSession",
    "classify_error",
]

TASK_ID_META_KEY = "safla_diag/task_id"

# JSON-RPC codes the SDK uses (1.x and 2.x alike); 408 is 1.x's request timeout.
_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = {-32001, 408}


class CallOutcome(enum.Enum):
    """What a failed MCP call means for what to do next."""

    TRANSPORT_DEAD = "transport_dead"
    """The connection is gone: recover the session; a call in flight has an unknown outcome."""
    TIMEOUT = "timeout"
    """No answer in time: ping to tell a slow tool from a dead server; the outcome is unknown."""
    PROTOCOL_ERROR = "protocol_error"
    """The server refused the request (bad params, unknown method...): never retry."""


def _error_code(err: BaseException) -> int | None:
    # SDK 2.x MCPError and 1.x McpError both carry .error (ErrorData) with .code.
    data = getattr(err, "error", None)
    code = getattr(data, "code", None)
    if isinstance(code, int):
        return code
    code = getattr(err, "code", None)
    return (
        code if isinstance(code, int) and type(err).__name__ in ("MCPError", "McpError") else None
    )


def classify_error(err: BaseException) -> CallOutcome:
    """
    Classify an exception from an MCP SDK call (1.x or 2.x).

    Tool errors are not exceptions (they come back as results with ``isError``); they are never a
    reason to reconnect, and this function is not asked about them.
    """
    code = _error_code(err)
    if code is not None:
        if code == _CONNECTION_CLOSED:
            return CallOutcome.TRANSPORT_DEAD
        if code in _REQUEST_TIMEOUT:
            return CallOutcome.TIMEOUT
        return CallOutcome.PROTOCOL_ERROR
    if isinstance(err, TimeoutError):
        return CallOutcome.TIMEOUT
    if isinstance(err, (ConnectionError, EOFError, OSError)):
        return CallOutcome.TRANSPORT_DEAD
    if type(err).__module__.startswith("anyio") and type(err).__name__ in (
        "ClosedResourceError",
        "BrokenResourceError",
        "EndOfStream",
    ):
        return CallOutcome.TRANSPORT_DEAD
    if isinstance(err, BaseExceptionGroup):
        outcomes = {classify_error(e) for e in err.exceptions}
        if CallOutcome.TRANSPORT_DEAD in outcomes:
            return CallOutcome.TRANSPORT_DEAD
    return CallOutcome.PROTOCOL_ERROR


class _Live:
    """One live SDK session, owned by its own task."""

    __slots__ = ("dead", "owner", "safe_tools", "session", "started", "stop")

    def __init__(self, session: Any, stop: asyncio.Event, safe_tools: frozenset[str]) -> None:
        self.session = session
        self.stop = stop
        self.safe_tools = safe_tools
        self.dead = False
        self.owner: asyncio.Task[None] | None = None
        self.started = time.monotonic()


def _takes_meta(method: Any) -> bool:
    """Whether the SDK's ``call_tool`` accepts ``meta`` (2.x and late 1.x; early 1.x does not)."""
    func = getattr(method, "__func__", method)
    known = _META_SUPPORT.get(func)
    if known is None:
        try:
            params = inspect.signature(method).parameters
        except (TypeError, ValueError):
            known = False
        else:
            known = "meta" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        _META_SUPPORT[func] = known
    return known


_META_SUPPORT: dict[Any, bool] = {}


def _hint(annotations: Any, *names: str) -> bool:
    return any(bool(getattr(annotations, n, None)) for n in names)


class RecoveringSession:
    """
    An MCP client session that times out, classifies failures and recovers single-flight.

    Args:
        server_id: The server's name (for the breaker, logs and saved tasks).
        transport: A callable returning the SDK transport's async context manager, for example
            ``lambda: stdio_client(params)``; it yields ``(read, write, ...)`` streams.
        call_timeout: Seconds allowed per ``call_tool``.
        initialize_timeout: Seconds allowed to open the transport and initialise the session.
        ping_timeout: Seconds allowed per ping.
        safe_tools: Tool names safe to retry when the outcome is unknown (read-only or idempotent),
            in addition to those whose annotations say so (``readOnlyHint``/``idempotentHint``).
        queue: Where calls of unknown outcome go as "needs decision" (dead letters with the reason).
        max_auto_retries: Automatic retries of a safe call whose outcome was unknown.
        recovery: Options for the :class:`MCPConnectionRecovery` (``max_retries``,
            ``retry_delay``, ``breaker_cooldown``...).
        session_factory: Builds the ``ClientSession`` from the streams (default: the SDK's).

    Raises:
        DependencyError: The MCP SDK is not installed.
    """

    def __init__(
        self,
        server_id: str,
        transport: Callable[[], AbstractAsyncContextManager[Any]],
        *,
        call_timeout: float = 30.0,
        initialize_timeout: float = 10.0,
        ping_timeout: float = 5.0,
        safe_tools: Iterable[str] = (),
        queue: MCPTaskRecovery | None = None,
        max_auto_retries: int = 2,
        recovery: Mapping[str, Any] | None = None,
        session_factory: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        if session_factory is None:
            mcp = import_optional("mcp")
            session_factory = mcp.ClientSession
        self.server_id = server_id
        self._transport = transport
        self._session_factory = session_factory
        self.call_timeout = call_timeout
        self.initialize_timeout = initialize_timeout
        self.ping_timeout = ping_timeout
        self.safe_tools = frozenset(safe_tools)
        self.queue = queue
        self.max_auto_retries = max_auto_retries
        opts = dict(recovery or {})
        opts.setdefault("connect_timeout", initialize_timeout)
        opts.setdefault("test_timeout", ping_timeout)
        self.recovery = MCPConnectionRecovery(
            connect=self._open, test=self._ping_live, close=self._discard, **opts
        )
        self._live: _Live | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        state = "live" if self._live is not None and not self._live.dead else "down"
        return f"<RecoveringSession {redact(self.server_id)!r} {state}>"

    # -- session lifecycle ------------------------------------------------------------------------

    async def _open(self, _config: Any) -> _Live:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[_Live] = loop.create_future()
        stop = asyncio.Event()
        owner = loop.create_task(
            self._own(ready, stop), name=f"safla_diag.mcp_retry.session[{self.server_id}]"
        )
        try:
            live = await asyncio.shield(ready)
        except BaseException:
            stop.set()
            owner.cancel()
            self._closing.add(owner)
            owner.add_done_callback(self._closing.discard)
            raise
        live.owner = owner
        return live

    async def _own(self, ready: asyncio.Future[_Live], stop: asyncio.Event) -> None:
        live: _Live | None = None
        try:
            async with self._transport() as streams:
                read, write = streams[0], streams[1]
                async with self._session_factory(read, write) as session:
                    await session.initialize()
                    safe = set(self.safe_tools)
                    try:
                        listed = await session.list_tools()
                        for tool in listed.tools:
                            if _hint(
                                getattr(tool, "annotations", None),
                                "read_only_hint",
                                "readOnlyHint",
                                "idempotent_hint",
                                "idempotentHint",
                            ):
                                safe.add(tool.name)
                    except Exception as err:  # not every server lists tools
                        logger.debug("list_tools failed: %s", describe_error(err))
                    live = _Live(session, stop, frozenset(safe))
                    if not ready.done():
                        ready.set_result(live)
                    await stop.wait()
        except BaseException as err:
            if not ready.done():
                if isinstance(err, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(err)
            elif not isinstance(err, asyncio.CancelledError):
                logger.warning(
                    "MCP session %s ended: %s", redact(self.server_id), describe_error(err)
                )
            if not isinstance(err, Exception):
                raise
        finally:
            if live is not None:
                live.dead = True

    async def _ping_live(self, live: _Live) -> None:
        async with asyncio.timeout(self.ping_timeout):
            await live.session.send_ping()

    def _discard(self, live: _Live) -> None:
        live.dead = True
        live.stop.set()
        if live.owner is not None and not live.owner.done():
            # Closing a transport can take seconds (the SDK waits for the child to exit); never
            # on the call path.
            live.owner.cancel()
            self._closing.add(live.owner)
            live.owner.add_done_callback(self._closing.discard)

    async def _session(self) -> _Live:
        live = self._live
        while live is None or live.dead:
            live = await self.recovery.recover_connection(self.server_id, None, failed=live)
            self._live = live
        return live

    async def aclose(self) -> None:
        """Close the session and wait for its transport to shut down."""
        if self._live is not None:
            self._discard(self._live)
            self._live = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> RecoveringSession:
        await self._session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- calls ------------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """Ping the server under ``ping_timeout``; False (and the session marked dead) on failure."""
        live = await self._session()
        try:
            await self._ping_live(live)
        except Exception:
            self._discard(live)
            return False
        return True

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        safe: bool | None = None,
    ) -> Any:
        """
        Call a tool with a timeout, recovering the session when its transport is dead.

        A tool error comes back as a result with ``isError`` (never a reconnect). A call whose
        outcome is unknown is retried automatically only when safe (``safe=True``, listed in
        ``safe_tools`` or annotated read-only or idempotent); otherwise it is saved as "needs
        decision" (when a queue is set) and :class:`OutcomeUnknown` is raised.

        Args:
            name: The tool.
            arguments: Its JSON arguments.
            task_id: The idempotency key sent in ``_meta``; generated when absent.
            safe: Override whether the tool may be retried after an unknown outcome.

        Returns:
            The SDK's ``CallToolResult``.

        Raises:
            OutcomeUnknown: The call may have run and is not safe to retry.
            MCPRecoveryError: The session could not be recovered (or the breaker is open).
            Exception: The SDK's error for a protocol error (bad params, unknown tool...).
        """
        task_id = task_id or uuid.uuid4().hex
        args = dict(arguments or {})
        retries = 0
        while True:
            live = await self._session()
            try:
                async with asyncio.timeout(self.call_timeout):
                    if _takes_meta(live.session.call_tool):
                        return await live.session.call_tool(
                            name, args, meta={TASK_ID_META_KEY: task_id}
                        )
                    return await live.session.call_tool(name, args)
            except Exception as err:
                outcome = classify_error(err)
                if outcome is CallOutcome.PROTOCOL_ERROR:
                    raise
                if outcome is CallOutcome.TIMEOUT:
                    try:
                        await self._ping_live(live)
                    except Exception:
                        outcome = CallOutcome.TRANSPORT_DEAD
                if outcome is CallOutcome.TRANSPORT_DEAD:
                    self._discard(live)
                is_safe = safe if safe is not None else name in live.safe_tools
                logger.warning(
                    "MCP call %s.%s (task %s): %s (%s)",
                    redact(self.server_id),
                    redact(name),
                    redact(task_id),
                    outcome.value,
                    describe_error(err),
                )
                if is_safe and retries < self.max_auto_retries:
                    retries += 1
                    continue
                task = {"id": task_id, "server": self.server_id, "tool": name, "arguments": args}
                saved = False
                if self.queue is not None and not is_safe:
                    reason = (
                        f"needs decision: {outcome.value} during the call ({describe_error(err)})"
                    )
                    saved = await self.queue.save_needs_decision(task, reason=reason)
                if is_safe:
                    raise MCPRecoveryError(
                        f"MCP call {self.server_id}.{name} failed {retries + 1} times: "
                        f"{describe_error(err)}"
                    ) from err
                raise OutcomeUnknown(
                    f"MCP call {self.server_id}.{name} (task {task_id}) may or may not have run "
                    f"({outcome.value}); not retried: the tool is not read-only or idempotent",
                    task=task,
                    outcome=outcome,
                    saved=saved,
                ) from err
