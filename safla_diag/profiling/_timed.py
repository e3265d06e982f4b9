"""timed(monitor): per-call wall time and success into a monitor, at near-zero cost."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from time import perf_counter
from typing import Any, ParamSpec, TypeVar, cast

from .._redact import describe_error, redact
from .._types import RequestRecorder
from . import _targets

__all__ = ["timed"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("safla_diag.profiling")


def timed(monitor: RequestRecorder, /) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """
    Record each call's wall time and success into ``monitor``.

    ``monitor`` is a ``PerformanceMonitor`` or anything with ``record_request(seconds, success)``.
    Sync and ``async def`` functions are supported (for a coroutine function the time runs until
    the coroutine finishes, awaits included). A call that raises an ``Exception`` is recorded as a
    failure and the exception is re-raised untouched; a cancelled or interrupted call
    (``CancelledError``, ``KeyboardInterrupt``: not ``Exception`` subclasses) is not recorded, as
    it says nothing about the function's health. If ``record_request`` itself raises, the error
    is logged to ``safla_diag.profiling`` and the call's result is returned as usual.

    Args:
        monitor: Where to record.

    Returns:
        A decorator; the wrapper keeps the name, docstring, signature and coroutine-ness.

    Raises:
        TypeError: When ``monitor`` has no callable ``record_request`` (e.g. ``@timed`` used
            without a monitor), and at decoration time for a class, a non-callable, or a
            generator or async generator function.
    """
    record = getattr(monitor, "record_request", None)
    if not callable(record):
        hint = " (use @timed(monitor), not bare @timed)" if callable(monitor) else ""
        raise TypeError(
            f"timed() needs a monitor with a record_request(seconds, success) method, "
            f"got {type(monitor).__name__}{hint}"
        )
    owner = type(monitor).__name__
    # A PerformanceMonitor takes a checked time directly (a float from perf_counter, finite and
    # >= 0 by construction), skipping record_request's argument checks: ~70 ns of the budget.
    # Not for a subclass that overrides record_request: its override must see every call.
    fast = getattr(monitor, "_record_elapsed", None)
    cls = type(monitor)
    if callable(fast) and getattr(cls, "_record_elapsed_for", None) is cls.record_request:
        record = fast
    else:
        slow = record

        def record(elapsed: float, failed: int) -> None:
            slow(elapsed, not failed)

    def decorate(fn: Callable[P, T], /) -> Callable[P, T]:
        target, rewrap_with = _targets.unwrap_target(fn, "timed")
        name = getattr(target, "__qualname__", None) or repr(target)
        failures = [0]

        def recorder_failed() -> None:
            failures[0] += 1
            # The first failure is worth a warning; a broken monitor must not flood the host's
            # logs afterwards. One redacted line, no traceback: it would carry the host's secrets.
            level = logging.WARNING if failures[0] == 1 else logging.DEBUG
            logger.log(
                level,
                "%s.record_request failed (%d times: %s); the call to %s is not recorded",
                owner,
                failures[0],
                describe_error(sys.exc_info()[1] or Exception()),
                redact(name),
            )

        def call_failed(elapsed: float) -> None:
            # The failure path, shared by both wrappers; the success path stays inline in each
            # (a helper call there would cost ~50 ns of the per-call budget).
            try:
                record(elapsed, 1)
            except Exception:
                recorder_failed()

        if _targets.is_async(target):

            @functools.wraps(target)
            async def async_timed(*args: Any, **kwargs: Any) -> Any:
                start = perf_counter()
                try:
                    result = await target(*args, **kwargs)
                except Exception:
                    call_failed(perf_counter() - start)
                    raise
                try:
                    record(perf_counter() - start, 0)
                except Exception:
                    recorder_failed()
                return result

            return cast("Callable[P, T]", _targets.rewrap(async_timed, rewrap_with))

        @functools.wraps(target)
        def sync_timed(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter()
            try:
                result = target(*args, **kwargs)
            except Exception:
                call_failed(perf_counter() - start)
                raise
            try:
                record(perf_counter() - start, 0)
            except Exception:
                recorder_failed()
            return result

        return cast("Callable[P, T]", _targets.rewrap(sync_timed, rewrap_with))

    return decorate
