"""MCPTaskRecovery: durable saves, retries, dead letters, the worker in the host's loop."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from safla_diag import MCPTaskRecovery
from safla_diag.mcp_retry._model import QueueStoreError
from safla_diag.mcp_retry._sqlite_store import SQLiteTaskStore

pytestmark = pytest.mark.anyio


class Recorder:
    """An execute callback that fails the first ``fail`` calls per task and records every call."""

    def __init__(self, fail: int | float = 0) -> None:
        self.fail = fail
        self.calls: Counter[str] = Counter()
        self.done: list[str] = []
        self.event = asyncio.Event()

    async def __call__(self, task: dict[str, Any]) -> None:
        self.calls[task["id"]] += 1
        self.event.set()
        if self.calls[task["id"]] <= self.fail:
            raise ConnectionError(f"server down for {task['id']} password=hunter2")
        self.done.append(task["id"])


async def test_save_returns_id_and_is_idempotent(tmp_path: Path) -> None:
    """A task without id gets one; saving the same id again stores nothing new."""
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=Recorder(), retry_delay=0)
    tid = await rec.save_failed_task({"tool": "search", "args": {"q": "x"}})
    assert isinstance(tid, str) and len(tid) == 32
    assert await rec.save_failed_task({"id": tid, "tool": "other"}) == tid
    assert await rec.save_failed_task({"id": 7, "tool": "n"}) == "7"
    tasks = await rec.afailed_tasks()
    assert [t["tool"] for t in tasks] == ["search", "n"]
    assert tasks[0]["id"] == tid
    await rec.aclose()


@pytest.mark.parametrize(
    ("task", "exc"),
    [
        ({"args": {1, 2}}, TypeError),
        ({"args": object()}, TypeError),
        ({"when": math.nan}, ValueError),
        ({"x": float("inf")}, ValueError),
        ({1: "int key"}, TypeError),
        ({"id": True}, TypeError),
        ({"id": ""}, ValueError),
        (["not", "a", "mapping"], TypeError),
        ({"b": b"bytes"}, TypeError),
    ],
)
async def test_non_json_refused_at_save(tmp_path: Path, task: Any, exc: type[Exception]) -> None:
    """Payloads JSON cannot represent are refused when saved, and nothing is stored."""
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=Recorder())
    with pytest.raises(exc):
        await rec.save_failed_task(task)
    assert await rec.load_failed_tasks() == 0
    await rec.aclose()


async def test_retry_once_runs_due_tasks_and_deletes_successes(tmp_path: Path) -> None:
    """retry_once runs what is due, returns the count, and a success leaves the queue."""
    ex = Recorder()
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=ex, retry_delay=0, concurrency=2)
    for i in range(5):
        await rec.save_failed_task({"id": f"t{i}"})
    assert await rec.retry_once() == 5
    assert sorted(ex.done) == [f"t{i}" for i in range(5)]
    assert await rec.afailed_tasks() == []
    assert await rec.retry_once() == 0
    await rec.aclose()


async def test_always_failing_task_runs_max_retries_then_dead_letter(tmp_path: Path) -> None:
    """Exactly max_retries library attempts, then one dead letter with the last (redacted) error."""
    ex = Recorder(fail=math.inf)
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=ex, retry_delay=0, max_retries=3)
    await rec.save_failed_task({"id": "a", "tool": "x"})
    for _ in range(6):
        await rec.retry_once()
    assert ex.calls["a"] == 3
    (d,) = await rec.adead_letters()
    assert d["id"] == "a" and d["attempts"] == 3 and d["tool"] == "x"
    assert "ConnectionError" in d["last_error"] and "hunter2" not in d["last_error"]
    assert rec.dead_letters() == [d]
    assert rec.failed_tasks == []
    await rec.aclose()


async def test_retry_once_never_reruns_a_task_it_rescheduled(tmp_path: Path) -> None:
    """A task that fails in retry_once is not run again in the same call, even with no delay and
    a clock that has not moved (a coarse clock)."""
    calls = 0

    def execute(task: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    q = MCPTaskRecovery(
        tmp_path / "q.db", execute=execute, retry_delay=0, max_delay=0, clock=lambda: now
    )
    now = 1000.0
    await q.save_failed_task({"id": "t"}, delay=0)
    assert await q.retry_once() == 1
    assert calls == 1
    now += 1
    assert await q.retry_once() == 1  # due again in the next call
    assert calls == 2
    await q.aclose()


async def test_sync_execute_runs_off_the_loop(tmp_path: Path) -> None:
    """A plain callable runs in the executor, not on the loop's thread."""
    seen: list[int | None] = []

    def execute(task: dict[str, Any]) -> None:
        seen.append(threading.get_ident())

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=execute, retry_delay=0)
    await rec.save_failed_task({"id": "a"})
    assert await rec.retry_once() == 1
    assert seen and seen[0] != threading.get_ident()
    await rec.aclose()


