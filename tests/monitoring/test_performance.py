"""PerformanceMonitor: O(1) recording, exact p95, totals, breaches without raising."""

from __future__ import annotations

import logging
import math
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import PerformanceError, PerformanceMonitor

times = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(window=st.integers(1, 60), samples=st.lists(times, min_size=1, max_size=200))
def test_stats_match_numpy_over_the_window(window: int, samples: list[float]) -> None:
    """p95 equals numpy.percentile(window, 95) exactly; min, max, mean and counts match too."""
    mon = PerformanceMonitor(window, min_samples=10**9)
    for s in samples:
        mon.record_request(s)
    win = np.array(samples[-window:])
    stats = mon.get_performance_stats()
    assert stats["p95_response_time"] == float(np.percentile(win, 95))
    assert stats["min_response_time"] == win.min()
    assert stats["max_response_time"] == win.max()
    assert math.isclose(stats["avg_response_time"], float(win.mean()), rel_tol=1e-9, abs_tol=1e-9)
    assert stats["window_requests"] == len(win)
    assert stats["total_requests"] == len(samples)


@given(window=st.integers(1, 40), flags=st.lists(st.booleans(), min_size=1, max_size=120))
def test_error_rate_is_over_the_window_and_totals_since_start(
    window: int, flags: list[bool]
) -> None:
    """error_rate counts failures in the window; total_errors counts them all."""
    mon = PerformanceMonitor(window, min_samples=10**9)
    for ok in flags:
        mon.record_request(0.01, success=ok)
    stats = mon.get_performance_stats()
    recent = flags[-window:]
    assert stats["error_rate"] == sum(not f for f in recent) / len(recent)
    assert stats["total_errors"] == sum(not f for f in flags)


