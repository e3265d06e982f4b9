"""
The library's figures for Prometheus and OpenTelemetry: one table of families, one reader.

Every family is listed once in :data:`FAMILIES` (name, type, help, labels); each kind of object
(monitors, the task queue, the index, the connection breaker, the loop monitor) has a source that
turns its public reading (``get_performance_stats()``, ``histogram()``, ``stats()``,
``diagnose()``, ``status()``, ...) into samples of those families. Both exporters pull: nothing
runs between scrapes and nothing touches the request path.

Registration is kept per registry (or meter): ``register_prometheus(a)`` then
``register_prometheus(b)`` adds ``b`` to the same collector, and registering ``a`` again does
nothing, so hosts may register what they have, where they have it, in any order.

Two sources read slowly or only in the host's loop: the queue's ``stats()`` is a coroutine and the
index's ``diagnose()`` hashes the index file. Their readings are cached (a few seconds for the
queue, half a minute for the index) and refreshed by the live endpoint before each ``/metrics``
(``await refresh()``), or, for a scrape from another thread (prometheus_client's own HTTP server),
in the host's loop when one is known, waiting at most a second. A scrape inside the loop never
blocks it: it shows the last reading and schedules a refresh.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._lazy import import_optional
from .._redact import describe_error, redact
from ..mcp_retry import MCPConnectionRecovery, MCPTaskRecovery
from ..monitoring import (
    LoopMonitor,
    MemoryLeakDetector,
    MemoryMonitor,
    PerformanceMonitor,
)
from ..vector import VectorIndexRecovery

__all__ = [
    "FAMILIES",
    "Family",
    "Hub",
    "hub_for",
    "register_opentelemetry",
    "register_prometheus",
]

logger = logging.getLogger("safla_diag.live")

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name without namespace, type, help, labels besides ``monitor``."""

    name: str  # Prometheus name without the namespace; counters without the _total suffix
    type: str  # "counter", "gauge" or "histogram"
    help: str
    source: str  # what exports it (documentation)
    labels: tuple[str, ...] = ()
    unit: str = "1"  # OpenTelemetry unit


