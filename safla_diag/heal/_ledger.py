"""
The healer's ledger: the bounded history of actions, their counts, and the gate every action passes.

The gate holds three rules, per (kind, target): an action never runs twice at once; after it ran
it waits ``min_interval_s`` before it may run again; after a failure it waits ``min_interval_s``,
doubling with each consecutive failure up to ``max_backoff_s`` (never a tight retry loop).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from .._redact import redact, redact_value

__all__ = ["OUTCOMES", "Action", "Gate", "Ledger"]

log = logging.getLogger("safla_diag.heal")

#: done: the remedy ran and worked; failed: it ran and did not; skipped: not run (dry run, or
#: nothing it could do), with the reason; event: something observed and reported, nothing changed.
OUTCOMES = ("done", "failed", "skipped", "event")

_LEVELS = {"done": logging.WARNING, "failed": logging.ERROR, "skipped": logging.INFO}


@attrs.frozen(kw_only=True)
class Action:
    """
    One recorded action.

    Attributes:
        time: Wall-clock seconds since the epoch.
        action: Its kind (``restore_index``, ``clear_caches``, ``leak_trace``, ``breaker_open``,
            ``breaker_closed``, ``dead_letters``).
        outcome: ``done``, ``failed``, ``skipped`` or ``event``.
        detail: One redacted line saying what happened (or would have, or why not).
        target: What it acted on (the index file, a server id, a queue), redacted.
        data: Figures for programs (freed MB, allocation sites, top errors), redacted.
    """

    time: float
    action: str
    outcome: str
    detail: str
    target: str = ""
    data: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The action as a JSON-ready dict."""
        return {
            "time": self.time,
            "action": self.action,
            "outcome": self.outcome,
            "detail": self.detail,
            "target": self.target,
            "data": dict(self.data),
        }


class Ledger:
    """The bounded history and the counts per (action, outcome); each record logs one line."""

    def __init__(self, size: int) -> None:
        self._history: collections.deque[Action] = collections.deque(maxlen=size)
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(
        self,
        action: str,
        outcome: str,
        detail: str,
        *,
        target: str = "",
        data: dict[str, Any] | None = None,
        level: int | None = None,
    ) -> Action:
        """Record an action, count it, and log it on one redacted line."""
        assert outcome in OUTCOMES, outcome
        clean = redact_value(dict(data or {}))
        assert isinstance(clean, dict)
        entry = Action(
            time=time.time(),
            action=action,
            outcome=outcome,
            detail=redact(" ".join(detail.split()))[:2000],
            target=redact(target),
            data=clean,
        )
        self._history.append(entry)
        self._counts[(action, outcome)] += 1
        log.log(
            level if level is not None else _LEVELS.get(outcome, logging.WARNING),
            "heal %s %s%s: %s",
            entry.action,
            entry.outcome,
            f" [{entry.target}]" if entry.target else "",
            entry.detail,
        )
        return entry

    def history(self) -> list[dict[str, Any]]:
        """Every kept action, oldest first, as dicts."""
        return [a.to_dict() for a in self._history]

    def counts(self) -> dict[tuple[str, str], int]:
        """(action, outcome) -> how many since start."""
        return dict(self._counts)

    def __iter__(self) -> Iterator[Action]:
        return iter(list(self._history))


class Gate:
    """Who may act now: one at a time per key, rate-limited, backing off after failures."""

    def __init__(
        self, *, min_interval_s: float, max_backoff_s: float, clock: Callable[[], float]
    ) -> None:
        self.min_interval_s = min_interval_s
        self.max_backoff_s = max(min_interval_s, max_backoff_s)
        self._clock = clock
        self._busy: set[tuple[str, str]] = set()
        self._not_before: dict[tuple[str, str], float] = {}
        self._failures: collections.Counter[tuple[str, str]] = collections.Counter()
        #: How many times an action was held back by the rate limit or a back-off, per kind.
        self.held: collections.Counter[str] = collections.Counter()

    def busy(self, key: tuple[str, str]) -> bool:
        """Whether the action is running now."""
        return key in self._busy

    def ready(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` could run now (neither running nor waiting); claims nothing."""
        return key not in self._busy and self._clock() >= self._not_before.get(key, -float("inf"))

    def enter(self, key: tuple[str, str]) -> bool:
        """Claim ``key`` if it is neither running nor waiting; False when it must wait."""
        if key in self._busy:
            return False
        if self._clock() < self._not_before.get(key, -float("inf")):
            self.held[key[0]] += 1
            return False
        self._busy.add(key)
        return True

    def leave(self, key: tuple[str, str], *, failed: bool) -> None:
        """Release ``key`` and schedule the earliest next run."""
        self._busy.discard(key)
        if failed:
            self._failures[key] += 1
            n = self._failures[key]
            wait = min(self.max_backoff_s, self.min_interval_s * 2.0 ** min(n - 1, 60))
        else:
            self._failures.pop(key, None)
            wait = self.min_interval_s
        self._not_before[key] = self._clock() + wait

    def failures(self, key: tuple[str, str]) -> int:
        """Consecutive failures of ``key``."""
        return self._failures[key]
