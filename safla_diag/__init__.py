"""
safla_diag: diagnostics, monitors and recovery for SAFLA services.

Everything public is importable from here; see ``__all__``. Heavy modules (faiss, numpy) and
optional extras load lazily, on first use.
"""

from __future__ import annotations

import logging

from ._errors import (
    ConfigurationError,
    DependencyError,
    IndexCorruptionError,
    MCPRecoveryError,
    MemoryPressureError,
    PerformanceError,
    RecoveryError,
    SaflaDiagError,
)
from ._redact import redact
from .checks import (
    DependencyReport,
    ServiceReport,
    ServiceResult,
    acheck_external_services,
    check_dependencies,
    check_external_services,
)
from .config import SaflaConfig, load_configuration, validate_configuration
from .diagnosis import DiagnosisReport, Diagnostics, PerformanceDiagnostic
from .logs import LogReport, analyze_logs
from .mcp_retry import MCPConnectionRecovery, MCPTaskRecovery, OutcomeUnknown, RecoveringSession
from .monitoring import (
    LeakAnalysis,
    MemoryLeakDetector,
    MemoryMonitor,
    PerformanceMonitor,
    VectorMemoryOptimizer,
)
from .profiling import CPUProfiler, MemoryProfiler, ProfileReport, profile, timed
from .vector import BackupInfo, IndexHealth, VectorIndexRecovery

__all__ = [
    "BackupInfo",
    "CPUProfiler",
    "ConfigurationError",
    "DependencyError",
    "DependencyReport",
    "DiagnosisReport",
    "Diagnostics",
    "IndexCorruptionError",
    "IndexHealth",
    "LeakAnalysis",
    "LogReport",
    "MCPConnectionRecovery",
    "MCPRecoveryError",
    "MCPTaskRecovery",
    "MemoryLeakDetector",
    "MemoryMonitor",
    "MemoryPressureError",
    "MemoryProfiler",
    "OutcomeUnknown",
    "PerformanceDiagnostic",
    "PerformanceError",
    "PerformanceMonitor",
    "ProfileReport",
    "RecoveringSession",
    "RecoveryError",
    "SaflaConfig",
    "SaflaDiagError",
    "ServiceReport",
    "ServiceResult",
    "VectorIndexRecovery",
    "VectorMemoryOptimizer",
    "acheck_external_services",
    "analyze_logs",
    "check_dependencies",
    "check_external_services",
    "load_configuration",
    "profile",
    "redact",
    "timed",
    "validate_configuration",
]

logging.getLogger("safla_diag").addHandler(logging.NullHandler())


def __getattr__(name: str) -> str:
    # Lazy, as stamina, structlog and attrs do: importlib.metadata is slow to import.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("safla-diag")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