FAMILIES: tuple[Family, ...] = (
    # PerformanceMonitor (and timed, which feeds one)
    Family("requests", "counter", "Requests recorded since start", "PerformanceMonitor"),
    Family("request_errors", "counter", "Failed requests recorded since start",
           "PerformanceMonitor"),
    Family("request_duration_seconds", "histogram", "Request wall time, every request since start",
           "PerformanceMonitor", unit="s"),
    Family("response_time_avg_seconds", "gauge", "Mean response time over the window",
           "PerformanceMonitor", unit="s"),
    Family("response_time_p95_seconds", "gauge", "95th percentile response time over the window",
           "PerformanceMonitor", unit="s"),
    Family("response_time_max_seconds", "gauge", "Slowest response time in the window",
           "PerformanceMonitor", unit="s"),
    Family("error_ratio", "gauge", "Share of failed requests in the window (0-1)",
           "PerformanceMonitor"),
    # MemoryMonitor
    Family("memory_percent", "gauge", "Memory percent the thresholds apply to (0-100)",
           "MemoryMonitor", unit="%"),
    Family("memory_rss_bytes", "gauge", "Resident memory of the process", "MemoryMonitor",
           unit="By"),
    Family("memory_limit_bytes", "gauge", "Memory the process can use (cgroup limit or host)",
           "MemoryMonitor", unit="By"),
    Family("memory_available_bytes", "gauge", "Memory left under that limit", "MemoryMonitor",
           unit="By"),
    Family("memory_pressure", "gauge",
           "Memory pressure level: 0 below the threshold, 1 above it, 2 above critical",
           "MemoryMonitor"),
    # MemoryLeakDetector
    Family("memory_leak_suspected", "gauge", "1 while the leak detector sees steady growth",
           "MemoryLeakDetector"),
    Family("memory_leak_slope_bytes_per_second", "gauge",
           "Robust slope of the memory floor at the strongest time scale", "MemoryLeakDetector",
           unit="By/s"),
    Family("memory_leak_confidence", "gauge", "Confidence of that trend (0-1)",
           "MemoryLeakDetector"),
    Family("memory_leak_samples", "counter", "RSS samples fed to the leak detector",
           "MemoryLeakDetector"),
    # MCPTaskRecovery
    Family("queue_tasks", "gauge", "Tasks in the MCP retry queue, by state "
           "(pending, in_flight, dead)", "MCPTaskRecovery", labels=("state",)),
    Family("queue_oldest_task_age_seconds", "gauge",
           "Age of the oldest queued task (0 when the queue is empty)", "MCPTaskRecovery",
           unit="s"),
    Family("queue_up", "gauge", "1 when the queue's last reading succeeded", "MCPTaskRecovery"),
    # VectorIndexRecovery
    Family("index_healthy", "gauge", "1 when the index passes the cheap check", "VectorIndexRecovery"),
    Family("index_generation", "gauge", "Generation of the index's manifest (saves since creation)",
           "VectorIndexRecovery"),
    Family("index_vectors", "gauge", "Vectors in the index", "VectorIndexRecovery"),
    Family("index_last_backup_age_seconds", "gauge",
           "Age of the newest backup with no known problem (absent when there is none)",
           "VectorIndexRecovery", unit="s"),
    Family("index_backups", "gauge", "Backups in the backup folder", "VectorIndexRecovery"),
    # MCPConnectionRecovery
    Family("mcp_breaker_state", "gauge",
           "Circuit breaker state per server: 1 for the current state (closed, open, half_open)",
           "MCPConnectionRecovery", labels=("server", "state")),
    Family("mcp_breaker_consecutive_failures", "gauge", "Failures since the last success",
           "MCPConnectionRecovery", labels=("server",)),
    Family("mcp_connect_attempts", "counter", "Connection attempts made by recoveries",
           "MCPConnectionRecovery", labels=("server",)),
    Family("mcp_recovering", "gauge", "1 while a recovery is in flight for the server",
           "MCPConnectionRecovery", labels=("server",)),
    # LoopMonitor
    Family("event_loop_lag_seconds", "histogram", "How late the loop monitor's tick woke",
           "LoopMonitor", unit="s"),
    Family("event_loop_lag_p99_seconds", "gauge", "99th percentile loop lag over the window",
           "LoopMonitor", unit="s"),
    Family("event_loop_lag_max_seconds", "gauge", "Largest loop lag over the window",
           "LoopMonitor", unit="s"),
    Family("event_loop_stalls", "counter", "Times the loop was held longer than the threshold",
           "LoopMonitor"),
)  # fmt: skip

_BY_NAME = {f.name: f for f in FAMILIES}

Exportable = (
    PerformanceMonitor
    | MemoryMonitor
    | MemoryLeakDetector
    | MCPTaskRecovery
    | VectorIndexRecovery
    | MCPConnectionRecovery
    | LoopMonitor
)


@dataclass
class Sample:
    """One sample: a family, its labels (``monitor`` first), and a value or a histogram."""

    family: str
    labels: dict[str, str]
    value: float = 0.0
    buckets: list[tuple[float, int]] = field(default_factory=list)
    sum: float = 0.0


# ---------------------------------------------------------------------------------- sources
class _Source:
    """Reads one object; subclasses turn its public reading into samples."""

    kind = "object"

    def __init__(self, name: str, obj: Any) -> None:
        self.name = name
        self.obj = obj

    def samples(self) -> Iterator[Sample]:  # pragma: no cover - every source defines it
        raise NotImplementedError

    async def arefresh(self) -> None:
        """Refresh a cached reading (slow sources); fast ones read at each scrape."""

    def _s(self, family: str, value: float, **labels: str) -> Sample:
        return Sample(family, {"monitor": self.name, **labels}, float(value))


class _Performance(_Source):
    kind = "performance"

    def samples(self) -> Iterator[Sample]:
        mon: PerformanceMonitor = self.obj
        s = mon.get_performance_stats()
        yield self._s("requests", s["total_requests"])
        yield self._s("request_errors", s["total_errors"])
        h = mon.histogram()
        yield Sample(
            "request_duration_seconds", {"monitor": self.name}, 0.0, h["buckets"], h["sum"]
        )
        if s["window_requests"]:
            yield self._s("response_time_avg_seconds", s["avg_response_time"])
            yield self._s("response_time_p95_seconds", s["p95_response_time"])
            yield self._s("response_time_max_seconds", s["max_response_time"])
            yield self._s("error_ratio", s["error_rate"])


