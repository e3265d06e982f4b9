"""Metrics export: a real prometheus_client registry (scraped and parsed) and a real OTel reader."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safla_diag import (
    LoopMonitor,
    MCPConnectionRecovery,
    MCPRecoveryError,
    MCPTaskRecovery,
    MemoryLeakDetector,
    MemoryMonitor,
    PerformanceMonitor,
    VectorIndexRecovery,
    register_opentelemetry,
    register_prometheus,
)

from ..conftest import cli_env

REPO = Path(__file__).resolve().parent.parent.parent


def _monitors(tmp_path: Path) -> tuple[PerformanceMonitor, MemoryMonitor, MemoryLeakDetector]:
    perf = PerformanceMonitor(10, min_samples=10**9)
    for i in range(20):
        perf.record_request(i / 10, success=i % 4 != 0)
    det = MemoryLeakDetector()
    for i in range(1000):
        det.add_sample(100 + i * 0.2, i * 5.0)  # a steady 2.4 MB/min ramp
    return perf, MemoryMonitor(cgroup_root=tmp_path), det


def scrape(registry: Any) -> dict[str, Any]:
    """generate_latest, parsed back by prometheus_client's own parser: name -> family."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    for fam in families.values():
        for s in fam.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError((sample, labels))


def test_prometheus_scrape(tmp_path: Path) -> None:
    """A real registry shows every monitor's figures, labelled by name, with a real histogram."""
    from prometheus_client import CollectorRegistry, generate_latest

    perf, mem, det = _monitors(tmp_path)
    registry = CollectorRegistry()
    collector = register_prometheus(("api", perf), mem, det, registry=registry)
    fams = scrape(registry)
    assert value(fams, "safla_requests_total", monitor="api") == 20
    assert value(fams, "safla_request_errors_total", monitor="api") == 5
    assert value(fams, "safla_response_time_p95_seconds", monitor="api") == pytest.approx(1.855)
    assert value(fams, "safla_error_ratio", monitor="api") == 0.2
    assert fams["safla_request_duration_seconds"].type == "histogram"
    assert value(fams, "safla_request_duration_seconds_bucket", monitor="api", le="0.1") == 2
    assert value(fams, "safla_request_duration_seconds_bucket", monitor="api", le="+Inf") == 20
    assert value(fams, "safla_request_duration_seconds_count", monitor="api") == 20
    assert value(fams, "safla_request_duration_seconds_sum", monitor="api") == pytest.approx(19.0)
    rss = value(fams, "safla_memory_rss_bytes", monitor="default")
    assert rss > 1e6
    assert value(fams, "safla_memory_limit_bytes", monitor="default") > rss
    assert value(fams, "safla_memory_pressure", monitor="default") in (0, 1, 2)
    assert value(fams, "safla_memory_leak_suspected", monitor="default") == 1.0
    slope = value(fams, "safla_memory_leak_slope_bytes_per_second", monitor="default")
    assert slope == pytest.approx(0.2 / 5 * 1024 * 1024, rel=0.05)
    assert fams["safla_requests"].type == "counter"
    perf.record_request(1.0)
    assert value(scrape(registry), "safla_requests_total", monitor="api") == 21
    registry.unregister(collector)
    assert "safla_" not in generate_latest(registry).decode()


def test_registration_is_idempotent_and_additive(tmp_path: Path) -> None:
    """Registering twice adds nothing twice; later calls add objects; unnamed ones get distinct labels."""
    from prometheus_client import CollectorRegistry

    perf, mem, _det = _monitors(tmp_path)
    other = PerformanceMonitor(5)
    registry = CollectorRegistry()
    c1 = register_prometheus(perf, registry=registry)
    c2 = register_prometheus(perf, registry=registry)  # no DuplicateTimeseries
    c3 = register_prometheus(mem, other, perf, registry=registry)
    assert c1 is c2 is c3
    fams = scrape(registry)
    series = [s for s in fams["safla_requests"].samples if s.name == "safla_requests_total"]
    assert sorted(s.labels["monitor"] for s in series) == ["default", "default_2"]
    assert value(fams, "safla_requests_total", monitor="default") == 20
    assert value(fams, "safla_requests_total", monitor="default_2") == 0
    other_registry = CollectorRegistry()
    register_prometheus(perf, registry=other_registry)  # per registry: a new collector there
    assert value(scrape(other_registry), "safla_requests_total", monitor="default") == 20


