"""Metrics export: a real prometheus_client registry and a real OpenTelemetry reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safla_diag import (
    MemoryLeakDetector,
    MemoryMonitor,
    PerformanceMonitor,
    register_opentelemetry,
    register_prometheus,
)

from ..conftest import cli_env


def _monitors(tmp_path: Path) -> tuple[PerformanceMonitor, MemoryMonitor, MemoryLeakDetector]:
    perf = PerformanceMonitor(10, min_samples=10**9)
    for i in range(20):
        perf.record_request(i / 10, success=i % 4 != 0)
    det = MemoryLeakDetector()
    for i in range(1000):
        det.add_sample(100 + i * 0.2, i * 5.0)  # a steady 2.4 MB/min ramp
    return perf, MemoryMonitor(cgroup_root=tmp_path), det


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_prometheus_scrape(tmp_path: Path) -> None:
    """generate_latest on a real registry shows every monitor's figures, labelled by name."""
    from prometheus_client import CollectorRegistry, generate_latest

    perf, mem, det = _monitors(tmp_path)
    registry = CollectorRegistry()
    collector = register_prometheus(("api", perf), mem, det, registry=registry)
    text = generate_latest(registry).decode()
    s = _samples(text)
    assert s['safla_requests_total{monitor="api"}'] == 20
    assert s['safla_request_errors_total{monitor="api"}'] == 5
    assert s['safla_response_time_p95_seconds{monitor="api"}'] == pytest.approx(1.8550000000000002)
    assert s['safla_error_ratio{monitor="api"}'] == 0.2
    assert s['safla_memory_rss_bytes{monitor="default"}'] > 1e6
    assert (
        s['safla_memory_limit_bytes{monitor="default"}']
        > s['safla_memory_rss_bytes{monitor="default"}']
    )
    assert s['safla_memory_leak_suspected{monitor="default"}'] == 1.0
    slope = s['safla_memory_leak_slope_bytes_per_second{monitor="default"}']
    assert slope == pytest.approx(0.2 / 5 * 1024 * 1024, rel=0.05)
    assert "# TYPE safla_requests_total counter" in text
    perf.record_request(1.0)
    assert _samples(generate_latest(registry).decode())['safla_requests_total{monitor="api"}'] == 21
    registry.unregister(collector)
    assert "safla_" not in generate_latest(registry).decode()


def test_prometheus_refuses_foreign_objects() -> None:
    """Only our monitors can be exported."""
    from prometheus_client import CollectorRegistry

    with pytest.raises(TypeError, match="monitor"):
        register_prometheus(object(), registry=CollectorRegistry())  # type: ignore[arg-type]


def test_opentelemetry_reader(tmp_path: Path) -> None:
    """A real InMemoryMetricReader collects the figures as observable instruments."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    perf, mem, det = _monitors(tmp_path)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instruments = register_opentelemetry(("api", perf), mem, det, meter_provider=provider)
        assert len(instruments) >= 10
        data = reader.get_metrics_data()
        assert data is not None
        points: dict[str, Any] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        points[(metric.name, p.attributes["monitor"])] = (p.value, metric.unit)
        assert points[("safla.requests", "api")] == (20, "1")
        assert points[("safla.response_time_p95", "api")][0] == pytest.approx(1.855)
        assert points[("safla.response_time_p95", "api")][1] == "s"
        assert points[("safla.memory_rss", "default")][0] > 1e6
        assert points[("safla.memory_leak_suspected", "default")][0] == 1.0
    finally:
        provider.shutdown()


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