class _Memory(_Source):
    kind = "memory"

    def samples(self) -> Iterator[Sample]:
        mon: MemoryMonitor = self.obj
        info: Mapping[str, Any] = mon.get_memory_info()
        percent = info.get("memory_percent")
        if percent is not None:
            yield self._s("memory_percent", percent)
            level = (
                2
                if percent >= mon.critical_percent
                else 1
                if percent >= mon.threshold_percent
                else 0
            )
            yield self._s("memory_pressure", level)
        for key, family in (
            ("process_rss", "memory_rss_bytes"),
            ("system_total", "memory_limit_bytes"),
            ("system_available", "memory_available_bytes"),
        ):
            if info.get(key) is not None:
                yield self._s(family, float(info[key]) * MB)


class _Leaks(_Source):
    kind = "leaks"

    def samples(self) -> Iterator[Sample]:
        a = self.obj.analyze(top_consumers=False)
        yield self._s("memory_leak_suspected", 1.0 if a.leaking else 0.0)
        yield self._s("memory_leak_slope_bytes_per_second", a.slope_mb_per_hour * MB / 3600.0)
        yield self._s("memory_leak_confidence", a.confidence)
        yield self._s("memory_leak_samples", a.samples)


class _Breaker(_Source):
    kind = "breaker"

    def samples(self) -> Iterator[Sample]:
        for server, st in self.obj.status().items():
            sid = redact(server)
            state = str(st.get("state", "closed"))
            for name in ("closed", "open", "half_open"):
                yield self._s(
                    "mcp_breaker_state", 1.0 if state == name else 0.0, server=sid, state=name
                )
            yield self._s(
                "mcp_breaker_consecutive_failures", st.get("consecutive_failures") or 0, server=sid
            )
            yield self._s("mcp_connect_attempts", st.get("connect_attempts") or 0, server=sid)
            yield self._s("mcp_recovering", 1.0 if st.get("recovering") else 0.0, server=sid)


class _Loop(_Source):
    kind = "loop"

    def samples(self) -> Iterator[Sample]:
        mon: LoopMonitor = self.obj
        h = mon.lag_histogram()
        yield Sample("event_loop_lag_seconds", {"monitor": self.name}, 0.0, h["buckets"], h["sum"])
        s = mon.stats()
        yield self._s("event_loop_lag_p99_seconds", s["lag_p99_s"])
        yield self._s("event_loop_lag_max_seconds", s["lag_max_s"])
        yield self._s("event_loop_stalls", s["stalls"])


