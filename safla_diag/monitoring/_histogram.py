"""Prometheus-style latency histograms: bucket bounds, a cumulative histogram fed a lap at a time."""

from __future__ import annotations

import itertools
import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_BUCKETS",
    "LatencyHistogram",
    "check_buckets",
    "cumulative",
]

#: Prometheus's default latency buckets (seconds), the classic ones every dashboard knows.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip


def check_buckets(buckets: Iterable[float]) -> tuple[float, ...]:
    """
    Histogram bucket upper bounds as a sorted tuple of floats.

    Args:
        buckets: Finite, strictly increasing upper bounds in seconds (``+Inf`` is implied).

    Returns:
        The bounds as floats.

    Raises:
        ValueError: When they are empty, not finite numbers, or not strictly increasing.
    """
    try:
        out = tuple(float(b) for b in buckets if not (isinstance(b, float) and b == math.inf))
    except (TypeError, ValueError):
        raise ValueError("buckets must be numbers of seconds") from None
    if not out or not all(math.isfinite(b) for b in out):
        raise ValueError("buckets must be finite numbers of seconds, at least one")
    if any(b >= c for b, c in itertools.pairwise(out)):
        raise ValueError("buckets must be strictly increasing")
    return out


def cumulative(bounds: Sequence[float], counts: Sequence[int], total: float) -> dict[str, Any]:
    """
    Per-bucket counts (the last one +Inf) as a Prometheus-style histogram.

    Args:
        bounds: The finite upper bounds.
        counts: Samples per bucket, one more than ``bounds`` (the +Inf bucket).
        total: The samples' sum.

    Returns:
        ``buckets``: ``[(upper bound, cumulative count), ...]`` ending with ``(inf, count)``;
        ``count``; ``sum``.
    """
    out = []
    running = 0
    for bound, c in zip((*bounds, math.inf), counts, strict=True):
        running += c
        out.append((bound, running))
    return {"buckets": out, "count": running, "sum": total}


class LatencyHistogram:
    """
    Counts per bucket since start, fed whole laps of a ring buffer rather than one sample at a time.

    Not thread-safe: its owner holds a lock around each call.

    Args:
        buckets: Upper bounds, as :func:`check_buckets` returns them.
        vectorised: Count laps with numpy (imported here, not when counting); worth it for laps
            of 32 samples or more.
    """

    __slots__ = ("_np", "bounds", "counts", "total")

    def __init__(self, buckets: tuple[float, ...], *, vectorised: bool) -> None:
        self.bounds = buckets
        self._np: Any = None
        if vectorised:
            import numpy

            self._np = numpy
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def add(self, values: array[float]) -> None:
        """Fold ``values`` (a lap of the ring) into the counts."""
        counts, total = self.count(values)
        mine = self.counts
        for i, c in enumerate(counts):
            mine[i] += c
        self.total += total

    def count(self, values: array[float]) -> tuple[list[int], float]:
        """Samples per bucket (the last is +Inf) and their sum, of ``values`` alone."""
        bounds = self.bounds
        np = self._np
        if np is None or len(values) < 32:
            counts = [0] * (len(bounds) + 1)
            for v in values:
                counts[bisect_left(bounds, v)] += 1
            return counts, sum(values)
        arr = np.frombuffer(values, dtype=np.float64)
        idx = np.searchsorted(np.asarray(bounds), arr, side="left")
        # A sum of huge samples may overflow to inf, which a histogram's _sum may be.
        with np.errstate(over="ignore"):
            total = float(arr.sum())
        return np.bincount(idx, minlength=len(bounds) + 1).tolist(), total

    def with_partial(self, values: array[float]) -> tuple[list[int], float]:
        """The counts and sum as if ``values`` (the lap in progress) were folded in too."""
        partial, partial_sum = self.count(values)
        return [a + b for a, b in zip(self.counts, partial, strict=True)], self.total + partial_sum

    def reset(self) -> None:
        """Forget every count."""
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
