"""MemoryLeakDetector: a robust trend test over the RSS history."""

from __future__ import annotations

import logging
import math
import os
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._redact import describe_error
from .._report import JsonMixin, Num, html_block, html_table
from ._trend import DEFAULT_WINDOWS, ScaleResult, TrendEngine, make_scales

if TYPE_CHECKING:
    import asyncio

    import psutil

__all__ = [
    "LeakAnalysis",
    "MemoryLeakDetector",
]

logger = logging.getLogger("safla_diag.monitoring")

MB = 1024 * 1024


def _confidence(z: float) -> float:
    """One-sided normal confidence of a Mann–Kendall z."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) if z > 0 else 0.0


@attrs.frozen(kw_only=True)
class LeakAnalysis(JsonMixin):
    """
    What the leak detector concluded from the RSS history.

    Attributes:
        leaking: A steady upward trend was found at some time scale.
        slope_mb_per_hour: The robust (Theil–Sen) slope of the memory floor at ``scale``.
        confidence: One-sided Mann–Kendall confidence of that trend, 0-1.
        samples: Samples fed to the detector so far.
        scale: The time scale that fired (e.g. ``"30m"``), or, when none fired, the one with the
            strongest evidence; None before there is enough history.
        window_s: That scale's window, seconds.
        current_mb: The last sample.
        memory_limit_mb: The limit the projection runs to (cgroup limit or host memory).
        time_to_limit_s: At this slope, seconds until the limit; None when not growing.
        reason: Why the strongest scale did or did not fire.
        top_consumers: When tracemalloc is tracing (and the detector watches this process), the
            allocation sites that grew most since the baseline taken at the first analysis:
            ``{file, size_diff, count_diff, current_size}`` (sizes in bytes).
        scales: Every scale's last verdict.
        series: The memory floor the verdict was drawn from: ``(timestamp, mb)`` per bucket
            (see ``MemoryLeakDetector.series()``); drawn by ``_repr_html_``.
    """

    leaking: bool
    slope_mb_per_hour: float
    confidence: float
    samples: int
    scale: str | None
    window_s: float | None
    current_mb: float | None
    memory_limit_mb: float | None
    time_to_limit_s: float | None
    reason: str
    top_consumers: tuple[dict[str, Any], ...] = ()
    scales: tuple[dict[str, Any], ...] = ()
    series: tuple[tuple[float, float], ...] = attrs.field(default=(), repr=False)

    def __bool__(self) -> bool:
        return self.leaking

    def __repr__(self) -> str:
        return (
            f"<LeakAnalysis leaking={self.leaking} slope={self.slope_mb_per_hour:.1f} MB/h "
            f"confidence={self.confidence:.3f} scale={self.scale!r}>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of every field."""
        d = attrs.asdict(self)
        d["top_consumers"] = [dict(c) for c in self.top_consumers]
        d["scales"] = [dict(s) for s in self.scales]
        return d

    def to_text(self) -> str:
        """A few lines for a log or a terminal."""
        head = "memory leak suspected" if self.leaking else "no memory leak found"
        lines = [f"{head}: {self.reason}"]
        if self.scale is not None:
            lines.append(
                f"  slope {self.slope_mb_per_hour:.1f} MB/h over {self.scale} "
                f"(confidence {self.confidence:.3f}, {self.samples} samples)"
            )
        if self.time_to_limit_s is not None and self.memory_limit_mb is not None:
            lines.append(
                f"  {self.time_to_limit_s / 3600:.1f} h to the {self.memory_limit_mb:.0f} MB limit "
                "at this rate"
            )
        for c in self.top_consumers[:10]:
            lines.append(f"  +{c['size_diff'] / 1024:.1f} KiB  {c['file']}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The verdict, its figures and every scale's verdict, as tables for Jupyter."""
        head = "memory leak suspected" if self.leaking else "no memory leak found"
        figures = html_table(
            ("", "value"),
            [
                ("slope MB/h", _num(self.slope_mb_per_hour)),
                ("confidence", _num(self.confidence)),
                ("samples", self.samples),
                ("scale", "-" if self.scale is None else self.scale),
                ("current MB", _num(self.current_mb)),
                ("limit MB", _num(self.memory_limit_mb)),
                ("hours to limit", _num(self.time_to_limit_s, 3600.0)),
            ],
        )
        parts = [figures]
        if self.scales:
            parts.append(
                html_table(
                    ("scale", "fired", "slope MB/h", "z", "points", "reason"),
                    [
                        (
                            s.get("scale", ""),
                            "yes" if s.get("fired") else "no",
                            _num(s.get("slope_mb_per_hour")),
                            _num(s.get("z")),
                            s.get("points", ""),
                            s.get("reason", ""),
                        )
                        for s in self.scales
                    ],
                    caption="time scales",
                )
            )
        if self.top_consumers:
            parts.append(
                html_table(
                    ("KiB grown", "blocks", "allocated at"),
                    [
                        (round(c["size_diff"] / 1024, 1), c["count_diff"], c["file"])
                        for c in self.top_consumers[:10]
                    ],
                    caption="top consumers",
                )
            )
        from ._svg import leak_svg

        parts.insert(0, leak_svg(self, self.series))
        return html_block(f"{head}: {self.reason}", *parts, ok=not self.leaking)


def _num(value: Any, per: float = 1.0) -> object:
    """A figure for a table: rounded, or ``-`` when unknown (None, NaN, inf)."""
    if value is None or not math.isfinite(value):
        return "-"
    return Num(f"{value / per:.3f}")


def _scale_dict(r: ScaleResult) -> dict[str, Any]:
    return {
        "scale": r.scale,
        "fired": r.fired,
        "slope_mb_per_hour": r.slope_mb_per_s * 3600.0,
        "z": r.z,
        "points": r.points,
        "reason": r.reason,
    }


class MemoryLeakDetector:
    """
    Detects steady memory growth in a long-running process, and nothing else.

    Every sample is folded into one-minute buckets keeping the minimum (the floor the process
    returns to after garbage collection). At several time scales (10 minutes to 4 hours by
    default) the floor's Theil–Sen slope and Mann–Kendall significance are tested; a scale fires
    when the trend is significant, projects at least ``leak_threshold`` MB of growth over an
    hour (or over its window when longer), stands out of the floor's noise, and is a ramp rather
    than a step: a cache warming up, a GC sawtooth or a transient burst does not fire.

    Time is explicit: ``add_sample(rss_mb, timestamp)``, so tests replay series without sleeping.
    ``run()`` samples the process every ``sample_interval`` seconds; ``start_monitoring()``
    schedules it as a task in the running loop.

    Args:
        check_interval: While a leak persists, how often (seconds) ``run()`` reports it again.
        leak_threshold: MB of growth per hour (or per window, for windows over an hour) that
            count as a leak.
        sample_interval: Seconds between two samples in ``run()``.
        bucket_s: Bucket length for the floor, seconds.
        windows: The time scales' windows, seconds.
        gc_period_s: Longest expected GC cycle: the rolling minimum spans it.
        memory_limit_mb: Limit for the time-to-limit projection; by default the cgroup limit or
            the host's memory.
        process: The psutil.Process to sample (this process by default); one is kept.
        tracemalloc_frames: 0 leaves tracemalloc alone; n > 0 starts it with n frames while
            ``run()`` runs (and stops it after, if it was not tracing before). It slows
            allocation-heavy code several times (3-5x with 1 frame, 20-40x with 25 here).
        on_leak: Called with the LeakAnalysis when a leak is found (and every
            ``check_interval`` while it lasts); may be a coroutine function.
        clock: Clock for timestamps in ``run()`` and ``add_sample`` without one.
        sleep: Awaitable sleep for ``run()`` (a test seam).

    Raises:
        ValueError: On non-positive intervals or an empty ``windows``.
    """

    def __init__(
        self,
        check_interval: float = 300,
        leak_threshold: float = 50,
        *,
        sample_interval: float = 5.0,
        bucket_s: float = 60.0,
        windows: Sequence[float] = DEFAULT_WINDOWS,
        gc_period_s: float = 300.0,
        memory_limit_mb: float | None = None,
        process: psutil.Process | None = None,
        tracemalloc_frames: int = 0,
        on_leak: Callable[[LeakAnalysis], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        for name, v in (
            ("check_interval", check_interval),
            ("sample_interval", sample_interval),
            ("bucket_s", bucket_s),
            ("gc_period_s", gc_period_s),
        ):
            if not (0 < v < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
        if not windows or any(not (0 < w < math.inf) for w in windows):
            raise ValueError(f"windows must be positive durations, got {windows!r}")
        if not (leak_threshold > 0):
            raise ValueError(f"leak_threshold must be positive, got {leak_threshold!r}")
        self.check_interval = float(check_interval)
        self.leak_threshold = float(leak_threshold)
        self.sample_interval = float(sample_interval)
        self.memory_limit_mb = memory_limit_mb
        self.tracemalloc_frames = int(tracemalloc_frames)
        self.on_leak = on_leak
        self._clock = clock
        self._sleep = sleep
        self._process = process
        self._engine = TrendEngine(
            leak_threshold_mb=self.leak_threshold,
            bucket_s=bucket_s,
            scales=make_scales(tuple(windows), bucket_s=bucket_s, gc_period_s=gc_period_s),
        )
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._ended: asyncio.Event | None = None  # set when the current run() has finished
        self._baseline: tracemalloc.Snapshot | None = None
        self._started_tracing = False
        self.monitoring = False
        self.last_analysis: LeakAnalysis | None = None

    def __repr__(self) -> str:
        return (
            f"<MemoryLeakDetector samples={self._engine.samples} "
            f"leaking={self._engine.leaking} monitoring={self.monitoring}>"
        )

    # ------------------------------------------------------------------ samples
    @property
    def samples(self) -> int:
        """Samples fed so far."""
        return self._engine.samples

    def add_sample(self, rss_mb: float, timestamp: float | None = None) -> bool:
        """
        Feed one RSS sample.

        Args:
            rss_mb: Resident memory, MB.
            timestamp: When it was taken, seconds (any origin, increasing); the detector's clock
                when omitted.

        Returns:
            Whether a leak is suspected after this sample.

        Raises:
            ValueError: For a negative, NaN or infinite size or time, or a time before the
                previous sample's.
        """
        if isinstance(rss_mb, bool) or not isinstance(rss_mb, int | float):
            raise ValueError(f"rss_mb must be a number, got {type(rss_mb).__name__}")
        if not (0 <= rss_mb < math.inf):
            raise ValueError(f"rss_mb must be a finite size >= 0, got {rss_mb!r}")
        t = self._clock() if timestamp is None else timestamp
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError(f"timestamp must be a finite number, got {t!r}")
        self._engine.add(float(t), float(rss_mb))
        return self._engine.leaking

    def series(self) -> list[tuple[float, float]]:
        """
        The memory floor the trend test looks at: ``(timestamp, mb)`` per bucket, oldest first.

        Each point is a bucket's start time (in the samples' time base) and the smallest sample
        in it; the bucket still filling comes last. Bounded: the longest window plus a GC period
        of buckets (about 250 with the defaults), whatever the run's length.
        """
        eng = self._engine
        out = [(idx * eng.bucket_s, mb) for idx, mb in eng._buckets]
        if eng._cur_idx is not None and eng._cur_n:
            out.append((eng._cur_idx * eng.bucket_s, eng._cur_min))
        return out

    def _repr_html_(self) -> str:
        from ._svg import leak_detector_html

        return leak_detector_html(self)

    def detect_memory_leak(self) -> bool:
        """Whether the RSS history shows a leak now (as of the last completed bucket)."""
        return self._engine.leaking

    def analyze(self, *, top_consumers: bool = True) -> LeakAnalysis:
        """
        The detector's conclusion, with the evidence.

        Args:
            top_consumers: When tracemalloc is tracing, take a snapshot (costly on big heaps)
                and compare it with the baseline taken when tracing was first seen.

        Returns:
            The analysis; also kept as ``last_analysis``.
        """
        eng = self._engine
        fired = eng.fired()
        best = fired
        if best is None:
            evaluated = [r for r in eng.results.values() if r.points > 0 and r.z > 0]
            best = max(evaluated, key=lambda r: r.z, default=None)
            if best is None:
                evaluated = [r for r in eng.results.values() if r.points > 0]
                best = evaluated[-1] if evaluated else None
        slope_h = best.slope_mb_per_s * 3600.0 if best is not None else 0.0
        limit = self.memory_limit_mb if self.memory_limit_mb is not None else self._limit_mb()
        current = eng.last_mb
        ttl = None
        if fired is not None and slope_h > 0 and limit is not None and current is not None:
            ttl = max(0.0, (limit - current) / slope_h * 3600.0)
        window = None
        if best is not None:
            window = next(sc.window_s for sc in eng.scales if sc.name == best.scale)
        analysis = LeakAnalysis(
            leaking=fired is not None,
            slope_mb_per_hour=slope_h,
            confidence=_confidence(best.z) if best is not None else 0.0,
            samples=eng.samples,
            scale=best.scale if best is not None else None,
            window_s=window,
            current_mb=current,
            memory_limit_mb=limit,
            time_to_limit_s=ttl,
            reason=best.reason if best is not None else "not enough history",
            top_consumers=self._top_consumers() if top_consumers else (),
            scales=tuple(_scale_dict(r) for r in eng.results.values()),
            series=tuple(self.series()),
        )
        self.last_analysis = analysis
        return analysis

    def _limit_mb(self) -> float | None:
        try:
            import psutil

            from ._cgroup import read_cgroup_memory

            total = psutil.virtual_memory().total
            cg = read_cgroup_memory()
            if cg is not None and cg.limit_bytes < total:
                total = cg.limit_bytes
            return float(total) / MB
        except Exception:  # a projection is a nicety; never fail the analysis for it
            return None

    def _top_consumers(self, limit: int = 10) -> tuple[dict[str, Any], ...]:
        # tracemalloc sees this interpreter only: no sites for a detector watching another pid.
        own = self._process is None or getattr(self._process, "pid", None) == os.getpid()
        if not tracemalloc.is_tracing() or not own:
            self._baseline = None
            return ()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__),)
        )
        if self._baseline is None:
            self._baseline = snapshot
            return ()
        out = []
        for stat in snapshot.compare_to(self._baseline, "lineno")[:limit]:
            frame = stat.traceback[0]
            out.append(
                {
                    "file": f"{frame.filename}:{frame.lineno}",
                    "size_diff": stat.size_diff,
                    "count_diff": stat.count_diff,
                    "current_size": stat.size,
                }
            )
        return tuple(out)

    # ------------------------------------------------------------------ monitoring
    def _sample_process(self) -> float:
        if self._process is None:
            import psutil

            self._process = psutil.Process()
        return float(self._process.memory_info().rss) / MB

    async def run(self) -> None:
        """
        Sample the process every ``sample_interval`` seconds until stopped or cancelled.

        A plain coroutine for hosts that schedule their own tasks. Each sample is one
        ``memory_info()`` read (microseconds), taken on the loop. A leak is logged as a warning
        and passed to ``on_leak`` when found, and again every ``check_interval`` while it lasts.

        Raises:
            RuntimeError: When it is already running.
        """
        import asyncio  # lazily: asyncio is slow to import, and only run() needs it

        if self._running and self._stop is not None and self._stop.is_set():
            # A restart right after stop_monitoring(): the stopped run is still unwinding
            # (its cancellation not yet delivered). Let it finish first.
            assert self._ended is not None
            await self._ended.wait()
        if self._running:
            raise RuntimeError("this MemoryLeakDetector is already running")
        self._running = True
        self.monitoring = True
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ended = ended = asyncio.Event()
        if self.tracemalloc_frames > 0 and not tracemalloc.is_tracing():
            tracemalloc.start(self.tracemalloc_frames)
            self._started_tracing = True
        last_report: float | None = None
        try:
            while not self._stop.is_set():
                now = self._clock()
                try:
                    leaking = self.add_sample(self._sample_process(), now)
                except ValueError:
                    # The clock went backwards (or a bad read): skip this sample.
                    leaking = self._engine.leaking
                except Exception as err:
                    import psutil

                    if isinstance(err, psutil.NoSuchProcess):
                        logger.warning("the watched process is gone; leak monitoring stops")
                        return
                    if not isinstance(err, psutil.Error):
                        raise
                    logger.warning("cannot read the watched process's memory: %s", err)
                    leaking = self._engine.leaking
                if leaking:
                    if last_report is None or now - last_report >= self.check_interval:
                        last_report = now
                        await self._report()
                else:
                    last_report = None
                await self._wait(self.sample_interval)
        finally:
            self._running = False
            self.monitoring = False
            ended.set()
            if self._started_tracing:
                tracemalloc.stop()
                self._started_tracing = False
                self._baseline = None

    async def _report(self) -> None:
        from .._aio import maybe_await, off_loop  # lazily: they import asyncio

        if tracemalloc.is_tracing():
            # A snapshot of a big heap takes a while: off the loop, so it keeps serving.
            analysis = await off_loop(self.analyze)
        else:
            analysis = self.analyze()
        logger.warning("memory leak suspected: %s", analysis.to_text())
        if self.on_leak is not None:
            # Called on the loop (a sync callback may touch the host's asyncio objects); what it
            # returns is awaited when awaitable (a coroutine, a Future, any __await__ object).
            try:
                await maybe_await(self.on_leak(analysis))
            except Exception as err:
                logger.warning("on_leak callback failed: %s", describe_error(err))

    async def _wait(self, delay: float) -> None:
        import asyncio  # lazily: asyncio is slow to import, and only run() needs it

        if self._sleep is not None:
            await self._sleep(delay)
            return
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            pass

    def start_monitoring(self) -> asyncio.Task[None]:
        """
        Schedule ``run()`` as a task in the running event loop and return it.

        Returns:
            The task (the same one while it runs).

        Raises:
            RuntimeError: Outside a running event loop; there, schedule ``run()`` yourself
                (``asyncio.run(detector.run())``, or ``await detector.run()``).
        """
        import asyncio  # lazily: asyncio is slow to import, and only run() needs it

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "MemoryLeakDetector.start_monitoring() needs a running event loop; outside one, "
                "schedule the coroutine detector.run() yourself (await it, or asyncio.run it)"
            ) from None
        if self._task is not None and not self._task.done():
            return self._task
        self._loop = loop
        self._task = loop.create_task(self.run(), name="safla_diag.MemoryLeakDetector")
        return self._task

    def stop_monitoring(self) -> None:
        """
        Stop ``run()`` promptly, also in the middle of a sleep; idempotent.

        The task started by ``start_monitoring()`` is cancelled; a ``run()`` the host scheduled
        itself returns at once (with an injected ``sleep``, when that sleep ends). Safe to call
        from another thread.
        """
        import asyncio  # lazily: asyncio is slow to import, and only run() needs it

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        stop, loop, task = self._stop, self._loop, self._task
        self._task = None
        self.monitoring = False
        if loop is None or loop.is_closed():
            return
        # From the loop's own thread act now; from another thread hand it to the loop.
        call: Callable[[Callable[[], object]], object] = (
            (lambda fn: fn()) if running is loop else loop.call_soon_threadsafe
        )
        if task is not None and not task.done():
            call(task.cancel)
        if stop is not None:
            call(stop.set)
