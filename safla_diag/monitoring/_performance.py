"""PerformanceMonitor: O(1) request recording over a window."""

from __future__ import annotations

import math
import numbers
import threading
import time
from array import array
from collections.abc import Callable, Iterable
from typing import Any, TypedDict

from .._errors import PerformanceError
from ._breach import BreachNotifier
from ._histogram import DEFAULT_BUCKETS, LatencyHistogram, check_buckets, cumulative
from ._window import SortedMirror, percentile_linear
from ._window import p95_index as _p95_index

__all__ = [
    "DEFAULT_BUCKETS",
    "PerformanceMonitor",
    "PerformanceStats",
    "check_buckets",
    "percentile_linear",
]


# Times at or above this are kept out of the running sum: a million of them stay below the float
# maximum, two of 1e308 would not (and math.fsum raises OverflowError on such a sum).
_HUGE = 1e300


class PerformanceStats(TypedDict):
    """
    What ``PerformanceMonitor.get_performance_stats()`` returns: a plain dict, typed.

    Times in seconds; with an empty window the times and ``error_rate`` are 0.0.
    """

    avg_response_time: float
    p95_response_time: float
    min_response_time: float
    max_response_time: float
    error_rate: float
    """Failed share of the window, 0-1."""
    window_requests: int
    total_requests: int
    total_errors: int
    uptime: float
    """Seconds since the monitor was created (or reset)."""


def _check_sample(response_time: object) -> float:
    """The response time as a float, or ValueError for anything that is not a finite time."""
    if isinstance(response_time, bool) or not isinstance(response_time, numbers.Real):
        # bool is an int, but True seconds is a bug in the caller, not a time. numbers.Real
        # takes numpy's float32 and int64 and Fraction as well as int and float.
        raise ValueError(
            f"response_time must be a number of seconds, got {type(response_time).__name__}"
        )
    else:
        value = float(response_time)
    if not (0.0 <= value < math.inf):  # also False for NaN
        raise ValueError(f"response_time must be a finite time >= 0, got {value!r}")
    return value


