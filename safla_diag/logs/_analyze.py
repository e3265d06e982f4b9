"""analyze_logs and LogReport: streaming log analysis."""

from __future__ import annotations

__all__ = [
    "LogReport",
    "analyze_logs",
]


class LogReport:
    """STUB: replaced by its issue's work."""


def analyze_logs(*args: object, **kwargs: object) -> object:
    """STUB: replaced by its issue's work."""
    raise NotImplementedError
