"""HealPolicy: what the healer may do, how often, and the seams a host (or a test) can inject."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ..mcp_retry import MCPConnectionRecovery, MCPTaskRecovery
    from ..monitoring import VectorMemoryOptimizer
    from ..vector import VectorIndexRecovery

__all__ = ["HealPolicy"]


def _seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def _percent_or_none(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value <= 100):
        raise ValueError(f"{attribute.name} must be a percent in (0, 100], got {value!r}")


def _positive_int(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive int, got {value!r}")


def _callable_or_none(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{attribute.name} must be callable or None, got {type(value).__name__}")


@attrs.frozen(kw_only=True)
class HealPolicy:
    """
    What ``Diagnostics(cfg, heal=HealPolicy(...))`` repairs on its own, and how cautiously.

    ``heal=True`` is ``HealPolicy()``. Every remedy is rate-limited per kind (at most one per
    ``min_interval_s``), never runs twice at once, and after a failure waits ``min_interval_s``,
    doubling up to ``max_backoff_s``, before it is tried again. With ``dry_run=True`` nothing is
    changed: each remedy that would run is recorded as ``skipped`` with what it would have done.
    Every field is a keyword argument of the constructor.

    Attributes:
        dry_run: Record what would be done, do nothing.
        tick_s: How often the cheap signals are read (memory percent, the leak detector's verdict,
            breaker states, dead-letter counts).
        index_check_interval_s: How often the live vector index gets the cheap check (size and
            checksum against its manifest); it is also checked once when the healer starts.
        min_interval_s: The rate limit per kind of action (and the first back-off after a failure).
        max_backoff_s: The longest wait after repeated failures.
        recovery: The VectorIndexRecovery of the live index; by default one is made from the
            configuration's ``data_dir`` / ``backup_dir`` / ``index_file`` / ``vector_dimension``.
        on_index: Called with the restored index (loaded and verified) so the host can swap it in;
            a coroutine function or a quick plain callable (called on the loop).
        rebuild_from: A ``.npy`` file of vectors to rebuild from when no backup is usable.
        memory_critical_percent: Memory use at which registered caches are cleared; by default the
            configuration's ``memory_critical_percent``.
        memory_percent: Reads the memory percent (a seam; by default the optimizer's cgroup-aware
            reading of this process's RSS).
        optimizer: The VectorMemoryOptimizer whose registered caches are cleared; by default a new
            one (``Diagnostics.healer.optimizer``) holding ``caches``.
        caches: Objects with ``clear()`` to register (held weakly when they can be).
        leak_window_s: How long tracemalloc traces after the leak detector's alarm.
        leak_frames: Frames per traceback while it traces (1: the allocating line).
        leak_top: How many growing allocation sites are reported.
        connections: MCPConnectionRecovery objects whose breakers are watched.
        queues: MCPTaskRecovery objects whose dead-letter counts are watched.
        history_size: How many actions ``heal_history()`` keeps (the oldest go first).
        on_action: Called with each action's dict as it is recorded (a hook for alerts).
        clock: Monotonic seconds (a test seam).

    Raises:
        ValueError: For a non-positive interval, size or count, or a percent out of range.
        TypeError: When a callback is not callable.
    """

    dry_run: bool = False
    tick_s: float = attrs.field(default=5.0, validator=_seconds)
    index_check_interval_s: float = attrs.field(default=300.0, validator=_seconds)
    min_interval_s: float = attrs.field(default=300.0, validator=_seconds)
    max_backoff_s: float = attrs.field(default=3600.0, validator=_seconds)
    recovery: VectorIndexRecovery | None = None
    on_index: Callable[[Any], object] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    rebuild_from: str | None = None
    memory_critical_percent: float | None = attrs.field(default=None, validator=_percent_or_none)
    memory_percent: Callable[[], float] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    optimizer: VectorMemoryOptimizer | None = None
    caches: Sequence[object] = attrs.field(default=(), converter=tuple)
    leak_window_s: float = attrs.field(default=180.0, validator=_seconds)
    leak_frames: int = attrs.field(default=1, validator=_positive_int)
    leak_top: int = attrs.field(default=10, validator=_positive_int)
    connections: Sequence[MCPConnectionRecovery] = attrs.field(default=(), converter=tuple)
    queues: Sequence[MCPTaskRecovery] = attrs.field(default=(), converter=tuple)
    history_size: int = attrs.field(default=256, validator=_positive_int)
    on_action: Callable[[dict[str, Any]], object] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    clock: Callable[[], float] | None = attrs.field(default=None, validator=_callable_or_none)

    @classmethod
    def coerce(cls, heal: object) -> HealPolicy | None:
        """
        The policy ``Diagnostics(heal=...)`` was given: None for False, the defaults for True.

        Raises:
            TypeError: For anything but a bool or a HealPolicy.
        """
        if heal is False or heal is None:
            return None
        if heal is True:
            return cls()
        if isinstance(heal, HealPolicy):
            return heal
        raise TypeError(f"heal must be a bool or a HealPolicy, not {type(heal).__name__}")
