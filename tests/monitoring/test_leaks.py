"""MemoryLeakDetector: ramps are leaks; steps, sawtooths and spikes are not; real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safla_diag import LeakAnalysis, MemoryLeakDetector

pytestmark = pytest.mark.anyio


def series(
    seed: int,
    *,
    hours: float = 4.0,
    dt: float = 5.0,
    leak_mb_per_min: float = 0.0,
    step_mb: float = 0.0,
    spikes: bool = False,
    onset_s: float = 3600.0,
) -> Iterator[tuple[float, float]]:
    """RSS (MB) with a GC sawtooth of about 35 MB, jitter, and an optional leak, step or spikes."""
    rng = random.Random(seed)
    t = 0.0
    cycle_end = 0.0
    cycle_len = 1.0
    amp = 35.0
    spike_until = -1.0
    spike_h = 0.0
    next_spike = rng.uniform(600, 2400)
    while t < hours * 3600:
        if t >= cycle_end:
            cycle_len = rng.uniform(30, 300)
            amp = rng.uniform(30, 40)
            cycle_start, cycle_end = t, t + cycle_len
        saw = -amp / 2 + amp * (t - cycle_start) / cycle_len
        mb = 300 + saw + rng.gauss(0, 2)
        after = max(0.0, t - onset_s)
        mb += leak_mb_per_min * after / 60
        mb += step_mb * min(1.0, after / 60)
        if spikes:
            if t >= next_spike:
                spike_until = t + rng.uniform(20, 90)
                spike_h = rng.uniform(60, 120)
                next_spike = t + rng.uniform(600, 2400)
            if t < spike_until:
                mb += spike_h
        yield t, mb
        t += dt


def first_alarm(det: MemoryLeakDetector, data: Iterator[tuple[float, float]]) -> float | None:
    for t, mb in data:
        if det.add_sample(mb, t):
            return t
    return None


@pytest.mark.parametrize("seed", range(3))
def test_steady_leak_is_found_within_the_hour(seed: int) -> None:
    """A 1 MB/min leak on a ±20 MB GC sawtooth is found well within an hour of its onset."""
    det = MemoryLeakDetector(memory_limit_mb=2048)
    t = first_alarm(det, series(seed, leak_mb_per_min=1.0))
    assert t is not None
    assert 3600 < t < 3600 + 3600
    a = det.analyze()
    assert a.leaking and bool(a)
    assert a.scale in {"10m", "30m", "1h", "2h", "4h"}
    assert 30 < a.slope_mb_per_hour < 120
    assert a.confidence > 0.99
    assert a.time_to_limit_s is not None
    assert a.memory_limit_mb == 2048
    expected = (2048 - a.current_mb) / a.slope_mb_per_hour * 3600  # type: ignore[operator]
    assert a.time_to_limit_s == pytest.approx(expected)


def test_fast_leak_is_found_in_minutes() -> None:
    """A 10 MB/min leak is found by the short scale within ten minutes."""
    det = MemoryLeakDetector()
    t = first_alarm(det, series(7, leak_mb_per_min=10.0, hours=2))
    assert t is not None
    assert t - 3600 <= 600


@pytest.mark.parametrize("seed", range(3))
def test_cache_warmup_step_is_not_a_leak(seed: int) -> None:
    """A one-time +100 MB step (a cache warming up) never alarms."""
    assert first_alarm(MemoryLeakDetector(), series(seed, step_mb=100.0)) is None


@pytest.mark.parametrize("seed", range(3))
def test_sawtooth_and_spikes_are_not_leaks(seed: int) -> None:
    """A GC sawtooth with transient +60..120 MB bursts never alarms."""
    assert first_alarm(MemoryLeakDetector(), series(seed, spikes=True)) is None


@settings(max_examples=25)
@given(
    seed=st.integers(0, 10**6),
    step=st.floats(0, 500),
    at=st.floats(0, 7200),
    noise=st.floats(0, 30),
)
def test_flat_with_one_step_never_alarms(seed: int, step: float, at: float, noise: float) -> None:
    """Whatever the step height and time, flat memory with bounded noise is never a leak."""
    rng = random.Random(seed)
    det = MemoryLeakDetector()
    for i in range(2 * 3600 // 20):
        t = i * 20.0
        mb = 500 + (step if t >= at else 0.0) + rng.uniform(0, noise)
        assert not det.add_sample(mb, t)


def test_analysis_before_history_and_its_reports() -> None:
    """Without history: not leaking, no scale; the report has text, dict, JSON and HTML."""
    det = MemoryLeakDetector()
    det.add_sample(100.0, 0.0)
    a = det.analyze()
    assert isinstance(a, LeakAnalysis)
    assert not a.leaking and a.scale is None and a.samples == 1
    assert "no memory leak" in a.to_text()
    assert json.loads(a.to_json())["samples"] == 1
    assert "no memory leak found" in a._repr_html_() and "<table>" in a._repr_html_()
    assert "leaking=False" in repr(a)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "12", None, True])
def test_bad_samples_are_rejected(bad: object) -> None:
    """Negative, NaN, infinite and non-number sizes raise ValueError."""
    det = MemoryLeakDetector()
    with pytest.raises(ValueError):
        det.add_sample(bad, 0.0)  # type: ignore[arg-type]
    assert det.samples == 0


def test_time_must_not_go_backwards() -> None:
    """A timestamp before the previous one is refused."""
    det = MemoryLeakDetector()
    det.add_sample(1.0, 10.0)
    with pytest.raises(ValueError, match="time order"):
        det.add_sample(1.0, 5.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"check_interval": 0}, {"sample_interval": -1}, {"windows": ()}, {"leak_threshold": 0}],
)
def test_bad_settings(kwargs: dict[str, object]) -> None:
    """Intervals and thresholds must be positive."""
    with pytest.raises(ValueError):
        MemoryLeakDetector(**kwargs)  # type: ignore[arg-type]


def test_start_monitoring_outside_a_loop_says_to_use_run() -> None:
    """Outside a running loop the error is clear and points at run()."""
    with pytest.raises(RuntimeError, match=r"run\(\)"):
        MemoryLeakDetector().start_monitoring()


class Ticks:
    """A clock for run() that counts its calls (one per sample) and wakes waiters: no polling."""

    def __init__(self) -> None:
        self.n = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def __call__(self) -> float:
        self.n += 1
        for n, ev in self._waiters:
            if self.n >= n:
                ev.set()
        return time.monotonic()

    async def reach(self, n: int, timeout: float = 10.0) -> None:
        ev = asyncio.Event()
        self._waiters.append((n, ev))
        if self.n >= n:
            ev.set()
        await asyncio.wait_for(ev.wait(), timeout)


async def test_start_and_stop_mid_sleep() -> None:
    """start_monitoring returns a task in the running loop; stop ends it at once, mid-sleep."""
    ticks = Ticks()
    det = MemoryLeakDetector(sample_interval=3600, clock=ticks)
    task = det.start_monitoring()
    assert isinstance(task, asyncio.Task)
    assert det.start_monitoring() is task
    await ticks.reach(1)
    assert det.monitoring
    det.stop_monitoring()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not det.monitoring


async def test_stop_from_another_thread() -> None:
    """stop_monitoring() from a worker thread cancels the task through the loop."""
    ticks = Ticks()
    det = MemoryLeakDetector(sample_interval=3600, clock=ticks)
    task = det.start_monitoring()
    await ticks.reach(1)
    await asyncio.get_running_loop().run_in_executor(None, det.stop_monitoring)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_stop_before_the_task_ran() -> None:
    """A stop right after start cancels the task before it samples anything."""
    det = MemoryLeakDetector(sample_interval=3600)
    task = det.start_monitoring()
    det.stop_monitoring()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert det.samples == 0


async def test_restart_right_after_stop() -> None:
    """start_monitoring() right after stop_monitoring() starts a fresh run once the old one ends."""
    ticks = Ticks()
    det = MemoryLeakDetector(sample_interval=3600, clock=ticks)
    first = det.start_monitoring()
    await ticks.reach(1)
    det.stop_monitoring()
    second = det.start_monitoring()
    assert second is not first
    await ticks.reach(2)  # the new run samples: it did not die with "already running"
    assert det.monitoring
    assert first.cancelled()
    assert not second.done()
    det.stop_monitoring()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(second, 5)
    assert not det.monitoring


@settings(max_examples=20)
@given(
    seed=st.integers(0, 10**6),
    slope=st.floats(2, 20),
    noise=st.floats(0, 10),
)
def test_steady_ramps_are_always_found(seed: int, slope: float, noise: float) -> None:
    """Any ramp of 2-20 MB/min under bounded noise, sampled every 30 s, is found within 1 h."""
    rng = random.Random(seed)
    det = MemoryLeakDetector()
    found = None
    for i in range(3 * 3600 // 30):
        t = i * 30.0
        mb = 500 + slope * max(0.0, t - 3600) / 60 + rng.uniform(0, noise)
        if det.add_sample(mb, t):
            found = t
            break
    assert found is not None
    assert 3600 < found <= 2 * 3600


async def test_run_as_a_plain_coroutine_stops_promptly() -> None:
    """A host-scheduled run() returns soon after stop_monitoring(), even in a long sleep."""
    ticks = Ticks()
    det = MemoryLeakDetector(sample_interval=3600, clock=ticks)
    runner = asyncio.ensure_future(det.run())
    await ticks.reach(1)
    det.stop_monitoring()
    await asyncio.wait_for(runner, 5)
    assert runner.done() and runner.exception() is None


async def test_injected_sleep_and_clock_drive_the_loop() -> None:
    """With an injected sleep and clock, run() samples on simulated time."""
    now = [0.0]
    det: MemoryLeakDetector

    async def fake_sleep(delay: float) -> None:
        now[0] += delay
        if det.samples >= 50:
            det.stop_monitoring()
        await asyncio.sleep(0)

    det = MemoryLeakDetector(sample_interval=5, clock=lambda: now[0], sleep=fake_sleep)
    await asyncio.wait_for(det.run(), 10)
    assert det.samples == 50


def test_top_consumers_when_tracing() -> None:
    """While tracemalloc traces, analyze() names the allocation sites that grew."""
    tracemalloc.start(1)
    try:
        det = MemoryLeakDetector()
        det.add_sample(100.0, 0.0)
        assert det.analyze().top_consumers == ()  # takes the baseline
        hoard = [bytearray(1000) for _ in range(2000)]
        top = det.analyze().top_consumers
        assert top and top[0]["size_diff"] >= 1_000_000
        assert __file__.rsplit("/", 1)[-1] in top[0]["file"]
        assert len(hoard) == 2000
    finally:
        tracemalloc.stop()


async def test_tracing_only_when_asked_and_stopped_after() -> None:
    """tracemalloc_frames=1 starts tracing for the run and stops it after."""
    assert not tracemalloc.is_tracing()
    ticks = Ticks()
    det = MemoryLeakDetector(sample_interval=3600, tracemalloc_frames=1, clock=ticks)
    task = det.start_monitoring()
    await ticks.reach(1)
    assert tracemalloc.is_tracing()
    det.stop_monitoring()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not tracemalloc.is_tracing()


class RampProcess:
    """Stands in for psutil.Process: this process's pid, an RSS that grows 20 MB per read."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.reads = 0

    def memory_info(self) -> object:
        self.reads += 1
        return types.SimpleNamespace(rss=(300 + 20 * self.reads) * 1024 * 1024)


