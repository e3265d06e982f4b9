"""LoopMonitor: loop lag, and the stack of the code that held the loop, from a real watchdog."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from safla_diag import LoopMonitor

pytestmark = pytest.mark.anyio

HERE = str(Path(__file__).resolve())


def _watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "safla_diag-loop-watchdog"]


def blocking_call(seconds: float) -> None:
    time.sleep(seconds)  # the line the stall must name


BLOCK_LINE = blocking_call.__code__.co_firstlineno + 1


async def _ticks_past(mon: LoopMonitor, ticks: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while mon.stats()["ticks"] < ticks:
        assert time.monotonic() < deadline, "the monitor stopped ticking"
        await asyncio.sleep(0.01)


async def test_a_blocking_call_is_caught_with_its_file_and_line() -> None:
    """time.sleep inside a coroutine is a stall whose stack ends at that very line."""
    mon = LoopMonitor(threshold_s=0.05)
    mon.start()
    try:
        await _ticks_past(mon, 3)
        for _ in range(2):  # the same stack twice: one entry, counted twice
            blocking_call(0.3)
            await _ticks_past(mon, mon.stats()["ticks"] + 2)
    finally:
        mon.stop()
    [stall] = mon.stalls()
    assert stall["count"] == 2
    assert 0.2 <= stall["duration_s"] < 5
    assert stall["stack"][-1] == f"{HERE}:{BLOCK_LINE} blocking_call"
    assert any("test_a_blocking_call_is_caught" in f for f in stall["stack"])
    stdlib_asyncio = str(Path(asyncio.__file__).parent)
    assert not any(f.startswith(stdlib_asyncio) for f in stall["stack"])
    stats = mon.stats()
    assert stats["stalls"] == 2
    assert stats["lag_max_s"] >= 0.2
    assert stats["lag_p50_s"] < stats["lag_max_s"]
    assert mon.lag_histogram()["count"] == stats["ticks"]
    assert "blocking_call" in mon.to_text()
    assert "blocking_call" in mon._repr_html_()


async def test_an_idle_loop_has_no_stall() -> None:
    """A loop with nothing to do shows lag near zero and no stall."""
    mon = LoopMonitor(threshold_s=0.1, interval_s=0.01)
    mon.start()
    try:
        await _ticks_past(mon, 40)
    finally:
        mon.stop()
    stats = mon.stats()
    assert stats["stalls"] == 0
    assert mon.stalls() == []
    assert stats["lag_p50_s"] < 0.1


async def test_stop_and_cancel_end_the_watchdog_thread() -> None:
    """The watchdog thread exists only between start() and stop() (or the task's end)."""
    mon = LoopMonitor()
    assert _watchdogs() == []
    mon.start()
    assert len(_watchdogs()) == 1
    assert mon.running
    mon.stop()
    assert _watchdogs() == []
    assert not mon.running
    task = mon.start()  # restartable
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _watchdogs() == []
    mon.start()
    with pytest.raises(RuntimeError, match="already running"):
        mon.start()
    mon.stop()


def test_start_outside_a_loop_says_what_to_do() -> None:
    """start() needs the host's running loop."""
    with pytest.raises(RuntimeError, match="running event loop"):
        LoopMonitor().start()
    assert _watchdogs() == []


@pytest.mark.parametrize(
    "kwargs", [{"threshold_s": 0}, {"interval_s": -1}, {"threshold_s": float("nan")}, {"window": 0}]
)
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    """Times are positive and finite; the window is a positive int."""
    with pytest.raises(ValueError):
        LoopMonitor(**kwargs)  # type: ignore[arg-type]
