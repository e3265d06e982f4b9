"""
What healing costs a service, through the public API.

1. Allocation-heavy host code inside ``async with Diagnostics({}, heal=True)`` (tracemalloc off
   until the leak detector's alarm opens a bounded window) beside the guide's way of finding the
   leaking line: tracemalloc on all the time (``MemoryProfiler.start_tracing()`` kept running).
2. The healer's watch tick (memory percent, leak verdict, breakers, queues), as loop time spent per
   tick, measured with a tick of 1 ms over one second.

Run: python benchmarks/bench_heal.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import compare, save

from safla_diag import Diagnostics, HealPolicy


def workload() -> int:
    """A request handler that allocates: 50 000 small dicts and lists."""
    rows = [{"id": i, "tags": [i, i + 1], "name": f"row-{i}"} for i in range(50_000)]
    return len(rows)


def best(repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        workload()
        times.append(time.perf_counter() - t)
    return min(times)


async def ours() -> float:
    async with Diagnostics({}, heal=HealPolicy()):
        return best()


async def tick_cost() -> tuple[float, int]:
    """CPU seconds of the process per healer tick, with a 1 ms tick over one second."""
    async with Diagnostics({}, heal=HealPolicy(tick_s=0.001)) as diag:
        healer = diag.healer
        assert healer is not None
        t0, c0 = healer.ticks, time.process_time()
        await asyncio.sleep(1.0)
        ticks, cpu = healer.ticks - t0, time.process_time() - c0
    return cpu / max(ticks, 1), ticks


def guide() -> float:
    tracemalloc.start(1)  # the guide keeps tracing on to name the leaking line when it comes
    try:
        return best()
    finally:
        tracemalloc.stop()


def main() -> None:
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (the machine is shared)")
    rows = [
        compare(
            "allocating handler, healer idle vs tracemalloc on",
            asyncio.run(ours()),
            guide(),
            theirs_name="guide",
        )
    ]
    per_tick, ticks = asyncio.run(tick_cost())
    print(
        f"{'healer watch tick (CPU per tick, 1 ms tick)':<48} ours {per_tick:>12.6g} s   ({ticks} ticks)"
    )
    rows.append({"label": "healer watch tick (CPU s per tick)", "ours": per_tick, "ticks": ticks})
    save("heal", rows, load_average=load)


if __name__ == "__main__":
    main()
