"""
Monitors: ours beside the guide's naive versions, in one run.

- record_request ns per call at windows 100, 10 000, 100 000 (the guide recomputes the mean and
  quantiles of the whole window on every request);
- get_performance_stats at a 10 000 window (cached, and fresh after a write);
- one monitor tick (RSS, CPU percent, GC counts) with a kept psutil.Process vs a new one per tick;
- the leak detector's cost per sample vs the guide's loop body;
- the costs that stay opt-in: a full gc.collect() per tracked object, tracemalloc's slowdown.

Run: python benchmarks/bench_monitoring.py
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import threading
import tracemalloc
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _common import best_of, compare, save

from safla_diag import MemoryLeakDetector, MemoryMonitor, PerformanceMonitor


# ---------------------------------------------------------------------- the guide's versions
class GuidePerformanceMonitor:
    """The guide's behaviour: every request recomputes mean, p95 and error rate of the window."""

    def __init__(self, window_size: int = 100) -> None:
        self.response_times: deque[float] = deque(maxlen=window_size)
        self.error_counts: deque[int] = deque(maxlen=window_size)

    def record_request(self, response_time: float, success: bool = True) -> None:
        self.response_times.append(response_time)
        self.error_counts.append(0 if success else 1)
        if len(self.response_times) < 10:
            return
        avg = statistics.mean(self.response_times)
        p95 = statistics.quantiles(self.response_times, n=20)[18]
        rate = sum(self.error_counts) / len(self.error_counts)
        if avg > 5.0 or p95 > 10.0 or rate > 0.1:
            raise RuntimeError("breach")

    def get_performance_stats(self) -> dict[str, float]:
        rt = self.response_times
        return {
            "avg_response_time": statistics.mean(rt),
            "p95_response_time": statistics.quantiles(rt, n=20)[18],
            "min_response_time": min(rt),
            "max_response_time": max(rt),
            "error_rate": sum(self.error_counts) / len(self.error_counts),
        }


class GuideLeakLoopBody:
    """The guide's per-sample work: append, rebuild the 24 h history list, compare 10 samples."""

    def __init__(self) -> None:
        self.memory_history: list[dict[str, float]] = []

    def add(self, mb: float, t: float) -> bool:
        self.memory_history.append({"timestamp": t, "memory_usage": mb})
        cutoff = t - 86400
        self.memory_history = [e for e in self.memory_history if e["timestamp"] > cutoff]
        if len(self.memory_history) < 10:
            return False
        recent = self.memory_history[-10:]
        growth = recent[-1]["memory_usage"] - recent[0]["memory_usage"]
        span = recent[-1]["timestamp"] - recent[0]["timestamp"]
        return growth > 50 and span > 3600


# ---------------------------------------------------------------------- helpers
def per_call(fn: object, args: list[float], repeat: int = 5) -> float:
    """Best seconds per call of fn(a) over the arguments."""

    def run() -> None:
        for a in args:
            fn(a)  # type: ignore[operator]

    return best_of(run, repeat=repeat) / len(args)


def ns_per_call(fn: object, calls: int, repeat: int = 5) -> float:
    def run() -> None:
        for _ in range(calls):
            fn()  # type: ignore[operator]

    return best_of(run, repeat=repeat) / calls * 1e9


def rss_series(hours: float = 6.0, dt: float = 5.0, seed: int = 1) -> list[tuple[float, float]]:
    """A GC sawtooth with a 1 MB/min leak from the first hour on."""
    rng = random.Random(seed)
    out = []
    t, start, end, amp = 0.0, 0.0, 0.0, 35.0
    while t < hours * 3600:
        if t >= end:
            start, end, amp = t, t + rng.uniform(30, 300), rng.uniform(30, 40)
        saw = -amp / 2 + amp * (t - start) / (end - start)
        out.append((t, 300 + saw + rng.gauss(0, 2) + max(0.0, t - 3600) / 60))
        t += dt
    return out


