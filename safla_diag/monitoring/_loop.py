"""
LoopMonitor: event-loop lag, and the stack of whatever code held the loop.

Two parts, both started by ``start()`` and stopped by ``stop()`` (or by cancelling the task):

- a ticker task in the host's loop sleeps ``interval_s`` and measures how late it wakes (the lag),
  then stamps a heartbeat;
- a watchdog thread wakes every few tens of milliseconds and, when the heartbeat is older than
  ``interval_s + threshold_s``, reads the loop thread's current frame with ``sys._current_frames()``
  (the code that holds the loop *now*, not the callback asyncio's debug mode names afterwards).

When the ticker wakes after a stall, the stall is recorded with its measured duration and the stack
the watchdog caught, deduplicated by stack and counted. A loop that is idle in ``select()`` when the
watchdog looks (the process was not scheduled, or another thread held the GIL) is counted apart as
"starved": it is lag, but no code of the loop's to blame.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from .._report import html_block, html_table, to_json
from ._histogram import cumulative

if TYPE_CHECKING:
    import asyncio

__all__ = ["LAG_BUCKETS", "LoopMonitor", "LoopStats"]

logger = logging.getLogger("safla_diag.monitoring")

#: Loop lag histogram bounds (seconds): a healthy loop sits in the first buckets.
LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

_MAX_STACKS = 100  # distinct stall stacks kept (the least seen go first)
_MAX_FRAMES = 40  # innermost frames kept per stack
_STARVED = "<loop idle in select(): the process was not scheduled, or another thread held the GIL>"


def _frames(frame: Any) -> list[str]:
    """``file:line function`` from the outermost frame of the host's code to the innermost."""
    out: list[tuple[str, int, str]] = []
    f = frame
    while f is not None and len(out) < 200:
        code = f.f_code
        out.append((code.co_filename, f.f_lineno, code.co_name))
        f = f.f_back
    out.reverse()
    asyncio_dir = os.path.dirname(sys.modules["asyncio"].__file__ or "") + os.sep
    # asyncio's own frames (run_forever, _run_once, Handle._run) sit above the callback that
    # blocked: keep what runs below the last of them.
    last = -1
    for i, (filename, _, _) in enumerate(out):
        if filename.startswith(asyncio_dir):
            last = i
    kept = out[last + 1 :] or out
    return [f"{fn}:{line} {name}" for fn, line, name in kept[-_MAX_FRAMES:]]


def _end(stop: threading.Event, thread: threading.Thread | None) -> None:
    """Stop a watchdog and wait for it (it wakes at once on the event)."""
    stop.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=5)


def _idle(frame: Any) -> bool:
    """True when the loop thread is waiting in its selector (no code of the loop's running)."""
    return frame is not None and frame.f_code.co_filename.endswith("selectors.py")


class LoopStats(TypedDict):
    """What ``LoopMonitor.stats()`` returns: a plain dict, typed. Times in seconds."""

    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    stalls: int
    """Stalls since start."""
    starved: int
    """Late wake-ups with no code to blame."""
    ticks: int
    threshold_s: float
    interval_s: float
    running: bool


