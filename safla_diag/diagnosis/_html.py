"""
``Diagnostics._repr_html_``: its state, the monitors it runs, the healer's last actions and the
last report, all from memory (a notebook may render it while its loop runs: nothing is probed).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .._html_util import when
from .._redact import redact
from .._report import html_block, html_table

if TYPE_CHECKING:
    from ._diagnostics import Diagnostics

__all__ = ["diagnostics_html"]

_HEAL_ROWS = 5
_STATES = {
    "new": "not started (they run inside `async with`)",
    "running": "running",
    "closed": "stopped",
}


def diagnostics_html(diag: Diagnostics) -> str:
    """State and settings, monitors' levels, the last healer actions, then the last report."""
    sections = diag._sections
    rows: list[tuple[str, object]] = [
        ("monitors", _STATES[diag._state]),
        ("configuration", redact(diag._source) if diag._source else "defaults"),
        ("sections", "all that apply" if sections is None else ", ".join(sections)),
        ("service timeout", f"{diag._settings.service_timeout:g} s"),
        ("healing", "on" if diag._heal is not None else "off"),
    ]
    monitor, detector = diag.memory_monitor, diag.leak_detector
    if monitor is not None:
        rows.append(("memory monitor", f"{monitor.level} (collections run: {monitor.gc_runs})"))
    if detector is not None:
        rows.append(("leak detector samples", str(detector.samples)))
    parts = [html_table(("", "value"), rows)]
    history = diag.heal_history()
    if history:
        now = time.time()
        parts.append(
            html_table(
                ("time", "action", "outcome", "detail"),
                [
                    (
                        when(h.get("time"), now=now),
                        str(h.get("action", "")),
                        str(h.get("outcome", "")),
                        redact(str(h.get("detail", "")))[:200],
                    )
                    for h in history[-_HEAL_ROWS:]
                ],
                caption=f"healer: last {min(len(history), _HEAL_ROWS)} of {len(history)} actions",
            )
        )
    report = diag.last_report
    notes = []
    if report is not None:
        parts.append(report._repr_html_())
    else:
        notes.append("no report yet: `diag.doctor()`, or `await diag.adoctor()` in a notebook")
    ok = None if report is None else report.ok
    return html_block("Diagnostics", *parts, notes=notes, ok=ok)
