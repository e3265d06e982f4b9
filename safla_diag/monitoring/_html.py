"""``_repr_html_`` of MemoryMonitor and VectorMemoryOptimizer: figures and a usage gauge."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._report import Num, html_block, html_table

if TYPE_CHECKING:
    from ._memory import MemoryMonitor
    from ._optimizer import VectorMemoryOptimizer

__all__ = ["gauge_svg", "memory_monitor_html", "optimizer_html"]


def gauge_svg(percent: float, marks: Sequence[tuple[str, float]], *, width: int = 420) -> str:
    """A horizontal bar of ``percent`` (0-100) with labelled marks (thresholds), inline SVG."""
    p = max(0.0, min(100.0, percent))
    worst = max((v for _, v in marks if p >= v), default=None)
    colour = (
        "#1a7f37"
        if worst is None
        else ("#cf222e" if worst == max(v for _, v in marks) else "#bf8700")
    )
    x0, w = 6, width - 12
    parts = [
        f'<rect x="{x0}" y="14" width="{w}" height="14" fill="#eaeef2" rx="3"></rect>',
        f'<rect class="fill" x="{x0}" y="14" width="{w * p / 100:.1f}" height="14" '
        f'fill="{colour}" rx="3"><title>{p:.1f}%</title></rect>',
    ]
    for i, (label, v) in enumerate(marks):
        x = x0 + w * max(0.0, min(100.0, v)) / 100
        # Alternate labels above and below the bar, so close thresholds stay readable.
        y = 9 if i % 2 == 0 else 41
        anchor = "end" if x > width - 40 else "middle"
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="32" stroke="#57606a"></line>')
        parts.append(
            f'<text x="{x:.1f}" y="{y}" text-anchor="{anchor}" font-size="10" fill="#57606a">'
            f"{html.escape(label)} {v:g}%</text>"
        )
    parts.append(
        f'<text x="{x0}" y="56" font-size="11" fill="#333">{p:.1f}% of the memory it may use</text>'
    )
    return (
        f'<svg class="safla-gauge" width="{width}" height="62" viewBox="0 0 {width} 62" '
        f'role="img" style="font-family:sans-serif"><title>memory {p:.1f}%</title>'
        f"{''.join(parts)}</svg>"
    )


def _mb(value: object) -> object:
    return "-" if not isinstance(value, int | float) else Num(f"{value:.1f}")


def memory_monitor_html(monitor: MemoryMonitor) -> str:
    """The monitor's thresholds, level and the memory it watches (a fresh reading)."""
    info: Mapping[str, Any]
    try:
        info = monitor.get_memory_info()
    except Exception:  # a repr must never raise (a process that is gone, /proc refused)
        info = {}
    percent = float(info.get("memory_percent") or 0.0)
    rows = [
        ("level", monitor.level),
        ("process RSS MB", _mb(info.get("process_rss"))),
        ("available MB", _mb(info.get("system_available"))),
        ("limit MB", _mb(info.get("system_total"))),
        ("cgroup limit MB", _mb(info.get("cgroup_limit"))),
        ("garbage collections run", monitor.gc_runs),
    ]
    gauge = gauge_svg(
        percent, [("warn", monitor.threshold_percent), ("critical", monitor.critical_percent)]
    )
    ok = monitor.level == "ok"
    return html_block("MemoryMonitor", gauge, html_table(("", "value"), rows), ok=ok)


def optimizer_html(optimizer: VectorMemoryOptimizer) -> str:
    """The optimizer's limit, its registered caches and how often it ran."""
    try:
        percent = optimizer.memory_percent()
    except Exception:  # a repr must never raise
        percent = 0.0
    caches = optimizer.caches
    rows: list[tuple[str, object]] = [
        ("caches registered", len(caches)),
        ("optimizations run", optimizer.runs),
    ]
    parts = [gauge_svg(percent, [("max", optimizer.max_memory_percent)])]
    parts.append(html_table(("", "value"), rows))
    if caches:
        parts.append(
            html_table(
                ("cache", "type"),
                [(f"#{i + 1}", type(c).__qualname__) for i, c in enumerate(caches[:20])],
                caption="registered caches",
            )
        )
    return html_block("VectorMemoryOptimizer", *parts)
