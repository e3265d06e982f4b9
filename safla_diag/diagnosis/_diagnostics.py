"""
Diagnostics and DiagnosisReport: the facade behind ``safla-diag doctor``.

A diagnosis is a set of independent sections (platform, configuration, dependencies, memory, cpu,
disk, services, vector index, MCP queue, logs, monitors). Each is a small coroutine that returns
facts and findings; they run concurrently, each under a time budget, and a section whose check
raises (a missing optional package, an unreadable file, a bug) becomes a finding of its own
instead of breaking the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
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
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from .._aio import off_loop, run_sync
from .._redact import describe_error, redact, redact_value
from ..checks import acheck_external_services, check_dependencies, parse_targets
from ..config import SaflaConfig, load_configuration, validate_configuration

if TYPE_CHECKING:
    from ..monitoring import LeakAnalysis, MemoryLeakDetector, MemoryMonitor
    from ..vector import BackupInfo, IndexHealth

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
        hint: The next step, when there is one, redacted.
    """

    section: str
    severity: Severity
    message: str = attrs.field(converter=redact)
    hint: str | None = attrs.field(default=None, converter=attrs.converters.optional(redact))

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


def _f(section: str, severity: Severity, message: str, hint: str | None = None) -> Finding:
    return Finding(section=section, severity=severity, message=message, hint=hint)


def _num(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


def _str(cfg: Mapping[str, Any], key: str) -> str | None:
    """A configured path or URL as a str (a PathLike becomes one); None when absent or odd."""
    value = cfg.get(key)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return value if isinstance(value, str) and value.strip() else None


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


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
    issues = await off_loop(validate_configuration, ctx.config)
    where = ctx.source or "the configuration"
    facts = {"source": ctx.source, "keys": sorted(ctx.config), "issues": len(issues)}
    if not issues:
        return facts, [_f("configuration", "info", f"{where} is valid")]
    return facts, [
        _f("configuration", "error", str(issue), f"fix it in {where}") for issue in issues
    ]


async def _dependencies(ctx: _Context) -> Outcome:
    report = await off_loop(check_dependencies)
    facts = report.to_dict()
    if report.ok:
        versions = ", ".join(f"{p.name} {p.version}" for p in report)
        return facts, [
            _f("dependencies", "info", versions or "all runtime dependencies importable")
        ]
    hint = report.install_hint or None
    return facts, [
        _f(
            "dependencies",
            "error",
            f"{p.name}: {p.status}" + (f" ({p.detail})" if p.detail else ""),
            hint,
        )
        for p in report
        if not p.ok
    ]


def _memory_facts() -> dict[str, Any]:
    import psutil

    from ..monitoring import MemoryMonitor

    # The monitor knows container (cgroup) limits: "system" is then the container.
    info = MemoryMonitor().get_memory_info()
    return {
        "process_rss_mb": info["process_rss"],
        "process_vms_mb": info["process_vms"],
        "system_percent": info["system_percent"],
        "system_total_mb": info["system_total"],
        "system_available_mb": info["system_available"],
        "host_total_mb": info["host_total"],
        "host_percent": info["host_percent"],
        "swap_percent": float(psutil.swap_memory().percent),
        "cgroup_limit_mb": info["cgroup_limit"],
        "cgroup_version": info["cgroup_version"],
    }


async def _memory(ctx: _Context) -> Outcome:
    facts = await off_loop(_memory_facts)
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
                "watch for a leak (a report made inside `async with Diagnostics(...)`), "
                "trim caches",
            )
        ]
    return facts, [_f("memory", "info", msg)]


async def _cpu(ctx: _Context) -> Outcome:
    import psutil

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
        f"{_plural(cores, 'core')}; {busy:.0f}% busy; "
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
    configured = _str(ctx.config, "data_dir")
    path = configured or "."
    facts = await off_loop(_disk_facts, path)
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


# The keys service targets come from. Only these go to the probes: a configuration of other keys
# alone ({"data_dir": ...}) is not a {name: url} mapping of services.
_TARGET_KEYS = ("database_url", "redis_url", "mcp_servers", "services", "mcp_task_queue")


def _targets(ctx: _Context) -> dict[str, Any]:
    return {k: ctx.config[k] for k in _TARGET_KEYS if ctx.config.get(k) is not None}


