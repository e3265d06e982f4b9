"""
Diagnostics and DiagnosisReport: the facade behind ``safla-diag doctor``.

A diagnosis is a set of independent sections (platform, configuration, dependencies, memory, cpu,
disk, services, vector index, MCP queue, logs, monitors). Each is a small coroutine that returns
facts and findings; they run concurrently, each under a time budget, and a section whose layer
raises (a missing optional package, a layer not built yet, a bug) becomes a finding of its own
instead of breaking the report.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import html
import inspect
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs

from .._redact import redact, redact_value
from ..checks import acheck_external_services, check_dependencies
from ..checks._sync import run_sync
from ..checks._targets import parse_targets
from ..config import load_configuration, validate_configuration

__all__ = ["DiagnosisReport", "Diagnostics", "Finding", "SectionResult"]

log = logging.getLogger("safla_diag.diagnosis")

Severity = Literal["info", "warning", "error"]
_RANK = {"info": 0, "warning": 1, "error": 2}
_MB = 1024 * 1024
T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Finding:
    """
    One thing the diagnosis found.

    Attributes:
        section: The section that found it (``services``, ``memory``, ...).
        severity: ``info`` (a fact, healthy), ``warning`` (needs attention) or ``error``
            (something is broken).
        message: One line, redacted.
        hint: The next step, when there is one.
    """

    section: str
    severity: Severity
    message: str = attrs.field(converter=redact)
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class SectionResult:
    """The facts and findings of one section, and how long it took."""

    name: str
    findings: tuple[Finding, ...]
    facts: Mapping[str, Any] = attrs.field(factory=dict)
    elapsed_s: float = 0.0

    @property
    def severity(self) -> Severity:
        """The worst severity among the findings (``info`` when there are none)."""
        worst: Severity = "info"
        for f in self.findings:
            if _RANK[f.severity] > _RANK[worst]:
                worst = f.severity
        return worst


@attrs.frozen(kw_only=True)
class DiagnosisReport:
    """
    What ``doctor`` found, section by section.

    Attributes:
        sections: The sections, in a fixed order.
        elapsed_s: Wall time of the diagnosis.
        config_source: Where the configuration came from (a file, ``mapping``, or None).
    """

    sections: tuple[SectionResult, ...]
    elapsed_s: float
    config_source: str | None = None

    @property
    def findings(self) -> list[Finding]:
        """Every finding, info ones included, in section order."""
        return [f for s in self.sections for f in s.findings]

    @property
    def problems(self) -> list[Finding]:
        """The warnings and errors."""
        return [f for f in self.findings if f.severity != "info"]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong: no warning and no error."""
        return not self.problems

    @property
    def config_ok(self) -> bool:
        """False when the configuration section found errors."""
        return all(
            f.severity != "error"
            for s in self.sections
            if s.name == "configuration"
            for f in s.findings
        )

    @property
    def exit_code(self) -> int:
        """The ``doctor`` exit code: 0 healthy, 1 findings, 2 configuration errors."""
        if not self.config_ok:
            return 2
        return 0 if self.ok else 1

    def section(self, name: str) -> SectionResult:
        """The section called ``name``; KeyError when it did not run."""
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(name)

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "exit_code", "elapsed_s", "summary", "sections": [...], "findings": [...]}``."""
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "elapsed_s": self.elapsed_s,
            "config_source": self.config_source,
            "summary": self._summary(),
            "sections": [
                {
                    "name": s.name,
                    "severity": s.severity,
                    "elapsed_s": s.elapsed_s,
                    "facts": _jsonable(s.facts),
                    "findings": [f.to_dict() for f in s.findings],
                }
                for s in self.sections
            ],
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, **kwargs: Any) -> str:
        """The dict as JSON; keyword arguments go to ``json.dumps``."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def _summary(self) -> str:
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = sum(f.severity == "warning" for f in self.findings)
        if not errors and not warnings:
            n = len(self.sections)
            return f"healthy: {n} check{'s' * (n != 1)} passed"
        return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"

    def to_text(self) -> str:
        """One block per section: its worst severity, then its findings with their next step."""
        label = {"info": "ok", "warning": "WARN", "error": "ERROR"}
        width = max((len(s.name) for s in self.sections), default=8)
        lines = []
        for s in self.sections:
            head = f"{s.name:<{width}}  {label[s.severity]:<5}  "
            shown = [f for f in s.findings if f.severity != "info"] or list(s.findings)
            for i, f in enumerate(shown):
                mark = (
                    "" if f.severity == s.severity or f.severity == "info" else f"[{f.severity}] "
                )
                lines.append((head if i == 0 else " " * len(head)) + mark + f.message)
                if f.hint and f.severity != "info":
                    lines.append(" " * len(head) + f"  next: {f.hint}")
            if not shown:
                lines.append(head.rstrip())
        lines.append(f"doctor: {self._summary()} in {self.elapsed_s:.2f} s")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = {"info": "#2e7d32", "warning": "#ef6c00", "error": "#c62828"}
        rows = []
        for s in self.sections:
            for f in s.findings:
                rows.append(
                    f"<tr><td>{html.escape(s.name)}</td>"
                    f"<td style='color:{colour[f.severity]}'>{f.severity}</td>"
                    f"<td>{html.escape(f.message)}</td><td>{html.escape(f.hint or '')}</td></tr>"
                )
        return (
            f"<p><b>doctor</b>: {html.escape(self._summary())} in {self.elapsed_s:.2f} s</p>"
            "<table><tr><th>section</th><th>severity</th><th>finding</th><th>next step</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def __repr__(self) -> str:
        return (
            f"<DiagnosisReport ok={self.ok} sections={len(self.sections)} "
            f"problems={len(self.problems)}>"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return redact(str(value))


# --- context and helpers ----------------------------------------------------------------------


@attrs.define
class _Context:
    config: dict[str, Any]
    given: bool
    source: str | None
    timeout: float
    monitors: _Monitors | None
    started: float


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    # Blocking work (imports, psutil scans, file I/O) goes to the default executor.
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(None, functools.partial(ctx.run, fn, *args))


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _f(section: str, severity: Severity, message: str, hint: str | None = None) -> Finding:
    return Finding(section=section, severity=severity, message=message, hint=hint)


def _num(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


Outcome = tuple[dict[str, Any], list[Finding]]
SectionFn = Callable[[_Context], Awaitable[Outcome]]


# --- sections -------------------------------------------------------------------------------


async def _platform(ctx: _Context) -> Outcome:
    facts = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "executable": sys.executable,
        "pid": os.getpid(),
    }
    msg = (
        f"Python {facts['python']} ({facts['implementation']}) on {facts['platform']}, "
        f"pid {facts['pid']}"
    )
    return facts, [_f("platform", "info", msg)]


async def _configuration(ctx: _Context) -> Outcome:
    if not ctx.given:
        return {"source": None}, [
            _f("configuration", "info", "no configuration given: embedded defaults")
        ]
    issues = await _off_loop(validate_configuration, ctx.config)
    where = ctx.source or "the configuration"
    facts = {"source": ctx.source, "keys": sorted(ctx.config), "issues": len(issues)}
    if not issues:
        return facts, [_f("configuration", "info", f"{where} is valid")]
    return facts, [
        _f("configuration", "error", str(issue), f"fix it in {where}") for issue in issues
    ]


async def _dependencies(ctx: _Context) -> Outcome:
    report = await _off_loop(check_dependencies)
    to_dict = getattr(report, "to_dict", None)
    facts: dict[str, Any] = to_dict() if callable(to_dict) else {}
    packages = [p for p in facts.get("packages") or [] if isinstance(p, Mapping)]
    hint = getattr(report, "install_hint", None)
    missing = list(getattr(report, "missing", []) or [])
    if report and not missing:
        versions = ", ".join(f"{p.get('name')} {p.get('version')}" for p in packages)
        return facts, [
            _f("dependencies", "info", versions or "all runtime dependencies importable")
        ]
    bad = [p for p in packages if not p.get("ok", True)]
    if not bad:
        names = ", ".join(str(m) for m in missing) or "some packages"
        return facts, [_f("dependencies", "error", f"missing or broken: {names}", hint)]
    return facts, [
        _f(
            "dependencies",
            "error",
            f"{p.get('name')}: {p.get('status')}"
            + (f" ({p.get('detail')})" if p.get("detail") else ""),
            hint,
        )
        for p in bad
    ]


def _memory_facts() -> dict[str, Any]:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    vm = psutil.virtual_memory()
    proc = psutil.Process()
    with proc.oneshot():
        mem = proc.memory_info()
    facts: dict[str, Any] = {
        "process_rss_mb": mem.rss / _MB,
        "process_vms_mb": mem.vms / _MB,
        "system_percent": float(vm.percent),
        "system_total_mb": vm.total / _MB,
        "system_available_mb": vm.available / _MB,
        "swap_percent": float(psutil.swap_memory().percent),
        "cgroup_limit_mb": None,
    }
    try:  # the monitor knows about container (cgroup) limits: "system" is then the container
        from ..monitoring import MemoryMonitor

        monitor: Any = MemoryMonitor()
        info = monitor.get_memory_info()
        facts.update(
            system_percent=float(info["system_percent"]),
            system_total_mb=float(info["system_total"]),
            system_available_mb=float(info["system_available"]),
            cgroup_limit_mb=info.get("cgroup_limit"),
        )
    except Exception as err:  # not built in this version: the host figures stand
        log.debug("memory monitor unavailable: %s", err)
    return facts


async def _memory(ctx: _Context) -> Outcome:
    facts = await _off_loop(_memory_facts)
    warn = _num(ctx.config, "memory_threshold_percent", 85.0)
    crit = _num(ctx.config, "memory_critical_percent", 95.0)
    pct = facts["system_percent"]
    scope = "container" if facts["cgroup_limit_mb"] is not None else "system"
    msg = (
        f"process {facts['process_rss_mb']:.0f} MB RSS; {scope} {pct:.1f}% used "
        f"({facts['system_available_mb']:.0f} MB available of {facts['system_total_mb']:.0f} MB)"
    )
    if pct >= crit:
        return facts, [
            _f(
                "memory",
                "error",
                f"{msg}: at or above the critical {crit:g}%",
                "find the biggest processes (top -o %MEM); add memory or lower cache sizes",
            )
        ]
    if pct >= warn:
        return facts, [
            _f(
                "memory",
                "warning",
                f"{msg}: above the {warn:g}% threshold",
                "watch for a leak (safla-diag doctor under `async with Diagnostics`), trim caches",
            )
        ]
    return facts, [_f("memory", "info", msg)]


async def _cpu(ctx: _Context) -> Outcome:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    # cpu_percent(None) never blocks: it measures since the previous call, made when the
    # diagnosis started; a short wait makes the window meaningful when everything else is fast.
    left = 0.1 - (time.perf_counter() - ctx.started)
    if left > 0:
        await asyncio.sleep(left)
    busy = float(psutil.cpu_percent(interval=None))
    cores = psutil.cpu_count() or 1
    try:
        load = os.getloadavg()
    except (AttributeError, OSError):
        load = (math.nan, math.nan, math.nan)
    facts = {"cores": cores, "percent": busy, "load_average": list(load)}
    msg = (
        f"{cores} core{'s' * (cores != 1)}; {busy:.0f}% busy; "
        f"load {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )
    if not math.isnan(load[1]) and load[1] / cores >= 2.0:
        return facts, [
            _f(
                "cpu",
                "warning",
                f"{msg}: the 5-minute load is {load[1] / cores:.1f}x the cores",
                "the machine is overloaded: profile the hot paths or scale out",
            )
        ]
    return facts, [_f("cpu", "info", msg)]


def _disk_facts(path: str) -> dict[str, Any]:
    target = Path(path).expanduser()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    exists = target.exists()
    return {
        "data_dir": str(target),
        "exists": exists,
        "measured_at": str(probe),
        "writable": os.access(target if exists else probe, os.W_OK),
        "total_mb": usage.total / _MB,
        "free_mb": usage.free / _MB,
        "free_percent": 100.0 * usage.free / usage.total if usage.total else 0.0,
    }


async def _disk(ctx: _Context) -> Outcome:
    configured = ctx.config.get("data_dir")
    path = str(configured) if isinstance(configured, str | os.PathLike) else "."
    facts = await _off_loop(_disk_facts, path)
    label = path if configured else "the current folder (no data_dir configured)"
    note = "" if facts["exists"] else " (not created yet)"
    free, pct = facts["free_mb"], facts["free_percent"]
    msg = f"{label}{note}: {free / 1024:.1f} GB free of {facts['total_mb'] / 1024:.1f} GB ({pct:.1f}%)"
    findings: list[Finding] = []
    if free < 200 or pct < 2:
        findings.append(
            _f("disk", "error", msg, "free space now: index saves and backups will fail")
        )
    elif free < 1024 or pct < 10:
        findings.append(
            _f(
                "disk",
                "warning",
                msg,
                "free space soon: old backups and logs are the usual suspects",
            )
        )
    else:
        findings.append(_f("disk", "info", msg))
    if not facts["writable"]:
        findings.append(
            _f("disk", "error", f"{facts['measured_at']} is not writable", "fix its permissions")
        )
    return facts, findings


def _has_targets(ctx: _Context) -> bool:
    try:
        return bool(parse_targets(ctx.config))
    except TypeError:
        return False


async def _services(ctx: _Context) -> Outcome:
    timeout = _num(ctx.config, "service_timeout", ctx.timeout)
    if timeout <= 0:
        timeout = ctx.timeout
    report = await acheck_external_services(ctx.config, timeout=timeout)
    facts = report.to_dict()
    findings = [
        _f(
            "services",
            "info" if r.ok else "error",
            f"{r.name}: {r.detail} ({r.latency_s * 1000:.0f} ms)"
            if r.ok
            else f"{r.name} ({r.target}): {r.detail} [{r.status}]",
            None if r.ok else r.hint,
        )
        for r in report.results
    ]
    return facts, findings


async def _vector(ctx: _Context) -> Outcome:
    from ..vector import VectorIndexRecovery

    data_dir = str(ctx.config["data_dir"])
    backup_dir = ctx.config.get("backup_dir") or os.path.join(data_dir, "backups")
    kwargs: dict[str, Any] = {}
    if isinstance(ctx.config.get("index_file"), str):
        kwargs["index_file"] = ctx.config["index_file"]
    dim = ctx.config.get("vector_dimension")
    if isinstance(dim, int) and not isinstance(dim, bool):
        kwargs["dimension"] = dim

    def diagnose() -> Any:
        recovery: Any = VectorIndexRecovery(data_dir, str(backup_dir), **kwargs)  # type: ignore[call-arg,unused-ignore]
        return recovery.diagnose()

    health = await _off_loop(diagnose)
    to_dict = getattr(health, "to_dict", None)
    facts = to_dict() if callable(to_dict) else {"ok": bool(getattr(health, "ok", False))}
    if getattr(health, "ok", False):
        ntotal = getattr(health, "ntotal", None)
        extra = f" ({ntotal} vectors)" if ntotal is not None else ""
        return facts, [_f("vector", "info", f"index in {data_dir} is healthy{extra}")]
    problem = getattr(health, "problem", None) or "unhealthy"
    advice = getattr(health, "advice", None)
    commands = f"safla-diag vector restore {data_dir} (or rebuild-index {data_dir} --from FILE.npy)"
    return facts, [
        _f(
            "vector",
            "error",
            f"index in {data_dir}: {problem}",
            str(advice) if advice else commands,
        )
    ]


def _queue_path(ctx: _Context) -> str | None:
    queue = ctx.config.get("mcp_task_queue")
    if not isinstance(queue, str) or "://" in queue:
        return None
    return queue


async def _mcp_queue(ctx: _Context) -> Outcome:
    path = _queue_path(ctx)
    assert path is not None
    if not await _off_loop(os.path.exists, path):
        return {"path": path, "exists": False}, [
            _f("mcp_queue", "info", f"no queue file at {path} yet: nothing has failed")
        ]
    from ..mcp_retry import MCPTaskRecovery

    async def refuse(task: Any) -> None:
        raise RuntimeError("doctor only reads the queue")

    queue: Any = MCPTaskRecovery(path, execute=refuse)  # type: ignore[call-arg,unused-ignore]
    try:
        stats_fn = getattr(queue, "stats", None)
        if callable(stats_fn):  # one read of the counts, nothing loaded into memory
            stats = await stats_fn()
            pending = int(stats.pending) + int(getattr(stats, "in_flight", 0))
            dead = int(stats.dead)
        else:
            await _maybe_await(queue.load_failed_tasks())
            pending = len(list(queue.failed_tasks))
            dead = len(list(await _maybe_await(queue.dead_letters())))
    finally:
        close = getattr(queue, "aclose", None) or getattr(queue, "close", None)
        if callable(close):
            await _maybe_await(close())
    facts = {"path": path, "pending": pending, "dead_letters": dead}
    findings = [_f("mcp_queue", "info", f"{path}: {pending} pending, {dead} dead-lettered")]
    if dead:
        findings = [
            _f(
                "mcp_queue",
                "warning",
                f"{path}: {dead} task{'s' * (dead != 1)} dead-lettered ({pending} pending)",
                f"inspect them with: safla-diag mcp queue {path}",
            )
        ]
    return facts, findings


async def _logs(ctx: _Context) -> Outcome:
    from datetime import UTC, datetime, timedelta

    from ..logs import analyze_logs

    raw = ctx.config.get("log_paths")
    paths = [raw] if isinstance(raw, str) else [str(p) for p in raw or []]
    since = datetime.now(UTC) - timedelta(hours=1)

    def scan() -> Any:
        try:
            return analyze_logs(paths, since=since)
        except TypeError:  # a `since` of another type: scan everything
            return analyze_logs(paths)

    report: Any = await _off_loop(scan)
    counts = dict(getattr(report, "counts", {}) or {})
    bad = sum(int(v) for k, v in counts.items() if k in ("ERROR", "CRITICAL"))
    facts = {"paths": paths, "counts": counts}
    skipped = [
        _f(
            "logs",
            "warning",
            f"cannot read {getattr(sk, 'path', sk)}: {getattr(sk, 'reason', '')}".rstrip(": "),
            "fix log_paths, or the file's permissions",
        )
        for sk in getattr(report, "skipped", ()) or ()
    ]
    if not bad:
        return facts, [
            _f("logs", "info", "no ERROR or CRITICAL records in the last hour"),
            *skipped,
        ]
    templates = list(getattr(report, "templates", []) or [])
    top = ""
    if templates:
        first = templates[0]
        text = (
            first.get("template") if isinstance(first, Mapping) else getattr(first, "template", "")
        )
        top = f"; most frequent: {str(text)[:120]!r}"
    return facts, [
        _f(
            "logs",
            "warning",
            f"{bad} ERROR/CRITICAL record{'s' * (bad != 1)} in the last hour{top}",
            "safla-diag logs scan " + " ".join(paths),
        ),
        *skipped,
    ]


async def _monitors(ctx: _Context) -> Outcome:
    mon = ctx.monitors
    assert mon is not None
    facts: dict[str, Any] = {"running": mon.running, "errors": list(mon.errors)}
    findings: list[Finding] = [
        _f("monitors", "warning", f"monitor unavailable: {e}") for e in mon.errors
    ]
    if mon.pressure:
        findings.append(
            _f(
                "monitors",
                "error",
                f"memory pressure: {mon.pressure}",
                "memory stayed critical after garbage collection: add memory or shed load",
            )
        )
    if mon.leaks is not None:
        analysis = await _off_loop(mon.leaks.analyze)
        leaking = bool(getattr(analysis, "leaking", False))
        slope = getattr(analysis, "slope_mb_per_hour", None)
        samples = getattr(analysis, "samples", None)
        facts["leak"] = {"leaking": leaking, "slope_mb_per_hour": slope, "samples": samples}
        rate = f"{slope:+.1f} MB/h" if isinstance(slope, int | float) else "growth"
        if leaking:
            findings.append(
                _f(
                    "monitors",
                    "warning",
                    f"memory is leaking: {rate} over {samples} samples",
                    "profile allocations (MemoryProfiler) and look at the top consumers",
                )
            )
        else:
            findings.append(_f("monitors", "info", f"no leak trend ({rate}, {samples} samples)"))
    if not findings:
        findings.append(_f("monitors", "info", "monitors running"))
    return facts, findings


@attrs.frozen
class _Section:
    name: str
    fn: SectionFn
    applies: Callable[[_Context], bool] = lambda ctx: True


SECTIONS: tuple[_Section, ...] = (
    _Section("platform", _platform),
    _Section("configuration", _configuration),
    _Section("dependencies", _dependencies),
    _Section("memory", _memory),
    _Section("cpu", _cpu),
    _Section("disk", _disk),
    _Section("services", _services, _has_targets),
    _Section("vector", _vector, lambda ctx: isinstance(ctx.config.get("data_dir"), str)),
    _Section("mcp_queue", _mcp_queue, lambda ctx: _queue_path(ctx) is not None),
    _Section("logs", _logs, lambda ctx: bool(ctx.config.get("log_paths"))),
    _Section("monitors", _monitors, lambda ctx: ctx.monitors is not None),
)
"""Every section, in report order."""

SECTION_NAMES = tuple(s.name for s in SECTIONS)


async def _run_section(section: _Section, ctx: _Context, budget: float) -> SectionResult:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(budget):
            facts, findings = await section.fn(ctx)
    except TimeoutError:
        facts, findings = (
            {},
            [_f(section.name, "warning", f"check did not finish within {budget:g} s")],
        )
    except NotImplementedError:
        facts, findings = (
            {},
            [_f(section.name, "info", "check not available in this version of safla-diag")],
        )
    except Exception as err:  # one broken layer must not break the report
        log.debug("section %s failed", section.name, exc_info=True)
        facts, findings = (
            {},
            [
                _f(
                    section.name,
                    "warning",
                    f"could not check: {err.__class__.__name__}: {redact(str(err))[:200]}",
                )
            ],
        )
    return SectionResult(
        name=section.name,
        findings=tuple(findings),
        facts=facts,
        elapsed_s=time.perf_counter() - start,
    )


# --- monitors -------------------------------------------------------------------------------


@attrs.define
class _Monitors:
    """The monitors ``async with Diagnostics(...)`` runs in the host's loop."""

    interval: float
    threshold: float
    critical: float
    leaks: Any = None
    memory: Any = None
    tasks: list[asyncio.Task[Any]] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    pressure: str | None = None
    running: bool = False

    def start(self) -> None:
        from ..monitoring import MemoryLeakDetector, MemoryMonitor

        try:
            self.leaks = MemoryLeakDetector(check_interval=self.interval)  # type: ignore[call-arg,unused-ignore]
            task = self.leaks.start_monitoring()
            if isinstance(task, asyncio.Task):
                self.tasks.append(task)
        except Exception as err:  # a layer not built yet, or a bad setting
            self.leaks = None
            self.errors.append(f"leak detector: {err.__class__.__name__}: {redact(str(err))[:120]}")
        try:
            self.memory = MemoryMonitor(
                threshold_percent=self.threshold, critical_percent=self.critical
            )  # type: ignore[call-arg,unused-ignore]
            self.tasks.append(asyncio.get_running_loop().create_task(self._watch_memory()))
        except Exception as err:
            self.memory = None
            self.errors.append(
                f"memory monitor: {err.__class__.__name__}: {redact(str(err))[:120]}"
            )
        self.running = True

    async def _watch_memory(self) -> None:
        from .._errors import MemoryPressureError

        while True:
            try:
                await _off_loop(self.memory.check_memory_usage)
                self.pressure = None
            except MemoryPressureError as err:
                self.pressure = str(err)
            except Exception as err:
                self.errors.append(
                    f"memory monitor: {err.__class__.__name__}: {redact(str(err))[:120]}"
                )
                return
            # a cheap check: more often than the leak detector's interval, but not busily
            await asyncio.sleep(max(1.0, min(self.interval, 30.0)))

    async def stop(self) -> None:
        self.running = False
        if self.leaks is not None:
            stop = getattr(self.leaks, "stop_monitoring", None)
            if callable(stop):
                try:
                    await _maybe_await(stop())
                except Exception as err:
                    log.debug("stopping the leak detector: %s", err)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


# --- the facade -----------------------------------------------------------------------------


def _load(config: object) -> tuple[dict[str, Any], bool, str | None]:
    if config is None:
        # SAFLA_* variables override the defaults; SAFLA_CONFIG names a file, which is then
        # a configuration like one given explicitly, and is validated.
        named = os.environ.get("SAFLA_CONFIG") or None
        try:
            loaded = load_configuration(None)
        except NotImplementedError:  # the configuration layer is not built in this version
            loaded = {}
        return dict(loaded), named is not None, redact(named) if named else None
    if isinstance(config, str | os.PathLike):
        return dict(load_configuration(config)), True, redact(os.fspath(config))
    if isinstance(config, Mapping):
        return dict(config), True, "mapping"
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        try:
            out = to_dict(redact=False)
        except TypeError:
            out = to_dict()
        if isinstance(out, Mapping):
            return dict(out), True, type(config).__name__
    raise TypeError(
        f"config must be None, a path, a mapping or a SaflaConfig, not {type(config).__name__}"
    )


class Diagnostics:
    """
    The whole diagnosis behind ``safla-diag doctor``, for scripts, services and notebooks.

    ``doctor()`` (or ``await adoctor()``) runs every section that applies: platform,
    configuration (validated when one is given), dependencies, memory, CPU, disk where the data
    folder lives, external services (when configured), vector index health (when ``data_dir`` is
    set), MCP queue state (when ``mcp_task_queue`` is a file), recent log errors (when
    ``log_paths`` is set), and, inside ``async with``, the memory and leak monitors.

    ``async with Diagnostics(cfg) as diag:`` starts the monitors as tasks in the host's running
    loop and stops them on exit; it can be entered only once.

    Args:
        config: None (embedded defaults and ``SAFLA_*`` variables), a ``.toml``/``.json`` path,
            a mapping, or a SaflaConfig.
        timeout: Seconds for service probes when the configuration has no ``service_timeout``.
        sections: Run only these sections (names as in the report).

    Raises:
        ConfigurationError: When a configuration file cannot be read or parsed.
        TypeError: When ``config`` is of an unsupported type.
        ValueError: When ``sections`` names an unknown section.
    """

    def __init__(
        self,
        config: object = None,
        *,
        timeout: float = 5.0,
        sections: Iterable[str] | None = None,
    ) -> None:
        self._config, self._given, self._source = _load(config)
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        wanted = None if sections is None else list(sections)
        if wanted is not None:
            unknown = sorted(set(wanted) - set(SECTION_NAMES))
            if unknown:
                raise ValueError(f"unknown sections {unknown}; choose from {list(SECTION_NAMES)}")
        self._sections = wanted
        self._monitors: _Monitors | None = None
        self._state = "new"

    def __repr__(self) -> str:
        return f"<Diagnostics source={self._source!r} state={self._state}>"

    @property
    def config(self) -> dict[str, Any]:
        """The configuration in use, redacted."""
        out = redact_value(self._config)
        assert isinstance(out, dict)
        return out

    async def __aenter__(self) -> Diagnostics:
        if self._state != "new":
            raise RuntimeError("a Diagnostics can be entered only once; make a new one")
        self._state = "running"
        cfg = self._config
        self._monitors = _Monitors(
            interval=_num(cfg, "leak_check_interval", 300.0),
            threshold=_num(cfg, "memory_threshold_percent", 85.0),
            critical=_num(cfg, "memory_critical_percent", 95.0),
        )
        self._monitors.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._state = "closed"
        if self._monitors is not None:
            await self._monitors.stop()

    async def adoctor(self) -> DiagnosisReport:
        """
        Run the diagnosis in the caller's loop.

        Returns:
            The report; sections that fail become findings, nothing is raised for them.
        """
        import psutil  # type: ignore[import-untyped,unused-ignore]

        start = time.perf_counter()
        psutil.cpu_percent(interval=None)  # the CPU section measures from here
        ctx = _Context(
            config=dict(self._config),
            given=self._given,
            source=self._source,
            timeout=self.timeout,
            monitors=self._monitors if self._state == "running" else None,
            started=start,
        )
        chosen = [
            s
            for s in SECTIONS
            if (self._sections is None or s.name in self._sections) and s.applies(ctx)
        ]
        service_budget = _num(self._config, "service_timeout", self.timeout)
        budget = max(10.0, service_budget + 2.0)
        results = await asyncio.gather(*(_run_section(s, ctx, budget) for s in chosen))
        report = DiagnosisReport(
            sections=tuple(results),
            elapsed_s=time.perf_counter() - start,
            config_source=self._source,
        )
        log.info("doctor: %s in %.2f s", report._summary(), report.elapsed_s)
        return report

    def doctor(self) -> DiagnosisReport:
        """
        Run the diagnosis from synchronous code (a script, the command line).

        It runs its own event loop, so it must not be called where one is running (a
        service, Jupyter): there, ``await adoctor()``.

        Returns:
            The report.

        Raises:
            RuntimeError: When called from inside a running event loop.
        """
        return run_sync(self.adoctor, "Diagnostics.doctor", "Diagnostics.adoctor")
