"""
The library's figures for Prometheus and OpenTelemetry: one table of families, one reader.

Every family is listed once in :data:`FAMILIES` (name, type, help, labels; the unit follows from
the name); each kind of object (monitors, the task queue, the index, the connection breaker, the
loop monitor) has a source (``_sources.py``) that turns its public reading
(``get_performance_stats()``, ``histogram()``, ``stats()``, ``diagnose()``, ``status()``, ...)
into samples of those families. Both exporters (``_prometheus.py``, ``_otel.py``) pull: nothing
runs between scrapes and nothing touches the request path.

Registration is kept per registry (or meter): ``register_prometheus(a)`` then
``register_prometheus(b)`` adds ``b`` to the same collector, and registering ``a`` again does
nothing, so hosts may register what they have, where they have it, in any order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["FAMILIES", "Family", "Sample", "le_label"]

# Unit suffixes of Prometheus names and the OpenTelemetry unit each stands for; OTel names leave
# them out (the unit travels apart there).
_UNIT_SUFFIXES = (("_seconds", "s"), ("_bytes_per_second", "By/s"), ("_bytes", "By"))


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name without namespace, type, help, labels besides ``monitor``."""

    name: str  # Prometheus name without the namespace; counters without the _total suffix
    type: str  # "counter", "gauge" or "histogram"
    help: str
    source: str  # what exports it (documentation)
    labels: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        """The OpenTelemetry unit, read from the name's suffix."""
        if self.name.endswith("_percent"):
            return "%"
        for suffix, unit in _UNIT_SUFFIXES:
            if self.name.endswith(suffix):
                return unit
        return "1"

    @property
    def stem(self) -> str:
        """The name without its unit suffix, as OpenTelemetry names it."""
        for suffix, _unit in _UNIT_SUFFIXES:
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


_Row = tuple[str, str, str] | tuple[str, str, str, tuple[str, ...]]  # name, type, help[, labels]


def _of(source: str, *rows: _Row) -> tuple[Family, ...]:
    """The families one kind of object exports."""
    return tuple(Family(row[0], row[1], row[2], source, *row[3:]) for row in rows)


FAMILIES: tuple[Family, ...] = (
    *_of("PerformanceMonitor",  # and timed, which feeds one
        ("requests", "counter", "Requests recorded since start"),
        ("request_errors", "counter", "Failed requests recorded since start"),
        ("request_duration_seconds", "histogram", "Request wall time, every request since start"),
        ("response_time_avg_seconds", "gauge", "Mean response time over the window"),
        ("response_time_p95_seconds", "gauge", "95th percentile response time over the window"),
        ("response_time_max_seconds", "gauge", "Slowest response time in the window"),
        ("error_ratio", "gauge", "Share of failed requests in the window (0-1)"),
    ),
    *_of("MemoryMonitor",
        ("memory_percent", "gauge", "Memory percent the thresholds apply to (0-100)"),
        ("memory_rss_bytes", "gauge", "Resident memory of the process"),
        ("memory_limit_bytes", "gauge", "Memory the process can use (cgroup limit or host)"),
        ("memory_available_bytes", "gauge", "Memory left under that limit"),
        ("memory_pressure", "gauge",
         "Memory pressure level: 0 below the threshold, 1 above it, 2 above critical"),
    ),
    *_of("MemoryLeakDetector",
        ("memory_leak_suspected", "gauge", "1 while the leak detector sees steady growth"),
        ("memory_leak_slope_bytes_per_second", "gauge",
         "Robust slope of the memory floor at the strongest time scale"),
        ("memory_leak_confidence", "gauge", "Confidence of that trend (0-1)"),
        ("memory_leak_samples", "counter", "RSS samples fed to the leak detector"),
    ),
    *_of("MCPTaskRecovery",
        ("queue_tasks", "gauge", "Tasks in the MCP retry queue, by state (pending, in_flight, dead)",
         ("state",)),
        ("queue_oldest_task_age_seconds", "gauge",
         "Age of the oldest queued task (0 when the queue is empty)"),
        ("queue_up", "gauge", "1 when the queue's last reading succeeded"),
    ),
    *_of("VectorIndexRecovery",
        ("index_healthy", "gauge", "1 when the index passes the cheap check"),
        ("index_generation", "gauge", "Generation of the index's manifest (saves since creation)"),
        ("index_vectors", "gauge", "Vectors in the index"),
        ("index_last_backup_age_seconds", "gauge",
         "Age of the newest backup with no known problem (absent when there is none)"),
        ("index_backups", "gauge", "Backups in the backup folder"),
    ),
    *_of("MCPConnectionRecovery",
        ("mcp_breaker_state", "gauge",
         "Circuit breaker state per server: 1 for the current state (closed, open, half_open)",
         ("server", "state")),
        ("mcp_breaker_consecutive_failures", "gauge", "Failures since the last success",
         ("server",)),
        ("mcp_connect_attempts", "counter", "Connection attempts made by recoveries", ("server",)),
        ("mcp_recovering", "gauge", "1 while a recovery is in flight for the server", ("server",)),
    ),
    *_of("LoopMonitor",
        ("event_loop_lag_seconds", "histogram", "How late the loop monitor's tick woke"),
        ("event_loop_lag_p99_seconds", "gauge", "99th percentile loop lag over the window"),
        ("event_loop_lag_max_seconds", "gauge", "Largest loop lag over the window"),
        ("event_loop_stalls", "counter", "Times the loop was held longer than the threshold"),
    ),
)  # fmt: skip


@dataclass
class Sample:
    """One sample: a family, its labels (``monitor`` first), and a value or a histogram."""

    family: str
    labels: dict[str, str]
    value: float = 0.0
    buckets: list[tuple[float, int]] = field(default_factory=list)
    sum: float = 0.0


def le_label(bound: float) -> str:
    """A histogram bucket's upper bound as Prometheus writes it in ``le`` (``+Inf``, ``0.5``, ``1.0``)."""
    if bound == math.inf:
        return "+Inf"
    return repr(float(bound)) if not float(bound).is_integer() else f"{float(bound):.1f}"