def _has_targets(ctx: _Context) -> bool:
    targets = _targets(ctx)
    return bool(targets) and bool(parse_targets(targets))


async def _services(ctx: _Context) -> Outcome:
    timeout = _num(ctx.config, "service_timeout", ctx.timeout)
    if timeout <= 0:
        timeout = ctx.timeout
    report = await acheck_external_services(_targets(ctx), timeout=timeout)
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


@attrs.frozen
class _VectorState:
    health: IndexHealth
    backups: list[BackupInfo]
    backup_dir: str


def _vector_state(cfg: Mapping[str, Any], data_dir: str) -> _VectorState:
    from ..vector import VectorIndexRecovery

    backup_dir = _str(cfg, "backup_dir") or os.path.join(data_dir, "backups")
    dim = cfg.get("vector_dimension")
    recovery = VectorIndexRecovery(
        data_dir,
        backup_dir,
        index_file=_str(cfg, "index_file") or "vector_index.faiss",
        dimension=dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None,
    )
    # The cheap check: size and checksum against the manifest; a file without a manifest is
    # loaded in an isolated child, never in this process.
    health = recovery.diagnose()
    backups = recovery.list_backups(verify=False) if os.path.isdir(backup_dir) else []
    return _VectorState(health=health, backups=backups, backup_dir=backup_dir)


async def _vector(ctx: _Context) -> Outcome:
    data_dir = _str(ctx.config, "data_dir")
    assert data_dir is not None
    state = await off_loop(_vector_state, ctx.config, data_dir)
    health, backups = state.health, state.backups
    usable = [b for b in backups if b.ok]
    facts = {
        **health.to_dict(),
        "backup_dir": state.backup_dir,
        "backups": len(backups),
        "newest_backup": usable[0].name if usable else None,
    }
    where = f"index in {data_dir}"
    if health.ok:
        shape = ", ".join(
            part
            for part in (
                f"{health.ntotal} vectors" if health.ntotal is not None else "",
                f"dimension {health.dimension}" if health.dimension is not None else "",
                health.index_class or "",
                f"generation {health.generation}" if health.generation is not None else "",
            )
            if part
        )
        checksum = {True: "checksum verified", False: "checksum differs", None: "no manifest"}
        findings = [
            _f(
                "vector",
                "info",
                f"{where} is healthy ({shape}; {checksum[health.checksum_ok]}; "
                f"{_plural(len(usable), 'usable backup')})",
            )
        ]
        findings += [_f("vector", "info", note) for note in health.notes]
        return facts, findings
    flag = _vector_flags(ctx.config, data_dir, state.backup_dir)
    # The layer's advice names the commands with a DIR placeholder: make them runnable here.
    advice = (health.advice or "restore it from a backup, or rebuild it").replace(
        " DIR", f" {data_dir}{flag}"
    )
    if usable:
        advice += f"; newest usable backup: {usable[0].name}"
    elif "restore" in advice:
        advice += f"; there is no usable backup in {state.backup_dir}, so rebuild"
    return facts, [_f("vector", "error", f"{where}: {health.problem}", advice)]


def _vector_flags(cfg: Mapping[str, Any], data_dir: str, backup_dir: str) -> str:
    # What the CLI needs beyond DIR: its defaults are DIR/backups and vector_index.faiss.
    flags = ""
    if os.path.normpath(backup_dir) != os.path.normpath(os.path.join(data_dir, "backups")):
        flags += f" --backup-dir {backup_dir}"
    index_file = _str(cfg, "index_file")
    if index_file is not None and index_file != "vector_index.faiss":
        flags += f" --index-file {index_file}"
    return flags


def _queue_location(ctx: _Context) -> str | None:
    return _str(ctx.config, "mcp_task_queue")


# A task due this long ago and still waiting means that no worker is retrying the queue.
_OVERDUE_S = 600.0


