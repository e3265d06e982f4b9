"""Pictures of the monitors: the leak detector's floor series and slopes, the latency histogram."""

from __future__ import annotations

import re

import pytest

from safla_diag import MemoryLeakDetector, PerformanceMonitor
from safla_diag.monitoring._svg import latency_svg, percentile, scale_seconds


def _leaking() -> MemoryLeakDetector:
    det = MemoryLeakDetector(memory_limit_mb=4096)
    for i in range(240):  # four hours of a floor climbing 1 MB a minute, with a GC sawtooth
        det.add_sample(200.0 + i + (i % 5) * 3, i * 60.0)
    return det


def test_series_is_the_bucket_floors_and_bounded() -> None:
    """series() gives (bucket start, minimum) per bucket, oldest first, and stays bounded."""
    det = MemoryLeakDetector()
    for t, mb in ((0, 100.0), (20, 90.0), (59, 95.0), (61, 120.0), (70, 110.0)):
        det.add_sample(mb, t)
    assert det.series() == [(0.0, 90.0), (60.0, 110.0)]
    for i in range(20_000):  # two weeks of minutes
        det.add_sample(100.0, 120 + i * 60.0)
    series = det.series()
    assert 0 < len(series) < 400
    assert [t for t, _ in series] == sorted(t for t, _ in series)
    assert det.analyze(top_consumers=False).series == tuple(series)


def test_leak_picture_shows_floor_slopes_fired_points_and_projection() -> None:
    """A leak's picture has the floor, a red fitted slope, the fired samples and the limit."""
    det = _leaking()
    analysis = det.analyze(top_consumers=False)
    assert analysis.leaking
    page = analysis._repr_html_()
    assert 'class="floor"' in page and page.count('class="slope"') >= 2
    assert page.count('class="fired"') >= 5
    assert "4096 MB limit in" in page
    assert re.search(r"\+\d+(\.\d)? MB/h", page)
    floor = re.search(r'points="([^"]+)"', page)
    assert floor is not None and len(floor.group(1).split()) == len(det.series())


def test_no_leak_picture_has_no_fired_points() -> None:
    """A flat floor draws the series and grey slopes, nothing in red."""
    det = MemoryLeakDetector()
    for i in range(120):
        det.add_sample(300.0 + (i % 7), i * 60.0)
    page = det.analyze(top_consumers=False)._repr_html_()
    assert 'class="floor"' in page and 'class="fired"' not in page and "limit in" not in page


def test_detector_html_with_too_little_history() -> None:
    """A fresh detector says what it needs instead of drawing."""
    page = MemoryLeakDetector()._repr_html_()
    assert "MemoryLeakDetector" in page and "no picture yet" in page


def test_scale_names() -> None:
    """Scale names map back to their windows."""
    assert scale_seconds("10m") == 600 and scale_seconds("4h") == 14400
    assert scale_seconds("30s") == 30 and scale_seconds("x") is None


def test_percentile_matches_numpy() -> None:
    """The linear percentile is numpy's default."""
    np = pytest.importorskip("numpy")
    values = sorted([0.3, 0.01, 0.2, 5.0, 0.7, 0.04, 0.09])
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_latency_histogram_marks_percentiles_and_thresholds() -> None:
    """Bars for the window, p50/p95/p99 lines, a threshold inside the axis and one beyond it."""
    mon = PerformanceMonitor(window_size=500, max_avg_s=0.05, max_p95_s=20.0)
    for i in range(500):
        mon.record_request(0.001 * (i % 100) + (0.5 if i % 50 == 0 else 0.0))
    page = mon._repr_html_()
    assert page.count('class="bar"') >= 5
    for label in ("p50", "p95", "p99"):
        assert f">{label} " in page
    assert "max_avg_s 50" in page  # 0.05 s, drawn in ms
    assert "max_p95_s 20000 ms (off the axis)" in page
    assert "breached: avg" in page or "breached" not in page


def test_latency_histogram_counts_every_sample() -> None:
    """The bars add up to the window, outliers included in the last bar."""
    times = [0.01] * 90 + [0.02] * 9 + [30.0]
    svg = latency_svg(times)
    counts = [int(c) for c in re.findall(r"<title>(\d+) requests", svg)]
    assert sum(counts) == 100
    assert "beyond the axis" in svg
    assert "no requests" in latency_svg([])
