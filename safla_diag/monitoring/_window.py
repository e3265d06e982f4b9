"""Order statistics of a ring buffer: numpy's exact p95, and a sorted mirror kept up to date lazily."""

from __future__ import annotations

import math
from array import array
from typing import Any

__all__ = ["SortedMirror", "p95_index", "percentile_linear"]

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


def p95_index(n: int) -> tuple[int, float]:
    """The floor of numpy's virtual index of the 95th percentile of ``n`` values, and its fraction."""
    virtual = (n - 1) * _Q95
    lo = math.floor(virtual)
    return lo, virtual - lo


class SortedMirror:
    """
    The values of a ring buffer in order, brought up to date when read.

    The ring's owner writes in O(1) and never touches the mirror; a read after ``k`` writes
    applies them one by one (a removal and an insertion, O(log W) each), or, when there were
    many, rebuilds the mirror from the ring (O(W log W) in C, cheaper than many Python-level
    updates). Not thread-safe: its owner holds a lock around each call.

    Args:
        size: The ring's size.
    """

    __slots__ = ("_incremental_max", "_known", "_size", "_sorted", "_synced_count", "_synced_total")

    def __init__(self, size: int) -> None:
        self._size = size
        self._known = array("d", bytes(8 * size))  # the ring as the mirror last saw it
        self._incremental_max = max(8, size // 32)
        self._sorted: Any = None
        self._synced_total = 0
        self._synced_count = 0

    def reset(self) -> None:
        """Forget the mirror: the ring was emptied."""
        self._sorted = None
        self._synced_total = self._synced_count = 0

    def sync(self, times: array[float], total: int) -> Any:
        """
        The ring's values in order, as a ``SortedList``.

        Args:
            times: The ring.
            total: Writes into it since it was empty (the next slot is ``total % size``).

        Returns:
            The mirror, up to date; it is the mirror's own list, not a copy.
        """
        from sortedcontainers import SortedList  # lazily: the first read pays for the import

        size = self._size
        n = min(total, size)
        # More writes than the ring holds: the older ones were overwritten before anyone read
        # them, so only the last lap's slots change (each once).
        behind = min(total - self._synced_total, size)
        mirror = self._sorted
        if mirror is not None and behind == 0:
            return mirror
        if mirror is None or behind > self._incremental_max:
            values = times[:n]
            if n > 4096:
                import numpy as np  # sorting 4096+ floats is cheaper in numpy than in sorted()

                ordered = np.sort(np.frombuffer(values, dtype=np.float64)).tolist()
            else:
                ordered = sorted(values)
            mirror = self._sorted = SortedList(ordered)
            self._known[:n] = values
        else:
            known = self._known
            filled = self._synced_count
            p = (total % size - behind) % size
            for _ in range(behind):
                if p < filled:
                    mirror.remove(known[p])
                v = times[p]
                mirror.add(v)
                known[p] = v
                p += 1
                if p == size:
                    p = 0
        self._synced_total = total
        self._synced_count = n
        return mirror
