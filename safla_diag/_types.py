"""Protocols and aliases for the callbacks that hosts hand to the library."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = ["MaybeAwaitable", "RequestRecorder", "SleepFn"]

MaybeAwaitable: TypeAlias = "Awaitable[Any] | Any"
"""What a host callback that may be sync or async returns."""

SleepFn: TypeAlias = Callable[[float], Awaitable[None]]
"""An injectable ``asyncio.sleep``."""


@runtime_checkable
class RequestRecorder(Protocol):
    """Anything ``timed`` can record into: a PerformanceMonitor, or a host's own."""

    def record_request(self, response_time: float, success: bool = True) -> None: ...
