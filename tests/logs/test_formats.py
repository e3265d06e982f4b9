"""Timestamp, since and level parsing, and format sniffing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safla_diag.logs import _formats
from safla_diag.logs._formats import parse_line, sniff
from safla_diag.logs._levels import canonical, level_word
from safla_diag.logs._time import parse_since, parse_timestamp

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


@pytest.mark.parametrize(
    ("word", "level"),
    [
        ("warn", "WARNING"), ("W", "WARNING"), ("Warning", "WARNING"),
        ("ERR", "ERROR"), ("e", "ERROR"), ("error", "ERROR"),
        ("FATAL", "CRITICAL"), ("crit", "CRITICAL"), ("SEVERE", "CRITICAL"),
        ("EMERG", "CRITICAL"), ("alert", "CRITICAL"), ("Critical", "CRITICAL"),
        ("notice", "NOTICE"), ("I", "INFO"), ("Info", "INFO"),
        ("D", "DEBUG"), ("V", "DEBUG"), ("TRACE", "DEBUG"), ("debug", "DEBUG"),
        ("audit", "AUDIT"),
    ],
)  # fmt: skip
def test_level_synonyms(word: str, level: str) -> None:
    """Every spelling maps to its canonical name; an unknown name is kept, upper-cased."""
    assert canonical(word) == level


def test_level_words_in_headers() -> None:
    """Upper and Title case anywhere in a header; lower case only bracketed or first."""
    assert level_word("[error]") == "ERROR"
    assert level_word("ERROR:") == "ERROR"
    assert level_word("error") is None
    assert level_word("error", first=True) == "ERROR"
    assert level_word("errors") is None


LINES = [
    # Loghub's sixteen systems
    ("HDFS", b"081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 done", "INFO"),
    ("Hadoop", b"2015-10-18 18:01:47,978 WARN [main] org.apache.hadoop.X: lost", "WARNING"),
    ("Spark", b"17/06/09 20:10:40 ERROR executor.Executor: boom", "ERROR"),
    ("Zookeeper", b"2015-07-29 17:41:44,747 - WARN  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:F@774] - x", "WARNING"),
    ("BGL", b"- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL FATAL data TLB error", "CRITICAL"),
    ("HPC", b"2286759 full partition status 1061219795 -1 running", None),
    ("Thunderbird", b"- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond[2916]: (root) CMD", None),
    ("Windows", b"2016-09-28 04:30:31, Error                 CSI    00000001 bad", "ERROR"),
    ("Linux", b"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown", None),
    ("Android", b"03-17 16:13:38.811  1702  2395 W WindowManager: slow", "WARNING"),
    ("HealthApp", b"20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579", None),
    ("Apache", b"[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok", "NOTICE"),
    ("Proxifier", b"[10.30 16:49:06] chrome.exe - proxy.cse.cuhk.edu.hk:5070 open through proxy", None),
    ("OpenSSH", b"Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186", None),
    ("OpenStack", b"nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO nova.wsgi [req-1] x", "INFO"),
    ("Mac", b"Jul  1 09:00:55 calvisitor-10-105-160-95 kernel[0]: IOThunderboltSwitch<0>(0x0)::x", None),
    # the neighbours of a SAFLA service
    ("logging", b"2026-11-28 10:00:00,123 - app.x - ERROR - boom", "ERROR"),
    ("logging level first", b"WARNING 2026-11-28 10:00:00,123 app boom", "WARNING"),
    ("basicConfig", b"ERROR:root:boom", "ERROR"),
    ("json", b'{"time": "2026-11-28T10:00:00Z", "level": "warn", "msg": "x"}', "WARNING"),
    ("nginx access", b'127.0.0.1 - - [28/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 612', None),
    ("nginx error", b"2026/11/28 10:00:00 [error] 123#0: *1 open() failed", "ERROR"),
    ("apache 2.4", b"[Sat Nov 28 10:00:00.123456 2026] [core:crit] [pid 1] x", "CRITICAL"),
    ("postgresql", b"2026-11-28 10:00:00.123 UTC [123] FATAL:  role does not exist", "CRITICAL"),
    ("postgresql log", b"2026-11-28 10:00:00.123 UTC [123] LOG:  checkpoint starting", "INFO"),
    ("redis", b"1:M 28 Nov 2026 10:00:00.123 # WARNING overcommit_memory is set to 0!", "WARNING"),
    ("redis notice", b"1:M 28 Nov 2026 10:00:00.123 * Ready to accept connections", "NOTICE"),
    ("rfc5424", b"<11>1 2026-11-28T10:00:00.003Z host su - ID47 - failed", "ERROR"),
    ("rfc3164", b"<13>Nov 28 10:00:00 host su: hello", "NOTICE"),
    ("journalctl short-iso", b"2026-11-28T10:00:00+0100 host safla[123]: ERROR boom", "ERROR"),
    ("glog", b"E1128 10:00:00.123456 1234 file.cc:12] boom", "ERROR"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "line", "level"), LINES, ids=[x[0] for x in LINES])
def test_every_format_reads_a_record(name: str, line: bytes, level: str | None) -> None:
    """Each format's header gives a record with its level; most give a timestamp too."""
    parsed = parse_line(line)
    assert parsed is not None, name
    assert parsed.level == level
    if name not in ("basicConfig",):
        assert parsed.timestamp(NOW) is not None, name


