"""Checks of the environment: installed dependencies and reachable external services."""

from __future__ import annotations

from ._deps import DependencyReport, PackageStatus, check_dependencies
from ._services import (
    ServiceReport,
    ServiceResult,
    acheck_external_services,
    check_external_services,
)

__all__ = [
    "DependencyReport",
    "PackageStatus",
    "ServiceReport",
    "ServiceResult",
    "acheck_external_services",
    "check_dependencies",
    "check_external_services",
]
