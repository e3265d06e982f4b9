"""
Line headers: which formats we read, and what a line's header says (timestamp, level, message).

Every format is one anchored bytes regex over the start of a line, with the groups ``ts``
(timestamp text), ``lvl`` (level) or ``pri`` (syslog priority) where the format has them; the
match ends where the message starts. ``parse_line`` tries the file's own format first and then
every other one, so a line that does not fit the sniffed format is still read; a line that fits
none is a continuation of the record before it (a traceback, the rest of a multi-line message).

``sniff`` learns from a file's first lines which format dominates and what the scanner's
vectorised fast path needs: a fixed *prefix shape* that every record of that format starts with
(``dddd-dd-dd dd:dd:dd,ddd`` for logging's default), and the few byte offsets where the level
word sits.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._levels import (
    LETTER_LEVELS,
    LEVEL_WORDS,
    PG_LEVELS,
    REDIS_LEVELS,
    SYSLOG_SEVERITY,
    level_word,
)
from ._time import parse_timestamp, parse_ts

__all__ = [
    "FORMATS",
    "Format",
    "Parsed",
    "Sniffed",
    "format_table",
    "json_extra",
    "json_fields",
    "learn_shape",
    "parse_line",
    "parse_time",
    "sniff",
]

_SEARCH_TOKENS = 5  # how many header tokens after a timestamp may hold the level
_SEPARATORS = {b"-", b"|", b":", b"::", b"--", b"-:", b"@"}
LEAD = b" \t-:|]>)"
# A PostgreSQL line of these kinds belongs to the record before it.
_PG_CONTINUATION = {"DETAIL", "HINT", "CONTEXT", "QUERY", "LOCATION", "STATEMENT"}
_LEVEL_KEYS = (b"level", b"levelname", b"severity", b"log.level", b"lvl")
_JSON_LEVEL_RE = re.compile(rb'"(?:level|levelname|severity|log\.level|lvl)"\s*:\s*"([A-Za-z]+)"')
_MESSAGE_KEYS = ("message", "msg", "event", "log")
_TIME_KEYS = ("timestamp", "time", "@timestamp", "ts", "asctime", "t")
EXTRA_TEXT_KEYS = ("exc_info", "exception", "stack_trace", "stack", "traceback")


@dataclass(frozen=True)
class Format:
    """
    One header format.

    Attributes:
        name: Its name (docs/logs.md lists them).
        rx: The anchored header regex.
        ts_style: How to read the ``ts`` group (a key of ``_time.TS_PARSERS``), or None.
        levels: How the level is written: ``word``, ``letter``, ``redis``, ``pg``, ``pri``
            (syslog priority), ``search`` (the first level word among the next few header
            tokens), ``json`` or ``none``.
        firsts: Bytes a line of this format can start with (empty: any).
    """

    name: str
    rx: re.Pattern[bytes]
    ts_style: str | None
    levels: str
    firsts: bytes = b""


def _f(name: str, rx: bytes, ts: str | None, levels: str, firsts: bytes = b"") -> Format:
    return Format(name, re.compile(rx), ts, levels, firsts)


_DIG = b"0123456789"
_UP = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ISO = rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?: ?Z|[+-]\d\d:?\d\d)?"
_SYSLOG = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d"
FORMATS: tuple[Format, ...] = (
    _f("json", rb"\s*\{", None, "json", b"{ \t"),
    _f("hdfs", rb"(?P<ts>\d{6} \d{6}) \d+ (?P<lvl>[A-Z]{3,8}) ", "hdfs", "word", _DIG),
    _f(
        "spark", rb"(?P<ts>\d\d/\d\d/\d\d \d\d:\d\d:\d\d) (?P<lvl>[A-Z]{3,8}) ", "ymd", "word", _DIG
    ),
    _f(
        "bgl",
        rb"\S+ \d{9,10} \d{4}\.\d\d\.\d\d \S+ (?P<ts>\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+) "
        rb"\S+ \S+ \S+ (?P<lvl>[A-Z]+) ",
        "ymd",
        "word",
    ),
    _f(
        "thunderbird",
        rb"\S+ (?P<ts>\d{9,10}) \d{4}\.\d\d\.\d\d \S+ [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d ",
        "epoch",
        "none",
    ),
    _f("hpc", rb"\d+ \S+ \S+ \S+ (?P<ts>\d{9,10}) -?\d+ ", "epoch", "none", _DIG),
    _f(
        "openstack",
        rb"\S+ (?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \d+ (?P<lvl>[A-Z]{3,8}) ",
        "iso",
        "word",
    ),
    _f(
        "android",
        rb"(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d\.\d+) +\d+ +\d+ (?P<lvl>[VDIWEFA]) ",
        "md",
        "letter",
        _DIG,
    ),
    _f("healthapp", rb"(?P<ts>\d{8}-\d{1,2}:\d{1,2}:\d{1,2}:\d{1,3})\|", "compact", "none", _DIG),
    _f(
        "apache_error",
        rb"\[(?P<ts>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4})\] "
        rb"\[(?:[\w-]+:)?(?P<lvl>[a-z]+\d?)\] ",
        "apache",
        "word",
        b"[",
    ),
    _f(
        "nginx_error",
        rb"(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<lvl>[a-z]+)\] ",
        "ymd",
        "word",
        _DIG,
    ),
    _f(
        "access",
        rb"\S+ \S+ \S+ \[(?P<ts>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d(?: [+-]\d{4})?)\] \"",
        "dmy",
        "none",
    ),
    _f("proxifier", rb"\[(?P<ts>\d\d\.\d\d \d\d:\d\d:\d\d)\] ", "md", "none", b"["),
    _f(
        "redis",
        rb"\d+:[XCSM] (?P<ts>\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d\.\d+) (?P<lvl>[.*#-]) ",
        "dmy",
        "redis",
        _DIG,
    ),
    _f(
        "postgresql",
        rb"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?: [A-Z]{1,5}| [+-]\d\d(?::?\d\d)?)?"
        rb" \[\d+\] (?:\S+ )?(?P<lvl>[A-Z]+[1-5]?):  ",
        "iso",
        "pg",
        _DIG,
    ),
    _f("rfc5424", rb"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) ", "iso", "pri", b"<"),
    _f("rfc3164", rb"<(?P<pri>\d{1,3})>(?P<ts>" + _SYSLOG + rb") ", "syslog", "pri", b"<"),
    _f(
        "glog",
        rb"(?P<lvl>[IWEF])(?P<ts>\d{4} \d\d:\d\d:\d\d\.\d+) +\d+ \S+:\d+\] ",
        "glog",
        "letter",
        b"IWEF",
    ),
    _f("syslog", rb"(?P<ts>" + _SYSLOG + rb")(?= )", "syslog", "search", b"JFMASOND"),
    _f("iso", rb"\[?(?P<ts>" + _ISO + rb")\]?,?(?=[ \t]|$)", "iso", "search", _DIG + b"["),
    _f(
        "level_first",
        rb"\[?(?P<lvl>[A-Za-z]{3,11})\]?(?=[: \t]|$)",
        None,
        "word",
        _UP + b"abcdefghijklmnopqrstuvwxyz[",
    ),
)
_BY_NAME = {f.name: f for f in FORMATS}


@dataclass
class Parsed:
    """What a record's header says: its level (canonical), timestamp text and message start."""

    format: str
    level: str | None
    msg_start: int
    lvl_pos: int = -1
    lvl_len: int = 0
    ts_text: bytes | None = None
    ts_style: str | None = None
    message: str | None = None  # JSON: the message field; plain lines are sliced at msg_start

    def timestamp(self, now: datetime | None = None) -> datetime | None:
        """The record's time, or None."""
        if self.ts_text is None or self.ts_style is None:
            return None
        text = self.ts_text.decode("ascii", "replace")
        if self.ts_style == "json":
            return parse_timestamp(json.loads(text), now=now) if text else None
        return parse_ts(self.ts_style, text, now)


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def json_fields(obj: dict[str, Any]) -> tuple[str | None, str, Any]:
    """A JSON record's level word, message and raw timestamp value."""
    level = next(
        (
            obj[k]
            for k in ("level", "levelname", "severity", "log.level", "lvl")
            if isinstance(obj.get(k), str)
        ),
        None,
    )
    message = next((obj[k] for k in _MESSAGE_KEYS if k in obj), "")
    raw_ts = next((obj[k] for k in _TIME_KEYS if k in obj), None)
    return level, _json_text(message), raw_ts


