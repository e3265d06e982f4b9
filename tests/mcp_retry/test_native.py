"""The SQLite queue's compiled committer: the same results as the Python path, off the lock."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from safla_diag import MCPTaskRecovery
from safla_diag.mcp_retry._model import NewTask, QueueStoreError
from safla_diag.mcp_retry._sqlite_native import NativeLane, bound, native
from safla_diag.mcp_retry._sqlite_store import SQLiteTaskStore

pytestmark = pytest.mark.anyio

needs_native = pytest.mark.skipif(native() is None, reason="the committer was not built here")
both_paths = pytest.mark.parametrize("path", ["native", "python"], indirect=True)


@pytest.fixture
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which commit path the stores of the test use (``native`` skips where it was not built)."""
    which: str = request.param
    if which == "python":
        monkeypatch.setenv("SAFLA_DIAG_PURE", "1")
    elif native() is None:
        pytest.skip("the committer was not built here")
    return which


def _sqlite3_path() -> str:
    import _sqlite3

    return str(_sqlite3.__file__)


def _lane(store: SQLiteTaskStore) -> NativeLane | None:
    return store._native


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="built and bound on Linux")
def test_committer_is_built_and_bound_on_linux() -> None:
    """Where Python's sqlite3 loads a shared SQLite (CI's machines), the committer is built and
    bound to it (whatever ``SAFLA_DIAG_PURE`` says)."""
    mod = bound()
    assert mod is not None
    assert mod.load(_sqlite3_path()) == sqlite3.sqlite_version


@needs_native
async def test_saves_claims_and_acks_go_through_the_committer(tmp_path: Path) -> None:
    """A store opened in a loop hands its saves, claims and acks to the committer, in groups."""
    ran: list[str] = []
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=lambda t: ran.append(t["id"]), retry_delay=0)
    ids = await asyncio.gather(*(rec.save_failed_task({"id": f"t{i}"}) for i in range(200)))
    assert len(ids) == 200
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    lane = _lane(store)
    assert lane is not None
    groups, writes = lane._committer.counts()
    assert 1 <= groups <= writes < 200  # the saves were batched before they were handed over
    assert await rec.retry_once() == 200
    assert sorted(ran) == sorted(ids)
    assert (await rec.stats()).pending == 0
    after = lane._committer.counts()
    assert after[1] > writes  # the claims and acks went the same way
    await rec.aclose()
    assert _lane(store) is None


@both_paths
async def test_a_failed_group_is_run_again_write_by_write(tmp_path: Path, path: str) -> None:
    """A write that fails fails alone: the others of its group are committed all the same."""
    db = tmp_path / "q.db"
    rec = MCPTaskRecovery(db, execute=lambda t: None)
    await rec.load_failed_tasks()
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON tasks WHEN NEW.id = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )
    conn.commit()
    conn.close()
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    # A claim and a batch of saves in flight together: the batch fails, the claim does not.
    claim = asyncio.ensure_future(store.claim(now=1e18, limit=5, lease_s=60, max_attempts=3))
    saves = asyncio.ensure_future(
        store.put_many([NewTask("ok", "{}", 0.0), NewTask("bad", "{}", 0.0)], now=0.0)
    )
    with pytest.raises(QueueStoreError, match="refused by a trigger"):
        await saves
    assert await claim == []
    assert await store.put_many([NewTask("ok", "{}", 0.0)], now=0.0) == [True]
    assert [t.id for t in await store.pending()] == ["ok"]
    await rec.aclose()


