"""
The sections of a diagnosis, in report order, and the runner that keeps one from breaking the rest.

To add a section: write ``async def name(ctx: Context) -> Outcome`` in a module here (and, when it
does not always apply, an ``applies(ctx) -> bool``), then add a :class:`Section` to ``SECTIONS``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..._redact import describe_error, redact
from .._context import Context, Section
from .._report import SectionResult, finding
from . import _logs, _monitors, _queue, _vector
from ._config import configuration
from ._host import cpu, dependencies, disk, memory, platform
from ._services import has_targets, services

__all__ = ["SECTIONS", "SECTION_NAMES", "run_section"]

log = logging.getLogger("safla_diag.diagnosis")

SECTIONS: tuple[Section, ...] = (
    Section("platform", platform),
    Section("configuration", configuration),
    Section("dependencies", dependencies),
    Section("memory", memory),
    Section("cpu", cpu),
    Section("disk", disk),
    Section("services", services, has_targets),
    Section("vector", _vector.vector, _vector.applies),
    Section("mcp_queue", _queue.mcp_queue, _queue.applies),
    Section("logs", _logs.logs, _logs.applies),
    Section("monitors", _monitors.monitors, _monitors.applies),
)
"""Every section, in report order."""

SECTION_NAMES = tuple(s.name for s in SECTIONS)


async def run_section(section: Section, ctx: Context, budget: float) -> SectionResult:
    """
    Run one section under its budget; a timeout or an exception becomes a warning finding.

    Args:
        section: The section.
        ctx: The diagnosis context.
        budget: Seconds it may take.
    """
    start = time.perf_counter()
    try:
        async with asyncio.timeout(budget):
            facts, findings = await section.fn(ctx)
    except TimeoutError:
        facts, findings = (
            {},
            [finding(section.name, "warning", f"check did not finish within {budget:g} s")],
        )
    except Exception as err:  # one broken check must not break the report
        log.debug("section %s failed: %s", section.name, describe_error(err))
        facts, findings = (
            {},
            [
                finding(
                    section.name,
                    "warning",
                    f"could not check: {err.__class__.__name__}: {redact(str(err))[:200]}",
                )
            ],
        )
    return SectionResult(
        name=section.name,
        findings=tuple(findings),
        facts=facts,
        elapsed_s=time.perf_counter() - start,
    )
