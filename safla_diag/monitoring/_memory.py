"""MemoryMonitor: process, system and cgroup memory."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .._errors import MemoryPressureError
from ._cgroup import CgroupMemory, read_cgroup_memory, refresh_usage

if TYPE_CHECKING:
    import psutil

__all__ = [
    "MemoryInfo",
    "MemoryMonitor",
    "effective_memory",
]

logger = logging.getLogger("safla_diag.monitoring")

MB = 1024 * 1024


class MemoryInfo(TypedDict):
    """
    What ``MemoryMonitor.get_memory_info()`` returns: a plain dict, typed. Sizes in MB.

    "system" is the cgroup where a limit applies (its limit, what is left, its working set as a
    percent), else the host; the ``cgroup_*`` keys are None without a limit.
    """

    process_rss: float
    process_vms: float
    process_percent: float
    system_total: float
    system_available: float
    system_percent: float
    host_total: float
    host_available: float
    host_percent: float
    cgroup_limit: float | None
    cgroup_usage: float | None
    cgroup_version: int | None
    memory_percent: float
    """The figure the thresholds apply to."""


def effective_memory(
    cgroup: CgroupMemory | None, host_total: int, host_available: int
) -> tuple[int, int, float]:
    """
    Total, available and percent used of the memory this process can really use.

    A cgroup limit below the host's memory is the total; its working set is what is used.

    Args:
        cgroup: The cgroup limit and usage, if any.
        host_total: The host's physical memory, bytes.
        host_available: The host's available memory, bytes.

    Returns:
        (total bytes, available bytes, percent used).
    """
    if cgroup is not None and cgroup.limit_bytes < host_total:
        used = cgroup.usage_bytes if cgroup.usage_bytes is not None else 0
        available = max(0, min(host_available, cgroup.limit_bytes - used))
        return cgroup.limit_bytes, available, 100.0 * used / cgroup.limit_bytes
    used = host_total - host_available
    return host_total, host_available, 100.0 * used / host_total if host_total else 0.0


def _pct(value: float | None) -> str:
    return "None" if value is None else f"{value:.1f}%"


class MemoryMonitor:
    """
    Memory of this process against the memory it can use: the host's, or its cgroup's limit.

    ``check_memory_usage()`` logs a warning above ``threshold_percent`` (and never collects
    garbage there: a full collection costs about 100 ns per tracked object), and above
    ``critical_percent`` runs one full ``gc.collect()`` — at most once per ``gc_interval_s`` —
    then raises MemoryPressureError if still critical.

    The percent checked is the process's RSS as a share of the usable total; in a container with
    a memory limit it is the larger of that and the container's working set as a share of the
    limit, so a container at 95% of its limit is critical even when the host has memory to spare.

    Args:
        threshold_percent: Warning level, 0-100.
        critical_percent: Critical level, 0-100.
        gc_interval_s: Minimum time between two collections at the critical level.
        process: The psutil.Process to watch (this process by default); kept for cheap reads.
        cgroup_root: File-system root for the cgroup files (a test seam).
        cgroup_refresh_s: How long a read cgroup limit is trusted before it is read again.
        clock: Monotonic clock (a test seam).

    Raises:
        ValueError: When the thresholds are not 0 < threshold <= critical <= 100.
    """

    def __init__(
        self,
        threshold_percent: float = 85,
        critical_percent: float = 95,
        *,
        gc_interval_s: float = 60.0,
        process: psutil.Process | None = None,
        cgroup_root: Path | str = "/",
        cgroup_refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (0 < threshold_percent <= critical_percent <= 100):
            raise ValueError(
                "expected 0 < threshold_percent <= critical_percent <= 100, got "
                f"{threshold_percent!r} and {critical_percent!r}"
            )
        import psutil

        self.threshold_percent = float(threshold_percent)
        self.critical_percent = float(critical_percent)
        self.gc_interval_s = float(gc_interval_s)
        self.process = process if process is not None else psutil.Process()
        self._psutil = psutil
        self._cgroup_root = Path(cgroup_root)
        self._cgroup_refresh_s = cgroup_refresh_s
        self._clock = clock
        self._cgroup_at: float | None = None
        self._cgroup_limit: CgroupMemory | None = None
        self._last_gc: float | None = None
        self.gc_runs = 0
        self.last_percent: float | None = None
        self.level = "ok"
        self.process.cpu_percent(None)  # prime: the first call always returns 0.0

    def __repr__(self) -> str:
        return (
            f"<MemoryMonitor threshold={self.threshold_percent:g}% "
            f"critical={self.critical_percent:g}% last={_pct(self.last_percent)} level={self.level}>"
        )

    def _repr_html_(self) -> str:
        from ._html import memory_monitor_html

        return memory_monitor_html(self)

    # ------------------------------------------------------------------ reading
    def cgroup(self) -> CgroupMemory | None:
        """The cgroup memory limit and current usage, or None when no limit applies."""
        now = self._clock()
        if self._cgroup_at is None or now - self._cgroup_at >= self._cgroup_refresh_s:
            self._cgroup_limit = read_cgroup_memory(self._cgroup_root)
            self._cgroup_at = now
            return self._cgroup_limit
        if self._cgroup_limit is None:
            return None
        # The limit is cached; the usage changes all the time.
        return refresh_usage(self._cgroup_limit, self._cgroup_root)

    def memory_percent(self) -> float:
        """The percent that the thresholds apply to (see the class docstring)."""
        rss = self.process.memory_info().rss
        vm = self._psutil.virtual_memory()
        cg = self.cgroup()
        total, _, used_percent = effective_memory(cg, vm.total, vm.available)
        percent = 100.0 * rss / total
        if cg is not None and cg.limit_bytes < vm.total:
            percent = max(percent, used_percent)
        return float(percent)

    def get_memory_info(self) -> MemoryInfo:
        """
        Memory of the process and of what it runs in, in MB (percents 0-100).

        Returns:
            The guide's keys ``process_rss``, ``process_vms``, ``process_percent``,
            ``system_total``, ``system_available``, ``system_percent`` — where a cgroup limit
            applies, "system" is the cgroup: its limit, what is left of it, its working set as a
            percent — plus ``host_total``, ``host_available``, ``host_percent``,
            ``cgroup_limit`` and ``cgroup_usage`` (None without a limit), ``cgroup_version`` and
            ``memory_percent`` (the figure the thresholds apply to).
        """
        mi = self.process.memory_info()
        vm = self._psutil.virtual_memory()
        cg = self.cgroup()
        total, available, used_percent = effective_memory(cg, vm.total, vm.available)
        limited = cg is not None and cg.limit_bytes < vm.total
        process_percent = 100.0 * mi.rss / total
        return {
            "process_rss": mi.rss / MB,
            "process_vms": mi.vms / MB,
            "process_percent": process_percent,
            "system_total": total / MB,
            "system_available": available / MB,
            "system_percent": used_percent if limited else float(vm.percent),
            "host_total": vm.total / MB,
            "host_available": vm.available / MB,
            "host_percent": float(vm.percent),
            "cgroup_limit": cg.limit_bytes / MB if cg is not None else None,
            "cgroup_usage": (
                cg.usage_bytes / MB if cg is not None and cg.usage_bytes is not None else None
            ),
            "cgroup_version": cg.version if cg is not None else None,
            "memory_percent": max(process_percent, used_percent) if limited else process_percent,
        }

    def sample(self) -> dict[str, Any]:
        """
        One cheap tick: RSS (MB), CPU percent since the last tick, GC counts per generation.

        No cgroup or system-wide reads, no ``memory_full_info()``: this is what a scheduled
        loop or a metrics scrape can call every few seconds.
        """
        return {
            "rss": self.process.memory_info().rss / MB,
            "cpu_percent": self.process.cpu_percent(None),
            "gc_counts": gc.get_count(),
        }

    # ------------------------------------------------------------------ checking
    def check_memory_usage(self) -> float:
        """
        Check memory against the thresholds.

        Returns:
            The memory percent checked.

        Raises:
            MemoryPressureError: Above ``critical_percent`` after garbage collection (or when a
                collection ran less than ``gc_interval_s`` ago and it is still critical).
        """
        percent = self.memory_percent()
        self.last_percent = percent
        if percent > self.critical_percent:
            self.level = "critical"
            logger.warning(
                "critical memory usage: %.1f%% (critical above %g%%)",
                percent,
                self.critical_percent,
            )
            now = self._clock()
            if self._last_gc is None or now - self._last_gc >= self.gc_interval_s:
                self._last_gc = now
                self.gc_runs += 1
                collected = gc.collect()
                logger.info("garbage collection freed %d objects", collected)
                percent = self.memory_percent()
                self.last_percent = percent
                if percent <= self.critical_percent:
                    self.level = "warning" if percent > self.threshold_percent else "ok"
            if percent > self.critical_percent:
                raise MemoryPressureError(
                    f"critical memory usage: {percent:.1f}% (critical above "
                    f"{self.critical_percent:g}%)"
                )
        elif percent > self.threshold_percent:
            self.level = "warning"
            logger.warning(
                "high memory usage: %.1f%% (warning above %g%%)", percent, self.threshold_percent
            )
        else:
            self.level = "ok"
        return percent
