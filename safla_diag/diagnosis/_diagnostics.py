"""Diagnostics and DiagnosisReport: the facade behind doctor."""

from __future__ import annotations

__all__ = [
    "DiagnosisReport",
    "Diagnostics",
]


class DiagnosisReport:
    """STUB: replaced by its issue's work."""


class Diagnostics:
    """STUB: replaced by its issue's work."""
