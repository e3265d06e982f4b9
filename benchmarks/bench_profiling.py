"""
Profiling overheads, side by side in one run.

1. ns added per call of a trivial function: ``timed`` (sync, async) against prometheus_client's
   ``Histogram.time()``; ``CPUProfiler.profile_function`` against the guide's per-call profiler
   (cProfile enable/disable plus a pstats text printed per call) and pyinstrument per call.
2. A numpy + pure-Python workload: slowdown under ``profile`` and under pyinstrument, against bare.
3. Correctness: an async function that sleeps 10 ms, as recorded by ``timed``, ``profile`` and a
   naive sync wrapper (the bug: ~1 µs, only the creation of the coroutine).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import io
import logging
import os
import pstats
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

# One BLAS thread: on a small shared machine numpy's spinning BLAS threads make the workload's
# timings swing several-fold between runs; the comparison is about the profilers, not BLAS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import compare, save

from safla_diag import CPUProfiler, profile, timed

N_SYNC = 50_000
N_ASYNC = 30_000
N_NAIVE = 500
ROUNDS = 25
WORKLOAD_ROUNDS = 7


class Recorder:
    """What a monitor's record_request costs at least: one bounded append."""

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=1000)
        self.errors = 0

    def record_request(self, response_time: float, success: bool = True) -> None:
        self.samples.append(response_time)
        if not success:
            self.errors += 1


def trivial(x: int) -> int:
    return x


async def atrivial(x: int) -> int:
    return x