@pytest.mark.parametrize(
    "line",
    [b"}", b"Traceback (most recent call last):", b"ValueError: bad", b"  File 'x', line 1",
     b"2026-11-28 10:00:00.123 UTC [123] DETAIL:  Key (id)=(1) already exists."],
)  # fmt: skip
def test_continuations_are_not_records(line: bytes) -> None:
    """Traceback lines, a closing brace, PostgreSQL's DETAIL lines: not records of their own."""
    assert parse_line(line) is None


def test_sniff_finds_offsets_and_prefix() -> None:
    """logging's default format: a fixed prefix shape and one level offset; two loggers, two."""
    sample = b"".join(
        f"2026-11-28 10:00:0{i},123 {lv} app: hi\n".encode()
        for i, lv in enumerate(["INFO", "ERROR", "WARNING", "DEBUG"])
    )
    fmt = sniff(sample)
    assert fmt.format == "iso"
    assert fmt.offsets == (24,)
    assert len(fmt.prefix) >= 23
    assert fmt.has_timestamps
    plain = b"2026-11-28 10:00:00,1 - a - INFO - x\n2026-11-28 10:00:00,1 - abc.def - ERROR - y\n"
    assert sniff(plain).offsets == (28, 34)


def test_sniff_bare_lines() -> None:
    """Lines without any header: no format, so every line that is not indented is a record."""
    assert sniff(b"hello\nworld\n").format is None


@given(st.binary(max_size=300))
def test_parse_line_never_raises(data: bytes) -> None:
    """Arbitrary bytes give a record or None, never an exception."""
    for line in data.split(b"\n"):
        parsed = parse_line(line)
        if parsed is not None:
            parsed.timestamp(NOW)


def _sample_lines_reference(sample: bytes, n: int) -> list[bytes]:
    lines = [ln.rstrip(b"\r") for ln in sample.split(b"\n", n)[:n]]
    return [ln for ln in lines if ln.strip() and b"\0" not in ln]


_PIECES = st.sampled_from([b"a", b"\n", b"\r", b" ", b"\0", b"\t", b"xy", b"7"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=80).map(b"".join), st.integers(0, 30))
def test_the_sniffs_lazy_split_is_a_plain_split(sample: bytes, n: int) -> None:
    assert list(_formats._sample_lines(sample, n)) == _sample_lines_reference(sample, n)


def _prefix_reference(lines: list[bytes]) -> tuple[tuple[int, int], ...]:
    if len(lines) < 2:
        return ()
    out: list[tuple[int, int]] = []
    for i in range(min(min(len(ln) for ln in lines), _formats._PREFIX_MAX)):
        column = {ln[i] for ln in lines}
        if all(48 <= b <= 57 for b in column):
            out.append((i, 0))
        elif len(column) == 1:
            out.append((i, next(iter(column))))
        else:
            break
    digits = sum(1 for _, b in out if b == 0 or 48 <= b <= 57)
    return tuple(out) if len(out) >= 8 and digits >= 6 else ()


_HEADS = st.lists(
    st.lists(st.sampled_from([b"2", b"9", b"0", b"-", b" ", b":", b"a", b"Z"]), max_size=40).map(
        b"".join
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_HEADS, st.builds(lambda n: [b"2024-05-01 12:00:0%d,1 INFO x" % (n % 10)] * 3,
                                   st.integers(0, 9))))  # fmt: skip
def test_the_shared_prefix_is_read_column_by_column_as_before(lines: list[bytes]) -> None:
    assert _formats._prefix(lines) == _prefix_reference(lines)
