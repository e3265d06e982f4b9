"""MemoryProfiler: tracemalloc snapshots and growth analysis, polite to whoever else traces."""

from __future__ import annotations

import gc
import logging
import threading
import time
import tracemalloc
from collections import deque
from typing import Any, TypedDict

from .._lazy import import_optional
from .._report import JsonMixin, html_block, html_table

__all__ = ["GCCounts", "MemoryGrowth", "MemoryProfiler", "SystemMemoryInfo"]

logger = logging.getLogger("safla_diag.profiling")

_MB = 1024 * 1024

# tracemalloc is process-wide. Our profilers share it through this count, so that one stopping
# never pulls tracing from under another, and tracing that someone else started is never stopped.
_tracing_lock = threading.Lock()
_tracing_users = 0
_we_started = False

_GROUPINGS = ("lineno", "traceback", "filename")


def _acquire_tracing(nframes: int) -> None:
    global _tracing_users, _we_started
    with _tracing_lock:
        if _tracing_users == 0:
            if tracemalloc.is_tracing():
                _we_started = False
            else:
                tracemalloc.start(nframes)
                _we_started = True
        _tracing_users += 1


def _release_tracing() -> None:
    global _tracing_users, _we_started
    with _tracing_lock:
        _tracing_users = max(0, _tracing_users - 1)
        if _tracing_users == 0 and _we_started:
            _we_started = False
            if tracemalloc.is_tracing():
                tracemalloc.stop()


def _filters() -> list[tracemalloc.Filter]:
    # Allocations made by tracemalloc itself (snapshots) and by us are noise, not growth.
    return [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),
    ]


def _where(frame: tracemalloc.Frame) -> str:
    return f"{frame.filename}:{frame.lineno}"


class GCCounts(TypedDict):
    """Objects tracked per garbage-collector generation (``gc.get_count()``), as a dict."""

    generation_0: int
    generation_1: int
    generation_2: int


class SystemMemoryInfo(TypedDict):
    """What ``MemoryProfiler.get_system_memory_info()`` returns: a plain dict, typed. Sizes in MB."""

    rss: float
    vms: float
    percent: float
    """Share of physical memory this process uses, 0-100."""
    available: float
    gc_stats: GCCounts
    traced_current: float | None
    """tracemalloc's current figure while it runs, else None."""
    traced_peak: float | None


