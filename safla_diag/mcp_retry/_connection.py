"""
MCPConnectionRecovery: single-flight reconnects with backoff and a per-server circuit breaker.

The host owns the MCP transport: it hands us ``connect(server_config)`` and ``test(connection)``.
When N callers find the same server dead at once, they share one recovery (one shielded task per
server, numbered by a generation counter), so the server sees one connect attempt per backoff step,
not N. Cancelling one caller does not cancel the recovery the others wait for; when every caller has
gone, the recovery is cancelled too.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._errors import ServerUnavailable
from .._redact import redact
from ._breaker import CircuitBreaker
from ._util import call_host, describe_error, logger

__all__ = ["MCPConnectionRecovery", "ServerUnavailable"]


class _Flight:
    __slots__ = ("generation", "task", "waiters")

    def __init__(self, task: asyncio.Task[Any], generation: int) -> None:
        self.task = task
        self.generation = generation
        self.waiters = 0


class _Server:
    __slots__ = (
        "attempts_total",
        "breaker",
        "connection",
        "flight",
        "generation",
        "last_error",
        "last_failure",
        "last_success",
    )

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.flight: _Flight | None = None
        self.generation = 0
        self.connection: Any = None
        self.attempts_total = 0
        self.last_error: str | None = None
        self.last_failure: float | None = None
        self.last_success: float | None = None


class _Escape:
    """A SystemExit or KeyboardInterrupt carried out of the recovery task to its callers."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class MCPConnectionRecovery:
    """
    Recover connections to MCP servers: one recovery per server, backoff, a circuit breaker.

    ``connect(server_config) -> connection`` and ``test(connection)`` (raises when unhealthy) are
    the host's coroutine functions or plain callables; each is called once per attempt, under a
    timeout. A recovery makes at most ``max_retries`` attempts with exponential backoff and full
    jitter (``retry_delay`` doubling, capped at ``max_delay``), built on tenacity; it never retries
    ``CancelledError`` or ``KeyboardInterrupt``. When it gives up, the server's breaker opens:
    callers fail fast for ``breaker_cooldown`` seconds, then one probe attempt decides.

    Args:
        max_retries: Attempts per recovery.
        retry_delay: The first backoff ceiling; it doubles each attempt.
        connect: The host's ``connect(server_config)``.
        test: The host's ``test(connection)``; None to trust a connect that returns.
        max_delay: The cap of the backoff.
        connect_timeout: Seconds allowed for one connect (with the MCP initialize); None: no limit.
        test_timeout: Seconds allowed for one test (a ping); None: no limit.
        close: The host's ``close(connection)``, called on a connection that failed its test.
        breaker_cooldown: Seconds a server stays known-down after a recovery gave up; it doubles
            with each consecutive give-up, up to ``max_breaker_cooldown``.
        max_breaker_cooldown: The cap of the cool-down.
        sleep: The backoff's sleep (injectable for tests).
        clock: Monotonic seconds for the breaker (injectable for tests).

    Attributes:
        failed_connections: Server id -> wall-clock time of its last give-up; cleared on success.
    """

    def __init__(
        self,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        *,
        connect: Callable[[Any], Any],
        test: Callable[[Any], Any] | None = None,
        max_delay: float = 30.0,
        connect_timeout: float | None = 10.0,
        test_timeout: float | None = 5.0,
        close: Callable[[Any], Any] | None = None,
        breaker_cooldown: float = 30.0,
        max_breaker_cooldown: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_retries < 1:
            raise ValueError("max_retries must be at least 1")
        if not (retry_delay >= 0 and max_delay >= 0):  # NaN fails too
            raise ValueError("delays must not be negative")
        for name, value in (("connect_timeout", connect_timeout), ("test_timeout", test_timeout)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(
                    f"{name} must be a positive number of seconds or None, got {value!r}"
                )
        for name, value in (
            ("breaker_cooldown", breaker_cooldown),
            ("max_breaker_cooldown", max_breaker_cooldown),
        ):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        self.max_retries = max_retries
        self.retry_delay = float(retry_delay)
        self.max_delay = float(max_delay)
        self.connect_timeout = connect_timeout
        self.test_timeout = test_timeout
        self.breaker_cooldown = breaker_cooldown
        self.max_breaker_cooldown = max_breaker_cooldown
        self._connect = connect
        self._test = test
        self._close = close
        self._sleep = sleep
        self._clock = clock
        self._servers: dict[str, _Server] = {}
        self.failed_connections: dict[str, float] = {}

    def __repr__(self) -> str:
        down = sum(1 for s in self._servers.values() if s.breaker.state != "closed")
        return (
            f"<MCPConnectionRecovery servers={len(self._servers)} down={down} "
            f"max_retries={self.max_retries}>"
        )

    def _repr_html_(self) -> str:
        from ._html import connection_recovery_html

        return connection_recovery_html(self)

    def _server(self, server_id: str) -> _Server:
        st = self._servers.get(server_id)
        if st is None:
            st = self._servers[server_id] = _Server(
                CircuitBreaker(
                    cooldown_s=self.breaker_cooldown,
                    max_cooldown_s=self.max_breaker_cooldown,
                    clock=self._clock,
                )
            )
        return st

    # -- the gate on the call path ------------------------------------------------------------------

    def check(self, server_id: str) -> None:
        """
        Fail fast when a server is known down; cheap enough for every call (a dict lookup).

        Raises:
            ServerUnavailable: (an MCPRecoveryError) the server's breaker is open and cooling down.
        """
        st = self._servers.get(server_id)
        if st is None or st.breaker.state == "closed":
            return
        self._check_slow(server_id, st)

    def _check_slow(self, server_id: str, st: _Server) -> None:
        wait = st.breaker.retry_after()
        if st.breaker.state == "open" and wait > 0:
            raise self._open_error(server_id, st, wait)

    def is_available(self, server_id: str) -> bool:
        """Whether calls to the server should go ahead (its breaker is not open and cooling down)."""
        st = self._servers.get(server_id)
        return st is None or st.breaker.state != "open" or st.breaker.retry_after() <= 0

    def _open_error(self, server_id: str, st: _Server, wait: float) -> ServerUnavailable:
        return ServerUnavailable(
            f"MCP server {server_id} is unavailable (circuit open, next probe in {wait:.1f}s); "
            f"last error: {st.last_error}",
            server_id=server_id,
            attempts=0,
            circuit_open=True,
            retry_after=wait,
            last_error=st.last_error,
        )

    # -- recovery ---------------------------------------------------------------------------------

    async def recover_connection(
        self, server_id: str, server_config: Mapping[str, Any] | Any, *, failed: Any = None
    ) -> Any:
        """
        Reconnect to a server, sharing one recovery among all concurrent callers.

        Args:
            server_id: The server's name.
            server_config: Passed to ``connect``.
            failed: The connection the caller saw fail; when a newer one was recovered since,
                it is returned at once instead of reconnecting again.

        Returns:
            The new connection (tested).

        Raises:
            ServerUnavailable: (an MCPRecoveryError) every attempt failed, or the breaker is open.
            asyncio.CancelledError: This caller was cancelled (the recovery goes on for others).
        """
        st = self._server(server_id)
        if failed is not None and st.connection is not None and st.connection is not failed:
            return st.connection
        flight = st.flight
        if flight is None:
            if not st.breaker.try_start():
                raise self._open_error(server_id, st, st.breaker.retry_after())
            probe = st.breaker.state == "half_open"
            st.generation += 1
            attempts = 1 if probe else self.max_retries
            task = asyncio.get_running_loop().create_task(
                self._recover(server_id, st, server_config, attempts),
                name=f"safla_diag.mcp_retry.recover[{server_id}]#{st.generation}",
            )
            flight = st.flight = _Flight(task, st.generation)
            task.add_done_callback(functools.partial(self._landed, st, flight))
        flight.waiters += 1
        try:
            result = await asyncio.shield(flight.task)
            if isinstance(result, _Escape):
                raise result.error  # SystemExit or KeyboardInterrupt from the host's connect
            return result
        except asyncio.CancelledError:
            if flight.task.done():
                raise
            flight.waiters -= 1
            if flight.waiters == 0:
                # Nobody waits for it any more: stop reconnecting on nobody's behalf, and detach it
                # now, so a caller arriving while it winds down starts afresh instead of sharing
                # its cancellation.
                flight.task.cancel()
                if st.flight is flight:
                    st.flight = None
                    st.breaker.abandon_probe()
            raise
        finally:
            if flight.task.done():
                flight.waiters = max(0, flight.waiters - 1)

    def _landed(self, st: _Server, flight: _Flight, task: asyncio.Task[Any]) -> None:
        if st.flight is flight:
            st.flight = None
            if task.cancelled():
                st.breaker.abandon_probe()
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    async def _attempt(self, server_config: Any) -> Any:
        async with asyncio.timeout(self.connect_timeout):
            conn = await call_host(self._connect, server_config)
        if self._test is not None:
            try:
                async with asyncio.timeout(self.test_timeout):
                    await call_host(self._test, conn)
            except BaseException:
                if self._close is not None:
                    try:
                        await call_host(self._close, conn)
                    except Exception as err:
                        logger.debug("closing a failed MCP connection: %s", describe_error(err))
                raise
        return conn

    async def _recover(self, server_id: str, st: _Server, server_config: Any, attempts: int) -> Any:
        try:
            return await self._recover_attempts(server_id, st, server_config, attempts)
        except (SystemExit, KeyboardInterrupt) as err:
            # Raised out of a task, these would stop the loop and reach the caller as a
            # CancelledError: hand them over as a value, re-raised in the caller's frame.
            st.breaker.abandon_probe()
            return _Escape(err)

    async def _recover_attempts(
        self, server_id: str, st: _Server, server_config: Any, attempts: int
    ) -> Any:
        # tenacity pulls in asyncio helpers; imported here to keep `import safla_diag` light.
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
        from tenacity.wait import wait_random_exponential

        shown = redact(server_id)
        made = 0

        def before_sleep(state: Any) -> None:
            err = state.outcome.exception() if state.outcome else None
            logger.warning(
                "MCP connection %s attempt %d/%d failed (%s); retrying in %.2fs",
                shown,
                state.attempt_number,
                attempts,
                describe_error(err) if err else "?",
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=self.retry_delay, max=self.max_delay),
            # Only Exceptions: CancelledError, KeyboardInterrupt and SystemExit end it at once.
            retry=retry_if_exception(lambda e: isinstance(e, Exception)),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        logger.info("recovering MCP connection %s (generation %d)", shown, st.generation)
        try:
            async for attempt in retrying:
                with attempt:
                    made += 1
                    st.attempts_total += 1
                    conn = await self._attempt(server_config)
        except Exception as err:
            st.last_error = describe_error(err)
            st.last_failure = time.time()
            st.breaker.record_failure()
            self.failed_connections[server_id] = st.last_failure
            logger.error(
                "giving up on MCP connection %s after %d attempts: %s",
                shown,
                made,
                st.last_error,
            )
            raise ServerUnavailable(
                f"cannot recover MCP connection {server_id} after {made} attempts: {st.last_error}",
                server_id=server_id,
                attempts=made,
                circuit_open=False,
                retry_after=st.breaker.retry_after(),
                last_error=st.last_error,
            ) from err
        st.connection = conn
        st.last_success = time.time()
        st.breaker.record_success()
        self.failed_connections.pop(server_id, None)
        logger.info("recovered MCP connection %s after %d attempts", shown, made)
        return conn

    # -- status ---------------------------------------------------------------------------------

    def status(self, server_id: str | None = None) -> dict[str, dict[str, Any]]:
        """
        The state of each server seen (or of one): breaker, recovery in flight, counters.

        Returns:
            Server id -> ``state`` (closed / open / half_open), ``recovering``, ``generation``,
            ``consecutive_failures``, ``retry_after_s``, ``connect_attempts``, ``last_error``,
            ``last_failure`` and ``last_success`` (wall-clock times or None).
        """
        ids = [server_id] if server_id is not None else sorted(self._servers)
        out: dict[str, dict[str, Any]] = {}
        for sid in ids:
            st = self._servers.get(sid)
            if st is None:
                out[sid] = {"state": "closed", "recovering": False, "generation": 0}
                continue
            out[sid] = {
                "state": st.breaker.state,
                "recovering": st.flight is not None,
                "generation": st.generation,
                "consecutive_failures": st.breaker.failures,
                "retry_after_s": st.breaker.retry_after(),
                "connect_attempts": st.attempts_total,
                "last_error": st.last_error,
                "last_failure": st.last_failure,
                "last_success": st.last_success,
            }
        return out