@pytest.mark.usefixtures("python_commits")
async def test_concurrent_saves_are_group_committed(tmp_path: Path) -> None:
    """Many concurrent saves share commits: fewer transactions than saves, every task stored."""
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=Recorder())
    await rec.load_failed_tasks()
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    batches: list[int] = []
    real = store.sync.put_many

    def spy(tasks: Any, *, now: float) -> list[bool]:
        batches.append(len(tasks))
        return real(tasks, now=now)

    store.sync.put_many = spy  # type: ignore[method-assign]
    ids = await asyncio.gather(*(rec.save_failed_task({"id": f"t{i}"}) for i in range(200)))
    assert len(set(ids)) == 200
    assert sum(batches) == 200 and len(batches) < 200
    assert await rec.load_failed_tasks() == 200
    await rec.save_failed_tasks([{"id": "x"}, {"id": "y"}])
    assert batches[-1] == 2
    await rec.aclose()


@pytest.mark.usefixtures("python_commits")
async def test_concurrent_acks_are_group_committed(tmp_path: Path) -> None:
    """Tasks finishing together are acknowledged in shared transactions."""
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=Recorder(), retry_delay=0, concurrency=8)
    await rec.save_failed_tasks([{"id": f"t{i}"} for i in range(32)])
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    batches: list[int] = []
    real = store.sync.ack_many

    def spy(leases: Any) -> int:
        batches.append(len(leases))
        return real(leases)

    store.sync.ack_many = spy  # type: ignore[method-assign]
    assert await rec.retry_once() == 32
    assert await rec.load_failed_tasks() == 0
    assert batches and max(batches) > 1
    await rec.aclose()


async def test_cancelled_saver_does_not_break_others(tmp_path: Path) -> None:
    """Cancelling one saver leaves the shared commit intact for the rest."""
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=Recorder())
    await rec.load_failed_tasks()
    tasks = [asyncio.ensure_future(rec.save_failed_task({"id": f"t{i}"})) for i in range(20)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert all(isinstance(r, str) for i, r in enumerate(results) if i != 3)
    await rec.aclose()
    # Saving the cancelled one again is harmless whatever happened to it.
    rec2 = MCPTaskRecovery(tmp_path / "q.db", execute=Recorder())
    await rec2.save_failed_task({"id": "t3"})
    assert await rec2.load_failed_tasks() == 20
    await rec2.aclose()


async def test_worker_retries_until_success_and_wakes_on_save(tmp_path: Path) -> None:
    """The worker sleeps with an empty queue, a save wakes it, failures are retried to success."""
    ex = Recorder(fail=2)
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=ex, retry_delay=0.01, max_retries=5)
    await rec.load_failed_tasks()
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    try:
        await asyncio.sleep(0.05)
        assert ex.calls == {}
        await rec.save_failed_task({"id": "a"}, delay=0)
        async with asyncio.timeout(10):
            while "a" not in ex.done:
                ex.event.clear()
                await ex.event.wait()
        assert ex.calls["a"] == 3
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert await rec.afailed_tasks() == []
    await rec.aclose()


@pytest.mark.usefixtures("python_commits")
async def test_worker_schedules_instead_of_polling(tmp_path: Path) -> None:
    """With one task due later, the worker claims a handful of times, not in a busy loop."""
    ex = Recorder()
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=ex)
    await rec.save_failed_task({"id": "later"}, delay=0.3)
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    claims = 0
    real = store.sync.claim

    def spy(**kw: Any) -> Any:
        nonlocal claims
        claims += 1
        return real(**kw)

    store.sync.claim = spy  # type: ignore[method-assign]
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    try:
        async with asyncio.timeout(10):
            await ex.event.wait()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert ex.done == ["later"]
    assert claims <= 4
    await rec.aclose()