def per_call_ns(
    fns: dict[str, Callable[[int], Any]], n: int, rounds: int = ROUNDS
) -> dict[str, float]:
    """Best ns per call of each fn(i) in a tight loop, rounds interleaved (loop cost included)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter_ns()
            for i in range(n):
                fn(i)
            best[name] = min(best[name], (time.perf_counter_ns() - t) / n)
    return best


def async_per_call_ns(
    fns: dict[str, Callable[[int], Any]], n: int, rounds: int = ROUNDS
) -> dict[str, float]:
    """Best ns per `await fn(i)` inside one coroutine, rounds interleaved."""

    async def loop() -> dict[str, float]:
        best = dict.fromkeys(fns, float("inf"))
        for _ in range(rounds):
            for name, fn in fns.items():
                t = time.perf_counter_ns()
                for i in range(n):
                    await fn(i)
                best[name] = min(best[name], (time.perf_counter_ns() - t) / n)
        return best

    return asyncio.run(loop())


# -- the guide's way, rewritten here as the baseline: a profiler enabled per call, and a pstats
# -- text report generated and printed every time.
class NaiveCPUProfiler:
    def __init__(self) -> None:
        self.profiler = cProfile.Profile()
        self.on = False

    def start(self) -> None:
        if not self.on:
            self.profiler.enable()
            self.on = True

    def stop(self) -> str | None:
        if not self.on:
            return None
        self.profiler.disable()
        self.on = False
        buf = io.StringIO()
        pstats.Stats(self.profiler, stream=buf).sort_stats("cumulative").print_stats(20)
        return buf.getvalue()

    def profile_function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.start()
            try:
                return fn(*args, **kwargs)
            finally:
                text = self.stop()
                if text:
                    print(f"Profile for {fn.__name__}:")
                    print(text)

        return wrapper


def naive_sync_timer(recorder: Recorder) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The bug to avoid: a plain def wrapper around an async def times coroutine creation."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                recorder.record_request(time.perf_counter() - t, True)

        return wrapper

    return deco


def section_overheads(rows: list[dict[str, Any]]) -> dict[str, float]:
    print(f"\n== ns added per call of a trivial function (best of {ROUNDS} interleaved rounds) ==")
    from prometheus_client import CollectorRegistry, Histogram
    from pyinstrument import Profiler

    hist = Histogram("bench_seconds", "bench", registry=CollectorRegistry())

    @hist.time()
    def prom(x: int) -> int:
        return x

    def pyi(x: int) -> int:
        p = Profiler(async_mode="disabled")
        p.start()
        try:
            return x
        finally:
            p.stop()

    fast = per_call_ns(
        {
            "bare": trivial,
            "timed": timed(Recorder())(trivial),
            "prom": prom,
            # default deployment: a NullHandler, so nobody consumes reports and none is built
            "profile_function": CPUProfiler().profile_function(trivial),
        },
        N_SYNC,
    )
    bare = fast["bare"]
    print(f"bare call: {bare:.0f} ns")
    rows.append(
        compare(
            "timed, sync (ns added; target <= 300)",
            fast["timed"] - bare,
            fast["prom"] - bare,
            "ns",
            "prom_hist",
        )
    )

    async def aprom(x: int) -> int:
        with hist.time():
            return x

    # The guide prints every report: to /dev/null here, so the terminal shows only figures.
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        slow = per_call_ns(
            {
                "bare": trivial,
                "naive": NaiveCPUProfiler().profile_function(trivial),
                "pyinstrument": pyi,
                "report_per_call": CPUProfiler(on_report=lambda r: None).profile_function(trivial),
            },
            N_NAIVE,
            rounds=8,
        )
    ours = fast["profile_function"] - bare
    rows.append(
        compare(
            "profile_function (ns added; target <= 2000)",
            ours,
            slow["naive"] - slow["bare"],
            "ns",
            "guide",
        )
    )
    rows.append(
        compare(
            "profile_function vs pyinstrument per call (ns)",
            ours,
            slow["pyinstrument"] - slow["bare"],
            "ns",
            "pyinstrument",
        )
    )
    rows.append(
        compare(
            "profile_function, report built per call (ns)",
            slow["report_per_call"] - slow["bare"],
            slow["naive"] - slow["bare"],
            "ns",
            "guide",
        )
    )

    aw = async_per_call_ns(
        {"bare": atrivial, "timed": timed(Recorder())(atrivial), "prom": aprom}, N_ASYNC
    )
    print(f"bare await: {aw['bare']:.0f} ns")
    rows.append(
        compare(
            "timed, async (ns added; target <= 400)",
            aw["timed"] - aw["bare"],
            aw["prom"] - aw["bare"],
            "ns",
            "prom_hist",
        )
    )
    return {"bare_ns": bare, "bare_await_ns": aw["bare"]}


def workload() -> float:
    """numpy linear algebra mixed with pure-Python bookkeeping over dicts and strings."""
    import numpy as np

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 64)).astype("float32")
    total = 0.0
    for batch in range(40):
        query = vectors[batch * 10 : batch * 10 + 10]
        scores = vectors @ query.T
        best = np.argsort(-scores, axis=0)[:5]
        records = [
            {"id": int(i), "score": float(scores[i, j]), "tag": f"q{batch}-{j}"}
            for j in range(best.shape[1])
            for i in best[:, j]
        ]
        records.sort(key=lambda r: (-r["score"], r["id"]))
        seen: dict[str, int] = {}
        for r in records:
            seen[r["tag"].split("-")[0]] = seen.get(r["tag"].split("-")[0], 0) + 1
            total += r["score"] / (1 + len(r["tag"]))
        total += sum(_python_part(k) for k in range(60))
    return total


def _python_part(k: int) -> int:
    return sum(ord(c) for c in str(k * 7919))


def section_workload(rows: list[dict[str, Any]]) -> None:
    print(f"\n== numpy + pure-Python workload (median of {WORKLOAD_ROUNDS} interleaved rounds) ==")
    from pyinstrument import Profiler

    workload()  # warm numpy up

    def under_pyinstrument() -> None:
        p = Profiler(async_mode="disabled")
        p.start()
        try:
            workload()
        finally:
            p.stop()

    session = profile(log_level=None)
    runs: dict[str, Callable[[], Any]] = {
        "bare": workload,
        "profile": session(workload),
        "pyinstrument": under_pyinstrument,
    }
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(WORKLOAD_ROUNDS):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"bare workload: {med['bare'] * 1000:.1f} ms")
    assert session.report is not None and session.report["_python_part"].ncalls == 40 * 60
    rows.append(
        compare(
            "workload slowdown under profile (x bare)",
            med["profile"] / med["bare"],
            1.0,
            "x",
            "bare",
        )
    )
    rows.append(
        compare(
            "workload slowdown: profile vs pyinstrument (x bare)",
            med["profile"] / med["bare"],
            med["pyinstrument"] / med["bare"],
            "x",
            "pyinstrument",
        )
    )


def section_async_correctness(rows: list[dict[str, Any]]) -> None:
    print("\n== async function sleeping 10 ms: recorded time ==")
    rec_ours, rec_naive = Recorder(), Recorder()

    async def sleeper() -> None:
        await asyncio.sleep(0.010)

    ours_timed = timed(rec_ours)(sleeper)
    naive = naive_sync_timer(rec_naive)(sleeper)
    session = profile(log_level=None)
    ours_profiled = session(sleeper)

    async def main() -> None:
        await ours_timed()
        await naive()
        await ours_profiled()

    asyncio.run(main())
    t_ours = rec_ours.samples[-1]
    t_naive = rec_naive.samples[-1]
    assert session.report is not None and session.report.wall_time is not None
    t_prof = session.report.wall_time
    rows.append(
        compare("async 10 ms sleep, timed (s; want >= 0.010)", t_ours, t_naive, "s", "sync_wrapper")
    )
    rows.append(
        compare("async 10 ms sleep, profile wall_time (s)", t_prof, t_naive, "s", "sync_wrapper")
    )


def main() -> None:
    logging.getLogger("safla_diag").setLevel(logging.WARNING)
    rows: list[dict[str, Any]] = []
    meta = section_overheads(rows)
    section_workload(rows)
    section_async_correctness(rows)
    save("profiling", rows, **meta, n_sync=N_SYNC, n_async=N_ASYNC, rounds=ROUNDS)


if __name__ == "__main__":
    main()