class LoopMonitor:
    """
    Event-loop lag (p50, p99, max over a window) and every stall over a threshold, with its stack.

    ``start()`` in the host's running loop starts a ticker task and a watchdog thread; ``stop()``
    (or cancelling the task) stops both. Costs a wake-up of the loop every ``interval_s`` (a
    fraction of a percent of one core at 10 ms) and a thread that sleeps between checks.

    Args:
        threshold_s: A stall is a wake-up later than this (the loop was held at least this long).
        interval_s: How often the ticker wakes; also the resolution of the lag.
        window: Lag samples the percentiles cover (the most recent ticks).
        clock: Monotonic clock (a test seam).

    Raises:
        ValueError: On a non-positive threshold, interval or window.
    """

    def __init__(
        self,
        *,
        threshold_s: float = 0.1,
        interval_s: float = 0.01,
        window: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, v in (("threshold_s", threshold_s), ("interval_s", interval_s)):
            if not (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        self.threshold_s = float(threshold_s)
        self.interval_s = float(interval_s)
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._lags = array("d", bytes(8 * window))
        self._ticks = 0
        self._lag_hist = [0] * (len(LAG_BUCKETS) + 1)
        self._lag_sum = 0.0
        self._max_lag = 0.0
        self._stalls: dict[tuple[str, ...], dict[str, Any]] = {}
        self._stall_total = 0
        self._starved = 0
        self._caught: list[str] | None = None  # the stack the watchdog caught in this stall
        self._beat = 0.0
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread = 0

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<LoopMonitor {state} threshold_s={self.threshold_s:g} "
            f"stalls={self._stall_total} max_lag_s={self._max_lag:.3f}>"
        )

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> asyncio.Task[None]:
        """
        Start watching the running loop: a ticker task and the watchdog thread.

        Returns:
            The ticker task (cancelling it stops the monitor too).

        Raises:
            RuntimeError: Outside a running event loop, or when already started.
        """
        import asyncio  # lazily: `import safla_diag.monitoring` does not load asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "LoopMonitor.start() needs a running event loop: call it from a coroutine "
                "of the loop to watch"
            ) from None
        if self.running:
            raise RuntimeError("this LoopMonitor is already running; stop() it first")
        self._loop_thread = threading.get_ident()
        self._beat = self._clock()
        self._caught = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="safla_diag-loop-watchdog", daemon=True
        )
        self._thread.start()
        self._task = loop.create_task(self._tick(), name="safla_diag.LoopMonitor")
        # However the task ends (stop(), cancelled by the host, even before its first step),
        # this start's watchdog ends with it; a later start() has its own thread and event.
        stop, thread = self._stop, self._thread
        self._task.add_done_callback(lambda _t: _end(stop, thread))
        return self._task

    def stop(self) -> None:
        """Stop the ticker and the watchdog (the thread is joined before this returns)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        self._halt()

    def _halt(self) -> None:
        thread, self._thread = self._thread, None
        _end(self._stop, thread)

    async def _tick(self) -> None:
        import asyncio

        # The ticks are plain timer callbacks (no coroutine step, no future per tick: a third of
        # the cost of ``await asyncio.sleep``); this task only holds the monitor's lifetime.
        loop = asyncio.get_running_loop()
        clock, interval, record = self._clock, self.interval_s, self._record
        handle: asyncio.TimerHandle | None = None
        due = clock() + interval

        def tick() -> None:
            nonlocal handle, due
            now = clock()
            self._beat = now
            record(max(0.0, now - due))
            due = now + interval
            handle = loop.call_at(loop.time() + interval, tick)

        handle = loop.call_at(loop.time() + interval, tick)
        try:
            await loop.create_future()  # until cancelled
        finally:
            handle.cancel()

    # ------------------------------------------------------------------ measuring
    def _record(self, lag: float) -> None:
        with self._lock:
            self._lags[self._ticks % self.window] = lag
            self._ticks += 1
            self._lag_hist[bisect_left(LAG_BUCKETS, lag)] += 1
            self._lag_sum += lag
            if lag > self._max_lag:
                self._max_lag = lag
            caught, self._caught = self._caught, None
            if lag < self.threshold_s:
                return
            if caught is None or caught == [_STARVED]:
                # Late, but the watchdog saw no code of the loop's running (or did not look in
                # time): lag, not a stall to pin on a stack.
                self._starved += 1
                return
            self._stall_total += 1
            key = tuple(caught)
            entry = self._stalls.get(key)
            now = time.time()
            if entry is None:
                if len(self._stalls) >= _MAX_STACKS:
                    rarest = min(self._stalls, key=lambda k: self._stalls[k]["count"])
                    del self._stalls[rarest]
                entry = self._stalls[key] = {
                    "count": 0,
                    "duration_s": 0.0,
                    "total_s": 0.0,
                    "first_seen": now,
                    "stack": list(caught),
                }
            entry["count"] += 1
            entry["duration_s"] = max(entry["duration_s"], lag)
            entry["total_s"] += lag
            entry["last_seen"] = now
        logger.warning(
            "event loop blocked for %.3f s at %s", lag, caught[-1] if caught else "unknown"
        )

    def _watch(self) -> None:
        """The watchdog thread: catch the loop thread's stack while it is held."""
        # It sleeps until the moment the current heartbeat would become a stall, so a healthy
        # loop wakes it about once per threshold, and a stall is caught as soon as it counts.
        late = self.interval_s + self.threshold_s
        clock, stop = self._clock, self._stop
        wait = late
        while not stop.wait(wait):
            age = clock() - self._beat
            if age < late:
                wait = late - age + 0.001
                continue
            wait = min(self.threshold_s, 0.05)  # in a stall: look again a little later
            with self._lock:
                if self._caught is not None and self._caught != [_STARVED]:
                    continue  # already caught in this stall
            frame = sys._current_frames().get(self._loop_thread)
            stack = [_STARVED] if frame is None or _idle(frame) else _frames(frame)
            del frame
            with self._lock:
                if clock() - self._beat >= late:  # still the same stall
                    self._caught = stack

    # ------------------------------------------------------------------ reading
    def stats(self) -> LoopStats:
        """
        Lag over the window and counts since start.

        Returns:
            ``lag_p50_s``, ``lag_p99_s``, ``lag_max_s`` (over the last ``window`` ticks),
            ``stalls`` (since start), ``starved`` (late wake-ups with no code to blame),
            ``ticks``, ``threshold_s``, ``interval_s`` and ``running``.
        """
        with self._lock:
            n = min(self._ticks, self.window)
            lags = sorted(self._lags[:n])
            stalls, starved, ticks = self._stall_total, self._starved, self._ticks

        def q(p: float) -> float:
            # numpy's default (linear) percentile, on a short sorted list
            if not lags:
                return 0.0
            v = (len(lags) - 1) * p
            lo = math.floor(v)
            hi = min(lo + 1, len(lags) - 1)
            return lags[lo] + (lags[hi] - lags[lo]) * (v - lo)

        return {
            "lag_p50_s": q(0.5),
            "lag_p99_s": q(0.99),
            "lag_max_s": lags[-1] if lags else 0.0,
            "stalls": stalls,
            "starved": starved,
            "ticks": ticks,
            "threshold_s": self.threshold_s,
            "interval_s": self.interval_s,
            "running": self.running,
        }

    def stalls(self) -> list[dict[str, Any]]:
        """
        The stalls seen since start, one entry per distinct stack, most frequent first.

        Returns:
            Each: ``duration_s`` (the longest), ``total_s``, ``count``, ``first_seen`` and
            ``last_seen`` (wall-clock times) and ``stack`` (``file:line function`` strings,
            outermost first, the line that held the loop last).
        """
        with self._lock:
            items = [dict(e, stack=list(e["stack"])) for e in self._stalls.values()]
        items.sort(key=lambda e: (-e["count"], -e["duration_s"]))
        return items

    def lag_histogram(self) -> dict[str, Any]:
        """
        Every tick's lag since start, as a Prometheus-style histogram.

        Returns:
            ``buckets`` (``[(upper bound, cumulative count), ...]`` ending with ``+inf``),
            ``count`` and ``sum`` (seconds).
        """
        with self._lock:
            counts, total = list(self._lag_hist), self._lag_sum
        return cumulative(LAG_BUCKETS, counts, total)

    def to_dict(self) -> dict[str, Any]:
        """The stats and the stalls, as plain data."""
        return {"stats": self.stats(), "stalls": self.stalls()}

    def to_json(self, *, indent: int | None = 2, **json_kwargs: Any) -> str:
        """The stats and stalls as JSON text."""
        return to_json(self.to_dict(), indent=indent, **json_kwargs)

    def to_text(self) -> str:
        """A short plain-text summary with the stack of each stall."""
        s = self.stats()
        lines = [
            f"event loop lag: p50 {s['lag_p50_s'] * 1e3:.1f} ms, p99 {s['lag_p99_s'] * 1e3:.1f} "
            f"ms, max {s['lag_max_s'] * 1e3:.1f} ms; {s['stalls']} stalls over "
            f"{self.threshold_s * 1e3:g} ms"
        ]
        for e in self.stalls():
            lines.append(f"  {e['count']}x up to {e['duration_s'] * 1e3:.0f} ms:")
            lines.extend(f"    {frame}" for frame in e["stack"])
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        s = self.stats()
        table = html_table(
            ["lag p50 (ms)", "lag p99 (ms)", "lag max (ms)", "stalls"],
            [
                [
                    round(s["lag_p50_s"] * 1e3, 2),
                    round(s["lag_p99_s"] * 1e3, 2),
                    round(s["lag_max_s"] * 1e3, 2),
                    s["stalls"],
                ]
            ],
        )
        stalls = html_table(
            ["count", "longest (ms)", "where"],
            [
                [e["count"], round(e["duration_s"] * 1e3), e["stack"][-1] if e["stack"] else ""]
                for e in self.stalls()
            ],
            caption="stalls",
        )
        return html_block("Event loop", table, stalls, ok=s["stalls"] == 0)
