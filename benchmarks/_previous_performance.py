"""The PerformanceMonitor as it was before the O(log W) rewrite (a verbatim copy, for benchmarks only)."""

from __future__ import annotations

import logging
import math
import numbers
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

from safla_diag._errors import PerformanceError
from safla_diag._redact import describe_error

__all__ = [
    "PerformanceMonitor",
    "percentile_linear",
]

logger = logging.getLogger("safla_diag.monitoring")

_Q95 = 95 / 100  # the float numpy.percentile(a, 95) works with


def percentile_linear(sorted_lo: float, sorted_hi: float, gamma: float) -> float:
    """
    Interpolate between two neighbouring order statistics exactly as numpy's 'linear' method.

    numpy computes ``a + (b - a) * g``, or ``b - (b - a) * (1 - g)`` when ``g >= 0.5``, which is
    what makes our p95 equal ``numpy.percentile(window, 95)`` to the last bit.

    Args:
        sorted_lo: The order statistic at the floor of the virtual index.
        sorted_hi: The next one.
        gamma: The fractional part of the virtual index.

    Returns:
        The interpolated value.
    """
    diff = sorted_hi - sorted_lo
    if gamma >= 0.5:
        return sorted_hi - diff * (1 - gamma)
    return sorted_lo + diff * gamma


