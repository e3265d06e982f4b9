"""
Pictures of the monitors for Jupyter: inline SVG, drawn here in plain Python.

No plotting library and nothing from the network: each picture is a few hundred bytes of
``<svg>`` that JupyterLab, classic Notebook and VS Code show as they are.

- :func:`leak_svg`: the memory floor (the detector's bucket minima), each time scale's fitted
  slope over its window (red for the scale that fired), the floor points inside that window
  (the samples behind the verdict) and the projected time to the memory limit.
- :func:`latency_svg`: a histogram of the PerformanceMonitor's window with p50, p95 and p99
  and the thresholds (``max_avg_s``, ``max_p95_s``) marked.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._report import Num, html_block, html_table

if TYPE_CHECKING:
    from ._leaks import LeakAnalysis, MemoryLeakDetector
    from ._performance import PerformanceMonitor

__all__ = [
    "latency_svg",
    "leak_detector_html",
    "leak_svg",
    "percentile",
    "performance_html",
    "scale_seconds",
]

_W, _H = 640, 240
_L, _R, _T, _B = 56, 16, 16, 30  # margins: left (axis labels), right, top, bottom


def _esc(value: object) -> str:
    return html.escape(str(value))


def _svg(kind: str, body: list[str], title: str) -> str:
    return (
        f'<svg class="safla-{kind}" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" style="font:11px sans-serif;background:#fff">'
        f"<title>{_esc(title)}</title>{''.join(body)}</svg>"
    )


def _line(x1: float, y1: float, x2: float, y2: float, colour: str, extra: str = "") -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}"'
        f"{extra}></line>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", colour: str = "#333") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{colour}" '
        'paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">'
        f"{_esc(text)}</text>"
    )


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(n + 2) if first + i * step <= hi + 1e-9]


def _axes(
    body: list[str], xlo: float, xhi: float, ylo: float, yhi: float, xfmt: Any, yfmt: Any
) -> None:
    x0, x1, y0, y1 = _L, _W - _R, _H - _B, _T
    body.append(_line(x0, y0, x1, y0, "#888"))
    body.append(_line(x0, y0, x0, y1, "#888"))
    for v in _ticks(ylo, yhi):
        y = y0 - (v - ylo) / (yhi - ylo) * (y0 - y1) if yhi > ylo else y0
        body.append(_line(x0 - 3, y, x1, y, "#eee"))
        body.append(_text(x0 - 5, y + 4, yfmt(v), anchor="end"))
    for v in _ticks(xlo, xhi, 6):
        x = x0 + (v - xlo) / (xhi - xlo) * (x1 - x0) if xhi > xlo else x0
        body.append(_line(x, y0, x, y0 + 3, "#888"))
        body.append(_text(x, y0 + 15, xfmt(v), anchor="middle"))


_SCALE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")


def scale_seconds(name: str) -> float | None:
    """A scale's window from its name (``"10m"`` -> 600.0), None when it is not one."""
    m = _SCALE.match(name)
    if m is None:
        return None
    return float(m.group(1)) * {"s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def leak_svg(analysis: LeakAnalysis, series: Sequence[tuple[float, float]]) -> str:
    """
    The memory floor over time with every scale's fitted slope, as inline SVG.

    Args:
        analysis: The verdict (its ``scales`` give each slope, its ``scale`` the one shown).
        series: The bucket floors ``(timestamp, mb)``, oldest first.

    Returns:
        ``<svg>`` markup; a short note instead of a plot when there are fewer than two points.
    """
    pts = [(float(t), float(v)) for t, v in series if math.isfinite(t) and math.isfinite(v)]
    if len(pts) < 2:
        return (
            '<p class="safla-leak-empty">no picture yet: the detector needs two minutes of '
            "samples (one floor per bucket)</p>"
        )
    t_end = pts[-1][0]
    xs = [t - t_end for t, _ in pts]  # seconds before the last bucket
    ys = [v for _, v in pts]
    ylo, yhi = min(ys), max(ys)
    lines: list[tuple[str, float, float, float, bool]] = []  # scale, x from, slope/s, b, fired
    for s in analysis.scales:
        slope_h = s.get("slope_mb_per_hour")
        window = scale_seconds(str(s.get("scale", "")))
        if (s.get("points") or 0) < 3 or slope_h is None or window is None:
            continue
        if str(s.get("reason", "")).startswith("not enough"):
            continue
        if not math.isfinite(slope_h):
            continue
        inside = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= -window]
        if len(inside) < 2:
            continue
        slope = slope_h / 3600.0
        b = _median([y - slope * x for x, y in inside])
        x_from = max(-window, xs[0])
        lines.append((str(s["scale"]), x_from, slope, b, bool(s.get("fired"))))
        ylo, yhi = min(ylo, b + slope * x_from, b), max(yhi, b + slope * x_from, b)
    fired = next((ln for ln in lines if ln[4]), None)
    xhi = 0.0
    if fired is not None:
        xhi = (0.0 - xs[0]) * 0.25  # room for the projection
        yhi = max(yhi, fired[3] + fired[2] * xhi)
    pad = (yhi - ylo) * 0.08 or 1.0
    ylo, yhi = ylo - pad, yhi + pad
    xlo = xs[0]

    def px(x: float) -> float:
        return _L + (x - xlo) / (xhi - xlo) * (_W - _L - _R) if xhi > xlo else _L

    def py(y: float) -> float:
        return (_H - _B) - (y - ylo) / (yhi - ylo) * (_H - _B - _T)

    body: list[str] = []

    def xfmt(v: float) -> str:
        return "now" if abs(v) < 1e-9 else ("+" if v > 0 else "-") + _duration(v)

    _axes(body, xlo, xhi, ylo, yhi, xfmt, lambda v: f"{v:.0f} MB")
    floor = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    body.append(
        f'<polyline class="floor" points="{floor}" fill="none" stroke="#0969da" '
        f'stroke-width="1.5"><title>memory floor (minimum per bucket)</title></polyline>'
    )
    if fired is not None:
        window = scale_seconds(fired[0]) or 0.0
        for x, y in zip(xs, ys, strict=True):
            if x >= -window:
                body.append(
                    f'<circle class="fired" cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" '
                    f'fill="#cf222e"><title>{y:.1f} MB, {_duration(x)} ago</title></circle>'
                )
    for i, (name, x_from, slope, b, did) in enumerate(lines):
        colour = "#cf222e" if did else "#8c959f"
        dash = "" if did else ' stroke-dasharray="4 3"'
        body.append(
            f'<line class="slope" x1="{px(x_from):.1f}" y1="{py(b + slope * x_from):.1f}" '
            f'x2="{px(0):.1f}" y2="{py(b):.1f}" stroke="{colour}" stroke-width="1.5"{dash}>'
            f"<title>{_esc(name)}: {slope * 3600:+.1f} MB/h</title></line>"
        )
        body.append(
            _text(
                _L + 6,
                _T + 26 + 13 * i,
                f"{name} {slope * 3600:+.1f} MB/h",
                anchor="start",
                colour=colour,
            )
        )
    if fired is not None:
        _, _, slope, b, _ = fired
        body.append(
            _line(px(0), py(b), px(xhi), py(b + slope * xhi), "#cf222e", ' stroke-dasharray="2 3"')
        )
        if analysis.time_to_limit_s is not None and analysis.memory_limit_mb is not None:
            note = (
                f"{analysis.memory_limit_mb:.0f} MB limit in "
                f"{_duration(analysis.time_to_limit_s)} at this rate"
            )
            body.append(_text(_L + 6, _T + 12, note, colour="#cf222e"))
    verdict = "leak suspected" if analysis.leaking else "no leak found"
    return _svg("leak", body, f"memory floor: {verdict}")


