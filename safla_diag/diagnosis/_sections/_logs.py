"""The logs section: ERROR and CRITICAL records of the last hour in the configured logs."""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs

from ..._aio import off_loop
from ..._redact import redact
from .._context import Context, Outcome, plural
from .._report import finding

if TYPE_CHECKING:
    from ...logs import LogReport

__all__ = ["applies", "logs", "regular_files"]

_LOG_WINDOW_S = 3600.0
_GLOB = re.compile(r"[*?\[]")
# Matches looked at per glob at most: a symlink loop under ``**`` yields the same files forever.
_MAX_MATCHES = 10_000

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@attrs.frozen
class _Selection:
    """What the doctor will read, and what it refuses with a reason."""

    paths: list[str]
    refused: list[tuple[str, str]]


def _refusal(mode: int) -> str | None:
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return (
        f"{kind}, not a regular file: the doctor reads regular files only (it could wait forever)"
    )


def _matches(pattern: str) -> Iterable[str]:
    if not _GLOB.search(pattern) or os.path.exists(pattern):
        return [pattern]
    found = []
    for i, path in enumerate(glob.iglob(pattern, recursive=True)):
        if i >= _MAX_MATCHES:
            break
        found.append(path)
    return sorted(found) or [pattern]  # no match: the scan says so


def regular_files(entries: Iterable[str]) -> _Selection:
    """
    The log files the doctor may open: regular files once each (by device and inode).

    A FIFO, a device or a socket would make the reading thread wait for a writer that may never
    come, so it is refused with a reason; ``stat`` itself never blocks on one. A missing path or a
    directory is passed on, for the scan to report.
    """
    paths: list[str] = []
    refused: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()
    for entry in entries:
        for path in _matches(entry):
            try:
                st = os.stat(path)
            except OSError:
                paths.append(path)
                continue
            reason = _refusal(st.st_mode)
            if reason is not None:
                refused.append((path, reason))
            elif (st.st_dev, st.st_ino) not in seen or stat.S_ISDIR(st.st_mode):
                seen.add((st.st_dev, st.st_ino))
                paths.append(path)
    return _Selection(paths, refused)


def _scan(entries: list[str]) -> tuple[LogReport, _Selection]:
    from ...logs import analyze_logs

    chosen = regular_files(entries)
    report = analyze_logs(chosen.paths, since=timedelta(seconds=_LOG_WINDOW_S), top=3)
    return report, chosen


def applies(ctx: Context) -> bool:
    """The section runs when ``log_paths`` lists something."""
    return bool(ctx.settings.log_paths)


async def logs(ctx: Context) -> Outcome:
    """Scan the last hour of the configured logs; the most frequent error template leads."""
    # "-" is standard input for `logs scan`; the doctor must not sit waiting on it.
    stdin = [p for p in ctx.settings.log_paths if p == "-"]
    paths = [p for p in ctx.settings.log_paths if p != "-"]
    report, chosen = await off_loop(_scan, paths)
    bad = sum(n for level, n in report.counts.items() if level in ("ERROR", "CRITICAL"))
    facts = {
        "paths": paths,
        "files": list(report.files),
        "counts": dict(report.counts),
        "templates": [t.to_dict() for t in report.templates],
        "skipped": [s.to_dict() for s in report.skipped],
        "refused": [{"path": redact(p), "reason": why} for p, why in chosen.refused],
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
    notes += [
        finding("logs", "warning", f"not read {redact(path)}: {why}", "list regular log files")
        for path, why in chosen.refused
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
