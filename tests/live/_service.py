"""A small SAFLA-like service for the live endpoint tests, run as a child process.

It serves the live endpoint on loopback, prints its port on stdout, records requests into a
PerformanceMonitor, and obeys commands on stdin: ``block`` (a blocking call on the loop),
``load SECONDS`` (CPU work on the loop, in short steps), ``quit``.
"""

from __future__ import annotations

import asyncio
import sys
import time

from safla_diag import Diagnostics, LoopMonitor, PerformanceMonitor, serve, timed

api = PerformanceMonitor(1000)
monitor = LoopMonitor()


def _caught_here() -> bool:
    # Private on purpose: the stack the watchdog caught in the stall under way.
    caught = monitor._caught
    return caught is not None and caught[-1].endswith(" blocking_handler")


def blocking_handler() -> None:
    # Hold the loop 0.4 s, and on until the watchdog thread has caught this frame: on a loaded
    # machine that thread may be scheduled late, and the stall would be pinned on whatever the loop
    # ran next. (Between sleeps the loop thread holds the GIL only for microseconds, so the
    # watchdog, which needs the GIL to read the frame, sees it on the sleep's line.)
    held, give_up = time.monotonic() + 0.4, time.monotonic() + 60
    while time.monotonic() < held or (not _caught_here() and time.monotonic() < give_up):
        time.sleep(0.01)  # BLOCKING LINE: the stall /debug/loop must name


async def next_tick() -> None:
    """Wait for the monitor's next tick: the stall starts afresh, nothing caught yet."""
    ticks = monitor.stats()["ticks"]
    while monitor.stats()["ticks"] == ticks:  # noqa: ASYNC110 (the monitor offers no event)
        await asyncio.sleep(0.005)


def hot_function(n: int) -> int:
    return sum(i * i for i in range(n))


@timed(api)
async def handle_request() -> int:
    return hot_function(2000)


async def load(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await handle_request()
        await asyncio.sleep(0)


async def commands(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    background: set[asyncio.Task[None]] = set()
    while line := (await reader.readline()).decode().split():
        if line[0] == "block":
            await next_tick()
            blocking_handler()
        elif line[0] == "load":
            task = asyncio.create_task(load(float(line[1])))
            background.add(task)
            task.add_done_callback(background.discard)
        elif line[0] == "quit":
            break
        print("done", line[0], flush=True)
    stop.set()


async def main() -> None:
    token = sys.argv[1] if len(sys.argv) > 1 else None
    for _ in range(50):
        await handle_request()
    monitor.start()
    try:
        async with (
            Diagnostics() as diag,
            serve(diag, token=token, loop_monitor=monitor, objects=[("api", api)]) as server,
        ):
            print(server.port, flush=True)
            stop = asyncio.Event()
            await commands(stop)
    finally:
        monitor.stop()


if __name__ == "__main__":
    asyncio.run(main())
