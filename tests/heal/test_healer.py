"""The healer in the test's own loop: the gate, the ledger, each remedy, events, dry run, heal=False."""

from __future__ import annotations

import asyncio
import logging
import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safla_diag import (
    Diagnostics,
    HealPolicy,
    MCPConnectionRecovery,
    MCPRecoveryError,
    MCPTaskRecovery,
    VectorIndexRecovery,
)
from safla_diag.heal._ledger import Gate, Ledger

pytestmark = pytest.mark.anyio

SECRET = "postgresql://app:hunter2@db.internal/prod"


class Cache(dict[str, int]):
    """A weak-referenceable cache that counts its clears."""

    clears = 0

    def clear(self) -> None:
        self.clears += 1
        super().clear()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Seen:
    """on_action: every record, and an event per action kind."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.kinds: dict[str, asyncio.Event] = {}

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.event(record["action"]).set()

    def event(self, kind: str) -> asyncio.Event:
        return self.kinds.setdefault(kind, asyncio.Event())

    async def wait(self, kind: str) -> None:
        await asyncio.wait_for(self.event(kind).wait(), timeout=20)


async def _until(cond: Callable[[], bool]) -> None:
    """Wait (at most 20 s) until ``cond()`` holds."""
    async with asyncio.timeout(20):
        while True:  # the healer's counters have no event to wait on
            if cond():
                return
            await asyncio.sleep(0.005)


async def _ticks(diag: Diagnostics, n: int) -> None:
    """Wait until the healer has read its signals ``n`` more times."""
    healer = diag.healer
    assert healer is not None
    target = healer.ticks + n
    await _until(lambda: healer.ticks >= target)


# ------------------------------------------------------------------------------ policy and facade


def test_policy_rejects_bad_values() -> None:
    """Intervals must be positive and finite, percents in range, callbacks callable."""
    for bad in (0, -1, math.inf, math.nan, True, "5"):
        with pytest.raises(ValueError, match="tick_s"):
            HealPolicy(tick_s=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="memory_critical_percent"):
        HealPolicy(memory_critical_percent=101)
    with pytest.raises(ValueError, match="history_size"):
        HealPolicy(history_size=0)
    with pytest.raises(TypeError, match="on_index"):
        HealPolicy(on_index=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="heal must be"):
        Diagnostics({}, heal="yes")  # type: ignore[arg-type]
    assert HealPolicy.coerce(True) == HealPolicy()
    assert HealPolicy.coerce(False) is None


async def test_heal_false_changes_nothing(tmp_path: Path) -> None:
    """The default starts no healer task, and the history stays empty."""
    async with Diagnostics({"data_dir": str(tmp_path)}) as diag:
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert not any(n.startswith("safla_diag.heal") for n in names)
        assert diag.healer is None
        assert diag.heal_history() == []
    assert diag.heal_history() == []


async def test_heal_true_runs_and_stops_with_the_monitors(tmp_path: Path) -> None:
    """heal=True starts the healer's tasks inside async with, and stops them on exit."""
    async with Diagnostics({"data_dir": str(tmp_path / "none")}, heal=True) as diag:
        healer = diag.healer
        assert healer is not None and healer.running
        assert "heal.watch" in {
            t.get_name().removeprefix("safla_diag.") for t in asyncio.all_tasks()
        }
    assert not healer.running
    assert diag.healer is None
    assert not any(t.get_name().startswith("safla_diag.heal") for t in asyncio.all_tasks())


# ------------------------------------------------------------------------------ gate and ledger


def test_gate_rate_limits_and_backs_off() -> None:
    """One at a time; min_interval after a success; doubling back-off after failures, capped."""
    clock = Clock()
    gate = Gate(min_interval_s=10, max_backoff_s=35, clock=clock)
    key = ("x", "t")
    assert gate.enter(key)
    assert not gate.enter(key)  # running: never twice at once
    gate.leave(key, failed=False)
    assert not gate.enter(key)
    clock.now += 10
    assert gate.enter(key)
    waits = []
    for _ in range(4):
        gate.leave(key, failed=True)
        start = clock.now
        while not gate.enter(key):
            clock.now += 1
        waits.append(clock.now - start)
    assert waits == [10, 20, 35, 35]
    assert gate.held["x"] > 0