def test_prometheus_refuses_foreign_objects() -> None:
    """Only our objects can be exported, and a bad call registers nothing."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    with pytest.raises(TypeError, match="monitor"):
        register_prometheus(PerformanceMonitor(5), object(), registry=registry)  # type: ignore[arg-type]
    assert scrape(registry) == {}


@pytest.mark.anyio
async def test_queue_index_breaker_and_loop_metrics(tmp_path: Path) -> None:
    """Queue counts and age, index health and backups, breaker state and loop lag, scraped."""
    import faiss
    import numpy as np
    from prometheus_client import CollectorRegistry

    async def execute(task: dict[str, Any]) -> None:
        raise RuntimeError("still down")

    queue = MCPTaskRecovery(tmp_path / "q.db", execute=execute, max_retries=1, retry_delay=0)
    await queue.save_failed_task({"server": "s", "tool": "t", "arguments": {}})
    await queue.save_failed_task({"server": "s", "tool": "u", "arguments": {}})
    await queue.retry_once()  # both fail their one retry: dead
    await queue.save_failed_task({"server": "s", "tool": "v", "arguments": {}})

    index = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups")
    flat = faiss.IndexFlatL2(8)
    flat.add(np.random.default_rng(0).random((50, 8), dtype=np.float32))
    await index.asave_index(flat)
    await index.abackup_index()

    async def refuse(config: Any) -> Any:
        raise ConnectionRefusedError("down")

    async def no_sleep(_s: float) -> None:
        return None

    breaker = MCPConnectionRecovery(max_retries=1, connect=refuse, sleep=no_sleep)
    with pytest.raises(MCPRecoveryError):
        await breaker.recover_connection("search", {"url": "http://127.0.0.1:1"})

    loop_mon = LoopMonitor()
    loop_mon.start()
    registry = CollectorRegistry()
    try:
        collector = register_prometheus(
            ("jobs", queue), ("docs", index), ("mcp", breaker), loop_mon, registry=registry
        )
        await collector.hub.refresh()
        for _ in range(1000):  # the monitor ticks every 10 ms: wait for three ticks, at most 10 s
            if loop_mon.stats()["ticks"] >= 3:
                break
            await asyncio.sleep(0.01)
        fams = scrape(registry)
    finally:
        loop_mon.stop()
        await queue.aclose()
    assert value(fams, "safla_queue_tasks", monitor="jobs", state="pending") == 1
    assert value(fams, "safla_queue_tasks", monitor="jobs", state="dead") == 2
    assert value(fams, "safla_queue_tasks", monitor="jobs", state="in_flight") == 0
    assert 0 <= value(fams, "safla_queue_oldest_task_age_seconds", monitor="jobs") < 600
    assert value(fams, "safla_queue_up", monitor="jobs") == 1
    assert value(fams, "safla_index_healthy", monitor="docs") == 1
    assert value(fams, "safla_index_vectors", monitor="docs") == 50
    assert value(fams, "safla_index_generation", monitor="docs") >= 1
    assert value(fams, "safla_index_backups", monitor="docs") == 1
    assert 0 <= value(fams, "safla_index_last_backup_age_seconds", monitor="docs") < 600
    states = {
        s.labels["state"]: s.value
        for s in fams["safla_mcp_breaker_state"].samples
        if s.labels["server"] == "search"
    }
    assert sum(states.values()) == 1
    assert value(fams, "safla_mcp_connect_attempts_total", monitor="mcp", server="search") >= 1
    assert value(fams, "safla_event_loop_lag_seconds_count", monitor="default") >= 3
    assert value(fams, "safla_event_loop_stalls_total", monitor="default") == 0


def test_index_metrics_from_a_scrape_thread_without_a_loop(tmp_path: Path) -> None:
    """A plain scrape (no loop anywhere) reads the index the blocking way, off any loop."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    register_prometheus(VectorIndexRecovery(tmp_path / "d", tmp_path / "b"), registry=registry)
    fams = scrape(registry)
    assert value(fams, "safla_index_backups", monitor="default") == 0
    assert "safla_index_last_backup_age_seconds" not in fams


