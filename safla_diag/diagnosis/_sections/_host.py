"""The host sections: platform, dependencies, memory, CPU and disk."""

from __future__ import annotations

import asyncio
import math
import os
import platform as _platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..._aio import off_loop
from ...checks import check_dependencies
from .._context import Context, Outcome, plural
from .._report import Finding, finding

__all__ = ["cpu", "dependencies", "disk", "memory", "platform"]

_MB = 1024 * 1024


async def platform(ctx: Context) -> Outcome:
    """Python, the platform and this process."""
    facts = {
        "python": _platform.python_version(),
        "implementation": _platform.python_implementation(),
        "platform": _platform.platform(),
        "machine": _platform.machine(),
        "executable": sys.executable,
        "pid": os.getpid(),
    }
    msg = (
        f"Python {facts['python']} ({facts['implementation']}) on {facts['platform']}, "
        f"pid {facts['pid']}"
    )
    return facts, [finding("platform", "info", msg)]


async def dependencies(ctx: Context) -> Outcome:
    """The runtime dependencies: installed, importable, recent enough."""
    report = await off_loop(check_dependencies)
    facts = report.to_dict()
    if report.ok:
        versions = ", ".join(f"{p.name} {p.version}" for p in report)
        return facts, [
            finding("dependencies", "info", versions or "all runtime dependencies importable")
        ]
    hint = report.install_hint or None
    return facts, [
        finding(
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

    from ...monitoring import MemoryMonitor

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


async def memory(ctx: Context) -> Outcome:
    """System (or container) memory against the configured thresholds."""
    facts = await off_loop(_memory_facts)
    warn = ctx.settings.memory_threshold_percent
    crit = ctx.settings.memory_critical_percent
    pct = facts["system_percent"]
    scope = "container" if facts["cgroup_limit_mb"] is not None else "system"
    msg = (
        f"process {facts['process_rss_mb']:.0f} MB RSS; {scope} {pct:.1f}% used "
        f"({facts['system_available_mb']:.0f} MB available of {facts['system_total_mb']:.0f} MB)"
    )
    if pct >= crit:
        return facts, [
            finding(
                "memory",
                "error",
                f"{msg}: at or above the critical {crit:g}%",
                "find the biggest processes (top -o %MEM); add memory or lower cache sizes",
            )
        ]
    if pct >= warn:
        return facts, [
            finding(
                "memory",
                "warning",
                f"{msg}: above the {warn:g}% threshold",
                "watch for a leak (a report made inside `async with Diagnostics(...)`), "
                "trim caches",
            )
        ]
    return facts, [finding("memory", "info", msg)]


#: CPU busy (all cores, over the check) from which the cpu line is a warning. Short spikes reach
#: it; a machine that stays there has no headroom for the service's own bursts.
CPU_BUSY_WARN_PERCENT = 90.0
#: The 5-minute load average, per core, from which the cpu line is a warning.
CPU_LOAD_WARN_PER_CORE = 2.0


def cpu_findings(busy: float, cores: int, load: tuple[float, float, float]) -> list[Finding]:
    """
    The cpu line for a reading: a warning when busy or loaded, else information.

    Args:
        busy: Percent of all cores busy during the check (0-100).
        cores: Logical cores.
        load: The 1, 5 and 15-minute load averages (NaN where the platform has none).
    """
    msg = (
        f"{plural(cores, 'core')}; {busy:.0f}% busy; "
        f"load {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )
    per_core = load[1] / cores if not math.isnan(load[1]) else math.nan
    if not math.isnan(per_core) and per_core >= CPU_LOAD_WARN_PER_CORE:
        return [
            finding(
                "cpu",
                "warning",
                f"{msg}: the 5-minute load is {per_core:.1f}x the cores",
                "the machine is overloaded: profile the hot paths or scale out",
            )
        ]
    if busy >= CPU_BUSY_WARN_PERCENT:
        return [
            finding(
                "cpu",
                "warning",
                f"{msg}: at or above {CPU_BUSY_WARN_PERCENT:g}% busy",
                "see what uses it (top -o %CPU); if it is this service, profile it "
                "with CPUProfiler (see the profiling page)",
            )
        ]
    return [finding("cpu", "info", msg)]


async def cpu(ctx: Context) -> Outcome:
    """CPU use since the diagnosis started, and the load average against the cores."""
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
    return facts, cpu_findings(busy, cores, load)


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


async def disk(ctx: Context) -> Outcome:
    """Free space and write access where the data folder lives."""
    configured = ctx.settings.data_dir
    path = configured or "."
    facts = await off_loop(_disk_facts, path)
    label = path if configured else "the current folder (no data_dir configured)"
    note = "" if facts["exists"] else " (not created yet)"
    free, pct = facts["free_mb"], facts["free_percent"]
    msg = f"{label}{note}: {free / 1024:.1f} GB free of {facts['total_mb'] / 1024:.1f} GB ({pct:.1f}%)"
    findings: list[Finding] = []
    if free < 200 or pct < 2:
        findings.append(
            finding("disk", "error", msg, "free space now: index saves and backups will fail")
        )
    elif free < 1024 or pct < 10:
        findings.append(
            finding(
                "disk",
                "warning",
                msg,
                "free space soon: old backups and logs are the usual suspects",
            )
        )
    else:
        findings.append(finding("disk", "info", msg))
    if not facts["writable"]:
        findings.append(
            finding(
                "disk", "error", f"{facts['measured_at']} is not writable", "fix its permissions"
            )
        )
    return facts, findings