async def _mcp_queue(ctx: _Context) -> Outcome:
    from .._errors import DependencyError, QueueStoreError
    from ..mcp_retry import is_postgres_url, store_for

    location = _queue_location(ctx)
    assert location is not None
    shared = is_postgres_url(location)
    if "://" in location and not shared:
        return {"location": redact(location)}, [
            _f(
                "mcp_queue",
                "error",
                f"mcp_task_queue {location}: neither a queue file nor a postgresql:// URL",
                "give a file path (mcp_tasks.db) or postgresql://user@host/db[?schema=NAME]",
            )
        ]
    if not shared and not await off_loop(os.path.exists, location):
        return {"location": location, "exists": False}, [
            _f("mcp_queue", "info", f"no queue file at {location} yet: nothing has failed")
        ]
    try:
        # Read-only: never creates, converts or migrates anything (a file, a schema).
        store = store_for(location, readonly=True)
    except ValueError as err:  # a schema name that is not a plain identifier
        return {"location": redact(location)}, [
            _f("mcp_queue", "error", f"mcp_task_queue: {err}", "fix the URL's schema parameter")
        ]
    shown = store.location
    inspect_cmd = f"safla-diag mcp queue {shown} --show 10"
    try:
        now = time.time()
        stats = await store.stats(now=now)
    except DependencyError as err:  # psycopg, for a PostgreSQL queue
        return {"location": shown}, [_f("mcp_queue", "warning", f"{shown}: {err}")]
    except QueueStoreError as err:
        if shared and "no MCP task queue" in str(err):
            return {"location": shown, "exists": False}, [
                _f("mcp_queue", "info", f"no queue in {shown} yet: nothing has failed")
            ]
        if shared:
            hint = "check the database (see the services section) and the schema in the URL"
        else:
            hint = (
                "move the file aside and let the service create a new queue; "
                f"inspect it with: {inspect_cmd}"
            )
        return {"location": shown, "exists": True}, [_f("mcp_queue", "error", str(err), hint)]
    finally:
        await store.close()
    facts = stats.to_dict(now=now)
    waiting = stats.pending + stats.in_flight
    oldest = facts["oldest_age_s"]
    age = f", oldest saved {_duration(oldest)} ago" if oldest is not None else ""
    summary = f"{shown}: {stats.pending} pending, {stats.in_flight} in flight{age}"
    findings: list[Finding] = []
    if stats.dead:
        findings.append(
            _f(
                "mcp_queue",
                "warning",
                f"{_plural(stats.dead, 'task')} dead-lettered after their retries failed; {summary}",
                f"read their last errors: {inspect_cmd}",
            )
        )
    overdue = None if stats.next_due_at is None else now - stats.next_due_at
    if stats.pending and overdue is not None and overdue > _OVERDUE_S:
        findings.append(
            _f(
                "mcp_queue",
                "warning",
                f"a pending task has been due for {_duration(overdue)}: "
                "no worker seems to be retrying this queue",
                "check that the service runs retry_failed_tasks() (and that its MCP servers "
                f"are up); {inspect_cmd}",
            )
        )
    if not findings:
        findings.append(_f("mcp_queue", "info", f"{summary}, {stats.dead} dead-lettered"))
    facts["waiting"] = waiting
    return facts, findings


_LOG_WINDOW_S = 3600.0


async def _logs(ctx: _Context) -> Outcome:
    from datetime import timedelta

    from ..logs import analyze_logs

    raw = ctx.config.get("log_paths")
    listed = [raw] if isinstance(raw, str | os.PathLike) else list(raw or [])
    paths = [os.fspath(p) for p in listed if isinstance(p, str | os.PathLike)]
    # "-" is standard input for `logs scan`; the doctor must not sit waiting on it.
    stdin = [p for p in paths if p == "-"]
    paths = [p for p in paths if p != "-"]
    report = await off_loop(
        functools.partial(analyze_logs, since=timedelta(seconds=_LOG_WINDOW_S), top=3), paths
    )
    bad = sum(n for level, n in report.counts.items() if level in ("ERROR", "CRITICAL"))
    facts = {
        "paths": paths,
        "files": list(report.files),
        "counts": dict(report.counts),
        "templates": [t.to_dict() for t in report.templates],
        "skipped": [s.to_dict() for s in report.skipped],
        "since": report.since.isoformat() if report.since else None,
    }
    notes = [
        _f(
            "logs",
            "info" if sk.partial else "warning",
            f"{'read only in part' if sk.partial else 'cannot read'} {sk.path}: {sk.reason}",
            None if sk.partial else "fix log_paths, or the file's permissions",
        )
        for sk in report.skipped
    ] + [_f("logs", "warning", "log_paths lists '-' (standard input): not scanned") for _ in stdin]
    scan = "safla-diag logs scan " + " ".join(paths) + " --since 1h"
    if not bad:
        return facts, [
            _f(
                "logs",
                "info",
                f"no ERROR or CRITICAL records in the last hour "
                f"({_plural(len(report.files), 'file')}, {_plural(report.lines, 'line')})",
            ),
            *notes,
        ]
    top = ""
    if report.templates:
        t = report.templates[0]
        last = f", last at {t.last_seen:%H:%M:%S}" if t.last_seen is not None else ""
        top = f"; most frequent ({t.count}x {t.level}{last}): {t.template[:120]!r}"
    return facts, [
        _f(
            "logs",
            "warning",
            f"{bad} ERROR/CRITICAL record{'s' * (bad != 1)} in the last hour{top}",
            scan,
        ),
        *notes,
    ]