def test_opentelemetry_reader(tmp_path: Path) -> None:
    """A real InMemoryMetricReader collects the figures, the histogram as bucket counters."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    perf, mem, det = _monitors(tmp_path)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instruments = register_opentelemetry(("api", perf), mem, meter_provider=provider)
        meter = provider.get_meter("safla_diag")
        assert register_opentelemetry(det, meter=meter) is not instruments  # another meter
        again = register_opentelemetry(("api", perf), det, meter_provider=provider)
        assert again is instruments  # same (global-named) meter: idempotent, additive
        data = reader.get_metrics_data()
        assert data is not None
        points: dict[Any, Any] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        key = (metric.name, p.attributes["monitor"], p.attributes.get("le"))
                        points[key] = (p.value, metric.unit)
        assert points[("safla.requests", "api", None)] == (20, "1")
        assert points[("safla.response_time_p95", "api", None)][0] == pytest.approx(1.855)
        assert points[("safla.response_time_p95", "api", None)][1] == "s"
        assert points[("safla.request_duration.bucket", "api", "+Inf")][0] == 20
        assert points[("safla.request_duration.bucket", "api", "0.1")][0] == 2
        assert points[("safla.memory_rss", "default", None)][0] > 1e6
        assert points[("safla.memory_leak_suspected", "default", None)][0] == 1.0
    finally:
        provider.shutdown()


def test_every_family_is_in_the_docs_table() -> None:
    """docs/monitoring.md's table lists every exported family with its Prometheus name."""
    from safla_diag.live._metrics import FAMILIES

    text = (REPO / "docs" / "monitoring.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(safla_[a-z0-9_]+)`", text, re.MULTILINE))
    wanted = {f"safla_{f.name}" + ("_total" if f.type == "counter" else "") for f in FAMILIES}
    assert wanted == rows


def test_exporters_are_imported_lazily() -> None:
    """Importing safla_diag (and its monitoring layer) loads neither prometheus nor otel."""
    code = (
        "import sys, safla_diag.monitoring; "
        "print([m for m in ('prometheus_client', 'opentelemetry', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_a_scrape_from_another_thread_reads_the_queue_in_the_hosts_loop(
    tmp_path: Path,
) -> None:
    """prometheus_client's own server thread gets fresh queue counts, read in the host's loop."""
    from prometheus_client import CollectorRegistry

    async def execute(task: dict[str, Any]) -> None:
        return None

    queue = MCPTaskRecovery(tmp_path / "q.db", execute=execute)
    try:
        registry = CollectorRegistry()
        register_prometheus(("jobs", queue), registry=registry)  # in the loop: it is remembered
        await queue.save_failed_task({"server": "s", "tool": "t", "arguments": {}})
        fams = await asyncio.to_thread(scrape, registry)  # a scrape thread, the loop free
        assert value(fams, "safla_queue_tasks", monitor="jobs", state="pending") == 1
        assert value(fams, "safla_queue_up", monitor="jobs") == 1
    finally:
        await queue.aclose()


@pytest.mark.anyio
async def test_a_scrape_inside_the_loop_never_blocks_it(tmp_path: Path) -> None:
    """Collected in the loop's own thread, the queue shows its last reading and refreshes later."""
    from prometheus_client import CollectorRegistry

    async def execute(task: dict[str, Any]) -> None:
        return None

    queue = MCPTaskRecovery(tmp_path / "q.db", execute=execute)
    try:
        registry = CollectorRegistry()
        register_prometheus(("jobs", queue), registry=registry)
        await queue.save_failed_task({"server": "s", "tool": "t", "arguments": {}})
        first = scrape(registry)  # no reading yet: only queue_up, at 0
        assert value(first, "safla_queue_up", monitor="jobs") == 0
        assert "safla_queue_tasks" not in first
        for _ in range(500):  # the refresh it scheduled runs as soon as we yield
            await asyncio.sleep(0.01)
            fams = scrape(registry)
            if "safla_queue_tasks" in fams:
                break
        assert value(fams, "safla_queue_tasks", monitor="jobs", state="pending") == 1
    finally:
        await queue.aclose()