class MemoryGrowth(dict[str, Any], JsonMixin):
    """
    What ``MemoryProfiler.analyze_memory_growth()`` found: a plain ``dict`` that is also a report.

    Keys (none before a baseline and a snapshot exist): ``total_growth`` (bytes),
    ``total_growth_mb``, ``group_by``, ``baseline``, ``snapshot``, and ``top_consumers``, largest
    growth first: dicts of ``file``, ``size_diff``, ``count_diff``, ``current_size`` and
    ``traceback``. ``to_dict()``, ``to_json()``, ``to_text()`` and ``_repr_html_()`` render it.
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy (consumers' tracebacks as lists)."""
        out = dict(self)
        if "top_consumers" in out:
            out["top_consumers"] = [
                {**c, "traceback": list(c.get("traceback", ()))} for c in out["top_consumers"]
            ]
        return out

    def _title(self) -> str:
        if not self:
            return "no memory growth measured yet (start_tracing() and take_snapshot() first)"
        return (
            f"memory growth {self['total_growth_mb']:+.3f} MB from {self['baseline']} to "
            f"{self['snapshot']} (by {self['group_by']})"
        )

    def to_text(self) -> str:
        """The total and the top consumers, one per line, in KiB."""
        lines = [self._title()]
        for c in self.get("top_consumers", ()):
            lines.append(
                f"  {c['size_diff'] / 1024:+10.1f} KiB {c['count_diff']:+8d} blocks  {c['file']}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The total and the top consumers as a table, for Jupyter."""
        consumers = self.get("top_consumers", ())
        table = html_table(
            ("allocated at", "KiB grown", "blocks grown", "KiB now"),
            [
                (
                    c["file"],
                    round(c["size_diff"] / 1024, 1),
                    c["count_diff"],
                    round(c["current_size"] / 1024, 1),
                )
                for c in consumers
            ],
        )
        return html_block(self._title(), table if consumers else "")

    def __repr__(self) -> str:
        if not self:
            return "<MemoryGrowth empty>"
        return (
            f"<MemoryGrowth total_growth_mb={self['total_growth_mb']:.3f} "
            f"consumers={len(self.get('top_consumers', ()))}>"
        )


class MemoryProfiler:
    """
    Where memory grows: tracemalloc snapshots compared with a baseline.

    ``start_tracing()`` takes the baseline, ``take_snapshot()`` records a point, and
    ``analyze_memory_growth()`` compares the latest snapshot with the baseline, grouped by
    ``file:line`` or by whole traceback. Works whether or not tracemalloc was already running,
    and leaves it as it found it. Also a context manager: ``with MemoryProfiler() as mp: ...``
    traces the block and takes a final snapshot on exit. Thread-safe.
    """

    def __init__(self, *, nframes: int = 10, top: int = 10, keep: int = 10) -> None:
        """
        Configure the profiler; nothing is traced until ``start_tracing()``.

        Args:
            nframes: Frames stored per allocation when *we* start tracemalloc (deeper tracebacks
                cost more memory); tracing that was already running keeps its own setting.
            top: How many consumers ``analyze_memory_growth()`` lists by default.
            keep: How many snapshots to keep (the oldest are dropped; the baseline is kept).

        Raises:
            ValueError: When a number is out of range.
        """
        for name, value, low in (("nframes", nframes, 1), ("top", top, 1), ("keep", keep, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if nframes > 1000:
            raise ValueError(f"nframes must be at most 1000, got {nframes}")
        self.nframes = nframes
        self.top = top
        self.baseline: tracemalloc.Snapshot | None = None
        self.snapshots: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.RLock()
        self._tracing = False
        self._taken = 0

    def _repr_html_(self) -> str:
        from ._html import memory_profiler_html

        return memory_profiler_html(self)

    @property
    def is_tracing(self) -> bool:
        """True between ``start_tracing()`` and ``stop_tracing()``."""
        return self._tracing

    def start_tracing(self) -> None:
        """
        Start tracing allocations (unless already running) and take the baseline snapshot.

        Calling it again while tracing restarts the analysis from a new baseline.
        """
        with self._lock:
            if not self._tracing:
                _acquire_tracing(self.nframes)
                self._tracing = True
            self.snapshots.clear()
            self.baseline = self._snapshot()
            logger.debug(
                "memory tracing started (%d frames per allocation)",
                tracemalloc.get_traceback_limit(),
            )

    def _snapshot(self) -> tracemalloc.Snapshot:
        if not tracemalloc.is_tracing():
            raise RuntimeError("memory tracing is not running; call start_tracing() first")
        return tracemalloc.take_snapshot().filter_traces(_filters())

    def take_snapshot(self, name: str | None = None) -> tracemalloc.Snapshot:
        """
        Take a snapshot and keep it (with its name and time) in ``snapshots``.

        Args:
            name: A name for it; ``snapshot_<n>`` by default.

        Returns:
            The snapshot (our own and tracemalloc's allocations filtered out).

        Raises:
            RuntimeError: When tracing has not been started (or someone stopped tracemalloc).
        """
        with self._lock:
            if not self._tracing:
                raise RuntimeError("memory tracing is not started; call start_tracing() first")
            snapshot = self._snapshot()
            self.snapshots.append(
                {
                    "name": name or f"snapshot_{self._taken}",
                    "snapshot": snapshot,
                    "timestamp": time.time(),
                }
            )
            self._taken += 1
            return snapshot

    def analyze_memory_growth(
        self, *, group_by: str = "lineno", top: int | None = None
    ) -> MemoryGrowth:
        """
        Compare the latest snapshot with the baseline.

        Args:
            group_by: ``"lineno"`` (one entry per ``file:line``), ``"traceback"`` (one per whole
                allocation traceback, ``nframes`` deep) or ``"filename"``.
            top: How many consumers to list; defaults to the profiler's ``top``.

        Returns:
            A :class:`MemoryGrowth` (a ``dict`` with report methods): empty before a baseline
            and a snapshot exist; else ``total_growth`` (bytes, the sum
            of every difference), ``total_growth_mb``, ``group_by``, ``baseline`` and
            ``snapshot`` (names), and ``top_consumers``, largest growth first: dicts of ``file``
            (``path:line`` of the allocating line), ``size_diff`` and ``current_size`` (bytes),
            ``count_diff`` (blocks) and ``traceback`` (``path:line`` frames, oldest first).

        Raises:
            ValueError: For an unknown ``group_by`` or a non-positive ``top``.
        """
        if group_by not in _GROUPINGS:
            raise ValueError(f"group_by must be one of {', '.join(_GROUPINGS)}, got {group_by!r}")
        n = self.top if top is None else top
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"top must be a positive int, got {n!r}")
        with self._lock:
            if self.baseline is None or not self.snapshots:
                return MemoryGrowth()
            baseline = self.baseline
            latest = self.snapshots[-1]
        diffs = latest["snapshot"].compare_to(baseline, group_by)
        consumers = []
        for stat in diffs[:n]:
            frames = list(stat.traceback)
            consumers.append(
                {
                    "file": _where(frames[-1]) if frames else "unknown",
                    "size_diff": stat.size_diff,
                    "count_diff": stat.count_diff,
                    "current_size": stat.size,
                    "traceback": [_where(f) for f in frames],
                }
            )
        total = sum(stat.size_diff for stat in diffs)
        return MemoryGrowth(
            {
                "total_growth": total,
                "total_growth_mb": total / _MB,
                "group_by": group_by,
                "baseline": "baseline",
                "snapshot": latest["name"],
                "top_consumers": consumers,
            }
        )

    def get_system_memory_info(self) -> SystemMemoryInfo:
        """
        The process's memory as the OS sees it.

        Returns:
            ``rss``, ``vms`` and ``available`` in MB, ``percent`` of physical memory used by this
            process, ``gc_stats`` (``generation_0..2`` object counts), and ``traced_current`` /
            ``traced_peak`` in MB while tracemalloc runs (else None).
        """
        psutil = import_optional("psutil")  # a runtime dependency; imported on first use
        process = psutil.Process()
        info = process.memory_info()
        counts = gc.get_count()
        traced: tuple[float | None, float | None] = (None, None)
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            traced = (current / _MB, peak / _MB)
        return {
            "rss": info.rss / _MB,
            "vms": info.vms / _MB,
            "percent": process.memory_percent(),
            "available": psutil.virtual_memory().available / _MB,
            "gc_stats": {
                "generation_0": counts[0],
                "generation_1": counts[1],
                "generation_2": counts[2],
            },
            "traced_current": traced[0],
            "traced_peak": traced[1],
        }

    def stop_tracing(self) -> None:
        """
        Stop tracing; snapshots stay available for analysis.

        tracemalloc itself stops only if it was not running before we started it and no other
        MemoryProfiler still uses it.
        """
        with self._lock:
            if not self._tracing:
                return
            self._tracing = False
            _release_tracing()
            logger.debug("memory tracing stopped")

    def __enter__(self) -> MemoryProfiler:
        self.start_tracing()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._tracing and tracemalloc.is_tracing():
                self.take_snapshot("end")
        finally:
            self.stop_tracing()

    def __repr__(self) -> str:
        return f"<MemoryProfiler tracing={self._tracing} snapshots={len(self.snapshots)}>"
