"""analyze_logs and LogReport: streaming log analysis."""

from __future__ import annotations

import contextlib
import glob
import gzip
import html
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import IO, Any, TypeAlias, cast

import attrs

from .._redact import redact
from ._formats import normalise_level, parse_since
from ._scan import CHUNK_SIZE, Accumulator, ScanOptions, Skip, Stream, note_skip, scan_stream

__all__ = [
    "LogReport",
    "LogTemplate",
    "PatternMatches",
    "SkippedFile",
    "analyze_logs",
]

PathArg: TypeAlias = "str | os.PathLike[str] | IO[bytes]"
_GLOB_CHARS = re.compile(r"[*?\[]")


@attrs.frozen(kw_only=True)
class LogTemplate:
    """
    One message template of the chosen levels.

    Attributes:
        template: The message with numbers, ids, hex, uuids, addresses, quoted strings and paths
            masked (``<NUM>``, ``<HEX>``, ``<UUID>``, ``<IP>``, ``<STR>``, ``<PATH>``, ``<URL>``).
        level: The level of the records (upper case).
        count: How many records had this template.
        first_seen: Timestamp of the earliest of them, when the log has timestamps.
        last_seen: Timestamp of the latest of them.
        example: The first such record in full (with its traceback lines), redacted.
    """

    template: str
    level: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    example: str = attrs.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The template as JSON-ready data (times as ISO 8601 strings)."""
        return {
            "template": self.template,
            "level": self.level,
            "count": self.count,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "example": self.example,
        }


@attrs.frozen(kw_only=True)
class PatternMatches:
    """
    Lines matching the ``pattern`` (counted like ``grep -c``).

    Attributes:
        pattern: The regular expression.
        count: How many lines matched.
        examples: The first few matching lines, redacted.
    """

    pattern: str
    count: int
    examples: tuple[str, ...] = attrs.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The matches as JSON-ready data."""
        return {"pattern": self.pattern, "count": self.count, "examples": list(self.examples)}


