"""A per-server circuit breaker: closed, open (fail fast), half-open (one probe after a cool-down)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from ._backoff import Backoff

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """
    The breaker of one server.

    ``closed``: calls and recoveries go ahead. A recovery that gives up opens it. ``open``: callers
    fail fast until the cool-down has passed; then the next recovery moves it to ``half_open`` and
    makes a single probe attempt, shared by every concurrent caller. The probe's success closes the
    breaker; its failure opens it again, with a cool-down that doubles up to ``max_cooldown_s``.

    Not thread-safe: it lives in one event loop.

    Args:
        cooldown_s: The first cool-down.
        max_cooldown_s: The cap of the doubling cool-down.
        clock: Monotonic seconds (injectable).
    """

    __slots__ = (
        "_backoff",
        "_clock",
        "cooldown_s",
        "failures",
        "max_cooldown_s",
        "opened_at",
        "state",
    )

    def __init__(
        self,
        *,
        cooldown_s: float = 30.0,
        max_cooldown_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max(cooldown_s, max_cooldown_s)
        self._backoff = Backoff(cooldown_s, self.max_cooldown_s)
        self._clock = clock
        self.state: BreakerState = "closed"
        self.failures = 0  # consecutive give-ups
        self.opened_at = 0.0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state} failures={self.failures}>"

    def current_cooldown(self) -> float:
        """The cool-down in force: doubled by each consecutive give-up, capped."""
        if self.failures <= 0:
            return 0.0
        return self._backoff.base(self.failures - 1)

    def retry_after(self) -> float:
        """Seconds until a probe is allowed (0 when closed or ready)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.opened_at + self.current_cooldown() - self._clock())

    def try_start(self) -> bool:
        """Whether a recovery may start now; an expired ``open`` becomes ``half_open`` (a probe)."""
        if self.state == "closed":
            return True
        if self.state == "open" and self.retry_after() <= 0.0:
            self.state = "half_open"
            return True
        return False

    def record_success(self) -> None:
        """A recovery succeeded: close."""
        self.state = "closed"
        self.failures = 0

    def record_failure(self) -> None:
        """A recovery (or probe) gave up: open for the next cool-down."""
        self.failures += 1
        self.state = "open"
        self.opened_at = self._clock()

    def abandon_probe(self) -> None:
        """A probe was cancelled before its verdict: back to open, a new probe allowed at once."""
        if self.state == "half_open":
            self.state = "open"
            self.opened_at = self._clock() - self.current_cooldown()