class PerformanceMonitor:
    """
    Response times and errors over the last ``window_size`` requests.

    ``record_request`` costs O(1) whatever the window: a ring buffer, running sums and a count
    of the samples above ``max_p95_s`` (which decides the p95 breach without sorting in all but
    one border case). Statistics are computed when read, with numpy imported on first read, and
    cached until the next write. The p95 is exactly ``numpy.percentile(window, 95)``.

    A breach is logged as a warning and passed to ``on_breach`` once when it starts (it is
    reported again after it has cleared). With ``strict=True``, ``record_request`` raises
    PerformanceError as the guide's monitor did, on every request while breached. The monitor
    never raises in the request path otherwise.

    Thread-safe: one lock around each write and each read.

    Args:
        window_size: How many recent requests the statistics cover.
        max_avg_s: Breach when the mean response time exceeds this.
        max_p95_s: Breach when the 95th percentile exceeds this.
        max_error_rate: Breach when the share of failed requests exceeds this (0-1).
        min_samples: No breach is reported before the window holds this many requests.
        on_breach: Called with the PerformanceError when a breach starts; its exceptions are
            logged and swallowed.
        strict: Raise PerformanceError from ``record_request`` while breached.
        clock: Monotonic clock for ``uptime`` (a test seam).

    Raises:
        ValueError: On a window size below 1 or negative thresholds.
    """

    def __init__(
        self,
        window_size: int = 100,
        *,
        max_avg_s: float = 5.0,
        max_p95_s: float = 10.0,
        max_error_rate: float = 0.1,
        min_samples: int = 10,
        on_breach: Callable[[PerformanceError], object] | None = None,
        strict: bool = False,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f"window_size must be a positive int, got {window_size!r}")
        for name, v in (
            ("max_avg_s", max_avg_s),
            ("max_p95_s", max_p95_s),
            ("max_error_rate", max_error_rate),
        ):
            if not (v >= 0):
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        self.window_size = window_size
        self._max_avg_s = float(max_avg_s)
        self.max_p95_s = float(max_p95_s)
        self._max_error_rate = float(max_error_rate)
        self._min_samples = int(min_samples)
        self.on_breach = on_breach
        self.strict = strict
        self.buckets: tuple[float, ...] = check_buckets(buckets)
        self._clock = clock
        self._lock = threading.Lock()
        self._times = array("d", bytes(8 * window_size))
        self._errors = bytearray(window_size)
        self._sum = 0.0
        self._huge = 0  # samples in the window >= _HUGE, kept out of the running sum
        self._error_count = 0
        self._above = 0  # samples in the window above max_p95_s
        self._total = 0
        self._total_errors = 0
        # Cumulative since start, for the Prometheus histogram. Folding a lap into it is
        # vectorised for windows worth it; numpy loads here, when such a monitor is made, not in
        # the request path.
        self._hist = LatencyHistogram(self.buckets, vectorised=window_size >= 32)
        self._stats: PerformanceStats | None = None
        # The sorted mirror of the window, brought up to date when read: writes stay O(1), a
        # read after a write costs O(log W).
        self._mirror = SortedMirror(window_size)
        lo, gamma = _p95_index(window_size)
        self._full_cut = (window_size - lo, gamma)
        self._above_limit = window_size - lo - 1
        self._breached: frozenset[str] = frozenset()
        self._alert = False  # breached, or a huge sample in the window: the slow check runs
        self._stats_at = -1
        self._limits()
        self._notifier = BreachNotifier()
        self._started = clock()
        self.start_time = time.time()

    def __repr__(self) -> str:
        return (
            f"<PerformanceMonitor window={self._count}/{self.window_size} "
            f"total={self._total} breached={sorted(self._breached)}>"
        )

    def _repr_html_(self) -> str:
        from ._svg import performance_html

        return performance_html(self)

    @property
    def _count(self) -> int:
        return min(self._total, self.window_size)

    @property
    def _pos(self) -> int:
        return self._total % self.window_size

    def _limits(self) -> None:
        # The full window's healthy test without divisions, a hair stricter than the exact one
        # so that a borderline case always goes to _assess, which decides exactly as before.
        size = self.window_size
        self._sum_limit = self._max_avg_s * size * (1 - 1e-9)
        self._error_limit = self._max_error_rate * size * (1 - 1e-9)

    @property
    def max_avg_s(self) -> float:
        """Breach when the mean response time exceeds this."""
        return self._max_avg_s

    @max_avg_s.setter
    def max_avg_s(self, value: float) -> None:
        self._max_avg_s = float(value)
        self._limits()

    @property
    def max_error_rate(self) -> float:
        """Breach when the share of failed requests exceeds this (0-1)."""
        return self._max_error_rate

    @max_error_rate.setter
    def max_error_rate(self, value: float) -> None:
        self._max_error_rate = float(value)
        self._limits()

    @property
    def min_samples(self) -> int:
        """No breach is reported before the window holds this many requests."""
        return self._min_samples

    @min_samples.setter
    def min_samples(self, value: int) -> None:
        self._min_samples = int(value)

    # ------------------------------------------------------------------ writing
    def record_request(self, response_time: float, success: bool = True) -> None:
        """
        Record one request.

        Args:
            response_time: Its wall time in seconds: a finite number >= 0.
            success: False when it failed.

        Raises:
            ValueError: For a negative, NaN or infinite time, or a non-number; nothing is
                recorded.
            PerformanceError: Only with ``strict=True``, while a threshold is breached.
        """
        value = response_time if type(response_time) is float else _check_sample(response_time)
        if not (0.0 <= value < 1e300):  # _HUGE, as a constant: this is the hottest line
            if not (0.0 <= value < math.inf):  # also True for NaN
                raise ValueError(f"response_time must be a finite time >= 0, got {value!r}")
            self._record_huge(value, success)
            return
        self._record(value, 0 if success else 1)

    def _record(self, value: float, failed: int) -> None:
        """Record a checked time (finite, >= 0, < 1e300); ``timed`` calls this directly."""
        # Each attribute access costs 15-30 ns here, so each is done once, and the slot being
        # overwritten reads 0.0 / 0 while the ring fills (reset() zeroes it): one code path
        # serves the filling and the full ring. The position is the count since reset modulo
        # the window, so no separate position or length is kept.
        lock = self._lock
        lock.acquire()
        try:
            total = self._total
            size = self.window_size
            pos = total % size
            times = self._times
            old = times[pos]
            times[pos] = value
            if old < 1e300:
                self._sum += value - old
            else:
                self._sum += value
                self._huge -= 1
            if failed:
                self._total_errors += 1
            errors = self._errors
            if errors[pos] != failed:
                errors[pos] = failed
                self._error_count += failed or -1
            limit = self.max_p95_s
            if value > limit:
                if not old > limit:
                    self._above += 1
            elif old > limit:
                self._above -= 1
            total += 1
            self._total = total
            if pos == size - 1:
                self._lap()
            if total >= size:
                if (
                    self._above < self._above_limit
                    and self._sum <= self._sum_limit
                    and self._error_count <= self._error_limit
                    and not self._alert
                ):
                    return  # the common case: healthy, and it was healthy
                report, fail = self._assess(size, self._above, *self._full_cut)
            else:
                if total < self._min_samples:
                    return
                lo, gamma = _p95_index(total)
                report, fail = self._assess(total, self._above, total - lo, gamma)
        finally:
            lock.release()
        if report is not None or fail is not None:
            self._after(report, fail)

    # timed() calls this with perf_counter differences: floats, finite and >= 0 by construction.
    _record_elapsed = _record
    _record_elapsed_for = record_request  # ... in place of this record_request, not an override

    def _record_huge(self, value: float, success: bool) -> None:
        """The rare path of a time >= 1e300 s: recorded like any other, kept out of the sum."""
        failed = 0 if success else 1
        with self._lock:
            total = self._total
            size = self.window_size
            pos = total % size
            old = self._times[pos]
            self._times[pos] = value
            if old < _HUGE:
                self._sum -= old
            else:
                self._huge -= 1
            self._huge += 1
            if self._errors[pos] != failed:
                self._errors[pos] = failed
                self._error_count += failed or -1
            self._total_errors += failed
            if not old > self.max_p95_s:
                self._above += 1
            self._total = total + 1
            self._alert = True
            if pos == size - 1:
                self._lap()
            n = min(total + 1, size)
            lo, gamma = _p95_index(n)
            report, fail = self._assess(n, self._above, n - lo, gamma)
        self._after(report, fail)

    def _assess(
        self, n: int, above: int, cut: int, gamma: float
    ) -> tuple[PerformanceError | None, PerformanceError | None]:
        """Which thresholds are breached now; caller holds the lock."""
        if n < self._min_samples:
            self._alert = self._huge > 0
            return None, None
        found = []
        if self._huge or self._sum / n > self.max_avg_s:
            found.append("avg")
        if above >= cut or (
            above == cut - 1 and gamma > 0 and self._compute()["p95_response_time"] > self.max_p95_s
        ):
            found.append("p95")
        if self._error_count / n > self.max_error_rate:
            found.append("error_rate")
        breaches = frozenset(found)
        new = breaches - self._breached
        self._breached = breaches
        self._alert = bool(breaches) or self._huge > 0
        report = self._breach_error(min(new)) if new else None
        fail = self._breach_error(min(breaches)) if breaches and self.strict else None
        return report, fail

    def _after(self, report: PerformanceError | None, fail: PerformanceError | None) -> None:
        if report is not None:
            self._report(report)
        if fail is not None:
            raise fail

    def _resum(self) -> None:
        times = self._times[: self._count]
        if self._huge:
            times = array("d", (v for v in times if v < _HUGE))
        self._sum = math.fsum(times)

    def _lap(self) -> None:
        """
        The ring has just wrapped: it holds exactly the lap's samples. Caller holds the lock.

        Running sums drift by rounding over weeks; an exact re-sum once per lap keeps them
        honest at O(1) amortised. The lap's samples go into the histogram here, in one
        vectorised pass, rather than one bisection per request.
        """
        self._resum()
        self._hist.add(self._times)

    def histogram(self) -> dict[str, Any]:
        """
        Every request since start (or ``reset()``) as a Prometheus-style latency histogram.

        Returns:
            ``buckets``: ``[(upper bound, cumulative count), ...]`` ending with ``(inf, count)``;
            ``count``; ``sum`` (seconds).
        """
        with self._lock:
            counts, total = self._hist.with_partial(self._times[: self._pos])
        return cumulative(self.buckets, counts, total)

    def _breach_error(self, kind: str) -> PerformanceError:
        stats = self._compute_locked()
        if kind == "avg":
            msg = f"High average response time: {stats['avg_response_time']:.3f}s > {self.max_avg_s:g}s"
        elif kind == "p95":
            msg = f"High P95 response time: {stats['p95_response_time']:.3f}s > {self.max_p95_s:g}s"
        else:
            msg = f"High error rate: {stats['error_rate']:.1%} > {self.max_error_rate:.1%}"
        return PerformanceError(msg, kind=kind, stats=stats)

    def _report(self, err: PerformanceError) -> None:
        self._notifier.report(err, self.on_breach)

    def bind_loop(self, loop: Any) -> None:
        """
        Name the loop an async ``on_breach`` runs in when a breach is seen in another thread.

        The monitor learns it by itself when a breach happens inside that loop; call this when
        requests are recorded only from worker threads.

        Args:
            loop: The host's running event loop.
        """
        self._notifier.loop = loop

    # ------------------------------------------------------------------ reading
    def _mean(self, n: int) -> float:
        if not self._huge:
            return self._sum / n
        # A sample near the float maximum: the running sum leaves it out (two of them would
        # overflow it), so the mean is computed the slow way, scaled, in this rare case only.
        return sum(v / n for v in self._times[:n])

    def _compute(self) -> PerformanceStats:
        """Statistics of the window; caller holds the lock. Cached until the next write."""
        if self._stats is not None and self._stats_at == self._total:
            return self._stats
        n = self._count
        uptime = self._clock() - self._started
        if n == 0:
            avg = p95 = low = high = rate = 0.0
        else:
            ordered = self._mirror.sync(self._times, self._total)
            lo, gamma = _p95_index(n)
            if lo + 1 < n:
                p95 = percentile_linear(ordered[lo], ordered[lo + 1], gamma)
            else:
                p95 = ordered[-1]
            avg, low, high = self._mean(n), ordered[0], ordered[-1]
            rate = self._error_count / n
        stats: PerformanceStats = {
            "avg_response_time": avg,
            "p95_response_time": p95,
            "min_response_time": low,
            "max_response_time": high,
            "error_rate": rate,
            "window_requests": n,
            "total_requests": self._total,
            "total_errors": self._total_errors,
            "uptime": uptime,
        }
        self._stats = stats
        self._stats_at = self._total
        return stats

    def _compute_locked(self) -> PerformanceStats:
        return self._compute()

    def get_performance_stats(self) -> PerformanceStats:
        """
        Statistics of the current window, plus totals since start.

        Returns:
            ``avg_response_time``, ``p95_response_time`` (as ``numpy.percentile(window, 95)``),
            ``min_response_time``, ``max_response_time``, ``error_rate`` (0-1),
            ``window_requests``, ``total_requests`` and ``total_errors`` (since start) and
            ``uptime`` (seconds). With an empty window the times and rate are 0.0.
        """
        with self._lock:
            stats = self._compute().copy()
        stats["uptime"] = self._clock() - self._started
        return stats

    def check_thresholds(self) -> None:
        """
        Raise if the window breaches a threshold (explicit check, outside the request path).

        Raises:
            PerformanceError: On the first breached threshold (mean, p95, then error rate), once
                the window holds ``min_samples`` requests.
        """
        with self._lock:
            n = self._count
            if n < self.min_samples:
                return
            stats = self._compute()
            kind = None
            if stats["avg_response_time"] > self.max_avg_s:
                kind = "avg"
            elif stats["p95_response_time"] > self.max_p95_s:
                kind = "p95"
            elif stats["error_rate"] > self.max_error_rate:
                kind = "error_rate"
            if kind is None:
                return
            err = self._breach_error(kind)
        raise err

    @property
    def breached(self) -> frozenset[str]:
        """The thresholds breached as of the last request: ``avg``, ``p95``, ``error_rate``."""
        return self._breached

    @property
    def response_times(self) -> list[float]:
        """The window's response times, oldest first (a copy; the guide exposed a deque)."""
        with self._lock:
            n, pos = self._count, self._pos
            if n < self.window_size:
                return self._times[:n].tolist()
            return (self._times[pos:] + self._times[:pos]).tolist()

    @property
    def error_counts(self) -> list[int]:
        """1 per failed request of the window, 0 per success, oldest first (a copy)."""
        with self._lock:
            n, pos = self._count, self._pos
            if n < self.window_size:
                return list(self._errors[:n])
            return list(self._errors[pos:] + self._errors[:pos])

    @property
    def total_requests(self) -> int:
        """Requests recorded since start."""
        return self._total

    def reset(self) -> None:
        """Forget the window and the totals."""
        with self._lock:
            self._error_count = self._above = self._huge = 0
            self._alert = False
            self._sum = 0.0
            # The write path reads the slot it overwrites as 0.0 / 0 while the ring fills.
            self._times = array("d", bytes(8 * self.window_size))
            self._errors = bytearray(self.window_size)
            self._hist.reset()
            self._mirror.reset()
            self._total = self._total_errors = 0
            self._stats = None
            self._breached = frozenset()
            self._started = self._clock()
