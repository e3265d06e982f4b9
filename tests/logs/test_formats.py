"""Timestamp, since and level parsing, and format sniffing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag.logs._formats import (
    find_level,
    normalise_level,
    parse_since,
    parse_timestamp,
    sniff,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

aware = st.datetimes(
    min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T10:00:00Z", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        ("2026-11-28T10:00:00.250+01:00 rest", datetime(2026, 11, 28, 9, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-28 10:00:00,123 ERROR x", datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC)),
        ("[2026-11-28 10:00:00] INFO", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        (
            "2026-11-28T10:00:00.123456789+0000",
            datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC),
        ),
        ("Nov 28 10:00:00 host app: x", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        ("Nov  3 10:00:00 host", datetime(2026, 11, 3, 10, tzinfo=UTC)),
        ("Dec 31 23:00:00 host", datetime(2025, 12, 31, 23, tzinfo=UTC)),  # last year's December
        (1_764_324_000, datetime(2025, 11, 28, 10, tzinfo=UTC)),
        (1_764_324_000_000, datetime(2025, 11, 28, 10, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_formats(text: str | int, expected: datetime) -> None:
    """ISO 8601, logging's default, syslog (year inferred) and epoch numbers are understood."""
    assert parse_timestamp(text, now=NOW) == expected


@pytest.mark.parametrize(
    "text", ["", "hello", "2026-13-01 10:00:00", "2026-02-30T00:00:00", "Foo 28 10:00:00", True]
)
def test_parse_timestamp_rejects_non_timestamps(text: str) -> None:
    """Text that does not start with a valid timestamp gives None, not an error."""
    assert parse_timestamp(text, now=NOW) is None


@given(aware)
def test_timestamp_round_trip(dt: datetime) -> None:
    """Every timestamp style we write parses back to the same instant (at its precision)."""
    ms = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    assert parse_timestamp(f"{dt:%Y-%m-%d %H:%M:%S},{dt.microsecond // 1000:03d} INFO") == ms
    assert parse_timestamp(dt.isoformat()) == dt
    assert parse_timestamp(dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == dt
    off = dt.astimezone(timezone(timedelta(hours=-5, minutes=-30)))
    assert parse_timestamp(off.isoformat()) == dt


@given(st.text(max_size=60))
def test_parse_timestamp_never_raises(text: str) -> None:
    """Arbitrary text gives a datetime or None, never an exception."""
    result = parse_timestamp(text, now=NOW)
    assert result is None or result.tzinfo is not None


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("1h", NOW - timedelta(hours=1)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2d", NOW - timedelta(days=2)),
        (" 1h30m ", NOW - timedelta(minutes=90)),
        ("90s", NOW - timedelta(seconds=90)),
        ("1w", NOW - timedelta(weeks=1)),
        (timedelta(minutes=5), NOW - timedelta(minutes=5)),
        (60, NOW - timedelta(minutes=1)),
        ("2026-11-28T10:00Z", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        ("2026-11-28 10:00:00+01:00", datetime(2026, 11, 28, 9, tzinfo=UTC)),
        (datetime(2026, 11, 28, 10, tzinfo=UTC), datetime(2026, 11, 28, 10, tzinfo=UTC)),
        (None, None),
    ],
)
def test_parse_since(since: object, expected: datetime | None) -> None:
    """Relative durations count back from now; absolute times are taken as they are."""
    assert parse_since(since, now=NOW) == expected  # type: ignore[arg-type]


def test_parse_since_naive_is_local_time() -> None:
    """A naive datetime or date means local time, as `date` would print it."""
    naive = datetime(2026, 11, 28, 10, 0)
    assert parse_since(naive) == naive.astimezone()
    assert parse_since(date(2026, 11, 28)) == datetime(2026, 11, 28).astimezone()
    assert parse_since("2026-11-28") == datetime(2026, 11, 28).astimezone()


@pytest.mark.parametrize(
    "since",
    ["", "yesterday", "1 hour", "-1h", "h", "2026-11-28T25:00", timedelta(-1), -5, object()],
)
def test_parse_since_rejects_garbage(since: object) -> None:
    """What cannot be understood raises ValueError naming the value."""
    with pytest.raises(ValueError):
        parse_since(since, now=NOW)  # type: ignore[arg-type]


@given(st.integers(0, 10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_relative_since(n: int, unit: str) -> None:
    """N units before now, for every unit."""
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_since(f"{n}{unit}", now=NOW) == NOW - timedelta(seconds=n * seconds)


@given(st.text(max_size=40))
def test_parse_since_only_raises_value_error(text: str) -> None:
    """Any string gives a time or a ValueError."""
    try:
        parse_since(text, now=NOW)
    except ValueError:
        pass


def test_levels() -> None:
    """Level names are upper-cased; WARN and FATAL are the logging module's WARNING and CRITICAL."""
    assert normalise_level("warn") == "WARNING"
    assert normalise_level("Fatal") == "CRITICAL"
    assert normalise_level("error") == "ERROR"
    m = find_level("2026-11-28 10:00:00 INFO app: no ERROR here", 19)
    assert m is not None
    assert m[1] == "INFO"
    assert find_level("x.error_handler: ok") is None


def test_sniff_logging_default_is_fixed_offset() -> None:
    """logging's default format puts the level at byte 24 of every line."""
    sample = b"".join(
        f"2026-11-28 10:00:0{i},123 {lv} app: hi\n".encode()
        for i, lv in enumerate(["INFO", "ERROR", "WARNING", "DEBUG"])
    )
    fmt = sniff(sample)
    assert not isinstance(fmt, str)
    assert fmt.kind == "plain"
    assert fmt.level_offset == 24
    assert fmt.right == b" "
    assert fmt.has_timestamps


def test_sniff_variable_offset_and_json() -> None:
    """A logger name before the level moves it: no fixed offset. JSON lines are recognised."""
    plain = b"2026-11-28 10:00:00,1 - a - INFO - x\n2026-11-28 10:00:00,1 - abc.def - ERROR - y\n"
    fmt = sniff(plain)
    assert not isinstance(fmt, str)
    assert fmt.level_offset is None
    assert fmt.level_offsets == (28, 34)
    assert b" ERROR " in fmt.needles["ERROR"]
    many = b"".join(
        f"2026-11-28 10:00:00,1 - {'x' * i} - INFO - x\n".encode() for i in range(1, 12)
    )
    fmt = sniff(many)
    assert not isinstance(fmt, str)
    assert fmt.level_offsets == ()
    js = b'{"time": "2026-11-28T10:00:00Z", "level": "error", "msg": "x"}\n'
    jfmt = sniff(js * 3)
    assert not isinstance(jfmt, str)
    assert jfmt.kind == "json"
    assert b'"level": "error"' in jfmt.needles["ERROR"]


def test_sniff_binary() -> None:
    """NUL-heavy or control-heavy data is reported as binary."""
    assert sniff(b"\x00" * 1000) == "binary data (NUL bytes)"
    assert isinstance(sniff(bytes(range(1, 32)) * 100), str)
