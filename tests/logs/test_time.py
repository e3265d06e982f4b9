"""
The fast paths of timestamp parsing give exactly what the general ones give.

``parse_ts("iso", ...)`` reads common shapes with ``datetime.fromisoformat`` and naive times get
their local zone from a per-hour memory; both are checked against the regex parser and against
``astimezone()`` itself, in zones with daylight saving time, half-hour shifts and gaps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from safla_diag.logs import _time
from safla_diag.logs._time import _ISO_RE, _from_iso_match, _local, parse_ts

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # half an hour of daylight saving time
    "Asia/Kathmandu",  # +05:45
    "America/Santiago",  # its change happens at midnight
]


def _use(name: str) -> None:
    if not Path("/usr/share/zoneinfo", name).exists() and name != "UTC":
        pytest.skip(f"no zone data for {name} on this machine")
    os.environ["TZ"] = name
    time.tzset()


@contextmanager
def _restored_zone() -> Iterator[None]:
    old = os.environ.get("TZ")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def zone() -> Iterator[object]:
    """Set the process's local zone for a test (TZ and tzset), restoring it afterwards."""
    with _restored_zone():
        yield _use


def _slow(text: str) -> datetime | None:
    m = _ISO_RE.match(text)
    if m is None:
        return None
    try:
        return _from_iso_match(m)
    except (ValueError, OverflowError, OSError):
        return None


def _same(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a, a.utcoffset(), a.tzname(), a.isoformat()) == (
        b,
        b.utcoffset(),
        b.tzname(),
        b.isoformat(),
    )


@pytest.mark.parametrize("name", ZONES)
def test_local_matches_astimezone_all_year_round(zone: object, name: str) -> None:
    zone(name)  # type: ignore[operator]
    t = datetime(2026, 1, 1)
    end = datetime(2027, 1, 1)
    wrong = []
    while t < end:
        for dt in (t, t.replace(second=59, microsecond=999_999)):
            if not _same(_local(dt), dt.astimezone()):
                wrong.append(dt)
        t += timedelta(minutes=23)  # every minute of the hour in turn; no gap is shorter
    assert wrong == []


def test_the_memory_follows_a_change_of_zone(zone: object) -> None:
    dt = datetime(2026, 7, 1, 12, 30)
    zone("UTC")  # type: ignore[operator]
    assert _local(dt).utcoffset() == timedelta(0)
    zone("Europe/Berlin")  # type: ignore[operator]
    assert _local(dt).utcoffset() == timedelta(hours=2)
    assert _same(_local(dt), dt.astimezone())


def test_the_memory_stays_bounded() -> None:
    t = datetime(2000, 1, 1)
    for h in range(_time._MAX_HOURS + 100):
        _local(t + timedelta(hours=h))
    assert len(_time._HOUR_ZONES) <= _time._MAX_HOURS


def test_a_fold_or_a_gap_takes_the_general_path(zone: object) -> None:
    zone("Europe/Berlin")  # type: ignore[operator]
    gap = datetime(2026, 3, 29, 2, 30)  # does not exist: astimezone moves it
    assert _same(_local(gap), gap.astimezone())
    again = datetime(2026, 10, 25, 2, 30, fold=1)  # the second 02:30
    assert _same(_local(again), again.astimezone())


_DIGITS = st.integers(0, 99).map(lambda n: f"{n:02d}")
_TEXT = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, z: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{z}",
    st.integers(0, 9999),
    _DIGITS,
    _DIGITS,
    st.sampled_from(["T", " ", "_"]),
    _DIGITS,
    _DIGITS,
    _DIGITS,
    st.sampled_from(["", ".5", ",123", ".123456", ".123456789", ",000", ".1234"]),
    st.sampled_from(["", "Z", "+01:00", "-00:00", "+23:59", "+24:00", "-05:30", "+0100", "z"]),
)


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin"])
@given(text=_TEXT)
@example(text="2026-11-28 24:00:00")
@example(text="2026-02-29 00:00:00")
@example(text="2024-02-29 23:59:59,999")
@example(text="2026-11-28 23:59:60")
@example(text="0000-01-01 00:00:00")
@example(text="0001-01-01 00:00:00")
@example(text="9999-12-31 23:59:59.999999")
@example(text="2026-03-29 02:30:00")
@example(text="2026-11-28T00:00:00+24:00")
def test_parse_ts_iso_matches_the_regex_parser(name: str, text: str) -> None:
    with _restored_zone():
        _use(name)
        assert _same(parse_ts("iso", text), _slow(text))


@given(digits=st.text(alphabet="0123456789٠١٢٣٤٥٦٧٨٩", min_size=14, max_size=14))
def test_non_ascii_digits_read_as_the_regex_reads_them(digits: str) -> None:
    d = digits
    text = f"{d[:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}:{d[12:14]}"
    assert _same(parse_ts("iso", text), _slow(text))