@pytest.mark.usefixtures("python_commits")
@pytest.mark.parametrize("entry", ["worker", "retry_once"])
async def test_cancel_during_a_claim_gives_its_leases_back(tmp_path: Path, entry: str) -> None:
    """Cancelled while a claim runs off the loop: the claim commits anyway, and its leases are
    given back before the cancellation propagates (the task is due at once, not after lease_s)."""
    ran: list[str] = []
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=lambda t: ran.append(t["id"]), lease_s=600)
    await rec.save_failed_task({"id": "t"}, delay=0)
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    loop = asyncio.get_running_loop()
    in_claim = asyncio.Event()
    gate = threading.Event()
    real = store.sync.claim

    def slow_claim(**kw: Any) -> Any:
        loop.call_soon_threadsafe(in_claim.set)
        gate.wait(10)
        return real(**kw)

    store.sync.claim = slow_claim  # type: ignore[method-assign]
    run = rec.retry_failed_tasks() if entry == "worker" else rec.retry_once()
    job = asyncio.ensure_future(run)
    try:
        async with asyncio.timeout(10):
            await in_claim.wait()
        job.cancel()
        await asyncio.sleep(0)
    finally:
        gate.set()
    with pytest.raises(asyncio.CancelledError):
        await job
    store.sync.claim = real  # type: ignore[method-assign]
    stats = await rec.stats()
    assert (stats.pending, stats.in_flight) == (1, 0)
    assert ran == []
    await rec.aclose()


async def test_cancel_stops_promptly_and_releases_leases(tmp_path: Path) -> None:
    """Cancelling the worker mid-task stops the task and gives its lease back: due again at once."""
    started = asyncio.Event()

    async def hang(task: dict[str, Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=hang, lease_s=3600)
    await rec.save_failed_task({"id": "a"}, delay=0)
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    async with asyncio.timeout(10):
        await started.wait()
    stats = await rec.stats()
    assert stats.in_flight == 1
    worker.cancel()
    async with asyncio.timeout(10):
        with pytest.raises(asyncio.CancelledError):
            await worker
    stats = await rec.stats()
    assert (stats.in_flight, stats.pending) == (0, 1)
    (t,) = await rec.store.pending()
    assert t.attempts == 1 and not t.leased
    await rec.aclose()


async def test_running_task_keeps_its_lease_against_another_worker(tmp_path: Path) -> None:
    """A task running longer than its lease is renewed: a second worker never runs it meanwhile."""
    runs: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(task: dict[str, Any]) -> None:
        runs.append(task["id"])
        started.set()
        await release.wait()

    a = MCPTaskRecovery(tmp_path / "q.db", execute=slow, lease_s=0.3)
    b = MCPTaskRecovery(tmp_path / "q.db", execute=slow, lease_s=0.3)
    await a.save_failed_task({"id": "long"}, delay=0)
    wa = asyncio.ensure_future(a.retry_failed_tasks())
    async with asyncio.timeout(10):
        await started.wait()
    (first,) = await a.store.pending()
    wb = asyncio.ensure_future(b.retry_failed_tasks())
    try:
        # Run on until the lease was renewed past two lease lengths beyond its first end, the
        # second worker polling all along (polled with a deadline, not a fixed sleep).
        async with asyncio.timeout(10):
            while True:
                (now,) = await a.store.pending()
                if now.due_at > first.due_at + 2 * 0.3 and time.time() > first.due_at + 0.3:
                    break
                await asyncio.sleep(0.02)
        release.set()
        async with asyncio.timeout(10):
            while True:
                if not await a.load_failed_tasks():
                    break
                await asyncio.sleep(0.02)
    finally:
        release.set()
        for w in (wa, wb):
            w.cancel()
        await asyncio.gather(wa, wb, return_exceptions=True)
    assert runs == ["long"]
    await a.aclose()
    await b.aclose()


async def test_worker_respects_concurrency_limit(tmp_path: Path) -> None:
    """No more than ``concurrency`` tasks run at once."""
    running = 0
    peak = 0
    gate = asyncio.Event()
    finished: list[str] = []

    async def execute(task: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        finished.append(task["id"])
        if len(finished) == 20:
            gate.set()

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=execute, concurrency=3, retry_delay=0)
    await rec.save_failed_tasks([{"id": f"t{i}"} for i in range(20)])
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    try:
        async with asyncio.timeout(20):
            await gate.wait()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert peak == 3
    await rec.aclose()


async def test_corrupt_queue_file_clear_error(tmp_path: Path) -> None:
    """A corrupt queue file: QueueStoreError naming it, on first use, file untouched."""
    p = tmp_path / "q.db"
    p.write_bytes(b"garbage" * 100)
    rec = MCPTaskRecovery(p, execute=Recorder())
    with pytest.raises(QueueStoreError, match=r"q\.db"):
        await rec.load_failed_tasks()
    with pytest.raises(QueueStoreError):
        await rec.save_failed_task({"id": "a"})
    assert p.read_bytes() == b"garbage" * 100


async def test_bad_arguments() -> None:
    """Nonsense numbers are refused at construction."""
    for kw in ({"max_retries": 0}, {"retry_delay": -1}, {"lease_s": 0}, {"concurrency": 0}):
        with pytest.raises(ValueError):
            MCPTaskRecovery("x.db", execute=Recorder(), **kw)  # type: ignore[arg-type]


def test_url_refused_with_redacted_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database URL is not taken for a file name (no 'postgresql:' folder appears)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        MCPTaskRecovery("mysql://u:hunter2@db/q", execute=Recorder())
    assert "hunter2" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


async def test_repr_is_short() -> None:
    """The repr names the queue and its limits, nothing more."""
    rec = MCPTaskRecovery("x.db", execute=Recorder())
    assert repr(rec).startswith("<MCPTaskRecovery 'x.db' max_retries=3")


@pytest.mark.usefixtures("python_commits")
async def test_saves_claims_and_acks_share_commits(tmp_path: Path) -> None:
    """Writes of different kinds waiting together (saves, a claim, acks) commit as one group."""
    all_ran = asyncio.Event()
    ran: list[str] = []

    async def execute(task: dict[str, Any]) -> None:
        ran.append(task["id"])
        if len(ran) == 80:
            all_ran.set()

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=execute, retry_delay=0, concurrency=8)
    await rec.save_failed_tasks([{"id": f"old{i}"} for i in range(40)])
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    groups: list[int] = []
    real = store.sync.run_group

    def spy(calls: Any) -> list[tuple[bool, Any]]:
        groups.append(len(calls))
        return real(calls)

    store.sync.run_group = spy  # type: ignore[method-assign]
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    await asyncio.gather(*(rec.save_failed_task({"id": f"new{i}"}, delay=0) for i in range(40)))
    try:
        async with asyncio.timeout(20):
            await all_ran.wait()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)  # a stopped worker's acks are in
    assert max(groups) > 1  # some commit held more than one operation
    assert await rec.load_failed_tasks() == 0 and (await rec.stats()).dead == 0
    await rec.aclose()