@attrs.frozen(kw_only=True)
class SkippedFile:
    """
    A file that was skipped, or read only in part, and why.

    Attributes:
        path: The file (or ``<stdin>``).
        reason: Why, in words.
        partial: True when the rest of the file was analysed (a truncated gzip, over-long lines).
    """

    path: str
    reason: str
    partial: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data."""
        return {"path": self.path, "reason": self.reason, "partial": self.partial}


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _fmt_time(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S") if dt is not None else "-"


@attrs.frozen(kw_only=True)
class LogReport:
    """
    What analyze_logs found.

    Attributes:
        counts: Records per level (upper-case names: ``ERROR``, ``WARNING``...), within the window.
        templates: The top message templates of the chosen levels, most frequent first.
        matches: Lines matching ``pattern``, or None when no pattern was given.
        skipped: Files skipped or only partly read, each with the reason.
        files: The files analysed.
        lines: Lines read (all of them, inside the window or not).
        bytes: Bytes read (decompressed).
        levels: The chosen levels.
        since: The start of the window, or None.
        templates_truncated: True when there were too many distinct templates to track them all.
    """

    counts: dict[str, int]
    templates: tuple[LogTemplate, ...]
    matches: PatternMatches | None
    skipped: tuple[SkippedFile, ...]
    files: tuple[str, ...]
    lines: int
    bytes: int
    levels: tuple[str, ...]
    since: datetime | None
    templates_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """
        The report as JSON-ready data.

        Returns:
            A dict with the keys ``counts``, ``templates``, ``matches``, ``skipped``, ``files``,
            ``lines``, ``bytes``, ``levels`` and ``since``.
        """
        return {
            "counts": dict(self.counts),
            "templates": [t.to_dict() for t in self.templates],
            "matches": self.matches.to_dict() if self.matches else None,
            "skipped": [s.to_dict() for s in self.skipped],
            "files": list(self.files),
            "lines": self.lines,
            "bytes": self.bytes,
            "levels": list(self.levels),
            "since": _iso(self.since),
            "templates_truncated": self.templates_truncated,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as a JSON document."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_text(self, *, width: int = 120) -> str:
        """
        The report as a table for a terminal.

        Args:
            width: Line width to fit templates into.

        Returns:
            The text, ending with a newline.
        """
        out: list[str] = []
        window = f", since {_fmt_time(self.since)}" if self.since else ""
        out.append(
            f"Log analysis: {len(self.files)} file(s), {self.lines:,} lines, "
            f"{self.bytes / (1 << 20):,.1f} MB{window}"
        )
        out.append("")
        out.append("Level        Records")
        for level, count in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"{level:<10} {count:>9,}")
        if not self.counts:
            out.append("(no records with a level)")
        out.append("")
        out.append(f"Top templates ({', '.join(self.levels)})")
        if self.templates:
            out.append(
                f"{'Count':>8}  {'Level':<8}  {'First seen':<19}  {'Last seen':<19}  Template"
            )
            room = max(20, width - 62)
            for t in self.templates:
                text = t.template if len(t.template) <= room else t.template[: room - 1] + "…"
                out.append(
                    f"{t.count:>8,}  {t.level:<8}  {_fmt_time(t.first_seen):<19}  "
                    f"{_fmt_time(t.last_seen):<19}  {text}"
                )
        else:
            out.append("(none)")
        if self.matches is not None:
            out.append("")
            out.append(f"Lines matching /{self.matches.pattern}/: {self.matches.count:,}")
            for ex in self.matches.examples:
                out.append("  " + (ex if len(ex) <= width - 2 else ex[: width - 3] + "…"))
        if self.skipped:
            out.append("")
            out.append("Skipped")
            for s in self.skipped:
                tag = " (rest analysed)" if s.partial else ""
                out.append(f"  {s.path}: {s.reason}{tag}")
        return "\n".join(out) + "\n"

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
            for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])
        )
        trows = "".join(
            f"<tr><td style='text-align:right'>{t.count:,}</td><td>{e(t.level)}</td>"
            f"<td>{e(_fmt_time(t.first_seen))}</td><td>{e(_fmt_time(t.last_seen))}</td>"
            f"<td><code>{e(t.template)}</code></td></tr>"
            for t in self.templates
        )
        parts = [
            f"<div><b>Log analysis</b>: {len(self.files)} file(s), {self.lines:,} lines",
            "<table><tr><th>Level</th><th>Records</th></tr>" + rows + "</table>",
            "<table><tr><th>Count</th><th>Level</th><th>First seen</th><th>Last seen</th>"
            "<th>Template</th></tr>" + trows + "</table>",
        ]
        if self.matches is not None:
            parts.append(
                f"<p>Lines matching <code>{e(self.matches.pattern)}</code>: {self.matches.count:,}</p>"
            )
        if self.skipped:
            items = "".join(f"<li>{e(s.path)}: {e(s.reason)}</li>" for s in self.skipped)
            parts.append(f"<p>Skipped</p><ul>{items}</ul>")
        return "".join(parts) + "</div>"

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return (
            f"<LogReport files={len(self.files)} lines={self.lines} counts={{{counts}}} "
            f"templates={len(self.templates)} skipped={len(self.skipped)}>"
        )


def _expand(paths: PathArg | Iterable[PathArg]) -> list[PathArg]:
    if isinstance(paths, str | os.PathLike) or hasattr(paths, "read"):
        return [paths]  # type: ignore[list-item]
    return list(paths)


def _open(path: str, stack: contextlib.ExitStack) -> Stream:
    """
    Open a log for reading, gunzipping when it starts with the gzip magic; ``stack`` closes it.

    A pipe (a named FIFO, bash's ``<(command)``) cannot seek, so its magic is peeked through a
    buffer rather than read and rewound. Like ``cat`` and ``grep``, opening a named FIFO waits
    for a writer.
    """
    raw = io.FileIO(path, "rb")
    stack.enter_context(raw)
    if not raw.seekable():
        buffered = stack.enter_context(io.BufferedReader(raw))
        stream = _wrap_stream(buffered)
        if stream is not buffered:
            stack.enter_context(cast(gzip.GzipFile, stream))
        return stream
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


def _wrap_stream(stream: Any) -> Stream:
    peek = getattr(stream, "peek", None)
    if peek is not None:
        magic = peek(2)[:2]
    elif stream.seekable():
        magic = stream.read(2)
        stream.seek(-len(magic), io.SEEK_CUR)
    else:
        return cast(Stream, stream)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    return cast(Stream, stream)


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
    Analyse log files in one streaming pass each: level counts, top templates, pattern matches.

    Plain text logs (ISO 8601, ``logging``'s default and syslog timestamps) and JSON-lines logs
    (``level``/``levelname``, ``message``/``msg``, ``timestamp``/``time``/``@timestamp``) are
    recognised per file; gzip files are detected by their magic bytes. Memory stays constant:
    files are read in chunks of ``chunk_size`` bytes. A record's traceback lines stay with it and
    are not counted as records. Files that cannot be analysed are listed in ``skipped`` with the
    reason, and the rest are analysed.

    Args:
        paths: A path, a glob (``logs/*.log``), ``-`` for standard input, an open binary stream,
            or an iterable of these.
        since: Only records at or after this time: a datetime, a timedelta or number of seconds
            before now, a duration string (``30m``, ``1h``, ``2d``) or an ISO date/time
            (``2026-11-28T10:00``). Timestamps are assumed non-decreasing within a file.
        levels: The levels whose message templates are collected (any case; ``WARN`` and
            ``FATAL`` mean ``WARNING`` and ``CRITICAL``).
        pattern: A regular expression; lines matching it are counted and a few kept.
        top: How many templates to return.
        max_examples: How many matching lines to keep.
        now: The reference time for relative ``since`` and syslog years (default: now).
        chunk_size: Bytes read at a time.

    Returns:
        The LogReport.

    Raises:
        ValueError: For a ``since`` or ``pattern`` that cannot be understood, or bad numbers.
        TypeError: For arguments of the wrong type.
    """
    if isinstance(levels, str):
        levels = (levels,)
    chosen = tuple(dict.fromkeys(normalise_level(str(lv)) for lv in levels))
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
    for item in _expand(paths):
        _scan_one(item, opts, acc)
    ranked = sorted(acc.templates.items(), key=lambda kv: (-kv[1].count, kv[0]))[:top]
    templates = tuple(
        LogTemplate(
            template=st.template,
            level=level,
            count=st.count,
            first_seen=st.first_seen,
            last_seen=st.last_seen,
            example=st.example,
        )
        for (level, _key), st in ranked
    )
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
        templates=templates,
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
    )


