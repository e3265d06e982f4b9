"""VectorMemoryOptimizer: registered caches and garbage collection."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._redact import describe_error
from .._report import JsonMixin, html_block, html_table
from ._cgroup import read_cgroup_memory
from ._memory import MB, effective_memory

if TYPE_CHECKING:
    import psutil

__all__ = [
    "MemoryOptimization",
    "VectorMemoryOptimizer",
]

logger = logging.getLogger("safla_diag.monitoring")


def _clear_method(obj: object) -> Callable[[], object]:
    for name in ("clear", "cache_clear"):
        method = getattr(obj, name, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    raise TypeError(f"a cache needs a clear() method; {type(obj).__name__} has none")


def _malloc_trim() -> bool:
    """Give freed heap pages back to the OS (glibc only); True when it released some."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


class MemoryOptimization(dict[str, Any], JsonMixin):
    """
    What ``VectorMemoryOptimizer.optimize_memory_usage()`` did: a plain ``dict`` that is a report.

    Keys: ``action`` ("none", "gc" or "gc+caches"), ``memory_percent_before`` and ``_after``,
    ``rss_before_mb``, ``rss_after_mb``, ``freed_mb``, ``gc_collected`` (objects per generation),
    ``caches_cleared``, ``trimmed`` and ``duration_s``. ``to_dict()``, ``to_json()``,
    ``to_text()`` and ``_repr_html_()`` render it.
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        out = dict(self)
        out["gc_collected"] = dict(self.get("gc_collected", {}))
        return out

    def _title(self) -> str:
        if self.get("action", "none") == "none":
            return (
                f"memory optimization: nothing to do at "
                f"{self.get('memory_percent_before', 0.0):.1f}%"
            )
        return (
            f"memory optimization ({self['action']}): {self['rss_before_mb']:.1f} MB -> "
            f"{self['rss_after_mb']:.1f} MB, {self['freed_mb']:.1f} MB freed"
        )

    def to_text(self) -> str:
        """One line for the outcome, one for the details."""
        collected = sum(self.get("gc_collected", {}).values())
        return (
            f"{self._title()}\n  memory {self.get('memory_percent_before', 0.0):.1f}% -> "
            f"{self.get('memory_percent_after', 0.0):.1f}%, {collected} objects collected, "
            f"{self.get('caches_cleared', 0)} caches cleared, "
            f"{'trimmed' if self.get('trimmed') else 'not trimmed'}, "
            f"{self.get('duration_s', 0.0) * 1000:.1f} ms"
        )

    def _repr_html_(self) -> str:
        """The figures as a table, for Jupyter."""
        rows = [
            (key, round(value, 3) if isinstance(value, float) else value)
            for key, value in self.items()
            if key != "gc_collected"
        ]
        rows += [
            (f"gc collected (generation {g})", n) for g, n in self.get("gc_collected", {}).items()
        ]
        return html_block(self._title(), html_table(("", "value"), rows))

    def __repr__(self) -> str:
        return (
            f"<MemoryOptimization action={self.get('action')!r} "
            f"freed_mb={self.get('freed_mb', 0.0):.1f}>"
        )


class VectorMemoryOptimizer:
    """
    Frees memory when the process uses more than ``max_memory_percent``.

    Caches are registered weakly: registering never keeps an object alive, and a cache that was
    collected simply drops out. ``optimize_memory_usage()`` first collects garbage generation by
    generation; if memory is still above the limit it clears the registered caches and collects
    again; on glibc it then asks malloc to return freed pages (``malloc_trim``), which is what
    makes the RSS actually drop. It reports the RSS before and after.

    Args:
        max_memory_percent: Above this share of the usable memory (the cgroup limit in a
            container) the optimizer acts.
        process: The psutil.Process to measure (this process by default).
        cgroup_root: File-system root for the cgroup files (a test seam).
        trim: Call glibc's ``malloc_trim(0)`` after collecting.

    Raises:
        ValueError: When ``max_memory_percent`` is not in (0, 100].
    """

    def __init__(
        self,
        max_memory_percent: float = 80,
        *,
        process: psutil.Process | None = None,
        cgroup_root: Path | str = "/",
        trim: bool = True,
    ) -> None:
        if not (0 < max_memory_percent <= 100):
            raise ValueError(f"max_memory_percent must be in (0, 100], got {max_memory_percent!r}")
        import psutil

        self.max_memory_percent = float(max_memory_percent)
        self.process = process if process is not None else psutil.Process()
        self._psutil = psutil
        self._cgroup_root = Path(cgroup_root)
        self.trim = trim
        self._caches: dict[int, weakref.ref[Any]] = {}
        self._strong: dict[int, Any] = {}
        self.runs = 0

    def __repr__(self) -> str:
        return f"<VectorMemoryOptimizer max={self.max_memory_percent:g}% caches={len(self.caches)}>"

    def _repr_html_(self) -> str:
        from ._html import optimizer_html

        return optimizer_html(self)

    # ------------------------------------------------------------------ caches
    def register_cache(self, obj: object, *, weak: bool = True) -> None:
        """
        Register a cache to clear under memory pressure.

        Args:
            obj: Anything with a ``clear()`` method (or ``cache_clear()``, as functools caches).
            weak: Hold it weakly (the default). Plain ``dict`` and ``list`` cannot be weakly
                referenced: use a subclass, or ``weak=False`` to hold it strongly.

        Raises:
            TypeError: When it has no ``clear()``, or cannot be weakly referenced.
        """
        _clear_method(obj)
        key = id(obj)
        if not weak:
            self._strong[key] = obj
            return
        caches = self._caches

        def forget(_ref: weakref.ref[Any], key: int = key) -> None:
            caches.pop(key, None)

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:
            raise TypeError(
                f"cannot hold a {type(obj).__name__} weakly; register a subclass of it, or pass "
                "weak=False to keep it alive"
            ) from None
        self._caches[key] = ref

    def unregister_cache(self, obj: object) -> None:
        """Forget a registered cache (no error when it was not registered)."""
        self._caches.pop(id(obj), None)
        self._strong.pop(id(obj), None)

    @property
    def caches(self) -> list[object]:
        """The registered caches still alive."""
        alive: list[object] = []
        for ref in list(self._caches.values()):
            obj = ref()
            if obj is not None:
                alive.append(obj)
        alive.extend(self._strong.values())
        return alive

    def clear_caches(self) -> int:
        """Clear every registered cache; return how many were cleared."""
        cleared = 0
        for obj in self.caches:
            try:
                _clear_method(obj)()
                cleared += 1
            except Exception as err:
                logger.warning("clearing a registered cache failed: %s", describe_error(err))
        return cleared

    # ------------------------------------------------------------------ memory
    def memory_percent(self) -> float:
        """The process's RSS as a percent of the memory it can use (cgroup-aware)."""
        vm = self._psutil.virtual_memory()
        total, _, _ = effective_memory(
            read_cgroup_memory(self._cgroup_root), vm.total, vm.available
        )
        return float(100.0 * self.process.memory_info().rss / total)

    def optimize_memory_usage(self, *, force: bool = False) -> MemoryOptimization:
        """
        Free memory if the process is above ``max_memory_percent`` (or always, with ``force``).

        Returns:
            A :class:`MemoryOptimization` (a ``dict`` with report methods): ``action`` ("none",
            "gc" or "gc+caches"), ``memory_percent_before`` and ``_after``,
            ``rss_before_mb``, ``rss_after_mb``, ``freed_mb``, ``gc_collected`` (objects per
            generation, as ``{"0": n, "1": n, "2": n}``), ``caches_cleared``, ``trimmed`` and
            ``duration_s``.
        """
        t0 = time.perf_counter()
        rss_before = self.process.memory_info().rss
        before = self.memory_percent()
        report = MemoryOptimization(
            {
                "action": "none",
                "memory_percent_before": before,
                "memory_percent_after": before,
                "rss_before_mb": rss_before / MB,
                "rss_after_mb": rss_before / MB,
                "freed_mb": 0.0,
                "gc_collected": {},
                "caches_cleared": 0,
                "trimmed": False,
                "duration_s": 0.0,
            }
        )
        if before <= self.max_memory_percent and not force:
            report["duration_s"] = time.perf_counter() - t0
            return report
        self.runs += 1
        logger.warning(
            "memory at %.1f%% (limit %g%%): collecting garbage", before, self.max_memory_percent
        )
        collected = {str(g): gc.collect(g) for g in range(3)}
        report["action"] = "gc"
        after = self.memory_percent()
        if after > self.max_memory_percent or force:
            report["caches_cleared"] = self.clear_caches()
            report["action"] = "gc+caches"
            collected["2"] += gc.collect(2)
        if self.trim:
            report["trimmed"] = _malloc_trim()
        rss_after = self.process.memory_info().rss
        report["gc_collected"] = collected
        report["rss_after_mb"] = rss_after / MB
        report["freed_mb"] = (rss_before - rss_after) / MB
        report["memory_percent_after"] = self.memory_percent()
        report["duration_s"] = time.perf_counter() - t0
        logger.info(
            "memory optimization (%s): %.1f MB -> %.1f MB, %d caches cleared",
            report["action"],
            rss_before / MB,
            rss_after / MB,
            report["caches_cleared"],
        )
        return report