@pytest.mark.usefixtures("python_commits")
async def test_short_tasks_are_claimed_a_batch_ahead_and_run_once(tmp_path: Path) -> None:
    """With short tasks the worker claims up to twice its concurrency; each task runs once and
    never more than ``concurrency`` at a time."""
    running = 0
    peak = 0
    calls: Counter[str] = Counter()
    gate = asyncio.Event()

    async def execute(task: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        calls[task["id"]] += 1
        await asyncio.sleep(0)
        running -= 1
        if len(calls) == 40:
            gate.set()

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=execute, concurrency=4, retry_delay=0)
    await rec.save_failed_tasks([{"id": f"t{i}"} for i in range(40)])
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    limits: list[int] = []
    real = store.sync.claim

    def spy(**kw: Any) -> Any:
        limits.append(kw["limit"])
        return real(**kw)

    store.sync.claim = spy  # type: ignore[method-assign]
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    try:
        async with asyncio.timeout(20):
            await gate.wait()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert max(limits) == 8 and peak <= 4
    assert set(calls.values()) == {1}
    assert await rec.load_failed_tasks() == 0
    await rec.aclose()


async def test_stopped_worker_gives_back_tasks_claimed_ahead(tmp_path: Path) -> None:
    """Tasks claimed ahead and not started are released when the worker stops: due again."""
    started: list[str] = []
    two = asyncio.Event()
    block = asyncio.Event()

    async def execute(task: dict[str, Any]) -> None:
        started.append(task["id"])
        if len(started) == 2:
            two.set()
        await block.wait()

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=execute, concurrency=2, retry_delay=0)
    await rec.save_failed_tasks([{"id": f"t{i}"} for i in range(6)])
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    async with asyncio.timeout(20):
        await two.wait()
    stats = await rec.stats()
    assert stats.in_flight == 4  # two running, two claimed ahead
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    stats = await rec.stats()
    assert (stats.pending, stats.in_flight) == (6, 0)
    assert len(started) == 2
    await rec.aclose()