@both_paths
async def test_a_locked_file_gives_the_same_error(tmp_path: Path, path: str) -> None:
    """Another process's write transaction past the busy timeout: the locked-file error."""
    db = tmp_path / "q.db"
    store = SQLiteTaskStore(db, busy_timeout_s=0.2)
    await store.open()
    assert (_lane(store) is not None) == (path == "native")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(QueueStoreError, match="locked"):
            await store.put_many([NewTask("a", "{}", 0.0), NewTask("b", "{}", 0.0)], now=0.0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await store.put_many([NewTask("a", "{}", 0.0), NewTask("b", "{}", 0.0)], now=0.0) == [
        True,
        True,
    ]
    await store.close()


@needs_native
async def test_close_commits_what_was_handed_over(tmp_path: Path) -> None:
    """Writes handed over and not yet committed when the store closes are committed first."""
    db = tmp_path / "q.db"
    store = SQLiteTaskStore(db)
    await store.open()
    lane = _lane(store)
    assert lane is not None
    futs = [lane.put([NewTask(f"t{i}", "{}", 0.0)], 0.0) for i in range(50)]
    await store.close()
    assert [f.result() for f in futs] == [[True]] * 50
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 50
    conn.close()


@needs_native
def test_a_store_reused_in_another_loop_commits_in_python(tmp_path: Path) -> None:
    """The committer belongs to the loop that opened the store: another loop uses the Python
    path, and closing from there stops the committer too."""
    store = SQLiteTaskStore(tmp_path / "q.db")

    async def first() -> None:
        await store.open()
        assert _lane(store) is not None
        await store.put_many([NewTask("a", "{}", 0.0)], now=0.0)

    async def second() -> list[bool]:
        lane = _lane(store)
        assert lane is not None and not lane.usable()
        out = await store.put_many([NewTask("a", "{}", 0.0), NewTask("b", "{}", 0.0)], now=0.0)
        await store.close()
        assert _lane(store) is None and not lane._thread.is_alive()
        return out

    asyncio.run(first())
    assert asyncio.run(second()) == [False, True]


async def _workload(db: Path) -> list[tuple[Any, ...]]:
    """Saves (ids repeated), claims, successes, failures, dead letters; the rows left."""
    now = [1_000.0]

    async def execute(task: dict[str, Any]) -> None:
        if task["id"] in ("t3", "t7", "t11"):
            raise ConnectionError("down")

    rec = MCPTaskRecovery(
        db, execute=execute, retry_delay=0, max_retries=2, clock=lambda: now[0], concurrency=3
    )
    saved = await asyncio.gather(*(rec.save_failed_task({"id": f"t{i % 14}"}) for i in range(20)))
    assert len(set(saved)) == 14
    await rec.save_failed_tasks([{"id": "t1"}, {"id": "late"}])
    for _ in range(3):
        await rec.retry_once()
        now[0] += 1
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    rows = store.sync._rows(
        "SELECT id, payload, attempts, due_at, created_at, dead_at, last_error, lease IS NULL "
        "FROM tasks ORDER BY id",
        (),
    )
    await rec.aclose()
    return [tuple(r) for r in rows]


@needs_native
async def test_both_paths_leave_the_same_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same calls with a fixed clock leave the same rows, whichever path commits them."""
    ours = await _workload(tmp_path / "native.db")
    monkeypatch.setenv("SAFLA_DIAG_PURE", "1")
    theirs = await _workload(tmp_path / "python.db")
    assert ours == theirs
    assert [r[0] for r in ours] == ["t11", "t3", "t7"]
    assert all(r[2] == 2 and r[5] is not None and r[6] for r in ours)  # dead after two attempts


@both_paths
async def test_any_text_round_trips(tmp_path: Path, path: str) -> None:
    """Ids and payloads with NULs, accents, emoji and long text come back as saved, and ack."""
    store = SQLiteTaskStore(tmp_path / "q.db")
    await store.open()
    ids = ["a\x00b", "ünïcödé", "😀" * 3, "x" * 5000, "tab\tand\nnewline"]
    tasks = [NewTask(i, '{"q": "' + i.encode("unicode_escape").decode() + '"}', 0.0) for i in ids]
    assert await store.put_many(tasks, now=0.0) == [True] * len(ids)
    claimed = await store.claim(now=1.0, limit=10, lease_s=60, max_attempts=3)
    assert sorted((c.id, c.payload, c.attempts) for c in claimed) == sorted(
        (t.id, t.payload, 1) for t in tasks
    )
    assert await store.ack_many([(c.id, c.lease) for c in claimed]) == len(ids)
    assert await store.pending() == []
    await store.close()


@needs_native
async def test_a_failed_claim_ahead_does_not_stop_the_worker(tmp_path: Path) -> None:
    """A claim handed over ahead that fails is reported once; the worker claims again and every
    task runs once."""
    ran: list[str] = []
    all_ran = asyncio.Event()

    def execute(task: dict[str, Any]) -> None:
        ran.append(task["id"])
        if len(ran) == 200:
            all_ran.set()

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=execute, retry_delay=0, concurrency=4)
    await rec.save_failed_tasks([{"id": f"t{i:03}"} for i in range(200)])
    store = rec.store
    assert isinstance(store, SQLiteTaskStore)
    real = store.claim
    calls = 0

    async def flaky(**kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise QueueStoreError("the disk hiccuped", location=store.location)
        return await real(**kw)

    store.claim = flaky  # type: ignore[method-assign]
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    try:
        async with asyncio.timeout(20):
            await all_ran.wait()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    # Tasks stopped before their acks were given back (at least once): they run again here.
    again = await rec.retry_once()
    assert again <= 4
    assert sorted(set(ran)) == [f"t{i:03}" for i in range(200)] and len(ran) == 200 + again
    assert calls > 3
    assert await rec.load_failed_tasks() == 0
    await rec.aclose()


@needs_native
async def test_a_row_that_is_not_utf8_fails_one_claim_not_the_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload another program wrote in bytes that are not UTF-8: the claim holding it is run
    again on the Python path and says why in the log; nothing waits forever."""
    db = tmp_path / "q.db"
    store = SQLiteTaskStore(db)
    await store.open()
    await store.put_many([NewTask("good", "{}", 0.0)], now=0.0)
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO tasks (id, payload, attempts, due_at, created_at) "
        "VALUES ('bad', CAST(x'7bff7d' AS TEXT), 0, 0, 0)"
    )
    conn.commit()
    conn.close()
    async with asyncio.timeout(10):
        got = await store.claim(now=1.0, limit=10, lease_s=60, max_attempts=3)
    assert got == []  # both leased by the claim that could not be read; due again in 60 s
    assert "not valid UTF-8" in caplog.text
    later = await store.claim(now=62.0, limit=1, lease_s=60, max_attempts=3)
    assert [t.id for t in later] == ["good"]  # rows are claimed in order of due time, then rowid
    await store.close()


@needs_native
async def test_the_worker_schedules_instead_of_polling(tmp_path: Path) -> None:
    """With one task due later, the worker claims a handful of times, not in a busy loop: the
    committer's own commits, which the file's other connection sees as a change, wake it once."""
    ran = asyncio.Event()
    rec = MCPTaskRecovery(tmp_path / "q.db", execute=lambda t: ran.set())
    await rec.save_failed_task({"id": "later"}, delay=0.5)
    store = rec.store
    assert isinstance(store, SQLiteTaskStore) and _lane(store) is not None
    real = store.claim
    claims = 0

    async def spy(**kw: Any) -> Any:
        nonlocal claims
        claims += 1
        return await real(**kw)

    store.claim = spy  # type: ignore[method-assign]
    worker = asyncio.ensure_future(rec.retry_failed_tasks())
    try:
        async with asyncio.timeout(10):
            await ran.wait()
        await asyncio.sleep(0.6)  # idle again afterwards: no claims while nothing is due
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert 2 <= claims <= 8, claims  # 5 here; a busy loop would make hundreds
    assert await rec.load_failed_tasks() == 0
    await rec.aclose()