def json_extra(line: bytes) -> str:
    """The traceback-like fields of a JSON record (``exc_info``, ``stack_trace``...), joined."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(obj, dict):
        return ""
    return "\n".join(_json_text(obj[k]) for k in EXTRA_TEXT_KEYS if obj.get(k))


def _parse_json(line: bytes) -> Parsed | None:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    word, message, raw_ts = json_fields(obj)
    level = None
    pos = -1
    if word:
        up = word.strip().upper()
        level = LEVEL_WORDS.get(up) or (LETTER_LEVELS.get(up) if len(up) == 1 else None) or up
        m = _JSON_LEVEL_RE.search(line)
        if m is not None and m[1].decode() == word:
            pos = m.start(1)
    ts = json.dumps(raw_ts).encode() if isinstance(raw_ts, str | int | float) else None
    return Parsed(
        "json",
        level,
        len(line),
        pos,
        len(word or ""),
        ts,
        "json" if ts else None,
        message.replace("\n", " "),
    )


def _search(line: bytes, start: int) -> tuple[str | None, int, int, int]:
    """The first level word among the next few tokens: (level, message start, pos, length)."""
    pos = start
    n = len(line)
    seen = 0
    while seen < _SEARCH_TOKENS and pos < n:
        while pos < n and line[pos] in b" \t":
            pos += 1
        end = pos
        while end < n and line[end] not in b" \t":
            end += 1
        if end == pos:
            break
        token = line[pos:end]
        if token not in _SEPARATORS:
            level = level_word(token.decode("latin-1"), first=seen == 0)
            if level is not None:
                word_at = pos + len(token) - len(token.lstrip(b"[<(:"))
                word_len = len(token.strip(b"[]<>():,|"))
                return level, end, word_at, word_len
            seen += 1
        pos = end
    return None, start, -1, 0


def _level(
    fmt: Format, m: re.Match[bytes], line: bytes, names: _Names
) -> tuple[str | None, int, int, int] | None:
    """
    (level, message start, level position, level length); None: not a record after all.
    ``names``: the format's group names in ``m``.
    """
    if fmt.levels == "none":
        return None, m.end(), -1, 0
    if fmt.levels == "search":
        return _search(line, m.end())
    if fmt.levels == "pri":
        pri = int(m[names["pri"]])
        return (SYSLOG_SEVERITY[pri & 7] if pri < 192 else None), m.end(), -1, 0
    word = m[names["lvl"]].decode("latin-1")
    at, length = m.start(names["lvl"]), len(word)
    if fmt.levels == "letter":
        return LETTER_LEVELS.get(word), m.end(), at, length
    if fmt.levels == "redis":
        return REDIS_LEVELS.get(word), m.end(), at, length
    if fmt.levels == "pg":
        if word in _PG_CONTINUATION:
            return None
        level = (
            PG_LEVELS.get(word)
            or LEVEL_WORDS.get(word)
            or ("DEBUG" if word.startswith("DEBUG") else None)
        )
        return level, m.end(), at, length
    if fmt.name == "level_first":
        level = level_word(line[: m.end()].decode("latin-1").strip(), first=True)
        if level is None:
            return None
        return level, m.end(), at, length
    up = word.upper()
    level = LEVEL_WORDS.get(up)
    if level is None and up.startswith("TRACE") and up[5:].isdigit():
        level = "DEBUG"
    return level, m.end(), at, length


_NAMED = re.compile(rb"\(\?P<(\w+)>")


#: A format's group names (``ts``, ``lvl``, ``pri``) as the pattern it is matched with has them.
_Names = dict[str, str]
#: One run of a line's candidate formats: its pattern (None: JSON, read as such), its formats, for
#: a run of several the number of each format's group in the alternation with its names, and for
#: a run of one that format's own names.
_Segment = tuple[
    re.Pattern[bytes] | None,
    tuple[Format, ...],
    dict[int, tuple[Format, _Names]] | None,
    _Names,
]


class _Candidates(tuple):  # type: ignore[type-arg]
    """
    The formats a line starting with some byte may have, in order, and the same as segments:
    runs of regex formats joined into one alternation (one ``match`` call finds the first that
    fits, with its groups, where a loop would call ``match`` per format), and the JSON format on
    its own.
    """

    segments: tuple[_Segment, ...]


def _own_names(f: Format) -> _Names:
    return {name: name for name in f.rx.groupindex}


def _segments(formats: tuple[Format, ...]) -> tuple[_Segment, ...]:
    out: list[_Segment] = []
    run: list[Format] = []

    def close() -> None:
        if len(run) == 1:
            out.append((run[0].rx, (run[0],), None, _own_names(run[0])))
        elif run:
            # Each format's pattern as one named group, its own groups renamed apart: the group
            # that matched (``lastindex``: the outer one closes last) is the format, and its
            # groups are read from the same match. Alternation keeps the formats' order.
            parts: list[bytes] = []
            names: list[_Names] = []
            for k, f in enumerate(run):
                mine: _Names = {}

                def rename(m: re.Match[bytes], k: int = k, mine: _Names = mine) -> bytes:
                    name = m[1].decode("ascii")
                    mine[name] = f"{name}__{k}"
                    return b"(?P<" + mine[name].encode("ascii") + b">"

                parts.append(b"(?P<f__%d>" % k + _NAMED.sub(rename, f.rx.pattern) + b")")
                names.append(mine)
            joined = re.compile(b"|".join(parts))
            index = {joined.groupindex[f"f__{k}"]: (f, names[k]) for k, f in enumerate(run)}
            out.append((joined, tuple(run), index, {}))
        run.clear()

    for f in formats:
        if f.levels == "json":
            close()
            out.append((None, (f,), None, {}))
        else:
            run.append(f)
    close()
    return tuple(out)


def _candidates(order: tuple[Format, ...]) -> list[tuple[Format, ...]]:
    table: list[tuple[Format, ...]] = []
    made: dict[tuple[Format, ...], _Candidates] = {}
    for b in range(256):
        formats = tuple(f for f in order if not f.firsts or b in f.firsts)
        cands = made.get(formats)
        if cands is None:
            cands = made[formats] = _Candidates(formats)
            cands.segments = _segments(formats)
        table.append(cands)
    return table


_DEFAULT_TABLE = _candidates(FORMATS)


def _fits(
    line: bytes, table: list[tuple[Format, ...]] | None
) -> Iterator[tuple[Format, re.Match[bytes] | None, _Names]]:
    """
    In the table's order for the line's first byte: the JSON format where it comes (with no
    match: the caller reads the line as JSON), and each regex format that matches the line, with
    its match and the names its groups have in that match (one alternation per run of regex
    formats finds the first of the run that fits).
    """
    cands = (table or _DEFAULT_TABLE)[line[0]]
    segments = getattr(cands, "segments", None)
    if segments is None:  # a table made elsewhere: the formats one by one
        segments = tuple(
            (None if f.levels == "json" else f.rx, (f,), None, _own_names(f)) for f in cands
        )
    for rx, formats, index, own in segments:
        if rx is None:
            yield formats[0], None, {}
            continue
        m = rx.match(line)
        if m is None:
            continue
        if index is None:
            yield formats[0], m, own
        else:
            fmt, names = index[m.lastindex or 0]
            yield fmt, m, names
        # A run's later formats never matter: the caller stops at the first that fits.


def parse_line(line: bytes, table: list[tuple[Format, ...]] | None = None) -> Parsed | None:
    """
    Read one line's header, trying the formats in order; None when it fits none (a continuation).

    Args:
        line: One line, without its newline.
        table: Per first byte, the formats to try in order (see :func:`format_table`).
    """
    if not line:
        return None
    for fmt, m, names in _fits(line, table):
        if m is None:
            if line.lstrip()[:1] == b"{":
                parsed = _parse_json(line)
                if parsed is not None:
                    return parsed
            continue
        got = _level(fmt, m, line, names)
        if got is None:
            return None
        level, start, at, length = got
        ts = m[names["ts"]] if "ts" in names else None
        if fmt.name == "level_first":
            rest = line[start:].lstrip(b" :")
            tm = re.match(rb"\[?(" + _ISO + rb")", rest)
            if tm:
                ts, fmt_ts = tm[1], "iso"
                return Parsed(fmt.name, level, start, at, length, ts, fmt_ts)
            return Parsed(fmt.name, level, start, at, length)
        return Parsed(fmt.name, level, start, at, length, ts, fmt.ts_style if ts else None)
    return None


def parse_time(
    line: bytes, table: list[tuple[Format, ...]] | None = None, now: datetime | None = None
) -> datetime | None:
    """
    ``parse_line(line, table).timestamp(now)`` without reading the level where the format does not
    need it to accept the line (the level search costs more than the time): the first and last
    record of every template are timed, so this runs per template and file.
    """
    if not line:
        return None
    if line.lstrip()[:1] == b"{":
        p = parse_line(line, table)
        return p.timestamp(now) if p is not None else None
    for fmt, m, names in _fits(line, table):
        if m is None:  # JSON: not this line
            continue
        if fmt.levels == "pg" or fmt.name == "level_first":  # the level decides: read it all
            p = parse_line(line, table)
            return p.timestamp(now) if p is not None else None
        ts = m[names["ts"]] if "ts" in names else None
        if not ts or fmt.ts_style is None:
            return None
        return parse_ts(fmt.ts_style, ts.decode("ascii", "replace"), now)
    return None


@functools.lru_cache(maxsize=64)
def format_table(first: str | None) -> list[tuple[Format, ...]]:
    """The per-first-byte format order with the file's own format ``first`` tried first."""
    if first is None or first not in _BY_NAME:
        return _DEFAULT_TABLE
    own = _BY_NAME[first]
    return _candidates((own, *(f for f in FORMATS if f is not own)))