def _scan_one(item: PathArg, opts: ScanOptions, acc: Accumulator) -> None:
    if hasattr(item, "read"):
        name = getattr(item, "name", None)
        label = name if isinstance(name, str) else "<stream>"
        scan_stream(redact(label), _wrap_stream(item), opts, acc)
        return
    path = os.fspath(item)
    if path == "-":
        scan_stream("<stdin>", _wrap_stream(sys.stdin.buffer), opts, acc)
        return
    if _GLOB_CHARS.search(path) and not os.path.exists(path):
        found = sorted(glob.glob(path, recursive=True))
        if not found:
            acc.skipped.append(_skip(path, "no files match"))
        for p in found:
            _scan_path(p, opts, acc)
        return
    _scan_path(path, opts, acc)


def _skip(path: str, reason: str) -> Skip:
    return note_skip(Skip(redact(path), reason))


def _scan_path(path: str, opts: ScanOptions, acc: Accumulator) -> None:
    if os.path.isdir(path):
        acc.skipped.append(_skip(path, "is a directory"))
        return
    with contextlib.ExitStack() as stack:
        try:
            stream = _open(path, stack)
        except FileNotFoundError:
            acc.skipped.append(_skip(path, "not found"))
            return
        except PermissionError:
            acc.skipped.append(_skip(path, "permission denied"))
            return
        except OSError as err:
            acc.skipped.append(_skip(path, f"cannot open: {err.strerror or err}"))
            return
        scan_stream(redact(path), stream, opts, acc)
