"""ProfileReport: rows, sorting, text, dict/JSON, pstats files, HTML, merging."""

from __future__ import annotations

import cProfile
import json
import marshal
import pstats
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import CPUProfiler, ProfileReport
from safla_diag.profiling._report import SORT_KEYS, check_sort, check_top

from ._threads import run_in_threads
from .workload import branch, leaf, recurse, work_a


def _report(**kwargs: Any) -> ProfileReport:
    prof = CPUProfiler(**kwargs)
    prof.profile_function(branch)(20, 5)
    report = prof.last_report
    assert report is not None
    return report


def test_rows_have_function_location_calls_and_times() -> None:
    """Each row names the function and its file:line, with calls and times in seconds."""
    report = _report()
    row = report["leaf"]
    assert row.function == "leaf"
    assert row.line == leaf.__code__.co_firstlineno
    assert row.location == f"{leaf.__code__.co_filename}:{row.line}"
    assert (row.ncalls, row.primitive_calls) == (5, 5)
    assert 0 <= row.tottime <= row.cumtime
    assert row.percall_tottime == pytest.approx(row.tottime / 5)
    builtin = next(r for r in report.rows if r.file == "~")
    assert builtin.location == "~"


def test_top_sorts_and_limits() -> None:
    """top(n) gives the first n rows by the report's sort, or by another key."""
    report = _report(top=2)
    assert len(report.top()) == 2
    cum = report.top(len(report))
    assert [r.cumtime for r in cum] == sorted((r.cumtime for r in cum), reverse=True)
    by_calls = report.top(3, sort="ncalls")
    assert by_calls[0].ncalls == max(r.ncalls for r in report.rows)
    by_name = report.top(len(report), sort="name")
    assert [r.function for r in by_name] == sorted(r.function for r in by_name)
    assert len(report.top(10_000)) == len(report)
    with pytest.raises(ValueError):
        report.top(0)
    with pytest.raises(ValueError):
        report.top(3, sort="nope")


def test_find_getitem_contains() -> None:
    """Rows are reachable by function name; unknown names raise KeyError."""
    report = _report()
    assert "leaf" in report and "nope" not in report
    assert report.find("branch")[0].ncalls == 1
    with pytest.raises(KeyError):
        report["nope"]


def test_filter_keeps_matching_functions() -> None:
    """filter() by substring (function or file) or predicate gives a smaller report."""
    report = _report()
    ours = report.filter("workload.py")
    assert {r.function for r in ours.rows} >= {"branch", "leaf"}
    assert all(r.file.endswith("workload.py") for r in ours.rows)
    assert ours["leaf"].ncalls == 5 and len(ours) < len(report)
    busy = report.filter(lambda r: r.ncalls >= 5)
    assert "branch" not in busy and busy["leaf"].ncalls == 5
    for _, (_, _, _, _, callers) in ours.stats.items():
        assert set(callers) <= set(ours.stats)  # no links to removed functions
    assert len(report.filter("no such thing")) == 0


def test_to_text_is_a_table_of_the_top_rows() -> None:
    """The text has a header, column titles and top_n rows, and says what was left out."""
    report = _report(top=2)
    lines = report.to_text().splitlines()
    assert lines[0].startswith("Profile of branch: wall ")
    assert "ncalls" in lines[1] and "cumtime ms" in lines[1]
    assert len(lines) == 2 + 2 + 1
    assert lines[-1] == f"... {len(report) - 2} more functions"
    assert "branch (" in lines[2]  # sorted by cumulative: the entry point first
    assert str(report) == report.to_text()


def test_recursive_calls_shown_as_total_over_primitive() -> None:
    """Recursion appears as pstats writes it: 6/1."""
    prof = CPUProfiler()
    with prof:
        recurse(5)
    report = prof.last_report
    assert report is not None
    assert "6/1" in report.to_text()


def test_to_dict_and_json() -> None:
    """to_dict has the header fields and every row; to_json is the same data."""
    report = _report()
    d = report.to_dict()
    assert d["label"] == "branch"
    assert d["functions"] == len(report) == len(d["rows"])
    assert d["total_calls"] == sum(r["ncalls"] for r in d["rows"])
    leaf_row = next(r for r in d["rows"] if r["function"] == "leaf")
    assert leaf_row["ncalls"] == 5 and leaf_row["location"].endswith(f":{leaf_row['line']}")
    assert json.loads(report.to_json()) == json.loads(json.dumps(d))