def test_ledger_is_bounded_counted_and_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """The history keeps the newest N; counts keep everything; nothing shows a secret."""
    ledger = Ledger(3)
    with caplog.at_level(logging.INFO, logger="safla_diag.heal"):
        for i in range(5):
            ledger.record("clear_caches", "done", f"run {i} via {SECRET}", data={"url": SECRET})
    hist = ledger.history()
    assert [h["detail"].split()[1] for h in hist] == ["2", "3", "4"]
    assert ledger.counts() == {("clear_caches", "done"): 5}
    assert "hunter2" not in repr(hist) and "hunter2" not in caplog.text
    assert len([r for r in caplog.records if r.name == "safla_diag.heal"]) == 5
    assert all(len(r.getMessage().splitlines()) == 1 for r in caplog.records)


# ------------------------------------------------------------------------------ the index


def _index(tmp_path: Path, n: int = 64, dim: int = 8) -> tuple[VectorIndexRecovery, Any]:
    import faiss
    import numpy as np

    rng = np.random.default_rng(7)
    xb = rng.random((n, dim), dtype=np.float32)
    index = faiss.IndexFlatL2(dim)
    index.add(xb)
    rec = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups", dimension=dim)
    rec.save_index(index)
    return rec, xb


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_unusable_backup_fails_once_then_backs_off(tmp_path: Path) -> None:
    """A damaged index whose only backup is damaged too: one failed action, then a back-off."""
    rec, _ = _index(tmp_path)
    backup = Path(rec.backup_index())
    _corrupt(backup / "vector_index.faiss")  # backup_index() returns the backup folder
    _corrupt(rec.index_path)
    seen = Seen()
    clock = Clock()
    policy = HealPolicy(
        recovery=rec, index_check_interval_s=0.01, min_interval_s=60, on_action=seen, clock=clock
    )
    async with Diagnostics({}, heal=policy) as diag:
        await seen.wait("restore_index")
        healer = diag.healer
        assert healer is not None
        checks = healer.index_checks
        await _until(lambda: healer.index_checks >= checks + 5)
        (only,) = diag.heal_history()
        assert only["outcome"] == "failed" and "no usable backup" in only["detail"]
        assert "checksum" in only["detail"] and "skipping" not in only["detail"]
        assert only["data"]["skipped_backups"]
        clock.now += 60  # the back-off has passed: tried again, failed again, waits longer
        await _until(lambda: len(diag.heal_history()) >= 2)
        assert "failure 2" in diag.heal_history()[1]["detail"]
    assert healer.counts() == {("restore_index", "failed"): 2}
    assert rec.detect_corruption()  # nothing was deleted or overwritten


async def test_no_backup_yet_is_skipped_not_an_alarm(tmp_path: Path) -> None:
    """A service that never made a backup: the missing index is reported as skipped, once."""
    seen = Seen()
    policy = HealPolicy(index_check_interval_s=0.01, on_action=seen)
    async with Diagnostics({"data_dir": str(tmp_path / "data")}, heal=policy) as diag:
        await seen.wait("restore_index")
        healer = diag.healer
        assert healer is not None
        checks = healer.index_checks
        await _until(lambda: healer.index_checks >= checks + 3)
    (only,) = diag.heal_history()
    assert only["outcome"] == "skipped" and "no backup" in only["detail"]


async def test_restore_in_process_hands_the_host_a_working_index(tmp_path: Path) -> None:
    """A corrupted index is restored at start; on_index gets an index that answers like the backup."""
    rec, xb = _index(tmp_path)
    rec.backup_index()
    _corrupt(rec.index_path)
    got: list[Any] = []
    seen = Seen()

    async def swap(index: Any) -> None:
        got.append(index)

    cfg = {"data_dir": str(tmp_path / "data"), "backup_dir": str(tmp_path / "backups")}
    async with Diagnostics(cfg, heal=HealPolicy(on_index=swap, on_action=seen)) as diag:
        await seen.wait("restore_index")
    (action,) = diag.heal_history()
    assert action["outcome"] == "done", action
    assert action["data"]["host_notified"] is True
    assert action["data"]["kept_aside"][0].startswith("vector_index.faiss.corrupt-")
    (index,) = got
    assert index.ntotal == len(xb)
    _, ids = index.search(xb[:4], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3]
    assert not rec.detect_corruption()