async def test_leak_found_by_run_reports_while_tracing() -> None:
    """run() reports a leak to on_leak (the tracemalloc snapshot taken off the loop)."""
    now = [0.0]
    found = asyncio.Event()
    seen: list[LeakAnalysis] = []

    def on_leak(a: LeakAnalysis) -> None:
        seen.append(a)
        found.set()

    async def fake_sleep(delay: float) -> None:
        now[0] += delay
        await asyncio.sleep(0)

    det = MemoryLeakDetector(
        sample_interval=5,
        process=RampProcess(),  # type: ignore[arg-type]
        tracemalloc_frames=1,
        on_leak=on_leak,
        clock=lambda: now[0],
        sleep=fake_sleep,
    )
    task = det.start_monitoring()
    try:
        await asyncio.wait_for(found.wait(), 20)
    finally:
        det.stop_monitoring()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert seen[0].leaking
    assert seen[0].slope_mb_per_hour > 1000
    assert not tracemalloc.is_tracing()


class _Awaitable:
    """An awaitable that is neither a coroutine nor a Future (its own __await__)."""

    def __init__(self, done: list[str]) -> None:
        self.done = done

    def __await__(self) -> Iterator[None]:
        yield from asyncio.sleep(0).__await__()
        self.done.append("awaited")