@dataclass
class Sniffed:
    """
    What the start of a file says about its records.

    Attributes:
        format: The dominant header format, or None for a file of bare lines (every line that
            does not start with a blank is then a record).
        prefix: ``(position, byte)`` pairs every record of that format starts with, where
            ``byte`` 0 stands for "any digit": the fast path's record test. Empty: no fast path.
        offsets: Byte offsets where that format's level word sits (at most eight).
        cases: Which spellings the level words had there (``upper``, ``title``, ``lower``).
        has_levels: Whether the format writes levels at all.
        has_timestamps: Whether its records carry timestamps.
    """

    format: str | None
    prefix: tuple[tuple[int, int], ...] = ()
    offsets: tuple[int, ...] = ()
    cases: frozenset[str] = frozenset({"upper"})
    has_levels: bool = True
    has_timestamps: bool = False
    table: list[tuple[Format, ...]] = field(default_factory=lambda: _DEFAULT_TABLE, repr=False)


_MAX_OFFSETS = 16
_PREFIX_MAX = 32


def _case(word: bytes) -> str:
    return "upper" if word.isupper() else "lower" if word.islower() else "title"


_SNIFF_FIRST = 100  # lines parsed before deciding whether the rest of the sample is needed


def _sample_lines(sample: bytes, max_split: int) -> Iterator[bytes]:
    """
    The lines of ``sample`` (its first ``max_split`` newline-separated pieces, carriage returns
    stripped) that are neither blank nor hold a NUL byte, split only as far as they are read.
    """
    pos = 0
    for _ in range(max_split):
        nl = sample.find(b"\n", pos)
        line = (sample[pos:] if nl < 0 else sample[pos:nl]).rstrip(b"\r")
        if line.strip() and b"\0" not in line:
            yield line
        if nl < 0:
            return
        pos = nl + 1


