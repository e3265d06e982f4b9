"""The monitors section: what the memory monitor and the leak detector saw inside ``async with``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from .._context import Context, Outcome, duration, plural
from .._report import Finding, Severity, finding

if TYPE_CHECKING:
    from ...monitoring import LeakAnalysis, MemoryMonitor
    from .._monitors import Monitors

__all__ = ["applies", "monitors"]

_MB = 1024 * 1024


def applies(ctx: Context) -> bool:
    """The section runs inside ``async with Diagnostics(...)``."""
    return ctx.monitors is not None


async def monitors(ctx: Context) -> Outcome:
    """The monitors' state: memory level and pressure, and the leak analysis."""
    mon = ctx.monitors
    assert mon is not None
    if mon.memory is not None and not mon.checked.is_set():
        # The first check runs as the block starts; a report made right away waits for it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, ctx.timeout)):
                await mon.checked.wait()
    facts: dict[str, Any] = {"running": mon.running, "errors": list(mon.errors)}
    findings = [finding("monitors", "warning", f"monitor unavailable: {e}") for e in mon.errors]
    if mon.memory is not None:
        facts["memory"] = {
            "level": mon.memory.level,
            "percent": mon.memory.last_percent,
            "threshold_percent": mon.memory.threshold_percent,
            "critical_percent": mon.memory.critical_percent,
            "gc_runs": mon.memory.gc_runs,
            "checks": mon.checks,
        }
        findings.append(_memory_finding(mon, mon.memory))
    if mon.leaks is not None:
        analysis = mon.leaks.analyze()  # on the loop: run() feeds the same detector here
        facts["leak"] = analysis.to_dict()
        findings.append(_leak_finding(analysis))
    if not findings:
        findings.append(finding("monitors", "info", "monitors running"))
    return facts, findings


def _memory_finding(mon: Monitors, memory: MemoryMonitor) -> Finding:
    pct = memory.last_percent
    shown = "not measured yet" if pct is None else f"{pct:.1f}%"
    if mon.pressure is not None:
        return finding(
            "monitors",
            "error",
            f"memory pressure: {mon.pressure} "
            f"(after {plural(memory.gc_runs, 'garbage collection')})",
            "memory stayed critical after garbage collection: add memory or shed load",
        )
    if memory.level == "warning":
        return finding(
            "monitors",
            "warning",
            f"this process uses {shown} of the memory it can use, above the "
            f"{memory.threshold_percent:g}% threshold",
            "look for what grows: MemoryProfiler snapshots, caches without a bound",
        )
    return finding(
        "monitors",
        "info",
        f"memory monitor: this process uses {shown} of the memory it can use "
        f"(warning above {memory.threshold_percent:g}%, "
        f"critical above {memory.critical_percent:g}%)",
    )


def _leak_finding(a: LeakAnalysis) -> Finding:
    if not a.leaking:
        trend = f"{a.slope_mb_per_hour:+.1f} MB/h over {a.scale}, " if a.scale else ""
        return finding(
            "monitors",
            "info",
            f"no leak trend: {a.reason} ({trend}{plural(a.samples, 'sample')})",
        )
    msg = (
        f"memory is leaking: {a.slope_mb_per_hour:+.1f} MB/h over {a.scale} "
        f"(confidence {a.confidence:.3f}, {plural(a.samples, 'sample')})"
    )
    ttl = a.time_to_limit_s
    if ttl is not None and a.memory_limit_mb is not None:
        msg += f"; {duration(ttl)} to the {a.memory_limit_mb:.0f} MB limit at this rate"
    hint = "find what grows: MemoryProfiler snapshots (or tracemalloc) compared over time"
    if a.top_consumers:
        top = a.top_consumers[0]
        hint = (
            f"the allocation site that grew most: {top['file']} (+{top['size_diff'] / _MB:.1f} MB)"
        )
    # Within the hour, the limit is an outage, not a trend to watch.
    severity: Severity = "error" if ttl is not None and ttl < 3600.0 else "warning"
    return finding("monitors", severity, msg, hint)
