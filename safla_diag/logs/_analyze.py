"""analyze_logs and aanalyze_logs: streaming log analysis."""

from __future__ import annotations

import heapq
import operator
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ._levels import canonical
from ._mine import merge
from ._read import PathArg, scan_item
from ._report import LogReport, LogTemplate, PatternMatches, SkippedFile
from ._scan import CHUNK_SIZE, Accumulator, ScanOptions
from ._templates import TemplateStats
from ._time import parse_since

__all__ = ["LogReport", "aanalyze_logs", "analyze_logs"]


def _expand(paths: PathArg | Iterable[PathArg]) -> list[PathArg]:
    if isinstance(paths, str | os.PathLike) or hasattr(paths, "read"):
        return [paths]  # type: ignore[list-item]
    return list(paths)


def _compile(pattern: str | re.Pattern[str] | re.Pattern[bytes] | None) -> re.Pattern[bytes] | None:
    if pattern is None:
        return None
    try:
        if isinstance(pattern, re.Pattern):
            source = pattern.pattern
            flags = pattern.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
            return re.compile(source.encode() if isinstance(source, str) else source, flags)
        if not isinstance(pattern, str):
            raise TypeError(
                f"pattern must be a string or a compiled regex, not {type(pattern).__name__}"
            )
        return re.compile(pattern.encode("utf-8"))
    except re.error as err:
        raise ValueError(f"invalid pattern {pattern!r}: {err}") from err


_rank = operator.itemgetter(0, 1, 2)


def _rows(table: dict[tuple[str, str], TemplateStats], top: int) -> tuple[LogTemplate, ...]:
    """Merge the masked templates (as mine_templates does) and rank the rows."""
    counts: dict[str, int] = {}
    for (_level, masked), st in table.items():
        counts[masked] = counts.get(masked, 0) + st.count
    final = merge(counts)
    rows: dict[tuple[str, str], list[TemplateStats]] = {}
    for (level, masked), st in table.items():
        rows.setdefault((level, final[masked]), []).append(st)
    ranked = [
        (-sum(m.count for m in members), level, template, members)
        for (level, template), members in rows.items()
    ]
    # (count, level, template) tells every row apart: the members are never compared
    best = (
        heapq.nsmallest(top, ranked, key=_rank) if top < len(ranked) else sorted(ranked, key=_rank)
    )
    out = []
    for neg_count, level, template, members in best:
        # Only the rows shown: an example is redacted, and the first and last times compared,
        # for top rows, not for each of (maybe thousands of) templates.
        firsts = [m.first_seen for m in members if m.first_seen is not None]
        lasts = [m.last_seen for m in members if m.last_seen is not None]
        lead = min(members, key=lambda m: (-m.count, m.template))
        out.append(
            LogTemplate(
                template=template,
                level=level,
                count=-neg_count,
                first_seen=min(firsts) if firsts else None,
                last_seen=max(lasts) if lasts else None,
                example=lead.example,
            )
        )
    return tuple(out)