def sniff(sample: bytes, max_lines: int = 400) -> Sniffed:
    """
    Learn a file's dominant format from its first lines (the rest of the file is read line by
    line whatever this says; this only orders the formats and enables the fast path).

    Args:
        sample: The first bytes of the file (whole lines).
        max_lines: How many non-blank lines to look at.
    """
    lines = itertools.islice(_sample_lines(sample, max_lines * 2), max_lines)
    more = (ln for ln in lines if ln[:1] not in b" \t")
    heads = list(itertools.islice(more, _SNIFF_FIRST + 1))
    # Parsing is most of the cost of a small file: when the first lines all parse, in one
    # format, the rest of the sample is neither split nor read (a line of another shape later is
    # still read, by the parser; the kernel learns level offsets it did not see here).
    parsed = [(ln, parse_line(ln)) for ln in heads[:_SNIFF_FIRST]]
    if len(heads) > _SNIFF_FIRST and len({p.format if p else None for _, p in parsed}) != 1:
        heads += more
        parsed += [(ln, parse_line(ln)) for ln in heads[_SNIFF_FIRST:]]
    by_format: dict[str, list[tuple[bytes, Parsed]]] = {}
    for ln, p in parsed:
        if p is not None:
            by_format.setdefault(p.format, []).append((ln, p))
    if not by_format or sum(len(v) for v in by_format.values()) * 10 < len(heads):
        return Sniffed(None)
    name = max(by_format, key=lambda k: (len(by_format[k]), k))
    records = by_format[name]
    fmt = _BY_NAME[name]
    offsets = _widen({p.lvl_pos for _, p in records if p.level is not None and p.lvl_pos >= 0})
    cases = frozenset(
        _case(ln[p.lvl_pos : p.lvl_pos + p.lvl_len]) for ln, p in records if p.lvl_pos >= 0
    )
    if fmt.levels == "search":
        # The parser takes a lowercase level word only as a line's first token (``[error]``),
        # elsewhere it is prose, while the fast path would take it at any known offset: the
        # fast path reads upper and title case only, and lowercase levels go to the parser
        # (whatever the sample held, so that the answer never depends on the chunk size).
        cases -= {"lower"}
    sniffed = Sniffed(
        name,
        prefix=_prefix([ln for ln, _ in records]) or _majority_prefix([ln for ln, _ in records]),
        offsets=tuple(sorted(offsets)) if len(offsets) <= _MAX_OFFSETS else (),
        cases=cases or frozenset({"upper"}),
        has_levels=fmt.levels != "none",
        has_timestamps=any(p.ts_text for _, p in records),
        table=format_table(name),
    )
    if fmt.levels not in ("none", "word", "search", "json") or (
        not sniffed.offsets and sniffed.has_levels
    ):
        sniffed.prefix = ()
    return sniffed


