"""PerformanceDiagnostic: measured probes, bottlenecks ranked by how far over, recommendations."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._aio import is_async_callable, off_loop
from .._redact import redact

__all__ = ["DEFAULT_THRESHOLDS", "RECOMMENDATIONS", "PerformanceDiagnostic"]

log = logging.getLogger("safla_diag.diagnosis")

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "database_query_time": 0.1,
    "vector_search_time": 0.05,
    "mcp_communication_time": 0.02,
    "memory_usage": 80.0,
    "cpu_usage": 80.0,
}
"""The guide's thresholds: seconds for ``*_time`` probes, percent for ``*_usage`` ones."""

RECOMMENDATIONS: Mapping[str, tuple[str, ...]] = {
    "database_query_time": (
        "Add database indexes for frequently queried columns",
        "Optimize database queries",
        "Consider database connection pooling",
        "Review database configuration",
    ),
    "vector_search_time": (
        "Optimize vector index configuration",
        "Consider using GPU acceleration",
        "Implement vector caching",
        "Reduce vector dimensionality if possible",
    ),
    "mcp_communication_time": (
        "Implement connection pooling for MCP servers",
        "Add request batching",
        "Optimize network configuration",
        "Consider local MCP server deployment",
    ),
    "memory_usage": (
        "Implement memory caching strategies",
        "Optimize data structures",
        "Add garbage collection tuning",
        "Consider increasing available memory",
    ),
    "cpu_usage": (
        "Optimize CPU-intensive algorithms",
        "Implement parallel processing",
        "Consider horizontal scaling",
        "Profile and optimize hot code paths",
    ),
}
"""The guide's recommendations for each known bottleneck."""

_FAILED_ADVICE = "Fix the failing probe first: its measurement is infinite until it succeeds"


def _is_gauge(name: str) -> bool:
    return name.endswith(("_usage", "_percent"))


def _memory_usage() -> float:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    return float(psutil.virtual_memory().percent)


def _cpu_usage() -> float:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    return float(psutil.cpu_percent(interval=None))


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    if not ordered:
        return math.inf
    # nearest rank: with 5 samples the p95 is the largest, which is what "one bad sample" means
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return ordered[rank - 1]


