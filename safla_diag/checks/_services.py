"""check_external_services: native, concurrent probes of redis, postgresql, http, tcp and mcp."""

from __future__ import annotations

__all__ = ["ServiceReport", "ServiceResult", "acheck_external_services", "check_external_services"]


class ServiceResult:
    """STUB: replaced by the service-checks work."""


class ServiceReport:
    """STUB: replaced by the service-checks work."""


def check_external_services(targets: object, *, timeout: float = 5.0) -> ServiceReport:
    """STUB: replaced by the service-checks work."""
    raise NotImplementedError


async def acheck_external_services(targets: object, *, timeout: float = 5.0) -> ServiceReport:
    """STUB: replaced by the service-checks work."""
    raise NotImplementedError
