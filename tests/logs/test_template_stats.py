"""A template's times are kept as unparsed headers (bounded) and parsed when shown."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from safla_diag.logs._templates import _MAX_HEADS, TemplateStats


def _line(sec: int) -> bytes:
    return f"2024-05-01 12:{sec // 60:02d}:{sec % 60:02d},000 - app - ERROR - boom".encode()


def _utc(sec: int) -> datetime:
    return datetime(2024, 5, 1, 12, sec // 60, sec % 60, tzinfo=UTC)


def test_first_and_last_over_headers_in_any_order_with_bounded_memory() -> None:
    secs = list(range(0, 3000, 7))
    random.Random(3).shuffle(secs)
    st = TemplateStats("boom", 0, "example", "ERROR")
    for s in secs:
        st.seen_head(_line(s), None, None)
        assert len(st._heads) < _MAX_HEADS  # never more than a few unparsed headers
    assert st.first_seen is not None and st.last_seen is not None
    assert (st.first_seen.replace(tzinfo=None), st.last_seen.replace(tzinfo=None)) == (
        _utc(min(secs)).replace(tzinfo=None),
        _utc(max(secs)).replace(tzinfo=None),
    )


def test_absorb_adds_counts_and_widens_times_without_parsing() -> None:
    a = TemplateStats("boom", 3, "first example", "ERROR")
    b = TemplateStats("boom", 4, "second example", "ERROR")
    a.seen_head(_line(100), None, None)
    b.seen_head(_line(50), None, None)
    b.seen_head(_line(900), None, None)
    b.seen_head(b"no time here", None, None)
    a.absorb(b)
    assert a.count == 7 and a.example == "first example"
    assert len(a._heads) == 4  # nothing parsed yet
    assert a.first_seen is not None and a.last_seen is not None
    assert a.last_seen - a.first_seen == _utc(900) - _utc(50)
    assert a._heads == []


def test_headers_without_a_time_leave_the_times_unknown() -> None:
    st = TemplateStats("x", 1, "x", "ERROR")
    st.seen_head(b"Traceback (most recent call last):", None, None)
    assert st.first_seen is None and st.last_seen is None


def test_unparsed_headers_stay_a_few_kilobytes_a_template() -> None:
    """Long lines (a header is read from its start) and JSON records (kept whole) alike."""
    from safla_diag.logs._templates import _MAX_HEAD_BYTES

    st = TemplateStats("boom", 0, "example", "ERROR")
    long_line = _line(5) + b" x" * 3000
    json_line = b'{"msg": "' + b"y" * 3000 + b'", "time": "2024-05-01T12:00:09", "level": "error"}'
    for k in range(200):
        st.seen_head(long_line if k % 2 else json_line, None, None)
        assert st._head_bytes < _MAX_HEAD_BYTES
        assert sum(len(h[0]) for h in st._heads) == st._head_bytes
    assert st.first_seen is not None and st.last_seen is not None
    assert st.first_seen.replace(tzinfo=None) == _utc(5).replace(tzinfo=None)
    assert st.last_seen - st.first_seen == _utc(9) - _utc(5)
