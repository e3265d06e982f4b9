"""
Monitors: ours beside the guide's naive versions, in one run.

- record_request ns per call at windows 100, 10 000, 1 000 000: ours, the previous implementation
  (benchmarks/_previous_performance.py, a verbatim copy) and the guide's (which recomputes the mean
  and quantiles of the whole window on every request);
- a write then a fresh get_performance_stats at windows 100, 10 000, 1 000 000, the same three;
- timed(PerformanceMonitor) end to end, ns added per call: ours, previous, the guide's inline
  pattern;
- LoopMonitor: CPU of an idle loop with and without it (percent of one core at a 10 ms tick), and
  a busy loop's slowdown beside asyncio's debug mode (the standard way to find slow callbacks);
- one monitor tick (RSS, CPU percent, GC counts) with a kept psutil.Process vs a new one per tick;
- the leak detector's cost per sample vs the guide's loop body;
- the costs that stay opt-in: a full gc.collect() per tracked object, tracemalloc's slowdown.

Run: python benchmarks/bench_monitoring.py
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import sys
import threading
import time
import tracemalloc
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _common import best_of, compare, save
from _previous_performance import PerformanceMonitor as PreviousPerformanceMonitor
from _previous_performance import previous_timed

from safla_diag import LoopMonitor, MemoryLeakDetector, MemoryMonitor, PerformanceMonitor, timed


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


def interleaved(fns: list[object], arg: float, calls: int, repeat: int = 40) -> list[float]:
    """
    Best ns per call of each fn(arg), measured in alternation: on a shared machine the others'
    load comes and goes, and alternating gives each function the same chances of a quiet slice.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            for _ in range(calls):
                fn(arg)  # type: ignore[operator]
            best[i] = min(best[i], (time.perf_counter() - t) / calls * 1e9)
    return best


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


def loop_cpu(with_monitor: bool | str, seconds: float = 3.0) -> float:
    """
    CPU seconds per wall second of an idle asyncio loop: bare, with a LoopMonitor, or with a bare
    10 ms timer (``"timer"``: the floor any 10 ms tick costs, whatever it does).
    """

    async def idle() -> float:
        loop = asyncio.get_running_loop()
        mon = LoopMonitor(interval_s=0.01) if with_monitor is True else None
        if mon is not None:
            mon.start()
        handle = None
        if with_monitor == "timer":

            def tick() -> None:
                nonlocal handle
                handle = loop.call_at(loop.time() + 0.01, tick)

            tick()
        try:
            await asyncio.sleep(0.2)  # settle
            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            return (time.process_time() - c0) / (time.perf_counter() - t0)
        finally:
            if mon is not None:
                mon.stop()
            if handle is not None:
                handle.cancel()

    return min(asyncio.run(idle()) for _ in range(3))


def busy_loop(mode: str, steps: int = 200_000) -> float:
    """Wall seconds for steps of small work on the loop: plain, LoopMonitor, or debug mode."""

    async def run() -> float:
        if mode == "debug":
            asyncio.get_running_loop().set_debug(True)
        mon = LoopMonitor() if mode == "monitor" else None
        if mon is not None:
            mon.start()
        try:
            t0 = time.perf_counter()
            for i in range(steps):
                if i % 4 == 0:
                    await asyncio.sleep(0)
            return time.perf_counter() - t0
        finally:
            if mon is not None:
                mon.stop()

    return min(asyncio.run(run()) for _ in range(3))


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
    for window, guide_calls in ((100, 3000), (10_000, 30), (1_000_000, 2)):
        ours = PerformanceMonitor(window)
        prev = PreviousPerformanceMonitor(window)
        guide = GuidePerformanceMonitor(window)
        for i in range(window):
            ours.record_request(values[i & 0xFFFF])
            prev.record_request(values[i & 0xFFFF])
            guide.response_times.append(values[i & 0xFFFF])
            guide.error_counts.append(0)
        o, p = interleaved([ours.record_request, prev.record_request], 0.05, 5000, repeat=60)
        g = per_call(guide.record_request, values[:guide_calls], repeat=3) * 1e9
        rows.append(compare(f"record_request window={window}", o, p, "ns", "previous"))
        rows.append(compare(f"record_request window={window}", o, g, "ns", "guide"))

        def fresh(mon: object, calls: int, repeat: int = 9) -> float:
            def write_then_read() -> None:
                mon.record_request(0.05)  # type: ignore[attr-defined]
                mon.get_performance_stats()  # type: ignore[attr-defined]

            return ns_per_call(write_then_read, calls, repeat=repeat) / 1000

        ours.get_performance_stats()
        prev.get_performance_stats()
        f_ours = fresh(ours, 2000)
        f_prev = fresh(prev, 2000 if window <= 10_000 else 30)
        f_guide = fresh(guide, max(1, guide_calls // 3), repeat=3 if window < 1_000_000 else 1)
        label = f"write + fresh get_performance_stats window={window}"
        rows.append(compare(label, f_ours, f_prev, "us", "previous"))
        rows.append(compare(label, f_ours, f_guide, "us", "guide"))
        del ours, prev, guide

    print("\ntimed(PerformanceMonitor) end to end, ns added per call (window 100)")

    def work(x: float) -> int:
        return 1

    base_ns, ours_ns, prev_ns = interleaved(
        [work, timed(PerformanceMonitor(100))(work),
         previous_timed(PreviousPerformanceMonitor(100))(work)],
        0.05, 5000, repeat=80,
    )  # fmt: skip
    ours_t, prev_t = ours_ns - base_ns, prev_ns - base_ns
    guide_mon = GuidePerformanceMonitor(100)

    def guide_inline() -> int:  # the guide's way: time it by hand around the call
        start = time.time()
        result = work(0.05)
        guide_mon.record_request(time.time() - start, True)
        return result

    guide_t = ns_per_call(guide_inline, 3000, repeat=3) - base_ns
    rows.append(compare("timed end to end (PUBLIC API)", ours_t, prev_t, "ns", "previous"))
    rows.append(compare("timed end to end vs guide inline", ours_t, guide_t, "ns", "guide"))

    print("\nLoopMonitor (interval 10 ms)")
    idle_off, idle_on, timer = loop_cpu(False), loop_cpu(True), loop_cpu("timer")
    overhead = (idle_on - idle_off) * 100
    floor = (timer - idle_off) * 100
    print(f"idle loop CPU: without {idle_off * 100:.2f}% of a core, with LoopMonitor "
          f"{idle_on * 100:.2f}% -> overhead {overhead:.2f}% of one core; a bare 10 ms "
          f"timer alone costs {floor:.2f}%")  # fmt: skip
    rows.append({"label": "LoopMonitor overhead, idle loop", "ours": overhead, "unit": "% core"})
    rows.append({"label": "bare 10 ms asyncio timer, idle loop", "ours": floor, "unit": "% core"})
    plain, monitored, debug = busy_loop("plain"), busy_loop("monitor"), busy_loop("debug")
    rows.append(compare("busy loop, 200k steps (monitor vs debug mode)", monitored, debug, "s",
                        "asyncio-debug"))  # fmt: skip
    print(f"busy loop: plain {plain:.3f} s, LoopMonitor {monitored:.3f} s "
          f"({(monitored / plain - 1) * 100:+.1f}%), debug mode {debug:.3f} s "
          f"({(debug / plain - 1) * 100:+.1f}%)")  # fmt: skip

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
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)")
    save("monitoring", rows, load_average=load)


if __name__ == "__main__":
    main()
