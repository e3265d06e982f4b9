"""MemoryProfiler: real allocations found by file:line and traceback; tracemalloc left as found."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from safla_diag import MemoryProfiler

from ._threads import run_in_threads

_kept: list[Any] = []


@pytest.fixture(autouse=True)
def _drop_kept() -> Iterator[None]:
    yield
    _kept.clear()


def grow(blocks: int = 200, size: int = 10_000) -> None:
    """Allocate blocks * size bytes that stay alive (until the test ends)."""
    _kept.extend(bytearray(size) for _ in range(blocks))  # ALLOCATION LINE


_ALLOC_LINE = grow.__code__.co_firstlineno + 2


def _ours(consumer: dict[str, Any]) -> bool:
    return consumer["file"] == f"{__file__}:{_ALLOC_LINE}"


def test_growth_found_by_file_and_line() -> None:
    """A function that keeps 2 MB shows up first, at its allocating line, with its size."""
    mp = MemoryProfiler()
    mp.start_tracing()
    try:
        grow()
        mp.take_snapshot("after")
        growth = mp.analyze_memory_growth()
    finally:
        mp.stop_tracing()
    assert growth["total_growth"] >= 200 * 10_000
    assert growth["total_growth_mb"] == pytest.approx(growth["total_growth"] / 1024 / 1024)
    assert growth["snapshot"] == "after" and growth["group_by"] == "lineno"
    top = growth["top_consumers"][0]
    assert _ours(top), top
    assert set(top) >= {"file", "size_diff", "count_diff", "current_size"}
    assert top["size_diff"] >= 200 * 10_000
    assert top["count_diff"] >= 200
    assert top["current_size"] >= top["size_diff"]


def _caller_that_grows() -> None:
    grow(100, 10_000)


def test_growth_by_traceback_shows_the_callers() -> None:
    """Grouped by traceback, the consumer's frames include who called the allocating function."""
    mp = MemoryProfiler(nframes=5)
    with mp:
        _caller_that_grows()
    growth = mp.analyze_memory_growth(group_by="traceback", top=3)
    ours = [c for c in growth["top_consumers"] if _ours(c)]
    assert ours, growth["top_consumers"]
    frames = ours[0]["traceback"]
    assert frames[-1] == f"{__file__}:{_ALLOC_LINE}"  # most recent last
    caller_line = _caller_that_grows.__code__.co_firstlineno + 1
    assert f"{__file__}:{caller_line}" in frames
    assert len(growth["top_consumers"]) <= 3


def test_growth_by_filename() -> None:
    """Grouping by file sums the lines of a file."""
    with MemoryProfiler() as mp:
        grow()
    growth = mp.analyze_memory_growth(group_by="filename")
    assert any(c["file"].startswith(__file__) for c in growth["top_consumers"])


def test_leaves_tracemalloc_stopped_if_it_was() -> None:
    """Started by us, stopped by us."""
    assert not tracemalloc.is_tracing()
    with MemoryProfiler():
        assert tracemalloc.is_tracing()
    assert not tracemalloc.is_tracing()


def test_leaves_tracemalloc_running_if_it_was() -> None:
    """Tracing the host started is used as is, and still runs afterwards with its settings."""
    tracemalloc.start(3)
    try:
        mp = MemoryProfiler(nframes=20)
        mp.start_tracing()
        grow(50)
        mp.take_snapshot()
        mp.stop_tracing()
        assert tracemalloc.is_tracing()
        assert tracemalloc.get_traceback_limit() == 3
        assert any(_ours(c) for c in mp.analyze_memory_growth()["top_consumers"])
    finally:
        tracemalloc.stop()


def test_two_profilers_share_tracing() -> None:
    """One profiler stopping does not stop tracing under another."""
    a, b = MemoryProfiler(), MemoryProfiler()
    a.start_tracing()
    b.start_tracing()
    a.stop_tracing()
    assert tracemalloc.is_tracing()
    grow(20)
    b.take_snapshot()
    assert b.analyze_memory_growth()["total_growth"] > 0
    b.stop_tracing()
    assert not tracemalloc.is_tracing()


def test_analysis_before_data_is_empty_and_snapshot_needs_tracing() -> None:
    """No baseline or no snapshot: {}. A snapshot without tracing: RuntimeError."""
    mp = MemoryProfiler()
    assert mp.analyze_memory_growth() == {}
    with pytest.raises(RuntimeError, match="start_tracing"):
        mp.take_snapshot()
    mp.start_tracing()
    try:
        assert mp.analyze_memory_growth() == {}
    finally:
        mp.stop_tracing()
    mp.stop_tracing()  # a second stop is harmless


def test_snapshot_names_and_bounded_history() -> None:
    """Snapshots get names (given or numbered) and only the last `keep` are kept."""
    mp = MemoryProfiler(keep=2)
    with mp:
        mp.take_snapshot()
        mp.take_snapshot("named")
        mp.take_snapshot()
    assert [s["name"] for s in mp.snapshots] == ["snapshot_2", "end"]
    assert all(isinstance(s["snapshot"], tracemalloc.Snapshot) for s in mp.snapshots)
    assert all(s["timestamp"] > 0 for s in mp.snapshots)


def test_exception_in_block_still_stops_tracing() -> None:
    """The context manager stops tracing when the block raises."""
    mp = MemoryProfiler()
    with pytest.raises(KeyError), mp:
        raise KeyError("x")
    assert not mp.is_tracing and not tracemalloc.is_tracing()
    assert mp.snapshots[-1]["name"] == "end"


def test_system_memory_info_keys() -> None:
    """RSS, VMS and available in MB, percent, gc counts; traced memory while tracing."""
    mp = MemoryProfiler()
    info = mp.get_system_memory_info()
    assert set(info) >= {"rss", "vms", "percent", "available", "gc_stats"}
    assert 1 < info["rss"] < info["vms"]
    assert 0 < info["percent"] < 100 and info["available"] > 0
    assert set(info["gc_stats"]) == {"generation_0", "generation_1", "generation_2"}
    assert info["traced_current"] is None
    with mp:
        grow(10)
        traced = mp.get_system_memory_info()
    assert traced["traced_current"] > 0 and traced["traced_peak"] >= traced["traced_current"]


@pytest.mark.parametrize(
    "kwargs",
    [{"nframes": 0}, {"nframes": 5000}, {"top": 0}, {"keep": True}, {"top": "3"}],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """Out-of-range settings are a ValueError."""
    with pytest.raises(ValueError):
        MemoryProfiler(**kwargs)


def test_bad_analysis_arguments() -> None:
    """Unknown grouping or a bad top is a ValueError."""
    mp = MemoryProfiler()
    with pytest.raises(ValueError):
        mp.analyze_memory_growth(group_by="module")
    with pytest.raises(ValueError):
        mp.analyze_memory_growth(top=0)


def test_snapshots_from_threads() -> None:
    """Concurrent snapshots from several threads are all kept, none lost or corrupted."""
    mp = MemoryProfiler(keep=100)

    def run(i: int) -> None:
        for j in range(3):
            mp.take_snapshot(f"t{i}-{j}")

    with mp:
        errors = run_in_threads(run, [(i,) for i in range(3)])
    assert errors == []
    assert len(mp.snapshots) == 3 * 3 + 1


def test_repr() -> None:
    """A short repr."""
    assert repr(MemoryProfiler()) == "<MemoryProfiler tracing=False snapshots=0>"
