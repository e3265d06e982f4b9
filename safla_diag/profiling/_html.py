"""``_repr_html_`` of MemoryProfiler (state, snapshots, memory) and CPUProfiler (last report)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._html_util import when
from .._redact import redact
from .._report import Num, html_block, html_table

if TYPE_CHECKING:
    from ._cpu import CPUProfiler
    from ._memory import MemoryProfiler

__all__ = ["cpu_profiler_html", "memory_profiler_html"]


def memory_profiler_html(profiler: MemoryProfiler) -> str:
    """The profiler's state, its snapshots (newest last) and the system memory, for Jupyter."""
    now = time.time()
    state = html_table(
        ("", "value"),
        [
            ("tracing", "yes" if profiler.is_tracing else "no"),
            ("baseline", "taken" if profiler.baseline is not None else "none"),
            ("frames per allocation", profiler.nframes),
            ("top consumers shown", profiler.top),
        ],
    )
    snaps = list(profiler.snapshots)
    parts = [state]
    if snaps:
        parts.append(
            html_table(
                ("snapshot", "taken"),
                [(str(s.get("name", "")), when(s.get("timestamp"), now=now)) for s in snaps],
                caption="snapshots",
            )
        )
    info: Mapping[str, Any]
    try:
        info = profiler.get_system_memory_info()
    except Exception:  # a repr must never raise (psutil may be refused /proc)
        info = {}
    if info:
        parts.append(
            html_table(
                ("", "MB"),
                [
                    ("rss", Num(f"{info.get('rss', 0.0):.1f}")),
                    ("vms", Num(f"{info.get('vms', 0.0):.1f}")),
                    ("available", Num(f"{info.get('available', 0.0):.1f}")),
                ],
                caption=f"process memory ({info.get('percent', 0.0):.1f}% of the host)",
            )
        )
    notes = [] if snaps else ["start_tracing(), then take_snapshot(), then analyze_memory_growth()"]
    return html_block("MemoryProfiler", *parts, notes=notes)


def cpu_profiler_html(profiler: CPUProfiler, *, max_rows: int = 10) -> str:
    """
    The profiler's settings and its last report (top ``max_rows`` rows), for Jupyter.

    Only what the profiler holds in memory: no file is read, ``save_to`` is named, not opened.
    """
    state = html_table(
        ("", "value"),
        [
            ("profiling now", "yes" if profiler.is_profiling else "no"),
            ("sort", profiler.sort),
            ("top", profiler.top),
            ("accumulate", "yes" if profiler.accumulate else "no"),
            ("label", redact(profiler.label) if profiler.label else "-"),
            ("save to", redact(profiler.save_to) if profiler.save_to else "-"),
        ],
    )
    parts = [state]
    notes: list[str] = []
    try:
        report = profiler.last_report
    except Exception:  # a repr must never raise
        report = None
    if report is not None:
        parts.append(report._repr_html_(max_rows=min(max_rows, report.top_n)))
    else:
        notes.append(
            "no report yet: decorate a function with profile_function, or use it as `with`"
        )
    return html_block("CPUProfiler", *parts, notes=notes)
