"""
The shortcuts of the template path give the answers of the long way round: the mask rules'
guards, the time read without the level, the top rows built alone.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safla_diag import redact
from safla_diag.logs import _mine
from safla_diag.logs._formats import FORMATS, format_table, parse_line, parse_time
from safla_diag.logs._mine import mask

from .test_formats import LINES, NOW

_LOGHUB = Path(__file__).resolve().parents[3] / "shared" / "data" / "loghub2k-dev"


def _mask_unguarded(shaped: str) -> str:
    text = redact(shaped.lstrip(_mine._LEAD))
    for pattern, repl in _mine._RULES:
        text = pattern.sub(repl, text)
    return _mine._SPACES.sub(" ", text).strip()


_pieces = st.sampled_from(
    ["0", "0.0.0.0", ":0", "::", "0:0:0:0:0:0", "fe0::0", "/", "/var/0", "~/x", "C:\\x", "0x0",
     "0X0f", "-0", "+0.0", "http://h/0", "a-0", "=", " ", "\t", "[", "]", '"', "id", "user",
     "blk_-0", "token=x", "é", "0e"]
)  # fmt: skip


@given(st.lists(_pieces | st.text(max_size=5), max_size=16).map("".join))
def test_mask_guards_change_nothing(shaped: str) -> None:
    """A mask rule skipped by its guard could not have matched: same template as running all."""
    assert mask(shaped) == _mask_unguarded(shaped)


def _same_time(line: bytes, table: object = None) -> None:
    p = parse_line(line, table)  # type: ignore[arg-type]
    want = p.timestamp(NOW) if p is not None else None
    assert parse_time(line, table, NOW) == want, line  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "line", "level"), LINES, ids=[x[0] for x in LINES])
def test_parse_time_is_parse_line_s_time(name: str, line: bytes, level: str | None) -> None:
    _same_time(line)
    _same_time(line, format_table(parse_line(line).format))  # type: ignore[union-attr]


_headers = st.sampled_from([x[1] for x in LINES])
_NAMES = [f.name for f in FORMATS]


@given(_headers, st.integers(0, 80), st.binary(max_size=12), st.sampled_from(list(LINES)))
def test_parse_time_on_damaged_headers(line: bytes, cut: int, junk: bytes, own: tuple) -> None:  # type: ignore[type-arg]
    """Cut, spliced or any-format-first: the time read alone is the time of the whole parse."""
    table = format_table(parse_line(own[1]).format)  # type: ignore[union-attr]
    for candidate in (line[:cut], line[:cut] + junk, junk + line, line[:cut] + junk + line[cut:]):
        _same_time(candidate.split(b"\n")[0], table)


@pytest.mark.skipif(not _LOGHUB.is_dir(), reason="the Loghub development samples are not here")
def test_parse_time_on_loghub_lines() -> None:
    """Every line of the eight Loghub development samples (nobody here wrote them)."""
    n = 0
    for path in sorted(_LOGHUB.glob("*_2k.log")):
        for line in path.read_bytes().splitlines():
            _same_time(line.rstrip(b"\r"))
            n += 1
    assert n >= 8 * 2000


def test_now_matters_for_syslog() -> None:
    """A year-less syslog time takes its year from ``now``, as the full parse does."""
    line = b"Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user"
    for now in (datetime(2020, 12, 31), datetime(2021, 1, 2), datetime(2021, 12, 9, 12)):
        p = parse_line(line)
        assert p is not None
        got = parse_time(line, None, now.astimezone())
        assert got == p.timestamp(now.astimezone())
        assert got is not None and got.year == (
            2021 if now.month == 12 and now.year == 2021 else 2020
        )


def _one_by_one(table: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """The same table as plain tuples: parse_line then tries the formats one by one."""
    return [tuple(c) for c in table]


@given(_headers, st.integers(0, 80), st.binary(max_size=12), st.sampled_from([None, *_NAMES]))
def test_joined_formats_pick_what_one_by_one_picks(
    line: bytes, cut: int, junk: bytes, first: str | None
) -> None:
    """One alternation per run of formats finds the format the loop over them finds."""
    table = format_table(first)
    plain = _one_by_one(table)  # type: ignore[arg-type]
    for candidate in (line, line[:cut] + junk + line[cut:], junk + line, line[:cut]):
        assert parse_line(candidate, table) == parse_line(candidate, plain), candidate  # type: ignore[arg-type]


@pytest.mark.skipif(not _LOGHUB.is_dir(), reason="the Loghub development samples are not here")
def test_joined_formats_on_loghub_lines() -> None:
    lines = [ln for p in sorted(_LOGHUB.glob("*_2k.log")) for ln in p.read_bytes().splitlines()]
    for first in (None, "hdfs", "iso", "syslog"):
        table = format_table(first)
        plain = _one_by_one(table)  # type: ignore[arg-type]
        assert [parse_line(ln, table) for ln in lines] == [parse_line(ln, plain) for ln in lines]  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from(list("ab0 =:,;()[]{}\"'<>|\t\nx-._/é\u2028\x00")), max_size=40))
def test_the_wildcard_rule_matches_its_plain_form(text: str) -> None:
    """The ``<*>`` rule (anchored at a run's start, possessive) masks what the plain pattern does."""
    plain = re.compile(rf"[^{_mine._DELIM}]*0[^{_mine._DELIM}]*")
    rule, repl = _mine._RULES[-1]
    assert repl == "<*>"
    assert rule.sub(repl, text) == plain.sub(repl, text)
