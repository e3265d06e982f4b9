"""Telling the host about a threshold breach: a warning, and its ``on_breach`` callback, sync or async."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._errors import PerformanceError
from .._redact import describe_error

__all__ = ["BreachNotifier"]

logger = logging.getLogger("safla_diag.monitoring")


async def _await(awaitable: Any) -> Any:
    return await awaitable


class BreachNotifier:
    """
    Logs a breach and calls the host's callback; never raises, never drops an async callback.

    An async callback's awaitable runs as a task in the running loop, or, when the breach is seen
    in another thread, in the loop the notifier last saw (or was given with ``loop``).
    """

    __slots__ = ("loop", "pending")

    def __init__(self) -> None:
        self.loop: Any = None  # the host's loop, for an async callback called from a thread
        self.pending: set[Any] = set()  # callback tasks, held until they finish

    def report(
        self, err: PerformanceError, callback: Callable[[PerformanceError], object] | None
    ) -> None:
        """Log ``err`` as a warning and pass it to ``callback``; its exceptions are logged."""
        logger.warning("performance threshold breached: %s", err)
        if callback is None:
            return
        try:
            result = callback(err)
        except Exception as err2:
            logger.warning("on_breach callback failed: %s", describe_error(err2))
            return
        if hasattr(result, "__await__"):
            self._schedule(result)

    def _schedule(self, awaitable: Any) -> None:
        """
        Run an async ``on_breach``'s awaitable: a task in the running loop, or in the loop the
        monitor last saw when called from another thread; never dropped silently.
        """
        from .._aio import running_loop  # lazily: a breach is rare, _aio imports thread pools

        # asyncio is imported by whoever made a coroutine; we look it up rather than import it.
        aio, loop = running_loop()
        if loop is not None:
            self.loop = loop
            task = aio.ensure_future(awaitable)
            self.pending.add(task)
            task.add_done_callback(self._done)
            return
        known = self.loop
        if aio is not None and known is not None and known.is_running() and not known.is_closed():
            fut = aio.run_coroutine_threadsafe(_await(awaitable), known)
            fut.add_done_callback(self._done)
            return
        if hasattr(awaitable, "close"):
            awaitable.close()  # no "never awaited" RuntimeWarning: we say what happened instead
        logger.warning(
            "on_breach is async but record_request ran outside a running event loop "
            "(and no loop is known to run it in): the breach is logged here instead"
        )

    def _done(self, fut: Any) -> None:
        self.pending.discard(fut)
        if fut.cancelled():
            return
        err = fut.exception()
        if err is not None:
            logger.warning("on_breach callback failed: %s", describe_error(err))