def _p95_index(n: int) -> tuple[int, float]:
    virtual = (n - 1) * _Q95
    lo = math.floor(virtual)
    return lo, virtual - lo


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
        self.max_avg_s = float(max_avg_s)
        self.max_p95_s = float(max_p95_s)
        self.max_error_rate = float(max_error_rate)
        self.min_samples = int(min_samples)
        self.on_breach = on_breach
        self.strict = strict
        self._clock = clock
        self._lock = threading.Lock()
        self._times = array("d", bytes(8 * window_size))
        self._errors = bytearray(window_size)
        self._pos = 0
        self._count = 0
        self._sum = 0.0
        self._error_count = 0
        self._above = 0  # samples in the window above max_p95_s
        self._total = 0
        self._total_errors = 0
        self._stats: dict[str, Any] | None = None
        lo, gamma = _p95_index(window_size)
        self._full_cut = (window_size - lo, gamma)
        self._breached: frozenset[str] = frozenset()
        self._started = clock()
        self.start_time = time.time()

    def __repr__(self) -> str:
        return (
            f"<PerformanceMonitor window={self._count}/{self.window_size} "
            f"total={self._total} breached={sorted(self._breached)}>"
        )

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
        if not (0.0 <= value < math.inf):  # also False for NaN
            raise ValueError(f"response_time must be a finite time >= 0, got {value!r}")
        failed = 0 if success else 1
        size = self.window_size
        limit = self.max_p95_s
        with self._lock:
            pos = self._pos
            n = self._count
            full = n == size
            if full:
                old = self._times[pos]
                self._sum -= old
                if self._errors[pos]:
                    self._error_count -= 1
                if old > limit:
                    self._above -= 1
            else:
                n += 1
                self._count = n
            self._times[pos] = value
            self._sum += value
            self._errors[pos] = failed
            if failed:
                self._error_count += 1
                self._total_errors += 1
            if value > limit:
                self._above += 1
            self._total += 1
            self._stats = None
            pos += 1
            if pos < size:
                self._pos = pos
            else:
                self._pos = 0
                # Running sums drift by rounding over weeks; an exact re-sum once per lap of
                # the ring keeps them honest at O(1) amortised.
                self._resum()
            if n < self.min_samples:
                return
            # The p95 breach without sorting: p95 lies between the order statistics lo and
            # lo + 1, so it is above the threshold when at least n - lo samples are, and not
            # when fewer than n - lo - 1 are; only the border case reads the window.
            if full:
                cut, gamma = self._full_cut
            else:
                lo, gamma = _p95_index(n)
                cut = n - lo
            above = self._above
            if (
                self._sum / n <= self.max_avg_s
                and above < cut - 1
                and self._error_count / n <= self.max_error_rate
                and not self._breached
            ):
                return  # the common case: healthy, and it was healthy
            found = []
            if self._sum / n > self.max_avg_s:
                found.append("avg")
            if above >= cut or (
                above == cut - 1
                and gamma > 0
                and self._compute()["p95_response_time"] > self.max_p95_s
            ):
                found.append("p95")
            if self._error_count / n > self.max_error_rate:
                found.append("error_rate")
            breaches = frozenset(found)
            new = breaches - self._breached
            self._breached = breaches
            report = self._breach_error(min(new)) if new else None
            fail = self._breach_error(min(breaches)) if breaches and self.strict else None
        if report is not None:
            self._report(report)
        if fail is not None:
            raise fail

    def _resum(self) -> None:
        self._sum = math.fsum(self._times[: self._count])

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
        logger.warning("performance threshold breached: %s", err)
        if self.on_breach is not None:
            try:
                self.on_breach(err)
            except Exception as err2:
                logger.warning("on_breach callback failed: %s", describe_error(err2))

    # ------------------------------------------------------------------ reading
    def _compute(self) -> dict[str, Any]:
        """Statistics of the window; caller holds the lock. Cached until the next write."""
        if self._stats is not None:
            return self._stats
        n = self._count
        uptime = self._clock() - self._started
        if n == 0:
            stats: dict[str, Any] = {
                "avg_response_time": 0.0,
                "p95_response_time": 0.0,
                "min_response_time": 0.0,
                "max_response_time": 0.0,
                "error_rate": 0.0,
            }
        else:
            import numpy as np  # lazily: never at `import safla_diag`

            window = np.frombuffer(self._times, dtype=np.float64, count=n)
            lo, gamma = _p95_index(n)
            # One selection of the two order statistics around the p95 (two kth values select
            # faster than one in numpy); everything after lo + 1 is >= them, so the maximum is
            # the max of that short tail.
            if lo + 1 < n:
                part = np.partition(window, (lo, lo + 1))
                top = float(part[lo + 1 :].max())
                p95 = percentile_linear(float(part[lo]), float(part[lo + 1]), gamma)
            else:
                top = p95 = float(window.max())
            stats = {
                "avg_response_time": float(window.mean()),
                "p95_response_time": p95,
                "min_response_time": float(window.min()),
                "max_response_time": top,
                "error_rate": self._error_count / n,
            }
        stats["window_requests"] = n
        stats["total_requests"] = self._total
        stats["total_errors"] = self._total_errors
        stats["uptime"] = uptime
        self._stats = stats
        return stats

    def _compute_locked(self) -> dict[str, Any]:
        return self._compute()

    def get_performance_stats(self) -> dict[str, Any]:
        """
        Statistics of the current window, plus totals since start.

        Returns:
            ``avg_response_time``, ``p95_response_time`` (as ``numpy.percentile(window, 95)``),
            ``min_response_time``, ``max_response_time``, ``error_rate`` (0-1),
            ``window_requests``, ``total_requests`` and ``total_errors`` (since start) and
            ``uptime`` (seconds). With an empty window the times and rate are 0.0.
        """
        with self._lock:
            stats = dict(self._compute())
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
            self._pos = self._count = self._error_count = self._above = 0
            self._sum = 0.0
            self._total = self._total_errors = 0
            self._stats = None
            self._breached = frozenset()
            self._started = self._clock()


# ---------------------------------------------------------------------------------------------
# The timed decorator as it was (sync path only, verbatim in what it does per call).
def previous_timed(monitor: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """timed(monitor) before the fast path: every call goes through record_request."""
    import functools
    from time import perf_counter

    record = monitor.record_request

    def decorate(target: Callable[..., Any]) -> Callable[..., Any]:
        failures = [0]

        def recorder_failed() -> None:
            failures[0] += 1

        def call_failed(elapsed: float) -> None:
            try:
                record(elapsed, False)
            except Exception:
                recorder_failed()

        @functools.wraps(target)
        def sync_timed(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter()
            try:
                result = target(*args, **kwargs)
            except Exception:
                call_failed(perf_counter() - start)
                raise
            try:
                record(perf_counter() - start, True)
            except Exception:
                recorder_failed()
            return result

        return sync_timed

    return decorate