def test_save_writes_a_file_pstats_opens(tmp_path: Path) -> None:
    """save() writes the pstats format: pstats.Stats reads the same calls back."""
    report = _report()
    path = report.save(tmp_path / "run.prof")
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    key = (leaf.__code__.co_filename, leaf.__code__.co_firstlineno, "leaf")
    assert raw[key][:2] == (5, 5)
    # the caller links are there too: leaf is called by branch's list comprehension
    assert any(caller[2] in {"<listcomp>", "branch"} for caller in raw[key][4])
    assert stats.total_calls == report.total_calls  # type: ignore[attr-defined]
    assert not list(tmp_path.glob(".*tmp"))


def test_concurrent_saves_to_one_path(tmp_path: Path) -> None:
    """Threads saving reports to the same path leave one whole pstats file, no temporaries."""
    report = _report()
    path = tmp_path / "shared.prof"

    def run() -> None:
        for _ in range(20):
            report.save(path)

    assert run_in_threads(run, [()] * 4) == []
    assert ProfileReport.load(path).stats == report.stats
    assert [p.name for p in tmp_path.iterdir()] == ["shared.prof"]


def test_load_round_trips_and_rejects_other_files(tmp_path: Path) -> None:
    """load() reads what save() wrote; a file that is not pstats data is a ValueError."""
    report = _report()
    loaded = ProfileReport.load(report.save(tmp_path / "a.prof"))
    assert loaded.stats == report.stats
    assert loaded.label == "a.prof" and loaded.wall_time is None
    bad = tmp_path / "bad.prof"
    for content in (b"not marshal data", marshal.dumps([1, 2]), marshal.dumps({"k": (1, 2)})):
        bad.write_bytes(content)
        with pytest.raises(ValueError, match="not a pstats file"):
            ProfileReport.load(bad)
    with pytest.raises(OSError):
        ProfileReport.load(tmp_path / "missing.prof")


def test_from_profile_and_from_pstats_agree() -> None:
    """A plain cProfile run becomes a report, directly or through pstats."""
    prof = cProfile.Profile()
    prof.enable()
    branch(3, 4)
    prof.disable()
    direct = ProfileReport.from_profile(prof, label="direct")
    via = ProfileReport.from_pstats(pstats.Stats(prof), label="via")
    assert direct["leaf"].ncalls == via["leaf"].ncalls == 4
    assert direct.stats == via.stats


def test_merge_adds_calls_and_times() -> None:
    """Merging two spans sums calls, times, wall times and sessions."""
    a = _report()
    prof = CPUProfiler()
    with prof:
        branch(5, 2)
        work_a()
    b = prof.last_report
    assert b is not None
    merged = ProfileReport.merge(a, b, label="both")
    assert merged.label == "both"
    assert merged["leaf"].ncalls == 5 + 2 + 1
    assert merged["branch"].ncalls == 2
    assert merged["work_a"].ncalls == 1
    assert merged.sessions == 2
    assert merged.wall_time == pytest.approx((a.wall_time or 0) + (b.wall_time or 0))
    assert merged["leaf"].tottime == pytest.approx(a["leaf"].tottime + b["leaf"].tottime)
    assert (a + b).stats == merged.stats
    with pytest.raises(ValueError):
        ProfileReport.merge()
    with pytest.raises(TypeError):
        ProfileReport.merge(a, "b")  # type: ignore[arg-type]


