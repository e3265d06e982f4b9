"""VectorIndexRecovery: corruption detection, backup, restore, rebuild."""

from __future__ import annotations

__all__ = [
    "BackupInfo",
    "IndexHealth",
    "VectorIndexRecovery",
]


class BackupInfo:
    """STUB: replaced by its issue's work."""


class IndexHealth:
    """STUB: replaced by its issue's work."""


class VectorIndexRecovery:
    """STUB: replaced by its issue's work."""
