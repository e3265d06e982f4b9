"""The logs section: ERROR and CRITICAL records of the last hour in the configured logs."""

from __future__ import annotations

import functools
from datetime import timedelta

from ..._aio import off_loop
from .._context import Context, Outcome, plural
from .._report import finding

__all__ = ["applies", "logs"]

_LOG_WINDOW_S = 3600.0


def applies(ctx: Context) -> bool:
    """The section runs when ``log_paths`` lists something."""
    return bool(ctx.settings.log_paths)


async def logs(ctx: Context) -> Outcome:
    """Scan the last hour of the configured logs; the most frequent error template leads."""
    from ...logs import analyze_logs

    # "-" is standard input for `logs scan`; the doctor must not sit waiting on it.
    stdin = [p for p in ctx.settings.log_paths if p == "-"]
    paths = [p for p in ctx.settings.log_paths if p != "-"]
    report = await off_loop(
        functools.partial(analyze_logs, since=timedelta(seconds=_LOG_WINDOW_S), top=3), paths
    )
    bad = sum(n for level, n in report.counts.items() if level in ("ERROR", "CRITICAL"))
    facts = {
        "paths": paths,
        "files": list(report.files),
        "counts": dict(report.counts),
        "templates": [t.to_dict() for t in report.templates],
        "skipped": [s.to_dict() for s in report.skipped],
        "since": report.since.isoformat() if report.since else None,
    }
    notes = [
        finding(
            "logs",
            "info" if sk.partial else "warning",
            f"{'read only in part' if sk.partial else 'cannot read'} {sk.path}: {sk.reason}",
            None if sk.partial else "fix log_paths, or the file's permissions",
        )
        for sk in report.skipped
    ] + [
        finding("logs", "warning", "log_paths lists '-' (standard input): not scanned")
        for _ in stdin
    ]
    scan = "safla-diag logs scan " + " ".join(paths) + " --since 1h"
    if not bad:
        return facts, [
            finding(
                "logs",
                "info",
                f"no ERROR or CRITICAL records in the last hour "
                f"({plural(len(report.files), 'file')}, {plural(report.lines, 'line')})",
            ),
            *notes,
        ]
    top = ""
    if report.templates:
        t = report.templates[0]
        last = f", last at {t.last_seen:%H:%M:%S}" if t.last_seen is not None else ""
        top = f"; most frequent ({t.count}x {t.level}{last}): {t.template[:120]!r}"
    return facts, [
        finding(
            "logs",
            "warning",
            f"{bad} ERROR/CRITICAL record{'s' * (bad != 1)} in the last hour{top}",
            scan,
        ),
        *notes,
    ]