async def test_aload_index_heals_before_loading(tmp_path: Path) -> None:
    """aload_index: a damaged index is restored first (once, even racing the start-up check)."""
    rec, xb = _index(tmp_path)
    rec.backup_index()
    _corrupt(rec.index_path)
    async with Diagnostics({}, heal=HealPolicy(recovery=rec)) as diag:
        healer = diag.healer
        assert healer is not None
        index = await healer.aload_index()
        _, ids = index.search(xb[:3], 1)
        assert ids[:, 0].tolist() == [0, 1, 2]
    assert [(h["action"], h["outcome"]) for h in diag.heal_history()] == [("restore_index", "done")]


async def test_aload_index_without_an_index_to_look_after(tmp_path: Path) -> None:
    """No data_dir configured: aload_index says so instead of guessing a folder."""
    from safla_diag import RecoveryError

    async with Diagnostics({}, heal=True) as diag:
        assert diag.healer is not None
        with pytest.raises(RecoveryError, match="no data_dir"):
            await diag.healer.aload_index()


# ------------------------------------------------------------------------------ memory


async def test_memory_pressure_clears_once_per_interval(tmp_path: Path) -> None:
    """At the critical level the caches are cleared once, then again only after the interval."""
    cache = Cache(a=1)
    clock = Clock()
    seen = Seen()
    policy = HealPolicy(
        tick_s=0.001,
        min_interval_s=30,
        memory_percent=lambda: 99.0,
        caches=[cache],
        on_action=seen,
        clock=clock,
    )
    async with Diagnostics({}, heal=policy) as diag:
        await seen.wait("clear_caches")
        await _ticks(diag, 20)
        assert cache.clears == 1 and cache == {}
        clock.now += 30
        await _ticks(diag, 20)
        assert cache.clears == 2
    clears = [h for h in diag.heal_history() if h["action"] == "clear_caches"]
    assert [h["outcome"] for h in clears] == ["done", "done"]
    assert "freed" in clears[0]["detail"] and "freed_mb" in clears[0]["data"]
    assert clears[0]["data"]["caches_cleared"] == 1


async def test_below_critical_nothing_is_cleared() -> None:
    """Memory under the critical percent: no action at all."""
    cache = Cache(a=1)
    policy = HealPolicy(tick_s=0.001, memory_percent=lambda: 94.9, caches=[cache])
    async with Diagnostics({"memory_critical_percent": 95}, heal=policy) as diag:
        await _ticks(diag, 10)
    assert cache.clears == 0 and diag.heal_history() == []


@pytest.mark.parametrize("dry_run", [False, True])
async def test_a_broken_reader_is_reported_not_retried_in_a_loop(dry_run: bool) -> None:
    """A memory reader that raises: one failed 'watch' action over many ticks (in a dry run too:
    reporting changes nothing), the host unharmed."""

    def broken() -> float:
        raise OSError(f"cannot read {SECRET}")

    policy = HealPolicy(tick_s=0.001, memory_percent=broken, dry_run=dry_run)
    async with Diagnostics({}, heal=policy) as diag:
        await _ticks(diag, 20)
    (only,) = diag.heal_history()
    assert (only["action"], only["target"], only["outcome"]) == ("watch", "memory", "failed")
    assert "OSError" in only["detail"] and "hunter2" not in only["detail"]


# ------------------------------------------------------------------------------ leak window


async def test_leak_window_stops_tracing_when_cancelled() -> None:
    """One leak window at a time; leaving async with in the middle of it turns tracemalloc off."""
    assert not tracemalloc.is_tracing()
    policy = HealPolicy(tick_s=0.001, leak_window_s=3600)
    async with Diagnostics({}, heal=policy) as diag:
        detector = diag.leak_detector
        assert detector is not None
        _alarm(detector)
        await _until(tracemalloc.is_tracing)
        await _ticks(diag, 20)  # the alarm is still raised at every tick: one window only
        windows = [t for t in asyncio.all_tasks() if t.get_name() == "safla_diag.heal.leak_trace"]
        assert len(windows) == 1 and diag.heal_history() == []
    assert not tracemalloc.is_tracing()


def _alarm(detector: Any) -> None:
    """Feed the detector an hour of steady growth, later than anything it has seen."""
    import time

    t0 = time.monotonic() + 10
    for i in range(60):
        detector.add_sample(100 + 2 * i, t0 + i * 60)
    assert detector.detect_memory_leak()


# ------------------------------------------------------------------------------ MCP events


