"""PerformanceDiagnostic: repeated measurements, ranked bottlenecks, failing probes reported."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading

import pytest

from safla_diag import PerformanceDiagnostic
from safla_diag.diagnosis._performance import RECOMMENDATIONS

pytestmark = pytest.mark.anyio


async def test_bottlenecks_ranked_by_how_far_over() -> None:
    """Two gauges over their thresholds: the one farther over comes first, with its advice."""
    diag = PerformanceDiagnostic(
        {"memory_usage": lambda: 90.0, "cpu_usage": lambda: 400.0, "disk_usage": lambda: 1.0},
        thresholds={"memory_usage": 80, "cpu_usage": 80, "disk_usage": 50},
        repeat=3,
    )
    result = await diag.diagnose_slow_response("/api/search")
    assert result["endpoint"] == "/api/search"
    assert result["bottlenecks"] == ["cpu_usage", "memory_usage"]
    ratios = [d["ratio"] for d in result["bottleneck_details"]]
    assert ratios == [5.0, 1.125]
    assert result["recommendations"][:4] == list(RECOMMENDATIONS["cpu_usage"])
    assert set(RECOMMENDATIONS["memory_usage"]) <= set(result["recommendations"])


async def test_median_and_p95_not_one_sample() -> None:
    """Five samples: the measurement is the median, the p95 shows the outlier."""
    values = iter([1.0, 2.0, 3.0, 4.0, 100.0])
    diag = PerformanceDiagnostic({"queue_usage": lambda: next(values)}, include_system=False)
    result = await diag.diagnose_slow_response("x")
    stats = result["stats"]["queue_usage"]
    assert result["measurements"]["queue_usage"] == 3.0
    assert (stats["p95"], stats["min"], stats["max"], stats["samples"]) == (100.0, 1.0, 100.0, 5)


async def test_timed_probes_sync_and_async() -> None:
    """Sync and async probes are timed in seconds; a sync one runs off the event loop."""
    where: list[str] = []

    def sync_probe() -> int:
        where.append(threading.current_thread().name)
        return 1

    async def async_probe() -> None:
        await asyncio.sleep(0)

    diag = PerformanceDiagnostic(
        {"database_query_time": sync_probe, "vector_search_time": async_probe},
        thresholds={"database_query_time": 1e-12, "vector_search_time": 1e6},
        include_system=False,
    )
    result = await diag.diagnose_slow_response("x")
    assert all(0 < v < math.inf for v in result["measurements"].values())
    assert threading.main_thread().name not in where and len(where) == 5
    assert result["bottlenecks"] == ["database_query_time"]
    assert result["recommendations"] == list(RECOMMENDATIONS["database_query_time"])


async def test_failing_probe_measures_inf_and_is_reported() -> None:
    """A probe that raises measures inf, leads the bottlenecks and is never raised."""

    async def broken() -> None:
        raise ConnectionError("redis://:s3cret@cache:6379 refused")

    diag = PerformanceDiagnostic(
        {"mcp_communication_time": broken, "memory_usage": lambda: 99.0}, repeat=2
    )
    result = await diag.diagnose_slow_response("x")
    assert result["measurements"]["mcp_communication_time"] == math.inf
    assert result["bottlenecks"][0] == "mcp_communication_time"
    assert "ConnectionError" in result["errors"]["mcp_communication_time"]
    assert "s3cret" not in repr(result)
    assert result["recommendations"][0].startswith("Fix the failing probe")


async def test_hanging_probe_times_out() -> None:
    """A probe that never finishes is cut at the timeout and measured as failed."""
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    diag = PerformanceDiagnostic({"custom_time": hang}, repeat=1, timeout=0.1, include_system=False)
    result = await diag.diagnose_slow_response("x")
    assert result["measurements"]["custom_time"] == math.inf
    assert "timed out" in result["errors"]["custom_time"]
    assert result["bottlenecks"] == ["custom_time"]


async def test_some_failures_are_counted() -> None:
    """One failure in five: the median stays finite, the p95 is inf and failures says 1."""
    counter = itertools.count()

    def flaky() -> float:
        if next(counter) == 2:
            raise RuntimeError("once")
        return 10.0

    diag = PerformanceDiagnostic({"pool_usage": flaky}, include_system=False)
    stats = (await diag.diagnose_slow_response("x"))["stats"]["pool_usage"]
    assert (stats["median"], stats["p95"], stats["failures"]) == (10.0, math.inf, 1)


async def test_system_gauges_by_default() -> None:
    """Without memory and cpu probes, psutil gauges are added and measured in percent."""
    result = await PerformanceDiagnostic({}, repeat=1).diagnose_slow_response("x")
    assert set(result["measurements"]) == {"memory_usage", "cpu_usage"}
    assert all(0 <= v <= 100 for v in result["measurements"].values())


async def test_gauge_must_return_a_number() -> None:
    """A gauge returning something else is a failed measurement, not a crash."""
    diag = PerformanceDiagnostic({"odd_usage": lambda: "high"}, include_system=False, repeat=1)
    result = await diag.diagnose_slow_response("x")
    assert (
        result["measurements"]["odd_usage"] == math.inf
        and "number" in result["errors"]["odd_usage"]
    )


def test_bad_arguments() -> None:
    """Programmer errors are TypeError / ValueError at construction."""
    with pytest.raises(TypeError):
        PerformanceDiagnostic({"x": 42})
    with pytest.raises(TypeError):
        PerformanceDiagnostic([lambda: 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PerformanceDiagnostic({}, repeat=0)
    with pytest.raises(ValueError):
        PerformanceDiagnostic({}, timeout=0)