class _Cached(_Source):
    """A source whose reading is slow or needs the host's loop: cached, refreshed with care."""

    ttl_s = 5.0

    def __init__(self, name: str, obj: Any) -> None:
        super().__init__(name, obj)
        self._lock = threading.Lock()
        self._reading: Any = None
        self._at = -math.inf
        self._ok = False
        self._loop: Any = None
        self._refreshing: Any = None  # the refresh task scheduled from inside the loop

    async def _afetch(self) -> Any:  # pragma: no cover - every cached source defines it
        raise NotImplementedError

    def _fetch_sync(self) -> Any:
        """A blocking read for a thread with no loop; None when only the loop can read it."""
        return None

    def _store(self, reading: Any, ok: bool) -> None:
        with self._lock:
            self._reading, self._ok, self._at = reading, ok, time.monotonic()

    async def arefresh(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        if time.monotonic() - self._at < min(self.ttl_s, 1.0):
            return  # read a moment ago (by a scrape or another source): good enough
        try:
            reading = await asyncio.wait_for(self._afetch(), timeout=5.0)
        except Exception as err:
            logger.warning("reading %s %r for metrics failed: %s", self.kind, self.name,
                           describe_error(err))  # fmt: skip
            self._store(self._reading, False)
        else:
            self._store(reading, True)

    def _current(self) -> tuple[Any, bool]:
        """The reading to show now, refreshing it first when that cannot block the loop."""
        if time.monotonic() - self._at < self.ttl_s:
            return self._reading, self._ok
        import sys

        aio = sys.modules.get("asyncio")
        running = None
        if aio is not None:
            try:
                running = aio.get_running_loop()
            except RuntimeError:
                running = None
        if running is not None:
            # Collected inside the loop (generate_latest in a coroutine): never block it.
            self._loop = running
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = running.create_task(self.arefresh())
            return self._reading, self._ok
        loop = self._loop
        if aio is not None and loop is not None and loop.is_running() and not loop.is_closed():
            fut = aio.run_coroutine_threadsafe(self.arefresh(), loop)
            try:
                fut.result(timeout=1.0)
            except Exception:  # TimeoutError, or the loop went away: the last reading stands
                fut.cancel()
            return self._reading, self._ok
        try:
            reading = self._fetch_sync()
        except Exception as err:
            logger.warning("reading %s %r for metrics failed: %s", self.kind, self.name,
                           describe_error(err))  # fmt: skip
            self._store(self._reading, False)
        else:
            if reading is not None:
                self._store(reading, True)
        return self._reading, self._ok


class _Queue(_Cached):
    kind = "queue"
    ttl_s = 5.0

    async def _afetch(self) -> Any:
        stats = await self.obj.stats()
        return stats.to_dict(now=time.time())

    def samples(self) -> Iterator[Sample]:
        reading, ok = self._current()
        yield self._s("queue_up", 1.0 if ok else 0.0)
        if reading is None:
            return
        for state in ("pending", "in_flight", "dead"):
            yield self._s("queue_tasks", reading.get(state) or 0, state=state)
        yield self._s("queue_oldest_task_age_seconds", reading.get("oldest_age_s") or 0.0)


class _Index(_Cached):
    kind = "index"
    ttl_s = 30.0

    async def _afetch(self) -> Any:
        health = await self.obj.adiagnose()
        backups = await self.obj.alist_backups()
        return self._summarise(health, backups)

    def _fetch_sync(self) -> Any:
        return self._summarise(self.obj.diagnose(), self.obj.list_backups())

    @staticmethod
    def _summarise(health: Any, backups: list[Any]) -> dict[str, Any]:
        good = [b.created_at for b in backups if b.ok and b.created_at is not None]
        return {
            "healthy": bool(health.ok),
            "generation": health.generation,
            "ntotal": health.ntotal,
            "backups": len(backups),
            "newest_good_backup": max(good) if good else None,
        }

    def samples(self) -> Iterator[Sample]:
        reading, _ok = self._current()
        if reading is None:
            return
        yield self._s("index_healthy", 1.0 if reading["healthy"] else 0.0)
        if reading["generation"] is not None:
            yield self._s("index_generation", reading["generation"])
        if reading["ntotal"] is not None:
            yield self._s("index_vectors", reading["ntotal"])
        yield self._s("index_backups", reading["backups"])
        if reading["newest_good_backup"] is not None:
            age = max(0.0, time.time() - reading["newest_good_backup"])
            yield self._s("index_last_backup_age_seconds", age)


_SOURCES: tuple[tuple[type, type[_Source]], ...] = (
    (PerformanceMonitor, _Performance),
    (MemoryMonitor, _Memory),
    (MemoryLeakDetector, _Leaks),
    (MCPTaskRecovery, _Queue),
    (VectorIndexRecovery, _Index),
    (MCPConnectionRecovery, _Breaker),
    (LoopMonitor, _Loop),
)


def _source_type(obj: object) -> type[_Source]:
    for cls, src in _SOURCES:
        if isinstance(obj, cls):
            return src
    names = ", ".join(cls.__name__ for cls, _ in _SOURCES)
    raise TypeError(
        f"cannot export a {type(obj).__name__}: not one of our monitors or recovery objects "
        f"({names})"
    )


# ---------------------------------------------------------------------------------- the hub
class Hub:
    """The objects registered with one registry or meter, read together at each collection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[int, _Source] = {}

    def add(self, objects: Iterable[Any]) -> list[_Source]:
        """
        Add objects (bare, or ``(name, object)`` pairs) not yet here; return the new sources.

        Raises:
            TypeError: For an object that is not one of ours (nothing is added then).
        """
        wanted: list[tuple[str | None, Any]] = []
        for item in objects:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                name, obj = item
            else:
                name, obj = None, item
            _source_type(obj)  # check them all before adding any
            wanted.append((name, obj))
        added = []
        with self._lock:
            for name, obj in wanted:
                if id(obj) in self._sources:
                    continue  # idempotent: the first registration's name stands
                src_type = _source_type(obj)
                taken = {s.name for s in self._sources.values() if s.kind == src_type.kind}
                label = redact(name) if name is not None else "default"
                base, n = label, 2
                while label in taken:  # two unnamed objects of a kind: default, default_2
                    label, n = f"{base}_{n}", n + 1
                src = src_type(label, obj)
                self._sources[id(obj)] = src
                added.append(src)
        if added:
            import sys

            aio = sys.modules.get("asyncio")
            if aio is not None:
                try:
                    loop = aio.get_running_loop()
                except RuntimeError:
                    loop = None
                for src in added:
                    if isinstance(src, _Cached) and loop is not None:
                        src._loop = loop  # registered in the host's loop: it can read there
        return added

    @property
    def sources(self) -> list[_Source]:
        with self._lock:
            return list(self._sources.values())

    def objects(self) -> list[Any]:
        """The registered objects, in registration order."""
        return [s.obj for s in self.sources]

    async def refresh(self) -> None:
        """Refresh the slow sources' readings in the running loop (before a scrape)."""
        import asyncio

        await asyncio.gather(*(s.arefresh() for s in self.sources), return_exceptions=True)

    def samples(self) -> dict[str, list[Sample]]:
        """Every source's samples, grouped by family (a failing source is logged and skipped)."""
        out: dict[str, list[Sample]] = {f.name: [] for f in FAMILIES}
        for src in self.sources:
            try:
                for sample in src.samples():
                    out[sample.family].append(sample)
            except Exception as err:
                logger.warning("reading %s %r for metrics failed: %s", src.kind, src.name,
                               describe_error(err))  # fmt: skip
        return out


_PROM_HUBS: weakref.WeakKeyDictionary[Any, tuple[Hub, Any]] = weakref.WeakKeyDictionary()
_OTEL_HUBS: weakref.WeakKeyDictionary[Any, tuple[Hub, list[Any]]] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def _go(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else f"{float(v):.1f}"


def _prom_collector(hub: Hub, namespace: str) -> Any:
    core = import_optional("prometheus_client.core")
    prefix = f"{namespace}_" if namespace else ""

    def family(f: Family) -> Any:
        labels = ["monitor", *f.labels]
        name = prefix + f.name
        if f.type == "counter":
            return core.CounterMetricFamily(name, f.help, labels=labels)
        if f.type == "histogram":
            return core.HistogramMetricFamily(name, f.help, labels=labels)
        return core.GaugeMetricFamily(name, f.help, labels=labels)

    class SaflaCollector:
        """A prometheus_client collector over safla_diag objects (``.hub`` lists them)."""

        def __init__(self) -> None:
            self.hub = hub

        def describe(self) -> list[Any]:
            # Every family, whatever is registered yet: later objects join without clashes.
            return [family(f) for f in FAMILIES]

        def collect(self) -> Iterator[Any]:
            grouped = hub.samples()
            for f in FAMILIES:
                rows = grouped[f.name]
                if not rows:
                    continue
                fam = family(f)
                for s in rows:
                    values = [s.labels.get(k, "") for k in ("monitor", *f.labels)]
                    if f.type == "histogram":
                        fam.add_metric(values, [(_go(b), c) for b, c in s.buckets], s.sum)
                    else:
                        fam.add_metric(values, s.value)
                yield fam

    return SaflaCollector()


def hub_for(registry: Any) -> Hub | None:
    """The hub registered with a Prometheus registry, if any (the live endpoint uses it)."""
    with _HUBS_LOCK:
        found = _PROM_HUBS.get(registry)
    return None if found is None else found[0]


def register_prometheus(
    *objects: Exportable | tuple[str, Exportable],
    registry: Any = None,
    namespace: str = "safla",
) -> Any:
    """
    Expose the objects' figures to a Prometheus registry, read at each scrape.

    Idempotent per object and registry, and additive: a second call with the same registry adds
    its new objects to the same collector; an object already registered there is skipped.

    Args:
        *objects: PerformanceMonitor, MemoryMonitor, MemoryLeakDetector, MCPTaskRecovery,
            VectorIndexRecovery, MCPConnectionRecovery and LoopMonitor instances, each bare
            (labelled ``monitor="default"``, then ``default_2``, ...) or as a ``(name, object)``
            pair (``monitor="name"``).
        registry: A ``prometheus_client.CollectorRegistry``; the global ``REGISTRY`` by default.
        namespace: Prefix of every metric name (``safla_requests_total``, ...); fixed by the
            first registration with a registry.

    Returns:
        The registry's collector (``registry.unregister(collector)`` removes every object).

    Raises:
        DependencyError: When prometheus_client is not installed (``safla-diag[prometheus]``).
        TypeError: For an object that is not one of those (nothing is registered then).
    """
    prom = import_optional("prometheus_client")
    target = registry if registry is not None else prom.REGISTRY
    with _HUBS_LOCK:
        found = _PROM_HUBS.get(target)
        if found is None:
            hub = Hub()
            hub.add(objects)
            collector = _prom_collector(hub, namespace)
            target.register(collector)
            _PROM_HUBS[target] = (hub, collector)
            return collector
    hub, collector = found
    hub.add(objects)
    return collector


def register_opentelemetry(
    *objects: Exportable | tuple[str, Exportable],
    meter: Any = None,
    meter_provider: Any = None,
    namespace: str = "safla",
) -> list[Any]:
    """
    Expose the same figures as OpenTelemetry observable instruments, read at collection.

    Counters and gauges become observable counters and gauges (``safla.requests``, ...). OTel has
    no asynchronous histogram, so a latency histogram is exported as three observable counters:
    ``<name>.bucket`` (cumulative, with an ``le`` attribute), ``<name>.count`` and ``<name>.sum``.
    Idempotent and additive per meter, like :func:`register_prometheus`.

    Args:
        *objects: As for :func:`register_prometheus`; the name goes in the ``monitor`` attribute.
        meter: The Meter to create the instruments on; by default
            ``metrics.get_meter("safla_diag", meter_provider=meter_provider)``.
        meter_provider: Used when no meter is given (the global provider by default).
        namespace: Prefix of every instrument name.

    Returns:
        The instruments of this meter (created by its first registration).

    Raises:
        DependencyError: When opentelemetry-api is not installed (``safla-diag[otel]``).
        TypeError: For an object that is not one of ours.
    """
    otel = import_optional("opentelemetry.metrics")
    if meter is None:
        meter = otel.get_meter("safla_diag", meter_provider=meter_provider)
    with _HUBS_LOCK:
        found = _OTEL_HUBS.get(meter)
        if found is not None:
            found[0].add(objects)
            return found[1]
        hub = Hub()
        hub.add(objects)
        instruments = _otel_instruments(otel, meter, hub, namespace)
        _OTEL_HUBS[meter] = (hub, instruments)
        return instruments


def _otel_instruments(otel: Any, meter: Any, hub: Hub, namespace: str) -> list[Any]:
    prefix = f"{namespace}." if namespace else ""
    cache: dict[str, Any] = {"at": -math.inf, "data": None}
    lock = threading.Lock()

    def grouped() -> dict[str, list[Sample]]:
        # One reading of every object per collection, shared by all the callbacks.
        with lock:
            if time.monotonic() - cache["at"] > 0.5:
                cache["data"], cache["at"] = hub.samples(), time.monotonic()
            return cache["data"]  # type: ignore[no-any-return]

    def base(f: Family) -> str:
        name = f.name
        for suffix in ("_seconds", "_bytes_per_second", "_bytes"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        return prefix + name

    instruments = []
    for f in FAMILIES:
        if f.type == "histogram":

            def buckets(_o: Any, f: Family = f) -> list[Any]:
                return [
                    otel.Observation(c, {**s.labels, "le": _go(b)})
                    for s in grouped()[f.name]
                    for b, c in s.buckets
                ]

            def count(_o: Any, f: Family = f) -> list[Any]:
                return [otel.Observation(s.buckets[-1][1], s.labels) for s in grouped()[f.name]]

            def total(_o: Any, f: Family = f) -> list[Any]:
                return [otel.Observation(s.sum, s.labels) for s in grouped()[f.name]]

            name = base(f)
            instruments += [
                meter.create_observable_counter(name + ".bucket", callbacks=[buckets], unit="1",
                                                description=f.help + " (cumulative, by le)"),
                meter.create_observable_counter(name + ".count", callbacks=[count], unit="1",
                                                description=f.help + " (count)"),
                meter.create_observable_counter(name + ".sum", callbacks=[total], unit=f.unit,
                                                description=f.help + " (sum)"),
            ]  # fmt: skip
            continue

        def observe(_o: Any, f: Family = f) -> list[Any]:
            return [otel.Observation(s.value, s.labels) for s in grouped()[f.name]]

        create = (
            meter.create_observable_counter
            if f.type == "counter"
            else meter.create_observable_gauge
        )
        instruments.append(create(base(f), callbacks=[observe], unit=f.unit, description=f.help))
    return instruments
