"""
check_external_services: native, concurrent probes of redis, postgresql, http, tcp, dns and mcp.

Every probe speaks its protocol over asyncio streams (no subprocess, no shell), runs under its own
deadline, and all of them run at once, so the whole check takes about as long as the slowest probe
and never longer than ``timeout``. A probe never raises: whatever it meets becomes a result with a
status word, one line of detail and, when something is wrong, the next step.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .._aio import off_loop, run_sync
from .._redact import redact
from .._report import JsonMixin, Num, html_block, html_table, text_table
from ._http import probe_http, probe_mcp
from ._net import Outcome, Phase, classify_error, connect, hostport, is_local, resolve
from ._ports import describe_holders
from ._postgres import probe_postgres
from ._redis import probe_redis
from ._targets import Target, parse_targets

__all__ = ["ServiceReport", "ServiceResult", "acheck_external_services", "check_external_services"]

log = logging.getLogger("safla_diag.checks")

STATUSES = (
    "ok",
    "auth_failed",
    "rejecting",
    "not_found",
    "dns_failed",
    "refused",
    "unreachable",
    "timeout",
    "reset",
    "protocol",
    "tls",
    "http_error",
    "redirect",
    "invalid",
    "error",
)
"""Every status word a ServiceResult can carry."""


@attrs.frozen(kw_only=True)
class ServiceResult:
    """
    The result of probing one service.

    Attributes:
        name: The service name (``redis``, ``database``, ``mcp:search``, or the caller's key).
        target: The URL, with secrets masked.
        ok: True when the service answered as a healthy one should.
        latency_s: Seconds from the start of the probe to its answer (or to the failure).
        detail: One line saying what was found.
        kind: The probe used: redis, postgres, http, mcp, tcp, dns (or invalid).
        status: One word: ok, auth_failed, rejecting, not_found, dns_failed, refused,
            unreachable, timeout, reset, protocol, tls, http_error, redirect, invalid, error.
        hint: The next step, when something is wrong.
        dns_s: Seconds spent resolving the host name, when it was resolved.
    """

    name: str
    target: str
    ok: bool
    latency_s: float
    detail: str
    kind: str = "tcp"
    status: str = "ok"
    hint: str | None = None
    dns_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)

    def __repr__(self) -> str:
        return (
            f"<ServiceResult {self.name} ok={self.ok} status={self.status!r} "
            f"latency_s={self.latency_s:.3f} target={self.target!r}>"
        )


@attrs.frozen(kw_only=True)
class ServiceReport(JsonMixin):
    """
    The results of one ``check_external_services`` run; truthy when every service is ok.

    Attributes:
        results: One ServiceResult per target, in the order given.
        timeout: The bound the check ran under, in seconds.
        elapsed_s: Wall time of the whole check.
    """

    results: list[ServiceResult]
    timeout: float
    elapsed_s: float

    def __bool__(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def ok(self) -> bool:
        """True when every service is ok (an empty report is ok)."""
        return bool(self)

    @property
    def failed(self) -> list[ServiceResult]:
        """The results that are not ok."""
        return [r for r in self.results if not r.ok]

    def __getitem__(self, name: str) -> ServiceResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "timeout", "elapsed_s", "results": [...]}``, JSON-ready."""
        return {
            "ok": self.ok,
            "timeout": self.timeout,
            "elapsed_s": self.elapsed_s,
            "results": [r.to_dict() for r in self.results],
        }

    def to_text(self) -> str:
        """
        Aligned columns, one line per service, with the next step under each failure.

        The columns: status (ok / FAIL), name, target (redacted), latency, result, detail. The
        CLI prints this text as is, colouring the status words.
        """
        n_ok = sum(r.ok for r in self.results)
        lines = [
            f"services: {n_ok} of {len(self.results)} ok in {self.elapsed_s:.2f} s "
            f"(timeout {self.timeout:g} s)"
        ]
        rows = [
            (
                "ok" if r.ok else "FAIL",
                r.name,
                r.target,
                Num(f"{r.latency_s * 1000:.1f} ms"),
                r.status,
                r.detail,
            )
            for r in self.results
        ]
        table = text_table(None, rows, indent="  ").splitlines()
        # the next step goes under the name column, below its failure
        under = "  " + " " * max((len(row[0]) for row in rows), default=0) + "  "
        for r, line in zip(self.results, table, strict=True):
            lines.append(line)
            if r.hint and not r.ok:
                lines.append(f"{under}next: {r.hint}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        n_ok = sum(r.ok for r in self.results)
        table = html_table(
            ("", "service", "target", "latency ms", "result", "next step"),
            (
                (
                    "\u2705" if r.ok else "\u274c",
                    r.name,
                    r.target,
                    round(r.latency_s * 1000, 1),
                    f"{r.detail} [{r.status}]",
                    r.hint or "",
                )
                for r in self.results
            ),
        )
        title = f"services: {n_ok} of {len(self.results)} ok in {self.elapsed_s:.2f} s"
        return html_block(title, table, ok=self.ok)

    def __repr__(self) -> str:
        return (
            f"<ServiceReport ok={self.ok} services={len(self.results)} "
            f"failed={[r.name for r in self.failed]}>"
        )


async def _probe_tcp(target: Target, phase: Phase) -> Outcome:
    assert target.host is not None and target.port is not None
    _reader, writer = await connect(target.host, target.port, phase)
    writer.close()
    via = phase.addresses[0] if phase.addresses else target.host
    return Outcome(True, "ok", f"TCP connect to {hostport(via, target.port)}")


async def _probe_dns(target: Target, phase: Phase) -> Outcome:
    assert target.host is not None
    pairs = await resolve(target.host, target.port or 0, phase)
    shown = ", ".join(a for _, a in pairs[:4]) + (" ..." if len(pairs) > 4 else "")
    return Outcome(True, "ok", f"resolves to {shown}")


async def _probe_postgres(target: Target, phase: Phase) -> Outcome:
    return await probe_postgres(target, phase)


_PROBES: dict[str, Callable[[Target, Phase], Awaitable[Outcome]]] = {
    "redis": probe_redis,
    "postgres": _probe_postgres,
    "http": probe_http,
    "mcp": probe_mcp,
    "tcp": _probe_tcp,
    "dns": _probe_dns,
}


def _where(target: Target) -> str:
    if target.scheme == "unix":
        return target.path
    host = target.host or target.query.get("host", "?")
    return f"[{host}]:{target.port}" if ":" in host else f"{host}:{target.port}"


def _timeout_outcome(timeout: float, phase: Phase, where: str) -> Outcome:
    if phase.name.startswith(("resolving", "starting")):
        hint = "name resolution is slow or hanging: check the DNS servers in resolv.conf"
    elif phase.name.startswith("connecting"):
        hint = "the host drops packets (down, or a firewall): check it is up and the port is open"
    else:
        hint = "connected, but the service did not answer: it may be hung, overloaded, or speak another protocol"
    return Outcome(
        False, "timeout", f"no answer from {where} within {timeout:g} s ({phase.name})", hint
    )


MAX_PROBES = 256
"""Probes in flight at once at most; the rest wait their turn (see :func:`probe_slots`)."""


def probe_slots() -> int:
    """
    How many probes may run at once: half the file descriptors this process has left, at most
    :data:`MAX_PROBES`, at least 1.

    A probe holds one socket at a time; a thousand targets under ``ulimit -n 256`` must queue,
    not fail with "Too many open files".
    """
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    except (ImportError, OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return MAX_PROBES
    return max(1, min(MAX_PROBES, (soft - used) // 2))


async def _run_one(
    target: Target, timeout: float, deadline: float, slots: asyncio.Semaphore
) -> ServiceResult:
    if target.error is not None:
        return await _probe_one(target, timeout, deadline)
    async with slots:  # the probe's own timeout starts when its turn comes
        return await _probe_one(target, timeout, deadline)


async def _probe_one(target: Target, timeout: float, deadline: float) -> ServiceResult:
    loop = asyncio.get_running_loop()
    phase = Phase()
    start = time.perf_counter()
    if target.error is not None:
        outcome = Outcome(False, "invalid", target.error, "fix the URL in the configuration")
    else:
        where = _where(target)
        try:
            async with asyncio.timeout(timeout):
                outcome = await _PROBES[target.kind](target, phase)
        except TimeoutError:
            outcome = _timeout_outcome(timeout, phase, where)
        except Exception as err:  # a probe never raises: every failure is a result
            outcome = classify_error(err, where, phase)
        if (
            not outcome.ok
            and outcome.status in ("protocol", "reset", "tls", "timeout")
            and target.port is not None
            and is_local(target.host)
            and phase.addresses
            and not phase.name.startswith(("resolving", "connecting"))
        ):
            outcome = await _with_holder(outcome, target.port, deadline - loop.time())
    latency = time.perf_counter() - start
    result = ServiceResult(
        name=target.name,
        target=target.display,
        ok=outcome.ok,
        latency_s=latency,
        detail=redact(outcome.detail),
        kind=target.kind,
        status=outcome.status,
        hint=redact(outcome.hint) if outcome.hint else None,
        dns_s=phase.dns_s,
    )
    log.debug("service %s: %s %s", result.name, result.status, result.detail)
    return result


async def _with_holder(outcome: Outcome, port: int, budget: float) -> Outcome:
    # The wrong protocol on a local port: name the process that holds it, if we may see it.
    if budget <= 0.05:
        return outcome
    try:
        async with asyncio.timeout(budget):
            who = await off_loop(describe_holders, port)
    except Exception:  # best effort: the probe's own finding stands
        return outcome
    if not who:
        return outcome
    return attrs.evolve(outcome, detail=f"{outcome.detail}; {who}")


async def acheck_external_services(targets: object, *, timeout: float = 5.0) -> ServiceReport:
    """
    Probe every service at once, natively, and report what each one is doing.

    Args:
        targets: A SAFLA configuration (mapping or SaflaConfig: ``database_url``, ``redis_url``,
            ``mcp_servers``, ``services``, and ``mcp_task_queue`` when it is a PostgreSQL URL),
            a ``{name: url}`` mapping, or a list of URLs. Schemes: redis, rediss, unix,
            postgresql/postgres(+driver), http, https, tcp, dns, mysql (TCP only).
        timeout: Seconds each probe may take; since they run concurrently, the whole check takes
            about as long as the slowest probe and never much longer than ``timeout``. At most
            half the file descriptors left to the process (and at most 256) are probed at once;
            the others wait their turn, so a very long list takes longer than ``timeout``.

    Returns:
        The report; a bad URL is a result (status ``invalid``), never an exception.

    Raises:
        TypeError: When ``targets`` is not a mapping, config object or list of URLs.
        ValueError: When ``timeout`` is not a positive number.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    parsed = parse_targets(targets)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = loop.time() + timeout
    slots = asyncio.Semaphore(probe_slots())
    results = await asyncio.gather(*(_run_one(t, float(timeout), deadline, slots) for t in parsed))
    report = ServiceReport(
        results=list(results), timeout=float(timeout), elapsed_s=time.perf_counter() - start
    )
    log.info(
        "checked %d services in %.3f s: %d failed",
        len(results),
        report.elapsed_s,
        len(report.failed),
    )
    return report


def check_external_services(targets: object, *, timeout: float = 5.0) -> ServiceReport:
    """
    Synchronous twin of :func:`acheck_external_services`, for scripts and the command line.

    It runs its own event loop, so it must not be called where one is already running (a
    service, Jupyter): there, ``await acheck_external_services(...)``.

    Args:
        targets: As for :func:`acheck_external_services`.
        timeout: As for :func:`acheck_external_services`.

    Returns:
        The report.

    Raises:
        RuntimeError: When called from inside a running event loop.
        TypeError: When ``targets`` or ``timeout`` has the wrong type.
        ValueError: When ``timeout`` is not a positive number.
    """
    return run_sync(
        lambda: acheck_external_services(targets, timeout=timeout),
        "check_external_services",
        "acheck_external_services",
    )