async def _monitors(ctx: _Context) -> Outcome:
    mon = ctx.monitors
    assert mon is not None
    if mon.memory is not None and not mon.checked.is_set():
        # The first check runs as the block starts; a report made right away waits for it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, ctx.timeout)):
                await mon.checked.wait()
    facts: dict[str, Any] = {"running": mon.running, "errors": list(mon.errors)}
    findings = [_f("monitors", "warning", f"monitor unavailable: {e}") for e in mon.errors]
    memory = mon.memory
    if memory is not None:
        pct = memory.last_percent
        facts["memory"] = {
            "level": memory.level,
            "percent": pct,
            "threshold_percent": memory.threshold_percent,
            "critical_percent": memory.critical_percent,
            "gc_runs": memory.gc_runs,
            "checks": mon.checks,
        }
        shown = "not measured yet" if pct is None else f"{pct:.1f}%"
        if mon.pressure is not None:
            findings.append(
                _f(
                    "monitors",
                    "error",
                    f"memory pressure: {mon.pressure} (after {_plural(memory.gc_runs, 'garbage collection')})",
                    "memory stayed critical after garbage collection: add memory or shed load",
                )
            )
        elif memory.level == "warning":
            findings.append(
                _f(
                    "monitors",
                    "warning",
                    f"this process uses {shown} of the memory it can use, above the "
                    f"{memory.threshold_percent:g}% threshold",
                    "look for what grows: MemoryProfiler snapshots, caches without a bound",
                )
            )
        else:
            findings.append(
                _f(
                    "monitors",
                    "info",
                    f"memory monitor: this process uses {shown} of the memory it can use "
                    f"(warning above {memory.threshold_percent:g}%, "
                    f"critical above {memory.critical_percent:g}%)",
                )
            )
    leaks = mon.leaks
    if leaks is not None:
        analysis = leaks.analyze()  # on the loop: run() feeds the same detector here
        facts["leak"] = analysis.to_dict()
        findings.append(_leak_finding(analysis))
    if not findings:
        findings.append(_f("monitors", "info", "monitors running"))
    return facts, findings