def test_numeric_types_beyond_float_are_times() -> None:
    """numpy scalars (float32, int64) and Fractions are numbers of seconds like float and int."""
    from fractions import Fraction

    mon = PerformanceMonitor(10)
    for t in (np.float32(0.5), np.int64(1), Fraction(1, 4), np.float64(0.25)):
        mon.record_request(t)  # type: ignore[arg-type]
    stats = mon.get_performance_stats()
    assert stats["total_requests"] == 4
    assert stats["max_response_time"] == 1.0
    assert stats["min_response_time"] == 0.25
    with pytest.raises(ValueError):
        mon.record_request(np.float32("nan"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mon.record_request(np.bool_(True))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [-0.001, math.nan, math.inf, -math.inf, "1.0", None, True, [1.0], complex(1, 0)]
)
def test_bad_samples_raise_and_record_nothing(bad: object) -> None:
    """Negative, NaN, infinite and non-number times raise ValueError and are not recorded."""
    mon = PerformanceMonitor(10)
    mon.record_request(0.5)
    with pytest.raises(ValueError):
        mon.record_request(bad)  # type: ignore[arg-type]
    stats = mon.get_performance_stats()
    assert stats["total_requests"] == 1
    assert stats["max_response_time"] == 0.5


def test_ints_and_numpy_floats_are_accepted() -> None:
    """An int number of seconds and a numpy float are times."""
    mon = PerformanceMonitor(10)
    mon.record_request(2)
    mon.record_request(np.float64(0.25))
    assert mon.get_performance_stats()["max_response_time"] == 2.0


def test_breach_logs_and_calls_back_once_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A breach in the request path is logged and passed to on_breach once, never raised."""
    seen: list[PerformanceError] = []
    mon = PerformanceMonitor(20, max_avg_s=1.0, min_samples=5, on_breach=seen.append)
    with caplog.at_level(logging.WARNING, logger="safla_diag.monitoring"):
        for _ in range(30):
            mon.record_request(3.0)
    assert len(seen) == 1
    assert "average" in str(seen[0])
    assert "avg" in mon.breached
    assert sum("breached" in r.getMessage() for r in caplog.records) == 1


def test_breach_is_reported_again_after_it_cleared() -> None:
    """Once the window recovers, a new breach is reported again."""
    seen: list[PerformanceError] = []
    mon = PerformanceMonitor(10, max_error_rate=0.2, min_samples=10, on_breach=seen.append)
    for _ in range(10):
        mon.record_request(0.1, success=False)
    for _ in range(10):
        mon.record_request(0.1)
    assert mon.breached == frozenset()
    for _ in range(10):
        mon.record_request(0.1, success=False)
    assert len(seen) == 2


def test_failing_callback_does_not_break_the_request(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in on_breach is logged on one redacted line (no traceback), not propagated."""

    def boom(err: PerformanceError) -> None:
        raise RuntimeError("alert to https://hooks:hunter2@alerts.example failed")

    mon = PerformanceMonitor(10, max_avg_s=0.1, min_samples=1, on_breach=boom)
    with caplog.at_level(logging.WARNING, logger="safla_diag.monitoring"):
        mon.record_request(5.0)
    assert mon.get_performance_stats()["total_requests"] == 1
    [failed] = [r for r in caplog.records if "on_breach" in r.getMessage()]
    assert "RuntimeError: alert to https://hooks:***@alerts.example" in failed.getMessage()
    assert failed.exc_info is None
    assert "hunter2" not in caplog.text


def test_strict_raises_like_the_guide() -> None:
    """strict=True raises PerformanceError from record_request while breached (sample kept)."""
    mon = PerformanceMonitor(10, max_p95_s=1.0, min_samples=3, strict=True)
    mon.record_request(0.1)
    mon.record_request(0.1)
    with pytest.raises(PerformanceError, match="P95"):
        mon.record_request(9.0)
    assert mon.get_performance_stats()["total_requests"] == 3


@given(
    threshold=st.floats(0.1, 10),
    samples=st.lists(st.floats(0, 20, allow_nan=False), min_size=10, max_size=80),
)
def test_fast_p95_breach_agrees_with_the_exact_p95(threshold: float, samples: list[float]) -> None:
    """The O(1) p95 breach test agrees with p95 > threshold computed over the window."""
    mon = PerformanceMonitor(25, max_p95_s=threshold, max_avg_s=1e9, min_samples=1)
    for s in samples:
        mon.record_request(s)
    exact = float(np.percentile(np.array(samples[-25:]), 95)) > threshold
    assert ("p95" in mon.breached) == exact


def test_check_thresholds_raises_on_breach_only() -> None:
    """check_thresholds() is the explicit check: it raises PerformanceError on a breach."""
    mon = PerformanceMonitor(10, max_error_rate=0.1)
    for _ in range(10):
        mon.record_request(0.1)
    mon.check_thresholds()
    for _ in range(5):
        mon.record_request(0.1, success=False)
    with pytest.raises(PerformanceError, match="error rate"):
        mon.check_thresholds()


def test_check_thresholds_waits_for_min_samples() -> None:
    """Below min_samples nothing is a breach."""
    mon = PerformanceMonitor(10, max_avg_s=0.1, min_samples=10)
    for _ in range(9):
        mon.record_request(1.0)
    mon.check_thresholds()
    assert mon.breached == frozenset()


def test_stats_keys_empty_window_and_uptime() -> None:
    """The API's keys are there from the start; uptime comes from the clock."""
    now = [100.0]
    mon = PerformanceMonitor(5, clock=lambda: now[0])
    now[0] = 112.5
    stats = mon.get_performance_stats()
    assert {
        "avg_response_time",
        "p95_response_time",
        "min_response_time",
        "max_response_time",
        "error_rate",
        "window_requests",
        "total_requests",
        "uptime",
    } <= set(stats)
    assert stats["window_requests"] == 0
    assert stats["uptime"] == 12.5


def test_stats_are_cached_until_the_next_write() -> None:
    """Two reads without a write compute once; a write invalidates."""
    mon = PerformanceMonitor(100)
    mon.record_request(1.0)
    first = mon.get_performance_stats()
    assert mon._stats is not None
    assert mon._stats_at == mon.total_requests  # the cache is current
    mon.record_request(3.0)
    assert mon._stats_at != mon.total_requests  # and a write makes it stale
    assert mon.get_performance_stats()["max_response_time"] == 3.0
    assert first["max_response_time"] == 1.0


def test_thread_safe_counts() -> None:
    """Concurrent writers lose no request."""
    mon = PerformanceMonitor(1000, min_samples=10**9)

    def work() -> None:
        for i in range(2000):
            mon.record_request(i / 1000, success=i % 10 != 0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = mon.get_performance_stats()
    assert stats["total_requests"] == 8000
    assert stats["total_errors"] == 800
    assert stats["window_requests"] == 1000


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_bad_window_size(size: object) -> None:
    """The window is a positive int."""
    with pytest.raises(ValueError):
        PerformanceMonitor(size)  # type: ignore[arg-type]


def test_running_sum_stays_exact_over_many_windows() -> None:
    """The mean does not drift after many overwrites of the ring buffer."""
    mon = PerformanceMonitor(10, min_samples=10**9)
    for i in range(10_000):
        mon.record_request(1e6 if i % 2 else 1e-6)
    for _ in range(10):
        mon.record_request(0.5)
    assert mon._sum == pytest.approx(5.0, abs=1e-9)
    assert mon.get_performance_stats()["avg_response_time"] == 0.5


@given(window=st.integers(1, 30), samples=st.lists(times, min_size=0, max_size=80))
def test_window_views_like_the_guides_deques(window: int, samples: list[float]) -> None:
    """response_times and error_counts hold the window oldest first, as the guide's deques."""
    mon = PerformanceMonitor(window, min_samples=10**9)
    for i, s in enumerate(samples):
        mon.record_request(s, success=i % 3 != 0)
    assert mon.response_times == samples[-window:]
    assert mon.error_counts == [0 if i % 3 else 1 for i in range(len(samples))][-window:]


@given(
    window=st.integers(1, 400),
    steps=st.lists(
        st.tuples(st.integers(1, 30), st.lists(times, min_size=1, max_size=3)), max_size=40
    ),
)
def test_stats_match_numpy_when_read_between_writes(
    window: int, steps: list[tuple[int, list[float]]]
) -> None:
    """Reads after a few writes (the sorted mirror updated in place) agree with numpy exactly."""
    mon = PerformanceMonitor(window, min_samples=10**9)
    seen: list[float] = []
    for repeat, chunk in steps:
        for _ in range(repeat):
            for s in chunk:
                mon.record_request(s)
                seen.append(s)
        win = np.array(seen[-window:])
        stats = mon.get_performance_stats()
        assert stats["p95_response_time"] == float(np.percentile(win, 95))
        assert stats["min_response_time"] == win.min()
        assert stats["max_response_time"] == win.max()


def test_more_writes_than_the_window_between_reads() -> None:
    """Four writes into a window of two between reads: the mirror holds the last two, not a replay."""
    mon = PerformanceMonitor(2, min_samples=10**9)
    mon.record_request(0.0)
    assert mon.get_performance_stats()["p95_response_time"] == 0.0
    for s in (0.0, 1.0, 0.0, 1.0):
        mon.record_request(s)
    stats = mon.get_performance_stats()
    assert stats["p95_response_time"] == float(np.percentile([0.0, 1.0], 95))
    assert (stats["min_response_time"], stats["max_response_time"]) == (0.0, 1.0)


def test_huge_times_never_overflow_in_the_request_path() -> None:
    """record_request(1e308) twice does not raise OverflowError; the stats stay readable."""
    mon = PerformanceMonitor(3, max_avg_s=1.0, min_samples=1)
    mon.record_request(1e308)
    mon.record_request(1e308)
    mon.record_request(1e308)  # a full lap: the exact re-sum sees only huge samples
    stats = mon.get_performance_stats()
    assert stats["max_response_time"] == 1e308
    assert stats["p95_response_time"] == 1e308
    assert stats["avg_response_time"] == pytest.approx(1e308)
    assert "avg" in mon.breached
    hist = mon.histogram()
    assert hist["count"] == 3
    assert hist["buckets"][-1] == (math.inf, 3)
    for _ in range(3):
        mon.record_request(0.5)  # the huge samples leave the window
    stats = mon.get_performance_stats()
    assert stats["avg_response_time"] == 0.5
    assert stats["max_response_time"] == 0.5
    assert mon.breached == frozenset()


def test_histogram_counts_every_request_since_start() -> None:
    """Cumulative bucket counts and sum over all requests, across laps of the ring, both ways."""
    for window in (5, 64):
        mon = PerformanceMonitor(window, buckets=(0.1, 1.0), min_samples=10**9)
        samples = [(i % 7) * 0.25 for i in range(203)]
        for s in samples:
            mon.record_request(s)
        hist = mon.histogram()
        assert hist["buckets"] == [
            (0.1, sum(s <= 0.1 for s in samples)),
            (1.0, sum(s <= 1.0 for s in samples)),
            (math.inf, len(samples)),
        ]
        assert hist["count"] == 203
        assert hist["sum"] == pytest.approx(sum(samples))
        mon.reset()
        assert mon.histogram()["count"] == 0


@pytest.mark.parametrize("bad", [(), (1.0, 0.5), (0.1, math.nan), ("x",), (0.1, 0.1)])
def test_bad_buckets(bad: tuple[object, ...]) -> None:
    """Buckets are finite, strictly increasing numbers of seconds."""
    with pytest.raises(ValueError, match="buckets"):
        PerformanceMonitor(10, buckets=bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_async_on_breach_runs_in_the_loop() -> None:
    """An async on_breach is awaited as a task of the running loop."""
    import asyncio

    seen = asyncio.Event()

    async def alert(err: PerformanceError) -> None:
        seen.set()

    mon = PerformanceMonitor(10, max_avg_s=0.1, min_samples=1, on_breach=alert)
    mon.record_request(5.0)
    await asyncio.wait_for(seen.wait(), 5)


@pytest.mark.anyio
async def test_async_on_breach_from_a_thread_runs_in_the_known_loop() -> None:
    """A breach seen in a worker thread runs the async callback in the host's loop."""
    import asyncio

    seen = asyncio.Event()

    async def alert(err: PerformanceError) -> None:
        seen.set()

    mon = PerformanceMonitor(10, max_avg_s=0.1, min_samples=1, on_breach=alert)
    mon.bind_loop(asyncio.get_running_loop())
    await asyncio.to_thread(mon.record_request, 5.0)
    await asyncio.wait_for(seen.wait(), 5)


def test_async_on_breach_outside_a_loop_is_reported_not_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outside any loop the coroutine is closed (no RuntimeWarning) and a warning says why."""
    import gc

    calls = []

    async def alert(err: PerformanceError) -> None:
        calls.append(err)  # never runs: there is no loop to run it in

    mon = PerformanceMonitor(10, max_avg_s=0.1, min_samples=1, on_breach=alert)
    with caplog.at_level(logging.WARNING, logger="safla_diag.monitoring"):
        mon.record_request(5.0)  # filterwarnings=error: a "never awaited" warning would fail
        gc.collect()
    assert any("outside a running event loop" in r.getMessage() for r in caplog.records)
    assert calls == []


def test_timed_sees_a_subclass_override() -> None:
    """timed's fast path is only for PerformanceMonitor itself: an override sees every call."""
    from safla_diag import timed

    class Counting(PerformanceMonitor):
        calls = 0

        def record_request(self, response_time: float, success: bool = True) -> None:
            Counting.calls += 1
            super().record_request(response_time, success)

    mon = Counting(10)
    timed(mon)(lambda: None)()
    assert Counting.calls == 1
    assert mon.total_requests == 1