async def test_breaker_open_and_close_are_events() -> None:
    """A server that gives up opens its breaker (an event); its recovery closes it (another)."""
    up = False
    clock = Clock()

    async def connect(cfg: dict[str, str]) -> str:
        if not up:
            raise ConnectionError(f"refused by {SECRET}")
        return "conn"

    async def no_sleep(_s: float) -> None:
        return None

    conn = MCPConnectionRecovery(
        1, 0.0, connect=connect, breaker_cooldown=5, sleep=no_sleep, clock=clock
    )
    seen = Seen()
    async with Diagnostics({}, heal=HealPolicy(tick_s=0.001, connections=[conn], on_action=seen)):
        with pytest.raises(MCPRecoveryError):
            await conn.recover_connection("search", {"url": "http://127.0.0.1:9"})
        await seen.wait("breaker_open")
        up = True
        clock.now += 5
        assert await conn.recover_connection("search", {"url": "http://127.0.0.1:9"}) == "conn"
        await seen.wait("breaker_closed")
    opened, closed = seen.records
    assert opened["outcome"] == closed["outcome"] == "event"
    assert opened["target"] == "search" and "ConnectionError" in opened["detail"]
    assert "hunter2" not in opened["detail"]


async def test_growing_dead_letters_are_an_event_with_the_top_errors(tmp_path: Path) -> None:
    """Dead letters beyond the count at start: one event naming the most common errors."""

    async def execute(task: dict[str, Any]) -> None:
        raise TimeoutError(f"tool {task['tool']} timed out")

    queue = MCPTaskRecovery(tmp_path / "q.db", execute=execute, retry_delay=0, max_retries=1)
    await queue.save_failed_task({"id": "old", "tool": "before"})
    await queue.retry_once()  # dead before the healer starts: the baseline, not news
    seen = Seen()
    policy = HealPolicy(tick_s=0.001, queues=[queue], on_action=seen)
    async with Diagnostics({}, heal=policy) as diag:
        await _ticks(diag, 2)
        for i in range(3):
            await queue.save_failed_task({"id": f"s{i}", "tool": "search"})
        await queue.save_failed_task({"id": "f", "tool": "fetch"})
        await queue.retry_once()
        await seen.wait("dead_letters")
        await _ticks(diag, 5)
    await queue.aclose()
    (event,) = diag.heal_history()
    assert event["outcome"] == "event"
    assert event["data"]["dead"] == 5 and event["data"]["new"] == 4
    (top_error, count), *_ = event["data"]["top_errors"]
    assert "search" in top_error and count == 3


# ------------------------------------------------------------------------------ dry run, metrics


async def test_dry_run_records_what_it_would_do(tmp_path: Path) -> None:
    """dry_run: every remedy is skipped with the reason, and nothing changes."""
    rec, _ = _index(tmp_path)
    rec.backup_index()
    _corrupt(rec.index_path)
    cache = Cache(a=1)
    seen = Seen()
    policy = HealPolicy(
        dry_run=True,
        tick_s=0.001,
        recovery=rec,
        memory_percent=lambda: 99.0,
        caches=[cache],
        on_action=seen,
        on_index=lambda index: pytest.fail("no index in a dry run"),
    )
    async with Diagnostics({}, heal=policy) as diag:
        _alarm(diag.leak_detector)
        for kind in ("restore_index", "clear_caches", "leak_trace"):
            await seen.wait(kind)
        await _ticks(diag, 10)
        assert not tracemalloc.is_tracing()
    hist = diag.heal_history()
    assert sorted(h["action"] for h in hist) == ["clear_caches", "leak_trace", "restore_index"]
    assert all(h["outcome"] == "skipped" and h["detail"].startswith("dry run: would") for h in hist)
    assert cache.clears == 0 and rec.detect_corruption()
    assert not list(rec.data_dir.glob("*.corrupt-*"))


async def test_counts_are_exported_to_prometheus() -> None:
    """safla_heal_actions_total{action,outcome} is read from the healer at each scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    cache = Cache(a=1)
    seen = Seen()
    policy = HealPolicy(tick_s=0.001, memory_percent=lambda: 99.0, caches=[cache], on_action=seen)
    registry = CollectorRegistry()
    async with Diagnostics({}, heal=policy) as diag:
        healer = diag.healer
        assert healer is not None
        healer.register_prometheus(registry)
        healer.register_prometheus(registry)  # idempotent
        await seen.wait("clear_caches")
    text = generate_latest(registry).decode()
    assert 'safla_heal_actions_total{action="clear_caches",outcome="done"} 1.0' in text