def _leak_finding(a: LeakAnalysis) -> Finding:
    if not a.leaking:
        trend = f"{a.slope_mb_per_hour:+.1f} MB/h over {a.scale}, " if a.scale else ""
        return _f(
            "monitors",
            "info",
            f"no leak trend: {a.reason} ({trend}{_plural(a.samples, 'sample')})",
        )
    msg = (
        f"memory is leaking: {a.slope_mb_per_hour:+.1f} MB/h over {a.scale} "
        f"(confidence {a.confidence:.3f}, {_plural(a.samples, 'sample')})"
    )
    ttl = a.time_to_limit_s
    if ttl is not None and a.memory_limit_mb is not None:
        msg += f"; {_duration(ttl)} to the {a.memory_limit_mb:.0f} MB limit at this rate"
    hint = "find what grows: MemoryProfiler snapshots (or tracemalloc) compared over time"
    if a.top_consumers:
        top = a.top_consumers[0]
        hint = (
            f"the allocation site that grew most: {top['file']} (+{top['size_diff'] / _MB:.1f} MB)"
        )
    # Within the hour, the limit is an outage, not a trend to watch.
    severity: Severity = "error" if ttl is not None and ttl < 3600.0 else "warning"
    return _f("monitors", severity, msg, hint)


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
    _Section("vector", _vector, lambda ctx: _str(ctx.config, "data_dir") is not None),
    _Section("mcp_queue", _mcp_queue, lambda ctx: _queue_location(ctx) is not None),
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
    except Exception as err:  # one broken check must not break the report
        log.debug("section %s failed: %s", section.name, describe_error(err))
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
    leaks: MemoryLeakDetector | None = None
    memory: MemoryMonitor | None = None
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    pressure: str | None = None
    running: bool = False
    checks: int = 0
    checked: asyncio.Event = attrs.field(factory=asyncio.Event)

    def start(self) -> None:
        from ..monitoring import MemoryLeakDetector, MemoryMonitor

        try:
            # check_interval: while a leak lasts, how often the detector warns again.
            self.leaks = MemoryLeakDetector(check_interval=self.interval)
            self.tasks.append(self.leaks.start_monitoring())
        except ValueError as err:  # a setting the configuration section reports too
            self.leaks = None
            self.errors.append(f"leak detector: {redact(str(err))[:160]}")
        try:
            self.memory = MemoryMonitor(
                threshold_percent=self.threshold, critical_percent=self.critical
            )
        except ValueError as err:
            self.errors.append(f"memory monitor: {redact(str(err))[:160]}")
        else:
            task = asyncio.get_running_loop().create_task(
                self._watch_memory(self.memory), name="safla_diag.Diagnostics.memory"
            )
            self.tasks.append(task)
        self.running = True

    async def _watch_memory(self, memory: MemoryMonitor) -> None:
        from .._errors import MemoryPressureError

        try:
            while True:
                try:
                    # Off the loop: at the critical level the check runs a full gc.collect().
                    await off_loop(memory.check_memory_usage)
                    self.pressure = None
                except MemoryPressureError as err:
                    self.pressure = str(err)
                except Exception as err:  # psutil trouble: report it, do not take the host down
                    self.errors.append(
                        f"memory monitor: {err.__class__.__name__}: {redact(str(err))[:120]}"
                    )
                    return
                self.checks += 1
                self.checked.set()
                # Cheap: more often than the leak detector reports, never busily.
                await asyncio.sleep(max(1.0, min(self.interval, 30.0)))
        finally:
            self.checked.set()

    async def stop(self) -> None:
        self.running = False
        if self.leaks is not None:
            self.leaks.stop_monitoring()
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
        return dict(load_configuration(None)), named is not None, redact(named) if named else None
    if isinstance(config, str | os.PathLike):
        return dict(load_configuration(config)), True, redact(os.fspath(config))
    if isinstance(config, SaflaConfig):
        return config.to_dict(redact=False), True, "SaflaConfig"
    if isinstance(config, Mapping):
        return dict(config), True, "mapping"
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
    ``log_paths`` is set), and, inside ``async with``, the memory monitor and the leak detector.

    ``async with Diagnostics(cfg) as diag:`` starts a MemoryMonitor (checked every few seconds,
    off the loop) and a MemoryLeakDetector (``start_monitoring()``) as tasks in the host's
    running loop, and stops them on exit, also when the block is cancelled. It can be entered
    only once.

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
        config: str | os.PathLike[str] | Mapping[str, Any] | SaflaConfig | None = None,
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
        self._state: Literal["new", "running", "closed"] = "new"

    def __repr__(self) -> str:
        return f"<Diagnostics source={self._source!r} state={self._state}>"

    @property
    def config(self) -> dict[str, Any]:
        """The configuration in use, redacted."""
        out = redact_value(self._config)
        assert isinstance(out, dict)
        return out

    @property
    def memory_monitor(self) -> MemoryMonitor | None:
        """The MemoryMonitor running inside ``async with``; None outside it."""
        mon = self._monitors
        return mon.memory if mon is not None and self._state == "running" else None

    @property
    def leak_detector(self) -> MemoryLeakDetector | None:
        """The MemoryLeakDetector running inside ``async with``; None outside it."""
        mon = self._monitors
        return mon.leaks if mon is not None and self._state == "running" else None

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
        try:
            # One tick: the detector's task takes its first sample, so the monitors are running
            # (``leak_detector.monitoring``) when the block's body starts.
            await asyncio.sleep(0)
        except BaseException:  # cancelled while entering: __aexit__ will not run
            self._state = "closed"
            await self._monitors.stop()
            raise
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
        import psutil

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