class PerformanceDiagnostic:
    """
    Measure the probes a host gives it, compare with thresholds, and say what to do.

    Each probe runs ``repeat`` times; the report gives the median and p95, not one sample. A
    probe whose name ends in ``_usage`` or ``_percent`` is a gauge: the number it returns is the
    measurement. Any other probe is timed: the measurement is its wall time in seconds. A probe
    that raises or times out measures ``inf`` and is reported, never raised.

    Example::

        diag = PerformanceDiagnostic({"database_query_time": run_select_1})
        result = await diag.diagnose_slow_response("/api/search")
        result["bottlenecks"], result["recommendations"]

    Args:
        probes: Name -> callable or coroutine function taking no arguments. Sync probes run in
            the loop's default executor, so a blocking one does not stall the loop.
        thresholds: Name -> limit; merged over the guide's defaults. Probes without a
            threshold are measured and reported, never named as bottlenecks.
        repeat: How many times each probe runs.
        timeout: Seconds one probe call may take before it counts as failed.
        include_system: Add ``memory_usage`` and ``cpu_usage`` gauges (psutil) unless given.
    """

    def __init__(
        self,
        probes: Mapping[str, Callable[[], Any]],
        *,
        thresholds: Mapping[str, float] | None = None,
        repeat: int = 5,
        timeout: float = 10.0,
        include_system: bool = True,
    ) -> None:
        if not isinstance(probes, Mapping):
            raise TypeError("probes must be a mapping of name -> callable")
        for name, fn in probes.items():
            if not callable(fn):
                raise TypeError(f"probe {name!r} is not callable")
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.probes: dict[str, Callable[[], Any]] = dict(probes)
        if include_system:
            self.probes.setdefault("memory_usage", _memory_usage)
            self.probes.setdefault("cpu_usage", _cpu_usage)
        self.thresholds: dict[str, float] = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        self.repeat = repeat
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<PerformanceDiagnostic probes={sorted(self.probes)} repeat={self.repeat}>"

    async def _call(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        if is_async_callable(fn):
            t0 = time.perf_counter()
            result = await fn()
            return time.perf_counter() - t0, result

        took, result = await off_loop(_timed_call, fn)
        if inspect.isawaitable(result):  # a callable object or partial that returns a coroutine
            t0 = time.perf_counter()
            result = await result
            took += time.perf_counter() - t0
        return took, result

    async def _measure(self, name: str, fn: Callable[[], Any]) -> tuple[list[float], list[str]]:
        samples: list[float] = []
        errors: list[str] = []
        gauge = _is_gauge(name)
        for _ in range(self.repeat):
            try:
                async with asyncio.timeout(self.timeout):
                    took, result = await self._call(fn)
                if gauge:
                    if isinstance(result, bool) or not isinstance(result, int | float):
                        raise TypeError(f"a gauge probe must return a number, got {result!r}")
                    value = float(result)
                else:
                    value = took
            except TimeoutError:
                value = math.inf
                errors.append(f"timed out after {self.timeout:g} s")
            except Exception as err:  # a failing probe is measured, never raised
                value = math.inf
                errors.append(redact(f"{err.__class__.__name__}: {err}")[:200])
            samples.append(value)
        if errors:
            log.warning(
                "probe %s failed %d of %d times: %s", name, len(errors), self.repeat, errors[-1]
            )
        return samples, errors

    async def diagnose_slow_response(self, endpoint: str) -> dict[str, Any]:
        """
        Measure every probe, name the bottlenecks and recommend what to do.

        Probes run one after another (so they do not slow each other down), each ``repeat``
        times; the system gauges run last.

        Args:
            endpoint: The endpoint being diagnosed, echoed in the result.

        Returns:
            ``endpoint``; ``measurements`` (name -> median: seconds for timed probes, the value
            for gauges; ``inf`` when it failed); ``stats`` (name -> median, p95, min, max,
            samples, failures, unit, threshold); ``bottlenecks`` (names over their threshold,
            the farthest over first); ``bottleneck_details`` (metric, value, threshold, ratio);
            ``recommendations`` (the guide's advice for each bottleneck, in that order);
            ``errors`` (name -> last error, for probes that failed).
        """
        order = sorted(self.probes, key=_is_gauge)  # stable: timed probes first, gauges last
        if "cpu_usage" in self.probes and self.probes["cpu_usage"] is _cpu_usage:
            _cpu_usage()  # prime psutil: the next call measures since now
        stats: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for name in order:
            samples, errs = await self._measure(name, self.probes[name])
            if errs:
                errors[name] = errs[-1]
            stats[name] = {
                "median": statistics.median(samples),
                "p95": _p95(samples),
                "min": min(samples),
                "max": max(samples),
                "samples": len(samples),
                "failures": len(errs),
                "unit": "percent" if _is_gauge(name) else "s",
                "threshold": self.thresholds.get(name),
            }
        measurements = {name: s["median"] for name, s in stats.items()}
        details = []
        for name, value in measurements.items():
            limit = self.thresholds.get(name)
            failed = stats[name]["failures"] == stats[name]["samples"]
            if limit is None and not failed:
                continue
            if failed or (limit is not None and value > limit):
                ratio = math.inf if failed or not limit else value / limit
                details.append({"metric": name, "value": value, "threshold": limit, "ratio": ratio})
        details.sort(key=lambda d: -d["ratio"])
        recommendations: list[str] = []
        for d in details:
            advice = RECOMMENDATIONS.get(d["metric"], ())
            if math.isinf(d["value"]):
                advice = (_FAILED_ADVICE, *advice)
            for line in advice:
                if line not in recommendations:
                    recommendations.append(line)
        return {
            "endpoint": endpoint,
            "measurements": measurements,
            "stats": stats,
            "bottlenecks": [d["metric"] for d in details],
            "bottleneck_details": details,
            "recommendations": recommendations,
            "errors": errors,
        }


def _timed_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    # Timed inside the worker thread, so the hop to the executor is not counted.
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result