async def test_on_leak_results_are_awaited_and_failures_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """
    Whatever awaitable on_leak returns is awaited; a failing on_leak is logged on one redacted
    line without a traceback, and monitoring goes on.
    """
    now = [0.0]
    done: list[str] = []
    calls = [0]
    reported = asyncio.Event()

    def on_leak(a: LeakAnalysis) -> _Awaitable:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("pager https://ops:hunter2@pager.example is down")
        reported.set()
        return _Awaitable(done)

    async def fake_sleep(delay: float) -> None:
        now[0] += delay
        await asyncio.sleep(0)

    det = MemoryLeakDetector(
        check_interval=5,
        sample_interval=5,
        process=RampProcess(),  # type: ignore[arg-type]
        on_leak=on_leak,
        clock=lambda: now[0],
        sleep=fake_sleep,
    )
    with caplog.at_level(logging.WARNING, logger="safla_diag.monitoring"):
        task = det.start_monitoring()
        try:
            await asyncio.wait_for(reported.wait(), 20)
            for _ in range(100):
                if done:
                    break
                await asyncio.sleep(0)
        finally:
            det.stop_monitoring()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert done == ["awaited"]
    [failed] = [r for r in caplog.records if "on_leak" in r.getMessage()]
    assert "RuntimeError: pager https://ops:***@pager.example is down" in failed.getMessage()
    assert failed.exc_info is None
    assert "hunter2" not in caplog.text


