"""ProfileReport: profiling results as data."""

from __future__ import annotations

__all__ = [
    "ProfileReport",
]


class ProfileReport:
    """STUB: replaced by its issue's work."""
