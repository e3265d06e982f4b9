"""
The monitors' figures for Prometheus and OpenTelemetry.

Both exporters read the monitors when scraped or collected (pull, no thread of ours, nothing on
the request path). prometheus_client and opentelemetry are imported by the functions that need
them, never at ``import safla_diag``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._lazy import import_optional
from ._leaks import MemoryLeakDetector
from ._memory import MB, MemoryMonitor
from ._performance import PerformanceMonitor

__all__ = ["FIGURES", "Figure", "register_opentelemetry", "register_prometheus"]

Monitor = PerformanceMonitor | MemoryMonitor | MemoryLeakDetector


@dataclass(frozen=True, slots=True)
class Figure:
    """One exported figure: its name (without namespace), kind, unit and how to read it."""

    key: str
    kind: str  # "gauge" or "counter"
    unit: str  # Prometheus base unit suffix / OpenTelemetry unit
    help: str
    source: type
    read: Callable[[dict[str, Any]], float | None]


def _perf(key: str) -> Callable[[dict[str, Any]], float | None]:
    def read(s: dict[str, Any]) -> float | None:
        return float(s[key]) if s.get("window_requests") or key.startswith("total") else None

    return read


def _mem(key: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    def read(s: dict[str, Any]) -> float | None:
        v = s.get(key)
        return None if v is None else float(v) * scale

    return read


FIGURES: tuple[Figure, ...] = (
    Figure("requests", "counter", "", "Requests recorded since start", PerformanceMonitor,
           _perf("total_requests")),
    Figure("request_errors", "counter", "", "Failed requests recorded since start",
           PerformanceMonitor, _perf("total_errors")),
    Figure("response_time_avg", "gauge", "seconds", "Mean response time over the window",
           PerformanceMonitor, _perf("avg_response_time")),
    Figure("response_time_p95", "gauge", "seconds",
           "95th percentile response time over the window", PerformanceMonitor,
           _perf("p95_response_time")),
    Figure("response_time_max", "gauge", "seconds", "Slowest response time in the window",
           PerformanceMonitor, _perf("max_response_time")),
    Figure("error_ratio", "gauge", "", "Share of failed requests in the window (0-1)",
           PerformanceMonitor, _perf("error_rate")),
    Figure("memory_percent", "gauge", "", "Memory percent the thresholds apply to (0-100)",
           MemoryMonitor, _mem("memory_percent")),
    Figure("memory_rss", "gauge", "bytes", "Resident memory of the process", MemoryMonitor,
           _mem("process_rss", MB)),
    Figure("memory_limit", "gauge", "bytes", "Memory the process can use (cgroup limit or host)",
           MemoryMonitor, _mem("system_total", MB)),
    Figure("memory_available", "gauge", "bytes", "Memory left under that limit", MemoryMonitor,
           _mem("system_available", MB)),
    Figure("memory_leak_suspected", "gauge", "", "1 while the leak detector sees steady growth",
           MemoryLeakDetector, _mem("leaking")),
    Figure("memory_leak_slope", "gauge", "bytes_per_second",
           "Robust slope of the memory floor at the strongest time scale", MemoryLeakDetector,
           _mem("slope_mb_per_hour", MB / 3600.0)),
    Figure("memory_leak_confidence", "gauge", "", "Confidence of that trend (0-1)",
           MemoryLeakDetector, _mem("confidence")),
    Figure("memory_leak_samples", "counter", "", "RSS samples fed to the leak detector",
           MemoryLeakDetector, _mem("samples")),
)  # fmt: skip


def _read_monitor(monitor: Monitor) -> dict[str, Any]:
    if isinstance(monitor, PerformanceMonitor):
        return monitor.get_performance_stats()
    if isinstance(monitor, MemoryMonitor):
        return monitor.get_memory_info()
    return monitor.analyze(top_consumers=False).to_dict()


class _Reader:
    """Reads every monitor at most once per collection (collections read many figures)."""

    def __init__(self, monitors: Iterable[tuple[str, Monitor]], ttl_s: float = 0.1) -> None:
        self.monitors = list(monitors)
        for _, m in self.monitors:
            if not isinstance(m, PerformanceMonitor | MemoryMonitor | MemoryLeakDetector):
                raise TypeError(f"cannot export a {type(m).__name__}: not one of our monitors")
        self.ttl_s = ttl_s
        self._cache: dict[int, tuple[float, dict[str, Any]]] = {}

    def clear(self) -> None:
        self._cache.clear()

    def read(self, monitor: Monitor) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._cache.get(id(monitor))
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        data = _read_monitor(monitor)
        self._cache[id(monitor)] = (now, data)
        return data

    def values(self, fig: Figure) -> Iterator[tuple[str, float]]:
        for name, m in self.monitors:
            if isinstance(m, fig.source):
                v = fig.read(self.read(m))
                if v is not None:
                    yield name, v


def _named(monitors: tuple[Monitor | tuple[str, Monitor], ...]) -> list[tuple[str, Monitor]]:
    out: list[tuple[str, Monitor]] = []
    for m in monitors:
        if isinstance(m, tuple):
            out.append((str(m[0]), m[1]))
        else:
            out.append(("default", m))
    return out


def _prom_name(namespace: str, fig: Figure) -> str:
    parts = [namespace, fig.key] if namespace else [fig.key]
    if fig.unit:
        parts.append(fig.unit)
    return "_".join(parts)


def register_prometheus(
    *monitors: Monitor | tuple[str, Monitor],
    registry: Any = None,
    namespace: str = "safla",
) -> Any:
    """
    Expose the monitors' figures to a Prometheus registry, read at each scrape.

    Args:
        *monitors: PerformanceMonitor, MemoryMonitor and MemoryLeakDetector instances, each bare
            (labelled ``monitor="default"``) or as a ``(name, monitor)`` pair.
        registry: A ``prometheus_client.CollectorRegistry``; the global ``REGISTRY`` by default.
        namespace: Prefix of every metric name (``safla_requests_total``, ...).

    Returns:
        The registered collector (``registry.unregister(collector)`` removes it).

    Raises:
        DependencyError: When prometheus_client is not installed (``safla-diag[prometheus]``).
        TypeError: For an object that is not one of our monitors.
    """
    prom = import_optional("prometheus_client")
    core = import_optional("prometheus_client.core")
    reader = _Reader(_named(monitors))
    target = registry if registry is not None else prom.REGISTRY

    class SaflaCollector:
        """A prometheus_client collector over safla_diag monitors."""

        def _families(self, with_values: bool) -> Iterator[Any]:
            for fig in FIGURES:
                if not any(isinstance(m, fig.source) for _, m in reader.monitors):
                    continue
                name = _prom_name(namespace, fig)
                if fig.kind == "counter":
                    fam = core.CounterMetricFamily(name, fig.help, labels=["monitor"])
                else:
                    fam = core.GaugeMetricFamily(name, fig.help, labels=["monitor"])
                if with_values:
                    for label, value in reader.values(fig):
                        fam.add_metric([label], value)
                yield fam

        def describe(self) -> list[Any]:
            return list(self._families(False))

        def collect(self) -> Iterator[Any]:
            reader.clear()  # each scrape reads each monitor once, and afresh
            yield from self._families(True)

    collector = SaflaCollector()
    target.register(collector)
    return collector


def register_opentelemetry(
    *monitors: Monitor | tuple[str, Monitor],
    meter: Any = None,
    meter_provider: Any = None,
    namespace: str = "safla",
) -> list[Any]:
    """
    Expose the monitors' figures as OpenTelemetry observable instruments, read at collection.

    Args:
        *monitors: As for :func:`register_prometheus`; the name goes in the ``monitor``
            attribute.
        meter: The Meter to create the instruments on; by default
            ``metrics.get_meter("safla_diag", meter_provider=meter_provider)``.
        meter_provider: Used when no meter is given (the global provider by default).
        namespace: Prefix of every instrument name (``safla.requests``, ...).

    Returns:
        The instruments created (observable counters and gauges).

    Raises:
        DependencyError: When opentelemetry-api is not installed (``safla-diag[otel]``).
        TypeError: For an object that is not one of our monitors.
    """
    otel = import_optional("opentelemetry.metrics")
    reader = _Reader(_named(monitors))
    if meter is None:
        meter = otel.get_meter("safla_diag", meter_provider=meter_provider)
    units = {"seconds": "s", "bytes": "By", "bytes_per_second": "By/s", "": "1"}
    instruments = []
    for fig in FIGURES:
        if not any(isinstance(m, fig.source) for _, m in reader.monitors):
            continue

        def callback(_options: Any, fig: Figure = fig) -> list[Any]:
            return [otel.Observation(v, {"monitor": n}) for n, v in reader.values(fig)]

        name = f"{namespace}.{fig.key}" if namespace else fig.key
        create = (
            meter.create_observable_counter
            if fig.kind == "counter"
            else meter.create_observable_gauge
        )
        instruments.append(
            create(name, callbacks=[callback], unit=units[fig.unit], description=fig.help)
        )
    return instruments