# ---------------------------------------------------------------------- real processes
CHILD = r"""
import sys, time
print("ready", flush=True)
sys.stdin.readline()
hoard = []
if sys.argv[1] == "leak":
    while True:
        hoard.append(b"x" * (1 << 20))   # 1 MB more every 20 ms
        time.sleep(0.02)
else:
    hoard.append(b"x" * (100 << 20))     # one 100 MB block, then nothing
    print("allocated", flush=True)
    time.sleep(60)
"""


class Child:
    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.ps = psutil.Process(self.proc.pid)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.kill()  # SIGKILL
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


def _short(ps: psutil.Process, ticks: Ticks, **kw: object) -> MemoryLeakDetector:
    """A detector on a child with second-long scales (the defaults are minutes to hours)."""
    return MemoryLeakDetector(
        process=ps,
        sample_interval=0.01,
        bucket_s=0.1,
        windows=(1.0, 2.0),
        gc_period_s=0.2,
        clock=ticks,
        **kw,  # type: ignore[arg-type]
    )


async def test_real_leaking_child_is_found() -> None:
    """A child that appends 1 MB to a list every 20 ms is flagged through psutil."""
    child = Child("leak")
    found = asyncio.Event()
    seen: list[LeakAnalysis] = []

    def on_leak(a: LeakAnalysis) -> None:
        seen.append(a)
        found.set()

    ticks = Ticks()
    det = _short(child.ps, ticks, on_leak=on_leak)
    try:
        task = det.start_monitoring()
        await ticks.reach(30)
        child.go()
        await asyncio.wait_for(found.wait(), 20)
        det.stop_monitoring()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        child.close()
    assert seen[0].leaking
    assert seen[0].slope_mb_per_hour > 3600  # well over 1 MB/s


async def test_run_ends_when_the_watched_process_dies(caplog: pytest.LogCaptureFixture) -> None:
    """A watched child killed with SIGKILL ends run() with a warning, not a crash."""
    child = Child("once")
    ticks = Ticks()
    det = _short(child.ps, ticks)
    try:
        task = det.start_monitoring()
        await ticks.reach(3)
    finally:
        child.close()
    await asyncio.wait_for(task, 10)
    assert task.exception() is None
    assert any("process is gone" in r.getMessage() for r in caplog.records)


async def test_real_child_allocating_once_is_not_a_leak() -> None:
    """
    A child that allocates a 100 MB block once is watched before and after the step: no alarm.

    The detector pauses while the child allocates, so the step falls between two samples, as a
    one-time allocation does at real scales (windows of minutes to hours). With this test's 1-2 s
    windows, a loaded machine page-faulting 100 MB for over a second would make the step itself a
    ramp as long as a window, a leak at that scale.
    """
    child = Child("once")
    seen: list[LeakAnalysis] = []
    ticks = Ticks()
    det = _short(child.ps, ticks, on_leak=seen.append)
    try:
        task = det.start_monitoring()
        await ticks.reach(50)
        det.stop_monitoring()
        with pytest.raises(asyncio.CancelledError):
            await task
        child.go()
        assert child.proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, child.proc.stdout.readline)
        assert line.strip() == "allocated"
        samples = det.samples
        task = det.start_monitoring()
        # Watch for long enough that every scale has seen the step and the flat after it.
        await ticks.reach(ticks.n + 400, timeout=30)
        assert det.samples > samples + 300  # the history spans the step
        det.stop_monitoring()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        child.close()
    assert seen == []
    assert child.ps is not None
    assert not det.detect_memory_leak()