def _widen(offsets: set[int]) -> set[int]:
    """
    Consecutive offsets come from a field of varying width before the level (HDFS's thread id:
    ``148``, ``35``, ``10033``): the sample may not hold its widest values, so such a run also
    takes the offset before it and the two after it. An offset only lets the kernel look there
    for a level word (after a delimiter); the first offset with one wins, so a line whose field
    is narrower still finds its level where it was.
    """
    firsts = sorted(o - 1 for o in offsets if o - 1 in offsets and o - 2 not in offsets)
    out = set(offsets)
    for first in firsts:  # the first offset of each run of two or more
        end = first
        while end + 1 in offsets:
            end += 1
        for o in (first - 1, end + 1, end + 2):
            if o > 0 and len(out) < _MAX_OFFSETS:
                out.add(o)
    return out


def learn_shape(
    name: str, records: list[tuple[bytes, Parsed]], cases: frozenset[str] = frozenset()
) -> tuple[bytes, tuple[int, ...], bool, int] | None:
    """
    The kernel's shape for lines of format ``name`` met after the sniff (another format inside the
    file): ``(prefix, level offsets, has_levels, gap)`` as the sniff would give them, the prefix as
    the kernel takes it (a digit as 0, at most 16 bytes from the start) and ``gap`` the bytes from
    the level word to where the parser starts the message (so that the kernel's template keys are
    the parser's, -1 when the parser cuts it at no fixed distance: the kernel then counts those
    records and leaves the chosen ones to the parser); None when these lines have none (no
    shared prefix, a level the kernel cannot find). ``cases`` are the file's level spellings
    (the kernel tests all of them at a shape's offsets).
    """
    fmt = _BY_NAME[name]
    if fmt.levels not in ("none", "word", "search"):
        return None
    if fmt.levels == "search" and "lower" in cases:
        # The parser takes a lowercase level word only as a line's first token (``[error]``),
        # elsewhere it is prose; at a shape's offsets the kernel would take it anywhere. Such a
        # file's lines of this format stay with the parser.
        return None
    prefix = _prefix([ln for ln, _ in records])[:16]
    if not prefix or [p for p, _ in prefix] != list(range(len(prefix))):
        return None
    has_levels = fmt.levels != "none"
    offsets = _widen({p.lvl_pos for _, p in records if p.level is not None and p.lvl_pos >= 0})
    if has_levels and not 0 < len(offsets) <= _MAX_OFFSETS:
        return None
    gaps = {
        p.msg_start - p.lvl_pos - p.lvl_len
        for _, p in records
        if p.level is not None and p.lvl_pos >= 0 and p.message is None
    }
    gap = gaps.pop() if len(gaps) == 1 else -1
    if any(p.message is not None for _, p in records) or not 0 <= gap <= 64:
        gap = -1
    return bytes(v for _, v in prefix), tuple(sorted(offsets)), has_levels, gap