def leak_detector_html(detector: MemoryLeakDetector) -> str:
    """A MemoryLeakDetector for Jupyter: its state and its current analysis with the picture."""
    analysis = detector.analyze(top_consumers=False)
    state = html_table(
        ("", "value"),
        [
            ("samples", detector.samples),
            ("floor points kept", len(detector.series())),
            ("monitoring", "yes" if detector.monitoring else "no"),
            ("leak threshold MB/h", Num(f"{detector.leak_threshold:g}")),
        ],
        caption="detector",
    )
    return html_block("MemoryLeakDetector", state, analysis._repr_html_())


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """``numpy.percentile(values, q)`` (linear interpolation) of already sorted values."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_svg(
    times: Sequence[float], *, thresholds: Mapping[str, float] | None = None, bins: int = 30
) -> str:
    """
    A histogram of response times with p50, p95, p99 and threshold markers, as inline SVG.

    The x axis ends a little after the p99 (or at the largest threshold when that is nearer), so
    one outlier does not squash the rest; samples beyond it are counted in the last bar, which
    says so.

    Args:
        times: Response times, seconds.
        thresholds: ``{label: seconds}`` drawn as dashed lines (``max_p95_s``, ...).
        bins: Number of bars.
    """
    values = sorted(t for t in times if math.isfinite(t))
    if not values:
        return '<p class="safla-latency-empty">no requests recorded yet</p>'
    marks = {f"p{q}": percentile(values, q) for q in (50, 95, 99)}
    lines = dict(thresholds or {})
    top = max(marks["p99"] * 1.15, values[0] * 1.01, 1e-9)
    for v in lines.values():
        if v <= values[-1]:
            top = max(top, v * 1.05)
    top = min(top, values[-1]) if values[-1] > 0 else top
    top = max(top, marks["p99"], 1e-9)
    width = top / bins
    counts = [0] * bins
    over = 0
    for v in values:
        i = int(v / width)
        if i >= bins:
            if v > top:
                over += 1
            i = bins - 1
        counts[i] += 1
    ymax = max(counts)
    body: list[str] = []
    unit, scale = ("ms", 1000.0) if top < 2 else ("s", 1.0)

    def px(x: float) -> float:
        return _L + x / top * (_W - _L - _R)

    def py(c: float) -> float:
        return (_H - _B) - c / ymax * (_H - _B - _T - 14)

    _axes(body, 0.0, top, 0.0, ymax, lambda v: f"{v * scale:g}", lambda v: f"{v:g}")
    body.append(_text(_W - _R, _H - 2, f"response time ({unit})", anchor="end", colour="#57606a"))
    for i, c in enumerate(counts):
        if not c:
            continue
        x = px(i * width)
        w = max(1.0, px((i + 1) * width) - x - 1)
        note = f" (+{over} beyond the axis)" if i == bins - 1 and over else ""
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{py(c):.1f}" width="{w:.1f}" '
            f'height="{py(0) - py(c):.1f}" fill="#54aeff"><title>{c} requests, '
            f"{i * width * scale:.3g}-{(i + 1) * width * scale:.3g} {unit}{note}</title></rect>"
        )
    colours = {"p50": "#1a7f37", "p95": "#bf8700", "p99": "#cf222e"}
    for n, (label, v) in enumerate(marks.items()):
        x = px(min(v, top))
        body.append(_line(x, _T + 12, x, _H - _B, colours[label], ' stroke-width="1.5"'))
        right = x > _W - _R - 90  # near the right edge: the label goes to the left of its line
        body.append(
            _text(
                x - 3 if right else x + 3,
                _T + 10 + 11 * n,
                f"{label} {v * scale:.3g} {unit}",
                anchor="end" if right else "start",
                colour=colours[label],
            )
        )
    for label, v in lines.items():
        if v <= top:
            x = px(v)
            body.append(_line(x, _T, x, _H - _B, "#6e7781", ' stroke-dasharray="5 3"'))
            body.append(
                _text(x - 3, _H - _B - 4, f"{label} {v * scale:g}", anchor="end", colour="#6e7781")
            )
        else:
            body.append(
                _text(
                    _W - _R,
                    _T + 10,
                    f"{label} {v * scale:g} {unit} (off the axis)",
                    anchor="end",
                    colour="#6e7781",
                )
            )
    return _svg("latency", body, f"latency of {len(values)} requests")


def performance_html(monitor: PerformanceMonitor) -> str:
    """A PerformanceMonitor for Jupyter: its statistics, thresholds and the latency histogram."""
    stats = monitor.get_performance_stats()
    times = monitor.response_times
    sorted_times = sorted(times)
    ms = [
        ("p50 ms", percentile(sorted_times, 50)),
        ("p95 ms", stats.get("p95_response_time", 0.0)),
        ("p99 ms", percentile(sorted_times, 99)),
        ("average ms", stats.get("avg_response_time", 0.0)),
        ("max ms", stats.get("max_response_time", 0.0)),
    ]
    rows: list[tuple[str, object]] = [(k, Num(f"{v * 1000:.3f}")) for k, v in ms]
    rows += [
        ("error rate", Num(f"{stats.get('error_rate', 0.0):.3f}")),
        ("requests in window", stats.get("window_requests", 0)),
        ("requests since start", stats.get("total_requests", 0)),
        ("threshold: average s", Num(f"{monitor.max_avg_s:g}")),
        ("threshold: p95 s", Num(f"{monitor.max_p95_s:g}")),
        ("threshold: error rate", Num(f"{monitor.max_error_rate:g}")),
    ]
    breached = sorted(monitor.breached)
    picture = latency_svg(
        times, thresholds={"max_avg_s": monitor.max_avg_s, "max_p95_s": monitor.max_p95_s}
    )
    title = f"PerformanceMonitor (window {monitor.window_size})"
    notes = [f"breached: {', '.join(breached)}"] if breached else []
    return html_block(title, picture, html_table(("", "value"), rows), notes=notes, ok=not breached)