class _Table(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.headers: list[str] = []
        self.cells: list[str] = []
        self.attrs: list[dict[str, str | None]] = []
        self._in: str | None = None
        self.script = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.append(dict(attrs))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "th":
            self.headers.append(data)
        elif self._in == "td":
            self.cells.append(data)
        elif self._in == "script":
            self.script += data


def test_repr_html_is_a_sortable_self_contained_table() -> None:
    """The HTML is a table with one row per function and an inline sort script, no downloads."""
    report = _report()
    page = report._repr_html_()
    parsed = _Table()
    parsed.feed(page)
    assert parsed.tags.count("table") == 1
    assert parsed.headers[:3] == ["function", "file:line", "ncalls"]
    assert parsed.tags.count("tr") == len(report) + 1
    assert "<built-in" not in page and "&lt;built-in" in page  # escaped
    assert "leaf" in parsed.cells
    assert "addEventListener" in parsed.script and "sort" in parsed.script
    assert not any("src" in a or "href" in a for a in parsed.attrs)
    assert "http" not in page
    assert report._repr_html_() != page  # a fresh table id each time, so two tables coexist


def test_repr_html_caps_rows() -> None:
    """Big reports show the top rows and say how many there are."""
    report = _report()
    page = report._repr_html_(max_rows=2)
    assert page.count("<tr>") == 2 + 1
    assert f"showing 2 of {len(report)} functions" in page


def test_pretty_text_for_terminal_ipython() -> None:
    """IPython's text display gets the table; a cycle gets the short repr."""

    class Printer:
        def __init__(self) -> None:
            self.out = ""

        def text(self, s: str) -> None:
            self.out += s

    report = _report()
    p = Printer()
    report._repr_pretty_(p, False)
    assert p.out == report.to_text().rstrip("\n")
    p = Printer()
    report._repr_pretty_(p, True)
    assert p.out == repr(report)


def test_repr_is_short() -> None:
    """repr is one line with the label and counts."""
    report = _report()
    assert repr(report).startswith("<ProfileReport label='branch' wall_time=")
    assert f"functions={len(report)} calls={report.total_calls}>" in repr(report)


def test_a_secret_in_the_label_never_shows() -> None:
    """A label carrying a secret (a block labelled with a URL) is redacted in every output."""
    report = ProfileReport(_report().stats, label="sync postgresql://app:hunter2@db/app")
    outputs = (repr(report), report.to_text(), report.to_json(), report._repr_html_(), str(report))
    assert all("hunter2" not in out for out in outputs)
    assert "postgresql://app:" in report.to_text()


def test_constructor_validates_options() -> None:
    """A report refuses an unknown sort key or a bad top."""
    with pytest.raises(ValueError):
        ProfileReport({}, sort="bogus")
    with pytest.raises(ValueError):
        ProfileReport({}, top=-1)
    empty = ProfileReport({})
    assert len(empty) == 0 and empty.top() == [] and empty.total_time == 0
    assert "0 functions" in empty.to_text()


# -- properties --------------------------------------------------------------------------------

_names = st.sampled_from(["a", "b", "c", "<listcomp>", "<built-in method x>"])
_keys = st.tuples(st.sampled_from(["x.py", "y.py", "~"]), st.integers(0, 50), _names)
_callers = st.dictionaries(
    _keys,
    st.tuples(
        st.integers(0, 100),
        st.integers(0, 100),
        st.floats(0, 1, allow_nan=False),
        st.floats(0, 1, allow_nan=False),
    ),
    max_size=3,
)
_stats = st.dictionaries(
    _keys,
    st.tuples(
        st.integers(0, 1000),
        st.integers(0, 1000),
        st.floats(0, 10, allow_nan=False),
        st.floats(0, 10, allow_nan=False),
        _callers,
    ),
    max_size=8,
)


@given(_stats, _stats)
def test_merge_sums_calls_of_any_stats(a: dict[Any, Any], b: dict[Any, Any]) -> None:
    """For any statistics, merged calls are the sums, and merge order does not matter."""
    ra, rb = ProfileReport(a), ProfileReport(b)
    merged = ProfileReport.merge(ra, rb)
    assert merged.total_calls == ra.total_calls + rb.total_calls
    assert merged.primitive_calls == ra.primitive_calls + rb.primitive_calls
    assert set(merged.stats) == set(a) | set(b)
    other = ProfileReport.merge(rb, ra)
    assert {k: v[:2] for k, v in merged.stats.items()} == {k: v[:2] for k, v in other.stats.items()}


@given(_stats)
def test_save_load_round_trip_any_stats(stats: dict[Any, Any]) -> None:
    """Any statistics survive save() and load() exactly (marshal, as pstats writes them)."""
    report = ProfileReport(stats)
    assert marshal.loads(marshal.dumps(report.stats)) == report.stats
    again = ProfileReport(marshal.loads(marshal.dumps(report.stats)))
    assert again.stats == report.stats
    assert len(again.to_dict()["rows"]) == len(stats)


@given(
    st.recursive(
        st.none() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=5).map(tuple)
            | st.dictionaries(
                st.text(max_size=3) | st.tuples(st.text(), st.integers()), inner, max_size=3
            )
        ),
        max_leaves=12,
    )
)
def test_constructor_rejects_garbage_with_type_error(stats: object) -> None:
    """Anything that is not pstats-layout data is a TypeError, never another exception."""
    try:
        report = ProfileReport(stats)  # type: ignore[arg-type]
    except TypeError:
        return
    assert len(report) == len(stats)  # type: ignore[arg-type]


@given(st.one_of(st.text(max_size=12), st.integers(), st.none(), st.booleans()))
def test_option_validators_accept_only_known_values(value: object) -> None:
    """check_sort/check_top return valid values and raise TypeError/ValueError for the rest."""
    try:
        assert check_sort(value) in SORT_KEYS
    except (TypeError, ValueError):
        assert value not in SORT_KEYS
    try:
        top = check_top(value)
        assert isinstance(top, int) and top >= 1
    except (TypeError, ValueError):
        assert isinstance(value, bool) or not isinstance(value, int) or value < 1