def analyze_logs(
    paths: PathArg | Iterable[PathArg],
    *,
    since: datetime | timedelta | str | float | None = None,
    levels: Sequence[str] = ("ERROR", "CRITICAL"),
    pattern: str | re.Pattern[str] | re.Pattern[bytes] | None = None,
    top: int = 20,
    max_examples: int = 10,
    now: datetime | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> LogReport:
    """
    Analyse log files in one streaming pass each: records, level counts, templates, matches.

    Every record is counted, with or without a level, in any of the formats docs/logs.md lists
    (plain ``logging`` output in any field order, JSON lines, syslog, journald, nginx, Apache,
    PostgreSQL, Redis and the Loghub systems); a line is tried against every format, so one that
    does not fit the file's own format is still read, and a line that fits none continues the
    record before it (a traceback). Level spellings map to canonical names (``WARN`` ->
    ``WARNING``, ``E`` -> ``ERROR``, ``FATAL`` -> ``CRITICAL``). Garbage inside a text log (NUL
    runs, binary lines, lines longer than the buffer) is skipped and counted; gzip files are
    detected by their magic bytes. Memory stays constant: files are read in chunks.

    Args:
        paths: A path, a glob (``logs/*.log``, ``logs/**/*.log``: each file read once, symlink
            loops not followed), ``-`` for standard input, an open binary stream, or an iterable
            of these.
        since: Only records at or after this time: a datetime, a timedelta or number of seconds
            before now, a duration string (``30m``, ``1h``, ``2d``) or an ISO date/time.
            Timestamps are assumed non-decreasing within a file.
        levels: The levels whose message templates are collected (any spelling; ``()`` for
            none).
        pattern: A regular expression; lines matching it are counted and a few kept.
        top: How many templates to return.
        max_examples: How many matching lines to keep.
        now: The reference time for relative ``since`` and years missing from timestamps.
        chunk_size: Bytes read at a time.

    Returns:
        The LogReport.

    Raises:
        ValueError: For a ``since`` or ``pattern`` that cannot be understood, or bad numbers.
        TypeError: For arguments of the wrong type.
    """
    if isinstance(levels, str):
        levels = (levels,)
    chosen = tuple(dict.fromkeys(canonical(str(lv)) for lv in levels))
    if any(not lv.isalpha() for lv in chosen):
        raise ValueError(f"levels must be level names, got {list(levels)!r}")
    if top < 0 or max_examples < 0:
        raise ValueError("top and max_examples must not be negative")
    start = parse_since(since, now=now)
    opts = ScanOptions(
        since=start,
        chosen=frozenset(chosen),
        pattern=_compile(pattern),
        max_examples=max_examples,
        now=now,
        chunk_size=chunk_size,
    )
    acc = Accumulator()
    seen: set[tuple[int, int]] = set()
    for item in _expand(paths):
        scan_item(item, opts, acc, seen)
    matches = None
    if opts.pattern is not None:
        source = opts.pattern.pattern
        matches = PatternMatches(
            pattern=source.decode("utf-8", "replace") if isinstance(source, bytes) else source,
            count=acc.match_count,
            examples=tuple(acc.match_examples),
        )
    return LogReport(
        counts=dict(sorted(acc.counts.items())),
        records=acc.records,
        templates=_rows(acc.templates, top),
        matches=matches,
        skipped=tuple(
            SkippedFile(path=s.path, reason=s.reason, partial=s.partial) for s in acc.skipped
        ),
        files=tuple(acc.files),
        lines=acc.lines,
        bytes=acc.bytes,
        levels=chosen,
        since=start,
        templates_truncated=acc.templates_truncated,
        garbage_lines=acc.garbage_lines,
        nul_bytes=acc.nul_bytes,
    )


async def aanalyze_logs(
    paths: PathArg | Iterable[PathArg],
    *,
    since: datetime | timedelta | str | float | None = None,
    levels: Sequence[str] = ("ERROR", "CRITICAL"),
    pattern: str | re.Pattern[str] | re.Pattern[bytes] | None = None,
    top: int = 20,
    max_examples: int = 10,
    now: datetime | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> LogReport:
    """
    The coroutine twin of :func:`analyze_logs`: the reads run off the host's event loop.

    Arguments are checked on the loop (so a bad ``since`` raises at once); the files are read
    on the library's own bounded thread pool (never the host's default executor), so the loop
    keeps serving while a large log is scanned.

    Args:
        paths: As for :func:`analyze_logs`.
        since: As for :func:`analyze_logs`.
        levels: As for :func:`analyze_logs`.
        pattern: As for :func:`analyze_logs`.
        top: As for :func:`analyze_logs`.
        max_examples: As for :func:`analyze_logs`.
        now: As for :func:`analyze_logs`.
        chunk_size: As for :func:`analyze_logs`.

    Returns:
        The LogReport.

    Raises:
        ValueError: For a ``since`` or ``pattern`` that cannot be understood, or bad numbers.
        TypeError: For arguments of the wrong type.
    """
    from .._aio import off_loop

    parse_since(since, now=now)
    _compile(pattern)
    items: Any = _expand(paths)
    return await off_loop(
        analyze_logs,
        items,
        since=since,
        levels=levels,
        pattern=pattern,
        top=top,
        max_examples=max_examples,
        now=now,
        chunk_size=chunk_size,
    )
