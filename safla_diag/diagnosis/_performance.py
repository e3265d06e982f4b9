"""PerformanceDiagnostic: measured probes, bottlenecks, recommendations."""

from __future__ import annotations

__all__ = [
    "PerformanceDiagnostic",
]


class PerformanceDiagnostic:
    """STUB: replaced by its issue's work."""
