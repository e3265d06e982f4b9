"""
What each kind of object exports: a source per kind turns its public reading into samples, and a hub
holds the objects registered with one registry or meter.

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
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .._aio import running_loop
from .._redact import describe_error, redact
from ..mcp_retry import MCPConnectionRecovery, MCPTaskRecovery
from ..monitoring import (
    LoopMonitor,
    MemoryLeakDetector,
    MemoryMonitor,
    PerformanceMonitor,
)
from ..vector import VectorIndexRecovery
from ._metrics import FAMILIES, Sample

__all__ = ["Exportable", "Hub"]

logger = logging.getLogger("safla_diag.live")

MB = 1024 * 1024

Exportable = (
    PerformanceMonitor
    | MemoryMonitor
    | MemoryLeakDetector
    | MCPTaskRecovery
    | VectorIndexRecovery
    | MCPConnectionRecovery
    | LoopMonitor
)


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
        aio, running = running_loop()
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
        _aio, loop = running_loop()
        if loop is not None:
            for src in added:
                if isinstance(src, _Cached):
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