def _majority_prefix(lines: list[bytes]) -> tuple[tuple[int, int], ...]:
    """
    The prefix of the lines that share their first byte, when they are nine in ten or more: BGL's
    records start with ``-`` but for alerts (``KERNDTLB``, ``APPSEV``), which then go to the
    parser line by line while the others stay on the kernel's path.
    """
    if len(lines) < 20:
        return ()
    first = Counter(ln[:1] for ln in lines).most_common(1)[0][0]
    group = [ln for ln in lines if ln[:1] == first]
    return _prefix(group) if len(group) * 10 >= len(lines) * 9 else ()


def _prefix(lines: list[bytes]) -> tuple[tuple[int, int], ...]:
    """The leading byte classes all the lines share: a digit anywhere digits vary, else the byte."""
    if len(lines) < 2:
        return ()
    out: list[tuple[int, int]] = []
    # Column by column (zip stops at the shortest line): a set of each, built in C.
    for i, column in enumerate(itertools.islice(zip(*lines, strict=False), _PREFIX_MAX)):
        values = set(column)
        if min(values) >= 48 and max(values) <= 57:
            out.append((i, 0))
        elif len(values) == 1:
            out.append((i, column[0]))
        else:
            break
    digits = sum(1 for _, b in out if b == 0 or 48 <= b <= 57)
    return tuple(out) if len(out) >= 8 and digits >= 6 else ()
