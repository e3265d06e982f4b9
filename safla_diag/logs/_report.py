"""LogReport and its parts: what analyze_logs returns, following the report contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from .._report import JsonMixin, html_block, html_table

__all__ = ["LogReport", "LogTemplate", "PatternMatches", "SkippedFile"]


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _fmt_time(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S") if dt is not None else "-"


@attrs.frozen(kw_only=True)
class LogTemplate:
    """
    One message template of the chosen levels.

    Attributes:
        template: The message with its variable parts masked (``<NUM>``, ``<IP>``, ``<HEX>``,
            ``<PATH>``, ``<URL>``, ``<*>``); see docs/logs.md.
        level: The level of the records (canonical upper-case name).
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
        partial: True when the rest of the file was analysed (garbage lines, a truncated gzip).
    """

    path: str
    reason: str
    partial: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data."""
        return {"path": self.path, "reason": self.reason, "partial": self.partial}


@attrs.frozen(kw_only=True)
class LogReport(JsonMixin):
    """
    What analyze_logs found.

    Attributes:
        counts: Records per level (canonical upper-case names: ``ERROR``, ``WARNING``...), within
            the window.
        records: Every record found within the window, with or without a level.
        templates: The top message templates of the chosen levels, most frequent first.
        matches: Lines matching ``pattern``, or None when no pattern was given.
        skipped: Files skipped or only partly read, each with the reason.
        files: The files analysed.
        lines: Lines read (all of them, inside the window or not).
        bytes: Bytes read (decompressed).
        levels: The chosen levels.
        since: The start of the window, or None.
        templates_truncated: True when there were too many distinct templates to track them all.
        garbage_lines: Lines skipped as binary data inside text logs.
        nul_bytes: NUL bytes skipped inside text logs.
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
    records: int = 0
    templates_truncated: bool = False
    garbage_lines: int = 0
    nul_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """
        The report as JSON-ready data.

        Returns:
            A dict with the keys ``counts``, ``records``, ``templates``, ``matches``,
            ``skipped``, ``files``, ``lines``, ``bytes``, ``levels``, ``since``,
            ``templates_truncated``, ``garbage_lines`` and ``nul_bytes``.
        """
        return {
            "counts": dict(self.counts),
            "records": self.records,
            "templates": [t.to_dict() for t in self.templates],
            "matches": self.matches.to_dict() if self.matches else None,
            "skipped": [s.to_dict() for s in self.skipped],
            "files": list(self.files),
            "lines": self.lines,
            "bytes": self.bytes,
            "levels": list(self.levels),
            "since": _iso(self.since),
            "templates_truncated": self.templates_truncated,
            "garbage_lines": self.garbage_lines,
            "nul_bytes": self.nul_bytes,
        }

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
            f"{self.records:,} records, {self.bytes / (1 << 20):,.1f} MB{window}"
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
        parts = [
            html_table(
                ["Level", "Records"],
                [(k, v) for k, v in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))],
            ),
            html_table(
                ["Count", "Level", "First seen", "Last seen", "Template"],
                (
                    (t.count, t.level, _fmt_time(t.first_seen), _fmt_time(t.last_seen), t.template)
                    for t in self.templates
                ),
                caption=f"Top templates ({', '.join(self.levels)})",
            ),
        ]
        if self.skipped:
            parts.append(
                html_table(["Skipped", "Reason"], ((s.path, s.reason) for s in self.skipped))
            )
        notes = []
        if self.matches is not None:
            notes.append(f"Lines matching /{self.matches.pattern}/: {self.matches.count:,}")
        title = (
            f"Log analysis: {len(self.files)} file(s), {self.lines:,} lines, "
            f"{self.records:,} records"
        )
        return html_block(title, *parts, notes=notes)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return (
            f"<LogReport files={len(self.files)} records={self.records} counts={{{counts}}} "
            f"templates={len(self.templates)} skipped={len(self.skipped)}>"
        )
