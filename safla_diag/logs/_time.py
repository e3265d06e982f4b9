"""
Timestamps: the styles log headers use, and the ``since`` argument.

Every parser returns an aware datetime (naive times are local time) or None; none raises on bad
text. Styles without a year (syslog, Android, Proxifier, glog) take the year that puts the time at
most a day after ``now``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

__all__ = ["TS_PARSERS", "parse_since", "parse_timestamp", "parse_ts"]

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
# ISO shapes that ``datetime.fromisoformat`` reads exactly as ``_ISO_RE`` and ``_from_iso_match``
# do: a whole date and time in ASCII digits, milli- or microseconds, and no zone, Z or +hh:mm.
_ISO_FAST = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,](?:[0-9]{3}|[0-9]{6}))?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?\Z"
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


# The local zone of each hour met, as ``astimezone()`` gives it: asking the C library costs ten
# times more than attaching a known zone, and a report times every row it shows. Cleared when the
# process's zone changes (``time.tzset`` makes a new ``time.tzname``) and when it gets large.
_HOUR_ZONES: dict[tuple[int, int, int, int], tzinfo] = {}
_ZONE_OF: list[object] = [None]
_MAX_HOURS = 4096
_HOUR_END = timedelta(minutes=59, seconds=59, microseconds=999999)


def _hour_zone(dt: datetime) -> tzinfo | None:
    """The local zone of dt's whole hour, or None when the offset changes in it (or it is a gap)."""
    if _ZONE_OF[0] is not time.tzname:
        _HOUR_ZONES.clear()
        _ZONE_OF[0] = time.tzname
    key = (dt.year, dt.month, dt.day, dt.hour)
    zone = _HOUR_ZONES.get(key)
    if zone is None:
        start = dt.replace(minute=0, second=0, microsecond=0, fold=0)
        try:
            a, b = start.astimezone(), (start + _HOUR_END).astimezone()
        except (OverflowError, ValueError, OSError):
            return None
        # The same offset and name at both ends, and wall clocks kept (not in a gap): all of
        # the hour has them.
        if (
            a.utcoffset() != b.utcoffset()
            or a.tzname() != b.tzname()
            or a.replace(tzinfo=None) != start
            or b.replace(tzinfo=None) != start + _HOUR_END
            or a.tzinfo is None
        ):
            return None
        if len(_HOUR_ZONES) >= _MAX_HOURS:
            _HOUR_ZONES.clear()
        zone = _HOUR_ZONES[key] = a.tzinfo
    return zone


def _local(dt: datetime) -> datetime:
    """Attach the local time zone to a naive datetime (as ``date`` and ``grep`` users expect)."""
    if dt.tzinfo is not None:
        return dt
    if not dt.fold:
        zone = _hour_zone(dt)
        if zone is not None:
            return dt.replace(tzinfo=zone)
    return dt.astimezone()


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


def _yearless(
    month: int, day: int, rest: tuple[int, int, int, int], now: datetime | None
) -> datetime:
    ref = now or datetime.now().astimezone()
    hh, mm, ss, us = rest
    dt = _local(datetime(ref.year, month, day, hh, mm, ss, us))
    if dt - ref > timedelta(days=1):
        dt = _local(datetime(ref.year - 1, month, day, hh, mm, ss, us))
    return dt


def _micro(frac: str | None) -> int:
    return int((frac + "000000")[:6]) if frac else 0


def _ts_hdfs(m: re.Match[str], now: datetime | None) -> datetime:
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    return _local(datetime(2000 + y, mo, d, int(m[4]), int(m[5]), int(m[6])))


def _ts_ymd(m: re.Match[str], now: datetime | None) -> datetime:
    y = int(m[1])
    y = y + 2000 if y < 100 else y
    return _local(datetime(y, int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), _micro(m[7])))


def _ts_mdy_less(m: re.Match[str], now: datetime | None) -> datetime:
    return _yearless(int(m[1]), int(m[2]), (int(m[3]), int(m[4]), int(m[5]), _micro(m[6])), now)


def _ts_apache(m: re.Match[str], now: datetime | None) -> datetime:
    return _local(
        datetime(int(m[7]), _MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4]), int(m[5]), _micro(m[6]))
    )


def _ts_dmy(m: re.Match[str], now: datetime | None) -> datetime:
    dt = datetime(
        int(m[3]), _MONTHS[m[2]], int(m[1]), int(m[4]), int(m[5]), int(m[6]), _micro(m[7])
    )
    return _local(dt.replace(tzinfo=_tz(m[8]))) if m.lastindex and m.lastindex >= 8 else _local(dt)


def _ts_epoch(m: re.Match[str], now: datetime | None) -> datetime:
    return datetime.fromtimestamp(int(m[1]), tz=UTC)


def _ts_iso(m: re.Match[str], now: datetime | None) -> datetime:
    return _from_iso_match(m)


def _ts_syslog(m: re.Match[str], now: datetime | None) -> datetime:
    return _from_syslog_match(m, now)


_D = r"(\d{1,2})"
_MON = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# Timestamp style -> (regex over the timestamp text, converter).
TS_PARSERS = {
    "iso": (_ISO_RE, _ts_iso),
    "syslog": (_SYSLOG_RE, _ts_syslog),
    "epoch": (re.compile(r"(\d{9,10})"), _ts_epoch),
    "hdfs": (re.compile(r"(\d\d)(\d\d)(\d\d) (\d\d)(\d\d)(\d\d)"), _ts_hdfs),
    "ymd": (
        re.compile(
            r"(\d{2,4})[/.-](\d\d)[/.-](\d\d)[ T-](\d\d)[:.](\d\d)[:.](\d\d)(?:[.,:](\d+))?"
        ),
        _ts_ymd,
    ),
    "compact": (
        re.compile(r"(\d{4})(\d\d)(\d\d)-(\d{1,2}):(\d{1,2}):(\d{1,2})(?::(\d+))?"),
        _ts_ymd,
    ),
    "md": (re.compile(_D + r"[-.]" + _D + r" (\d\d):(\d\d):(\d\d)(?:\.(\d+))?"), _ts_mdy_less),
    "glog": (re.compile(r"(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?"), _ts_mdy_less),
    "apache": (
        re.compile(
            r"\w{3} " + _MON + r" {1,2}" + _D + r" (\d\d):(\d\d):(\d\d)(?:\.(\d+))? (\d{4})"
        ),
        _ts_apache,
    ),
    "dmy": (
        re.compile(
            _D + r"[/ ]" + _MON + r"[/ ](\d{4})[: ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
            r"(?: ([+-]\d{4}))?"
        ),
        _ts_dmy,
    ),
}


def parse_ts(style: str, text: str, now: datetime | None = None) -> datetime | None:
    """
    Parse a header's timestamp text in a known style, or None when it is not valid.

    Args:
        style: A key of ``TS_PARSERS``.
        text: The timestamp as the header has it.
        now: Reference time for styles without a year.
    """
    if style == "iso" and _ISO_FAST.match(text):
        # The common shapes, read by the C parser (the regex below gives the same answers); what
        # it refuses goes the regex's way, which says the last word.
        try:
            return _local(datetime.fromisoformat(text))
        except (ValueError, OverflowError, OSError):
            pass
    rx, conv = TS_PARSERS[style]
    m = rx.match(text)
    if m is None:
        return None
    try:
        return conv(m, now)
    except (ValueError, OverflowError, OSError):
        return None
