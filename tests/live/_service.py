"""A small SAFLA-like service for the live endpoint tests, run as a child process.

It serves the live endpoint on loopback, prints its port on stdout, records requests into a
PerformanceMonitor, and obeys commands on stdin: ``block`` (a blocking call on the loop),
``load SECONDS`` (CPU work on the loop, in short steps), ``quit``.
"""

from __future__ import annotations

import asyncio
import sys
import time

from safla_diag import Diagnostics, PerformanceMonitor, serve, timed

api = PerformanceMonitor(1000)


def blocking_handler() -> None:
    time.sleep(0.4)  # BLOCKING LINE: the stall /debug/loop must name


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
    async with Diagnostics() as diag, serve(diag, token=token, objects=[("api", api)]) as server:
        print(server.port, flush=True)
        stop = asyncio.Event()
        await commands(stop)


if __name__ == "__main__":
    asyncio.run(main())
