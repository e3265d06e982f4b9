"""
The leak test: robust trends of the post-GC memory floor at several time scales.

Pure Python on purpose: the leak detector never imports numpy, and the work per sample is a
few comparisons (the samples of one bucket are folded into its minimum as they arrive); the
trend statistics run once per bucket on a few dozen points.

The idea, step by step:

1. Samples are folded into fixed buckets (``bucket_s``, one minute by default) keeping the
   minimum: the garbage collector's sawtooth and transient bursts sit above the floor that the
   minimum follows, and a leak lifts the floor.
2. Each time scale (10 minutes to 4 hours) looks at the last ``window_s`` of buckets through a
   rolling minimum over ``span`` buckets (longer than one GC cycle), one point per ``step``
   buckets.
3. On those points it computes the Theil–Sen slope (median of pairwise slopes, robust to a
   minority of outliers) and the Mann–Kendall statistic (is the series monotonic?).
4. A scale fires when the trend is significant (Mann–Kendall z), large enough to matter (the
   growth the slope projects over ``max(window, 1 h)`` reaches ``leak_threshold`` MB), large
   against the floor's own noise (and, at the shortest scale, against the GC sawtooth), larger
   than the floor's usual swings over a window of that length in the history before the window
   (until there is enough history, sub-hour scales ask for twice the growth instead), *and* the
   growth is spread over the window as a ramp is, rather than concentrated in one jump as a
   cache warming up is: both halves of the window must climb at a fair share of the overall
   slope, no single step between points may carry most of the growth, and a line must fit the
   points better than the best single step. The shortest scale must find it twice in a row.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from collections import deque
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SCALES",
    "DEFAULT_WINDOWS",
    "Scale",
    "ScaleResult",
    "TrendEngine",
    "make_scales",
]

_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Scale:
    """One time scale of the trend test."""

    name: str
    window_s: float
    span: int  # rolling-minimum span, in buckets
    step: int  # one point every `step` buckets
    z_min: float = 3.0  # Mann-Kendall z needed
    noise_k: float = 4.0  # growth needed, in robust noise sds of the residuals
    amp_k: float = 0.0  # growth needed, in GC sawtooth amplitudes (median bucket range)
    confirm: int = 1  # evaluations in a row that must find the trend


DEFAULT_WINDOWS: tuple[float, ...] = (600.0, 1800.0, 3600.0, 7200.0, 14400.0)


def _name(window_s: float) -> str:
    if window_s >= _HOUR and window_s % _HOUR == 0:
        return f"{window_s / _HOUR:g}h"
    if window_s >= 60 and window_s % 60 == 0:
        return f"{window_s / 60:g}m"
    return f"{window_s:g}s"


def make_scales(
    windows: tuple[float, ...] = DEFAULT_WINDOWS,
    *,
    bucket_s: float = 60.0,
    gc_period_s: float = 300.0,
    max_points: int = 24,
) -> tuple[Scale, ...]:
    """
    The scales for some windows: the shortest looks at bucket minima directly (fast leaks, which
    must outgrow the GC sawtooth), the others at a rolling minimum over ``gc_period_s``.
    """
    out: list[Scale] = []
    span = max(1, round(gc_period_s / bucket_s))
    for i, w in enumerate(sorted(windows)):
        nb = max(1, round(w / bucket_s))
        if i == 0:
            out.append(
                Scale(_name(w), w, span=1, step=1, z_min=2.5, noise_k=4.0, amp_k=1.5, confirm=2)
            )
        else:
            # At most about max_points points per scale keeps the O(n²) Theil–Sen cheap; a step
            # longer than the GC period widens the rolling minimum to match.
            step = max(1, math.ceil(nb / max_points))
            out.append(Scale(_name(w), w, span=max(span, step), step=step, z_min=2.5, noise_k=4.0))
    return tuple(out)


DEFAULT_SCALES: tuple[Scale, ...] = make_scales()


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """What one scale concluded at its last evaluation."""

    scale: str
    fired: bool
    slope_mb_per_s: float
    z: float
    points: int
    growth_mb: float
    needed_mb: float
    reason: str


def _theil_sen_mk(xs: list[float], ys: list[float]) -> tuple[float, int]:
    """Theil–Sen slope and the Mann–Kendall S of the points (xs increasing)."""
    n = len(xs)
    slopes: list[float] = []
    # Pairs by lag: zip-based comprehensions run at C speed, an explicit double loop does not.
    for lag in range(1, n):
        slopes += [
            (b - a) / (u - v) for a, b, v, u in zip(ys, ys[lag:], xs, xs[lag:], strict=False)
        ]
    if not slopes:
        return 0.0, 0
    slopes.sort()
    m = len(slopes)
    mid = m // 2
    slope = slopes[mid] if m % 2 else 0.5 * (slopes[mid - 1] + slopes[mid])
    # Sorted: S = (number of positive slopes) - (number of negative ones).
    s = m - bisect.bisect_right(slopes, 0.0) - bisect.bisect_left(slopes, 0.0)
    return slope, s


def _theil_sen(xs: list[float], ys: list[float]) -> float:
    return _theil_sen_mk(xs, ys)[0]


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    mid = n // 2
    return v[mid] if n % 2 else 0.5 * (v[mid - 1] + v[mid])


def _step_sse(ys: list[float]) -> float:
    """Least squares of the best two-level (one step) fit."""
    n = len(ys)
    total = sum(ys)
    total2 = sum(y * y for y in ys)
    best = math.inf
    left = 0.0
    left2 = 0.0
    for k in range(1, n):
        y = ys[k - 1]
        left += y
        left2 += y * y
        right = total - left
        right2 = total2 - left2
        sse = (left2 - left * left / k) + (right2 - right * right / (n - k))
        if sse < best:
            best = sse
    return best


class TrendEngine:
    """
    Buckets of the post-GC floor and the multi-scale trend test over them.

    ``add(t, mb)`` costs a few comparisons; when a bucket closes, the scales due are evaluated
    and their results cached, so ``leaking`` is always current as of the last closed bucket.
    """

    def __init__(
        self,
        *,
        leak_threshold_mb: float = 50.0,
        bucket_s: float = 60.0,
        scales: tuple[Scale, ...] = DEFAULT_SCALES,
        ramp_share: float = 0.3,
        max_jump_share: float = 0.5,
        step_margin: float = 1.0,
        swing_k: float = 4.0,
        min_swings: int = 8,
        startup_factor: float = 2.0,
    ) -> None:
        if bucket_s <= 0:
            raise ValueError("bucket_s must be positive")
        self.leak_threshold_mb = float(leak_threshold_mb)
        self.bucket_s = float(bucket_s)
        self.scales = scales
        self.ramp_share = ramp_share
        self.max_jump_share = max_jump_share
        self.step_margin = step_margin
        self.swing_k = swing_k
        self.min_swings = min_swings
        self.startup_factor = startup_factor
        longest = max((sc.window_s / bucket_s + sc.span for sc in scales), default=1.0)
        self._buckets: deque[tuple[int, float]] = deque(maxlen=int(longest) + 2)
        # Enough buckets for a dozen GC cycles: the sawtooth amplitude is their median range.
        self._ranges: deque[tuple[float, float]] = deque(
            maxlen=12 * max((sc.span for sc in scales), default=1)
        )
        self._cur_idx: int | None = None
        self._cur_min = math.inf
        self._cur_max = -math.inf
        self._cur_n = 0
        self.results: dict[str, ScaleResult] = {}
        self._leaking = False
        # Per scale: its points (grid index, rolling minimum), the next grid index to compute,
        # and its window in buckets.
        self._pts: list[deque[tuple[int, float]]] = [deque() for _ in scales]
        self._next_grid: list[int | None] = [None for _ in scales]
        self._streak = [0 for _ in scales]
        self._nwin = [max(1, round(sc.window_s / bucket_s)) for sc in scales]
        # History kept before each window (in buckets) to learn the floor's usual swings; the
        # sawtooth-checked shortest scale needs none.
        self._hist = [
            0 if sc.amp_k else max(3 * nw, round(6 * _HOUR / bucket_s))
            for sc, nw in zip(scales, self._nwin, strict=True)
        ]
        self.samples = 0
        self.last_t: float | None = None
        self.last_mb: float | None = None

    # ------------------------------------------------------------------ feeding
    def add(self, t: float, mb: float) -> bool:
        """Fold one sample in; return True when a bucket closed (results may have changed)."""
        if self.last_t is not None and t < self.last_t:
            raise ValueError(f"samples must come in time order (got {t!r} after {self.last_t!r})")
        self.samples += 1
        self.last_t = t
        self.last_mb = mb
        idx = int(t // self.bucket_s)
        closed = False
        if self._cur_idx is None:
            self._cur_idx = idx
        elif idx != self._cur_idx:
            self._buckets.append((self._cur_idx, self._cur_min))
            self._ranges.append((self._cur_min, self._cur_max))
            self._cur_idx = idx
            self._cur_min = math.inf
            self._cur_max = -math.inf
            self._cur_n = 0
            self._evaluate()
            closed = True
        if mb < self._cur_min:
            self._cur_min = mb
        if mb > self._cur_max:
            self._cur_max = mb
        self._cur_n += 1
        return closed

    @property
    def leaking(self) -> bool:
        """Whether some scale fired at its last evaluation."""
        return self._leaking

    def fired(self) -> ScaleResult | None:
        """The firing result with the strongest evidence, or None."""
        best: ScaleResult | None = None
        for r in self.results.values():
            if r.fired and (best is None or r.z > best.z):
                best = r
        return best

    def floor_span_s(self) -> float:
        if not self._buckets:
            return 0.0
        return (self._buckets[-1][0] - self._buckets[0][0] + 1) * self.bucket_s

    def _amplitude(self) -> float:
        """Median range of the samples over groups of buckets spanning a GC cycle."""
        group = max(sc.span for sc in self.scales)
        ranges = list(self._ranges)
        spans: list[float] = []
        for i in range(len(ranges) - group, -1, -group):
            chunk = ranges[i : i + group]
            spans.append(max(c[1] for c in chunk) - min(c[0] for c in chunk))
        return _median(spans) if spans else math.inf

    # ------------------------------------------------------------------ testing
    def _evaluate(self) -> None:
        """Extend each scale's points up to the bucket just closed; re-test the scales that grew."""
        buckets = self._buckets
        last = buckets[-1][0]
        changed = False
        for k, sc in enumerate(self.scales):
            pts = self._pts[k]
            g = self._next_grid[k]
            if g is None:
                g = -(-buckets[0][0] // sc.step) * sc.step  # first multiple of step
            added = False
            while g <= last:
                # Rolling minimum over the buckets (g - span, g]: the last few, read from the end.
                m = math.inf
                lo = g - sc.span
                for idx, v in reversed(buckets):
                    if idx <= lo:
                        break
                    if idx <= g and v < m:
                        m = v
                if m != math.inf:
                    pts.append((g, m))
                    added = True
                g += sc.step
            self._next_grid[k] = g
            keep_from = last - self._nwin[k] - self._hist[k] + 1
            while pts and pts[0][0] < keep_from:
                pts.popleft()
            if added or sc.name not in self.results:
                r = self._evaluate_scale(sc, k, last - self._nwin[k] + 1)
                streak = self._streak[k] = self._streak[k] + 1 if r.fired else 0
                if r.fired and streak < sc.confirm:
                    r = dataclasses.replace(r, fired=False, reason="steady growth, to be confirmed")
                self.results[sc.name] = r
                changed = True
        if changed:
            self._leaking = any(r.fired for r in self.results.values())

    def _points(self, k: int, first: int) -> tuple[list[float], list[float]]:
        b = self.bucket_s
        pts = [p for p in self._pts[k] if p[0] >= first] if self._hist[k] else self._pts[k]
        return [(g + 0.5) * b for g, _ in pts], [v for _, v in pts]

    def _usual_swing(self, k: int, first: int) -> float | None:
        """
        Robust spread of the floor's change over one window, in the history before the window.

        A floor that wanders (load, fragmentation) by tens of MB over half an hour makes a
        half-hour rise of that size ordinary; None until there are enough past windows.
        """
        sc = self.scales[k]
        lag = max(1, round(self._nwin[k] / sc.step)) * sc.step
        past = {g: v for g, v in self._pts[k] if g < first}
        diffs = [v - past[g - lag] for g, v in past.items() if g - lag in past]
        if len(diffs) < self.min_swings:
            return None
        c = _median(diffs)
        return 1.4826 * _median([abs(d - c) for d in diffs])

    def _evaluate_scale(self, sc: Scale, k: int, first: int) -> ScaleResult:
        xs, ys = self._points(k, first)
        n = len(xs)
        needed = self.leak_threshold_mb

        def result(fired: bool, slope: float, z: float, growth: float, reason: str) -> ScaleResult:
            return ScaleResult(sc.name, fired, slope, z, n, growth, needed, reason)

        if n < 6 or (xs[-1] - xs[0]) < 0.8 * (sc.window_s - sc.step * self.bucket_s):
            return result(False, 0.0, 0.0, 0.0, "not enough history")
        # Cheap screen first (most evaluations of a healthy process end here): the slope between
        # the medians of the first and last thirds, with a wide margin below the threshold.
        third = n // 3
        rough = (_median(ys[-third:]) - _median(ys[:third])) / (
            _median(xs[-third:]) - _median(xs[:third])
        )
        if rough * max(sc.window_s, _HOUR) < 0.5 * needed:
            return result(False, rough, 0.0, rough * (xs[-1] - xs[0]), "no upward trend")
        slope, s = _theil_sen_mk(xs, ys)
        # Overlapping rolling minima are correlated: count them as n * step / span points.
        var = n * (n - 1) * (2 * n + 5) / 18.0 * max(1.0, sc.span / sc.step)
        z = (s - 1) / math.sqrt(var) if s > 0 else 0.0
        growth = slope * (xs[-1] - xs[0])
        projected = slope * max(sc.window_s, _HOUR)
        if slope <= 0 or z < sc.z_min:
            return result(False, slope, z, growth, "no significant upward trend")
        if projected < needed:
            return result(False, slope, z, growth, "trend below leak_threshold")
        x0 = xs[0]
        resid = [y - (slope * (x - x0)) for x, y in zip(xs, ys, strict=True)]
        c = _median(resid)
        noise = 1.4826 * _median([abs(r - c) for r in resid])
        if growth < sc.noise_k * noise:
            return result(False, slope, z, growth, "trend within the floor's noise")
        amplitude = self._amplitude() if sc.amp_k else 0.0
        if sc.amp_k and growth < sc.amp_k * amplitude:
            return result(False, slope, z, growth, "trend within the GC sawtooth")
        half = n // 2
        s1 = _theil_sen(xs[:half], ys[:half])
        s2 = _theil_sen(xs[n - half :], ys[n - half :])
        if min(s1, s2) < self.ramp_share * slope:
            return result(False, slope, z, growth, "growth concentrated in one part (a step)")
        rise = ys[-1] - ys[0]
        jump = max(b - a for a, b in itertools.pairwise(ys))
        if jump > self.max_jump_share * max(rise, growth):
            return result(False, slope, z, growth, "growth in one jump (a step)")
        # A ramp is fitted better by its line than by the best single step; a cache warming up
        # (one step, then flat) the other way round.
        sse_line = sum((r - c) ** 2 for r in resid)
        if _step_sse(ys) < self.step_margin * sse_line:
            return result(False, slope, z, growth, "a step fits better than a ramp")
        if self._hist[k]:
            swing = self._usual_swing(k, first)
            if swing is None:
                # Too little history to know how the floor usually moves: ask for more growth.
                if sc.window_s < _HOUR and projected < self.startup_factor * needed:
                    return result(False, slope, z, growth, "trend below the start-up threshold")
            elif growth < self.swing_k * swing:
                return result(False, slope, z, growth, "within the floor's usual swings")
        return result(True, slope, z, growth, "steady growth")