def main() -> None:
    rows = []
    rng = random.Random(0)
    values = [rng.uniform(0.001, 0.2) for _ in range(1 << 16)]

    lock = threading.Lock()

    def reference(x: float) -> None:
        with lock:
            pass

    ref = per_call(reference, values[:10_000], repeat=25) * 1e9
    print(f"reference (load gauge): a call that takes a lock: {ref:.0f} ns")
    rows.append({"label": "reference: call + lock", "ours": ref, "unit": "ns"})

    print("record_request, ns per call (window full)")
    for window, guide_calls in ((100, 3000), (10_000, 30), (100_000, 3)):
        ours = PerformanceMonitor(window)
        guide = GuidePerformanceMonitor(window)
        for i in range(window):
            ours.record_request(values[i & 0xFFFF])
            guide.response_times.append(values[i & 0xFFFF])
            guide.error_counts.append(0)
        o = per_call(ours.record_request, values[:10_000], repeat=25) * 1e9
        g = per_call(guide.record_request, values[:guide_calls], repeat=3) * 1e9
        rows.append(compare(f"record_request window={window}", o, g, "ns", "guide"))

    print("\nget_performance_stats at window=10000")
    ours = PerformanceMonitor(10_000)
    guide = GuidePerformanceMonitor(10_000)
    for i in range(10_000):
        ours.record_request(values[i])
        guide.response_times.append(values[i])
        guide.error_counts.append(0)
    ours.get_performance_stats()
    cached = ns_per_call(ours.get_performance_stats, 5000, repeat=15) / 1000
    g_stats = ns_per_call(guide.get_performance_stats, 20, repeat=3) / 1000

    def write_then_read() -> None:
        ours.record_request(0.05)
        ours.get_performance_stats()

    fresh = ns_per_call(write_then_read, 200, repeat=15) / 1000
    rows.append(compare("get_performance_stats (cached)", cached, g_stats, "us", "guide"))
    rows.append(compare("record + get_performance_stats (fresh)", fresh, g_stats, "us", "guide"))

    print("\nmonitor tick: RSS + CPU percent + GC counts")
    mon = MemoryMonitor()
    ours_tick = ns_per_call(mon.sample, 5000) / 1000

    def guide_tick() -> None:
        p = psutil.Process()  # the guide builds a new Process for every reading
        p.memory_info()
        p.cpu_percent(None)
        gc.get_count()

    guide_tick_us = ns_per_call(guide_tick, 2000) / 1000
    rows.append(compare("one monitor tick", ours_tick, guide_tick_us, "us", "new-Process"))
    check = ns_per_call(mon.check_memory_usage, 2000) / 1000
    guide_check = ns_per_call(psutil.Process().memory_percent, 2000) / 1000
    rows.append(compare("check_memory_usage (cgroup-aware)", check, guide_check, "us", "guide"))

    print("\nleak detector, per sample (6 h at 5 s, 1 MB/min leak after 1 h)")
    data = rss_series()

    def ours_series() -> None:
        det = MemoryLeakDetector()
        for t, mb in data:
            det.add_sample(mb, t)

    def guide_series() -> None:
        body = GuideLeakLoopBody()
        for t, mb in data:
            body.add(mb, t)

    o = best_of(ours_series, repeat=5) / len(data) * 1e6
    g = best_of(guide_series, repeat=1) / len(data) * 1e6
    rows.append(compare("detector per sample", o, g, "us", "guide"))

    print("\nopt-in costs")
    junk = [[i] for i in range(1_000_000)]
    tracked = len(gc.get_objects())
    full = best_of(gc.collect, repeat=3)
    del junk
    gc.collect()
    per_obj = full / tracked * 1e9
    print(f"gc.collect() full: {full * 1e3:.1f} ms over {tracked} tracked objects = "
          f"{per_obj:.0f} ns per object ({per_obj * 1e5 / 1e6:.1f} ms per 100 000)")  # fmt: skip
    rows.append({"label": "gc.collect per tracked object", "ours": per_obj, "unit": "ns"})

    def allocate() -> None:
        items = [{"id": i, "v": [i, i + 1]} for i in range(100_000)]
        del items

    base = best_of(allocate, repeat=5)
    slow = {}
    for frames in (1, 25):
        tracemalloc.start(frames)
        try:
            slow[frames] = best_of(allocate, repeat=3)
        finally:
            tracemalloc.stop()
    print(
        f"tracemalloc on an allocation-heavy loop: off {base * 1e3:.1f} ms, "
        f"1 frame {slow[1] * 1e3:.1f} ms ({slow[1] / base:.1f}x), "
        f"25 frames {slow[25] * 1e3:.1f} ms ({slow[25] / base:.1f}x)"
    )
    rows.append({"label": "tracemalloc slowdown, 1 frame", "ours": slow[1] / base, "unit": "x"})
    rows.append({"label": "tracemalloc slowdown, 25 frames", "ours": slow[25] / base, "unit": "x"})
    save("monitoring", rows)


if __name__ == "__main__":
    main()
