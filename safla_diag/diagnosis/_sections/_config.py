"""The configuration section: every validation issue is an error finding."""

from __future__ import annotations

from ..._aio import off_loop
from ...config import validate_configuration
from .._context import Context, Outcome
from .._report import finding

__all__ = ["configuration"]


async def configuration(ctx: Context) -> Outcome:
    """Validate the configuration, when one was given."""
    if not ctx.given:
        return {"source": None}, [
            finding("configuration", "info", "no configuration given: embedded defaults")
        ]
    issues = await off_loop(validate_configuration, ctx.config)
    where = ctx.source or "the configuration"
    facts = {"source": ctx.source, "keys": sorted(ctx.config), "issues": len(issues)}
    if not issues:
        return facts, [finding("configuration", "info", f"{where} is valid")]
    return facts, [
        finding("configuration", "error", str(issue), f"fix it in {where}") for issue in issues
    ]
