"""
Timestamps, levels and line shapes: the parsers behind analyze_logs.

Everything here works on one line or one short sample at a time; the chunked scanner in ``_scan``
calls it only for the lines that matter (sniffing, window boundaries, chosen levels).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "LEVEL_ALIASES",
    "LEVEL_TOKENS",
    "LineFormat",
    "find_level",
    "json_messages",
    "normalise_level",
    "parse_since",
    "parse_timestamp",
    "sniff",
]

# Level words we recognise, longest first where one is a prefix of another (WARNING before WARN).
LEVEL_TOKENS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")
# Spellings that mean the same level as Python's logging names it.
LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
# Levels counted in every file, whether or not the sniffed sample showed them.
BASE_TOKENS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")

_LEVEL_RE = re.compile(
    r"(?<![A-Za-z0-9_.])(" + "|".join(LEVEL_TOKENS) + r")(?![A-Za-z0-9_])", re.IGNORECASE
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_SYSLOG_RE = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})"
)
# A timestamp at the start of a plain line, optionally in brackets.
_LEAD_RE = re.compile(r"\[?(?:" + _ISO_RE.pattern + "|" + _SYSLOG_RE.pattern + r")\]?")
_RELATIVE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d|w)", re.IGNORECASE)
_UNIT_S = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}

_MAX_OFFSETS = 8
LEVEL_KEYS = ("level", "levelname", "severity", "log.level")
MESSAGE_KEYS = ("message", "msg", "event")
TIME_KEYS = ("timestamp", "time", "@timestamp", "ts", "asctime")
EXTRA_TEXT_KEYS = ("exc_info", "exception", "stack_trace", "stack", "traceback")
_JSON_LEVEL_RE = re.compile(rb'"(level|levelname|severity)"(\s*:\s*)"([A-Za-z]+)"')


def normalise_level(name: str) -> str:
    """
    The canonical upper-case name of a level: ``warn`` -> ``WARNING``, ``fatal`` -> ``CRITICAL``.

    Args:
        name: A level name in any case.

    Returns:
        The upper-case canonical name.
    """
    up = name.strip().upper()
    return LEVEL_ALIASES.get(up, up)


def _local(dt: datetime) -> datetime:
    """Attach the local time zone to a naive datetime (as ``date`` and ``grep`` users expect)."""
    return dt.astimezone() if dt.tzinfo is None else dt


def _tz(text: str | None) -> timezone | None:
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    if hours > 23 or minutes > 59:
        raise ValueError("bad offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _from_iso_match(m: re.Match[str]) -> datetime:
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if m[4] is None:
        return _local(datetime(year, month, day))
    frac = m[7] or ""
    micro = int((frac + "000000")[:6]) if frac else 0
    dt = datetime(year, month, day, int(m[4]), int(m[5]), int(m[6] or 0), micro, tzinfo=_tz(m[8]))
    return _local(dt)


def _from_syslog_match(m: re.Match[str], now: datetime | None) -> datetime:
    ref = now or datetime.now().astimezone()
    month, day = _MONTHS[m[1]], int(m[2])
    hh, mm, ss = int(m[3]), int(m[4]), int(m[5])
    # syslog has no year: take the one that puts the line at most a day in the future.
    dt = _local(datetime(ref.year, month, day, hh, mm, ss))
    if dt - ref > timedelta(days=1):
        dt = _local(datetime(ref.year - 1, month, day, hh, mm, ss))
    return dt


def parse_timestamp(text: str | float | int, *, now: datetime | None = None) -> datetime | None:
    """
    Parse a log timestamp into an aware datetime, or None when there is none.

    Accepts ISO 8601 (``2026-11-28T10:00:00.123+01:00``, ``Z``, space instead of ``T``), the
    ``logging`` module's default (``2026-11-28 10:00:00,123``), syslog (``Nov 28 10:00:00``, year
    inferred so the time is not more than a day ahead of ``now``) and epoch seconds or milliseconds.
    Naive times are local time. Leading ``[`` and trailing text are ignored.

    Args:
        text: The text that starts with the timestamp, or an epoch number.
        now: Reference time for syslog's missing year; the current time when None.

    Returns:
        The aware datetime, or None when ``text`` does not start with a valid timestamp.
    """
    try:
        if isinstance(text, bool):
            return None
        if isinstance(text, int | float):
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                return None
            if abs(value) > 1e11:  # milliseconds
                value /= 1000.0
            return datetime.fromtimestamp(value, tz=UTC)
        s = text.lstrip("[ ")
        m = _ISO_RE.match(s)
        if m:
            return _from_iso_match(m)
        m2 = _SYSLOG_RE.match(s)
        if m2:
            return _from_syslog_match(m2, now)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def parse_since(
    since: datetime | date | timedelta | str | float | int | None, *, now: datetime | None = None
) -> datetime | None:
    """
    Turn a ``since`` argument into an aware datetime.

    Args:
        since: None; a datetime (naive means local time) or date; a timedelta before ``now``; a number of
            seconds before ``now``; or a string: relative (``30m``, ``1h``, ``2d``, ``1h30m``,
            ``90s``, ``1w``) or an absolute ISO date/time (``2026-11-28``, ``2026-11-28T10:00``,
            ``2026-11-28 10:00:00+01:00``).
        now: The reference time for relative values; the current time when None.

    Returns:
        The start of the window, or None when ``since`` is None.

    Raises:
        ValueError: When ``since`` cannot be understood or is negative.
    """
    if since is None:
        return None
    ref = _local(now) if now is not None else datetime.now().astimezone()
    if isinstance(since, datetime):
        return _local(since)
    if isinstance(since, date):
        return _local(datetime(since.year, since.month, since.day))
    if isinstance(since, timedelta):
        if since < timedelta(0):
            raise ValueError(f"since must not be negative: {since}")
        return ref - since
    if isinstance(since, bool) or not isinstance(since, str | int | float):
        raise ValueError(
            f"since must be a datetime, timedelta or string, not {type(since).__name__}"
        )
    if isinstance(since, int | float):
        if not since >= 0 or since == float("inf"):
            raise ValueError(f"since must be a non-negative number of seconds: {since!r}")
        return ref - timedelta(seconds=float(since))
    text = since.strip()
    if not text:
        raise ValueError("since is empty")
    if _RELATIVE_RE.fullmatch(text) or re.fullmatch(
        r"(?:" + _RELATIVE_RE.pattern + r"\s*)+", text, re.I
    ):
        total = sum(float(n) * _UNIT_S[u.lower()] for n, u in _RELATIVE_RE.findall(text))
        try:
            return ref - timedelta(seconds=total)
        except OverflowError as err:
            raise ValueError(f"since is too far back: {since!r}") from err
    m = _ISO_RE.fullmatch(text)
    if m:
        try:
            return _from_iso_match(m)
        except (ValueError, OverflowError) as err:
            raise ValueError(f"since is not a valid date/time: {since!r}") from err
    raise ValueError(
        f"cannot understand since={since!r}: use a duration like 30m, 1h, 2d or an ISO date/time"
    )


def find_level(text: str, start: int = 0, window: int = 120) -> re.Match[str] | None:
    """
    The first level word in ``text[start:start+window]``, in upper, lower or Title case.

    Args:
        text: One line.
        start: Where to start looking (after the timestamp).
        window: How far to look: a level is part of the line's header, not its message.

    Returns:
        The match (group 1 is the word), or None.
    """
    for m in _LEVEL_RE.finditer(text, start, start + window):
        word = m[1]
        if word.isupper() or word.islower() or word.istitle():
            return m
    return None


def lead_timestamp(line: str, now: datetime | None = None) -> tuple[datetime | None, int]:
    """The timestamp at the start of a plain line and where it ends (0 when there is none)."""
    m = _LEAD_RE.match(line)
    if not m:
        return None, 0
    return parse_timestamp(m[0], now=now), m.end()


@dataclass
class ParsedRecord:
    """What the line parsers make of one record's first line."""

    level: str | None
    timestamp: datetime | None
    message: str


@dataclass
class LineFormat:
    """
    What sniffing the start of a file found out about its lines.

    Attributes:
        kind: ``plain`` or ``json``.
        level_offset: The byte offset of the level word in every sampled record, when it is the
            same in all of them; None otherwise.
        level_offsets: The few offsets (at most 8) the level word takes in the sampled records,
            say one per logger name before it (the fast path); empty when there are more.
        right: The byte that follows the level word (``b" "``, ``b"]"``, ``b'"'``, ...).
        needles: Per level token, the exact byte strings that mark it (e.g. ``b" ERROR "``).
        cases: Which spellings were seen: ``upper``, ``lower``, ``title``.
        record_first: Bytes that a record's first line starts with (digits for timestamped logs,
            ``{`` for JSON-lines); any other line continues the record before it.
        has_timestamps: Whether sampled records carry a timestamp.
        tokens: The level tokens to count in this file.
    """

    kind: str
    level_offset: int | None = None
    level_offsets: tuple[int, ...] = ()
    right: bytes = b" "
    needles: dict[str, list[bytes]] = field(default_factory=dict)
    cases: set[str] = field(default_factory=lambda: {"upper"})
    record_first: bytes = b""
    has_timestamps: bool = False
    tokens: tuple[str, ...] = BASE_TOKENS

    def parse(self, line: bytes, now: datetime | None = None) -> ParsedRecord:
        """Parse one record's first line (bytes, decoded with replacement)."""
        if self.kind == "json":
            return _parse_json(line, now)
        return _parse_plain(line.decode("utf-8", "replace"), now)

    def timestamp(self, line: bytes, now: datetime | None = None) -> datetime | None:
        """Only the timestamp of a record's first line, or None."""
        if self.kind == "json":
            return _parse_json(line, now).timestamp
        head = line[:64].decode("utf-8", "replace")
        return lead_timestamp(head, now)[0]


def _parse_plain(line: str, now: datetime | None) -> ParsedRecord:
    ts, end = lead_timestamp(line, now)
    m = find_level(line, end)
    if m is None:
        return ParsedRecord(None, ts, line[end:].strip())
    message = line[m.end() :].lstrip(" \t-:|]>)").rstrip("\r")
    return ParsedRecord(normalise_level(m[1]), ts, message)


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _parse_json(line: bytes, now: datetime | None) -> ParsedRecord:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return _parse_plain(line.decode("utf-8", "replace"), now)
    if not isinstance(obj, dict):
        return ParsedRecord(None, None, line.decode("utf-8", "replace"))
    level = next((obj[k] for k in LEVEL_KEYS if isinstance(obj.get(k), str)), None)
    message = next((obj[k] for k in MESSAGE_KEYS if k in obj), "")
    raw_ts = next((obj[k] for k in TIME_KEYS if k in obj), None)
    ts = parse_timestamp(raw_ts, now=now) if isinstance(raw_ts, str | int | float) else None
    return ParsedRecord(
        normalise_level(level) if level else None, ts, _json_text(message).replace("\n", " ")
    )


def json_messages(lines: list[bytes]) -> list[str]:
    """
    The messages of JSON-lines records, parsed as one JSON array (one C call) when possible.

    Args:
        lines: Raw records, one JSON object each.

    Returns:
        Their messages ("" where a record has none); unparsable lines give their own text.
    """
    try:
        objs = json.loads(b"[" + b",".join(lines) + b"]")
        if len(objs) != len(lines):
            raise ValueError("a line held more than one value")
    except (ValueError, RecursionError):
        return [_parse_json(line, None).message for line in lines]
    out = []
    for obj in objs:
        if isinstance(obj, dict):
            msg = next((obj[k] for k in MESSAGE_KEYS if k in obj), "")
            out.append(_json_text(msg))
        else:
            out.append(_json_text(obj))
    return out


def json_extra_text(line: bytes) -> str:
    """The traceback-like fields of a JSON record (``exc_info``, ``stack_trace``...), joined."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(obj, dict):
        return ""
    return "\n".join(_json_text(obj[k]) for k in EXTRA_TEXT_KEYS if obj.get(k))


def _case_of(word: str) -> str:
    return "upper" if word.isupper() else "lower" if word.islower() else "title"


def spell(token: str, case: str) -> str:
    """A level token in the given case."""
    return {"upper": token.upper(), "lower": token.lower()}.get(case, token.title())


def sniff(sample: bytes, now: datetime | None = None) -> LineFormat | str:
    """
    Learn a file's line format from its first bytes.

    Args:
        sample: The first bytes of the file (complete lines; up to a few hundred are used).
        now: Reference time for syslog years.

    Returns:
        The format, or a reason string when the sample looks binary.
    """
    head = sample[:65536]
    if head and (head.count(0) > 0 and head.count(0) * 100 > len(head)):
        return "binary data (NUL bytes)"
    if head:
        text_bytes = sum(head.count(bytes([b])) for b in (9, 10, 13)) + len(
            head.translate(None, bytes(range(32)) + b"\x7f")
        )
        if text_bytes * 100 < len(head) * 90:
            return "binary data (control bytes)"
    lines = [ln for ln in head.split(b"\n")[:400] if ln.strip()]
    jsonish = sum(1 for ln in lines if ln.lstrip()[:1] == b"{")
    if lines and jsonish * 2 >= len(lines):
        return _sniff_json(lines)
    return _sniff_plain(lines, now)


def _finish(
    fmt: LineFormat, seen: set[str], offsets: set[int], shapes: set[tuple[bytes, bytes]]
) -> LineFormat:
    fmt.tokens = tuple(dict.fromkeys((*BASE_TOKENS, *sorted(seen))))
    fmt.level_offsets = tuple(sorted(offsets)) if len(offsets) <= _MAX_OFFSETS else ()
    fmt.level_offset = offsets.pop() if len(offsets) == 1 else None
    if len({r for _, r in shapes}) == 1:
        fmt.right = next(iter(shapes))[1]
    elif shapes:
        fmt.level_offset = None
        fmt.level_offsets = ()
    for tok in fmt.tokens:
        fmt.needles[tok] = sorted(
            {left + spell(tok, c).encode() + right for left, right in shapes for c in fmt.cases}
        )
    return fmt


def _sniff_json(lines: list[bytes]) -> LineFormat:
    fmt = LineFormat(kind="json", record_first=b"{")
    offsets: set[int] = set()
    shapes: set[tuple[bytes, bytes]] = set()
    seen: set[str] = set()
    cases: set[str] = set()
    for ln in lines:
        m = _JSON_LEVEL_RE.search(ln)
        if not m:
            continue
        word = m[3].decode()
        if word.upper() not in LEVEL_TOKENS:
            continue
        seen.add(word.upper())
        cases.add(_case_of(word))
        offsets.add(m.start(3))
        shapes.add((b'"' + m[1] + b'"' + m[2] + b'"', b'"'))
        obj_ts = _parse_json(ln, None).timestamp
        fmt.has_timestamps = fmt.has_timestamps or obj_ts is not None
    fmt.cases = cases or {"upper"}
    if not shapes:
        shapes = {(b'"level": "', b'"'), (b'"level":"', b'"')}
        fmt.cases = {"upper", "lower"}
    return _finish(fmt, seen, offsets, shapes)


def _sniff_plain(lines: list[bytes], now: datetime | None) -> LineFormat:
    fmt = LineFormat(kind="plain")
    offsets: set[int] = set()
    shapes: set[tuple[bytes, bytes]] = set()
    seen: set[str] = set()
    cases: set[str] = set()
    firsts: set[int] = set()
    stamped = 0
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        ts, end = lead_timestamp(line, now)
        m = find_level(line, end, 80 if ts else 40)
        if ts is None and (m is None or stamped):
            continue  # a continuation line (or noise)
        if m is None:
            continue
        stamped += ts is not None
        word = m[1]
        seen.add(word.upper())
        cases.add(_case_of(word))
        # Byte offsets: the decoded prefix may differ in length from the raw one.
        prefix = line[: m.start(1)].encode()
        offsets.add(len(prefix))
        left = prefix[-1:]
        right = line[m.end(1) : m.end(1) + 1].encode()[:1] or b"\r"
        shapes.add((left, right))
        firsts.add(raw[0])
    fmt.has_timestamps = stamped > 0
    if fmt.has_timestamps:
        # Records start with their timestamp; which bytes can that be?
        firsts = {b for b in firsts if chr(b).isdigit() or chr(b) in "[JFMASOND"}
        if any(chr(b).isdigit() for b in firsts):
            firsts |= set(b"0123456789")
    fmt.record_first = bytes(sorted(firsts))
    fmt.cases = cases or {"upper"}
    if not shapes:
        shapes = {(b" ", b" ")}
    return _finish(fmt, seen, offsets, shapes)
