"""
safla_diag: diagnostics, monitors and recovery for SAFLA services.

Everything public is importable from here; see ``__all__``. Heavy modules (faiss, numpy) and
optional extras load lazily, on first use.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigurationError,
    DependencyError,
    IndexCorruptionError,
    MCPRecoveryError,
    MemoryPressureError,
    OutcomeUnknown,
    PerformanceError,
    QueueStoreError,
    RecoveryError,
    SaflaDiagError,
    ServerUnavailable,
)
from ._redact import redact

if TYPE_CHECKING:  # the layers load on first use; type checkers and IDEs see them here
    from .checks import (
        DependencyReport,
        PackageStatus,
        ServiceReport,
        ServiceResult,
        acheck_external_services,
        check_dependencies,
        check_external_services,
    )
    from .config import MCPServer, SaflaConfig, load_configuration, validate_configuration
    from .diagnosis import (
        DiagnosisReport,
        Diagnostics,
        Finding,
        PerformanceDiagnostic,
        SectionResult,
    )
    from .heal import HealPolicy
    from .live import asgi_app, register_opentelemetry, register_prometheus, serve
    from .logs import LogReport, aanalyze_logs, analyze_logs, mine_templates
    from .logs._report import LogTemplate
    from .mcp_retry import (
        GuideImport,
        MCPConnectionRecovery,
        MCPTaskRecovery,
        QueueStats,
        RecoveringSession,
    )
    from .monitoring import (
        CgroupMemory,
        LeakAnalysis,
        LoopMonitor,
        LoopStats,
        MemoryInfo,
        MemoryLeakDetector,
        MemoryMonitor,
        MemoryOptimization,
        PerformanceMonitor,
        PerformanceStats,
        VectorMemoryOptimizer,
    )
    from .profiling import (
        CPUProfiler,
        GCCounts,
        MemoryGrowth,
        MemoryProfiler,
        ProfileReport,
        ProfileRow,
        SystemMemoryInfo,
        profile,
        timed,
    )
    from .vector import BackupInfo, IndexHealth, VectorIndexRecovery

__all__ = [
    "BackupInfo",
    "CPUProfiler",
    "CgroupMemory",
    "ConfigurationError",
    "DependencyError",
    "DependencyReport",
    "DiagnosisReport",
    "Diagnostics",
    "Finding",
    "GCCounts",
    "GuideImport",
    "HealPolicy",
    "IndexCorruptionError",
    "IndexHealth",
    "LeakAnalysis",
    "LogReport",
    "LogTemplate",
    "LoopMonitor",
    "LoopStats",
    "MCPConnectionRecovery",
    "MCPRecoveryError",
    "MCPServer",
    "MCPTaskRecovery",
    "MemoryGrowth",
    "MemoryInfo",
    "MemoryLeakDetector",
    "MemoryMonitor",
    "MemoryOptimization",
    "MemoryPressureError",
    "MemoryProfiler",
    "OutcomeUnknown",
    "PackageStatus",
    "PerformanceDiagnostic",
    "PerformanceError",
    "PerformanceMonitor",
    "PerformanceStats",
    "ProfileReport",
    "ProfileRow",
    "QueueStats",
    "QueueStoreError",
    "RecoveringSession",
    "RecoveryError",
    "SaflaConfig",
    "SaflaDiagError",
    "SectionResult",
    "ServerUnavailable",
    "ServiceReport",
    "ServiceResult",
    "SystemMemoryInfo",
    "VectorIndexRecovery",
    "VectorMemoryOptimizer",
    "aanalyze_logs",
    "acheck_external_services",
    "analyze_logs",
    "asgi_app",
    "check_dependencies",
    "check_external_services",
    "load_configuration",
    "mine_templates",
    "profile",
    "redact",
    "register_opentelemetry",
    "register_prometheus",
    "serve",
    "timed",
    "validate_configuration",
]

logging.getLogger("safla_diag").addHandler(logging.NullHandler())


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext safla_diag``: register the ``%%safla_profile`` cell magic (needs IPython)."""
    from .profiling._jupyter import load

    load(ipython)


# Public name -> the layer that defines it. A layer is imported the first time one of its names is
# used, so `import safla_diag` costs only the errors and redact(); faiss and numpy load later still.
_LAZY: dict[str, str] = {
    "BackupInfo": "vector",
    "CPUProfiler": "profiling",
    "CgroupMemory": "monitoring",
    "DependencyReport": "checks",
    "DiagnosisReport": "diagnosis",
    "Diagnostics": "diagnosis",
    "Finding": "diagnosis",
    "GCCounts": "profiling",
    "GuideImport": "mcp_retry",
    "HealPolicy": "heal",
    "IndexHealth": "vector",
    "LeakAnalysis": "monitoring",
    "LogReport": "logs",
    "LogTemplate": "logs._report",  # logs/ keeps it out of its __all__ for now
    "LoopMonitor": "monitoring",
    "LoopStats": "monitoring",
    "MCPConnectionRecovery": "mcp_retry",
    "MCPServer": "config",
    "MCPTaskRecovery": "mcp_retry",
    "MemoryGrowth": "profiling",
    "MemoryInfo": "monitoring",
    "MemoryLeakDetector": "monitoring",
    "MemoryMonitor": "monitoring",
    "MemoryOptimization": "monitoring",
    "MemoryProfiler": "profiling",
    "PackageStatus": "checks",
    "PerformanceDiagnostic": "diagnosis",
    "PerformanceMonitor": "monitoring",
    "PerformanceStats": "monitoring",
    "ProfileReport": "profiling",
    "ProfileRow": "profiling",
    "QueueStats": "mcp_retry",
    "RecoveringSession": "mcp_retry",
    "SaflaConfig": "config",
    "SectionResult": "diagnosis",
    "ServiceReport": "checks",
    "ServiceResult": "checks",
    "SystemMemoryInfo": "profiling",
    "VectorIndexRecovery": "vector",
    "VectorMemoryOptimizer": "monitoring",
    "aanalyze_logs": "logs",
    "acheck_external_services": "checks",
    "analyze_logs": "logs",
    "asgi_app": "live",
    "check_dependencies": "checks",
    "check_external_services": "checks",
    "load_configuration": "config",
    "mine_templates": "logs",
    "profile": "profiling",
    "register_opentelemetry": "live",
    "register_prometheus": "live",
    "serve": "live",
    "timed": "profiling",
    "validate_configuration": "config",
}


def __getattr__(name: str) -> Any:
    layer = _LAZY.get(name)
    if layer is not None:
        value = getattr(importlib.import_module(f".{layer}", __name__), name)
        globals()[name] = value  # the next lookup is a plain attribute access
        return value
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Lazy, as stamina, structlog and attrs do: importlib.metadata is slow to import.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("safla-diag")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
