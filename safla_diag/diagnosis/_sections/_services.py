"""The services section: every configured service, probed concurrently."""

from __future__ import annotations

from ...checks import acheck_external_services, parse_targets
from .._context import Context, Outcome
from .._report import finding

__all__ = ["has_targets", "services"]


def has_targets(ctx: Context) -> bool:
    """Whether the configuration names a service to probe."""
    targets = ctx.settings.targets
    return bool(targets) and bool(parse_targets(targets))


async def services(ctx: Context) -> Outcome:
    """Probe the configured services under the service timeout."""
    report = await acheck_external_services(
        dict(ctx.settings.targets), timeout=ctx.settings.service_timeout
    )
    facts = report.to_dict()
    findings = [
        finding(
            "services",
            "info" if r.ok else "error",
            f"{r.name}: {r.detail} ({r.latency_s * 1000:.0f} ms)"
            if r.ok
            else f"{r.name} ({r.target}): {r.detail} [{r.status}]",
            None if r.ok else r.hint,
        )
        for r in report.results
    ]
    return facts, findings
