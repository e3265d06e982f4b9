"""Checks of the environment: installed dependencies and reachable external services."""

from __future__ import annotations

from ._deps import DependencyReport, PackageStatus, check_dependencies
from ._ports import port_holders as port_holders
from ._services import (
    ServiceReport,
    ServiceResult,
    acheck_external_services,
    check_external_services,
)
from ._targets import Target as Target
from ._targets import TargetError as TargetError
from ._targets import parse_targets as parse_targets

# The facade's names; the other names imported above are this layer's interface to the layers
# above it (diagnosis, _cli): importable from ``safla_diag.checks``, not public.
__all__ = [
    "DependencyReport",
    "PackageStatus",
    "ServiceReport",
    "ServiceResult",
    "acheck_external_services",
    "check_dependencies",
    "check_external_services",
]
