"""FAISS vector index recovery: corruption detection, verified backups, atomic restore, rebuild."""

from __future__ import annotations

from ._recovery import BackupInfo, IndexHealth, VectorIndexRecovery

__all__ = ["BackupInfo", "IndexHealth", "VectorIndexRecovery"]
