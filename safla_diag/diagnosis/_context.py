"""What every section gets (the context) and returns (facts and findings), and the wording helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

from ._report import Finding
from ._settings import Settings

if TYPE_CHECKING:
    from ._monitors import Monitors

__all__ = ["Context", "Outcome", "Section", "SectionFn", "duration", "plural"]


@attrs.define
class Context:
    """
    One diagnosis as the sections see it.

    Attributes:
        config: The configuration mapping, unredacted (sections redact what they show).
        given: Whether a configuration was given (and so is validated).
        source: Where it came from, redacted.
        timeout: The Diagnostics timeout.
        monitors: The monitors running inside ``async with``, or None.
        started: ``time.perf_counter()`` when the diagnosis started.
        settings: The typed settings, read once from ``config``.
    """

    config: dict[str, Any]
    given: bool
    source: str | None
    timeout: float
    monitors: Monitors | None
    started: float
    settings: Settings = attrs.field()

    @settings.default
    def _read(self) -> Settings:
        return Settings.read(self.config, timeout=self.timeout)


Outcome = tuple[dict[str, Any], list[Finding]]
SectionFn = Callable[[Context], Awaitable[Outcome]]


def _always(ctx: Context) -> bool:
    return True


@attrs.frozen
class Section:
    """A section: its name in the report, its check, and when it applies."""

    name: str
    fn: SectionFn
    applies: Callable[[Context], bool] = _always


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``, ``2.0 d``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word}{'s' * (n != 1)}"
