"""
The one exponential backoff of the MCP layer, on tenacity's wait strategy.

Every pause that grows with failures (a task's next attempt, the worker after a store error, a
PostgreSQL reconnect, the breaker's cool-down) is ``first * 2**n`` capped at ``cap``; a task's delay
adds equal jitter (half fixed, half random), so replicas retrying together spread out.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["Backoff"]

_TABLE = 64  # delays kept precomputed, for n = 0 .. _TABLE - 1


class _Attempt:
    """The one field of tenacity's ``RetryCallState`` its exponential wait reads."""

    __slots__ = ("attempt_number",)

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


class Backoff:
    """
    Delays ``first * 2**n`` capped at ``cap`` (no overflow for any ``n``).

    Args:
        first: The delay after the first failure (``n = 0``).
        cap: The longest delay.
        jitter: Equal jitter: each delay is drawn uniformly from ``[d/2, d]``.
        rng: The random source for the jitter (injectable for tests).
    """

    __slots__ = ("_rng", "_table", "_wait", "cap", "first", "jitter")

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        jitter: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        # tenacity pulls in asyncio helpers; imported here to keep `import safla_diag` light.
        from tenacity.wait import wait_exponential

        self.first = float(first)
        self.cap = max(float(first), float(cap))
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._wait = wait_exponential(multiplier=self.first, max=self.cap, exp_base=2)
        # The first delays, read on every save (a tenacity call costs microseconds).
        self._table = [self._tenacity(n) for n in range(_TABLE)]

    def __repr__(self) -> str:
        return f"<Backoff first={self.first:g} cap={self.cap:g} jitter={self.jitter}>"

    def _tenacity(self, n: int) -> float:
        return float(self._wait(cast("RetryCallState", _Attempt(n + 1))))

    def base(self, n: int) -> float:
        """The delay after ``n`` earlier failures, without jitter."""
        n = max(0, n)
        return self._table[n] if n < _TABLE else self._tenacity(n)

    def delay(self, n: int) -> float:
        """The delay after ``n`` earlier failures, with jitter when asked for."""
        d = self.base(n)
        return d * (0.5 + 0.5 * self._rng.random()) if self.jitter else d
