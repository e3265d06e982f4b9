"""The SQLite queue backend: schema, claims and leases, dead letters, bad files refused untouched."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import RecoveryError
from safla_diag.mcp_retry._model import NewTask, QueueStoreError, QueueView, TaskStore
from safla_diag.mcp_retry._sqlite import SQLiteQueue
from safla_diag.mcp_retry._sqlite_store import SQLiteTaskStore


def _new(i: str, due: float = 0.0) -> NewTask:
    return NewTask(id=i, payload=json.dumps({"id": i}), due_at=due)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteQueue:
    s = SQLiteQueue(tmp_path / "q.db")
    s.open()
    yield s  # type: ignore[misc]
    s.close()


def test_satisfies_the_protocols(store: SQLiteQueue, tmp_path: Path) -> None:
    """The async adapter implements the storage protocol; the blocking queue the read-only view."""
    assert isinstance(SQLiteTaskStore(tmp_path / "q.db"), TaskStore)
    assert isinstance(store, QueueView)


def test_cache_and_checkpoint_sized_for_the_queue(tmp_path: Path) -> None:
    """
    A writable store keeps a 10 000-task backlog in its page cache; at NORMAL it checkpoints the
    WAL every 4 000 pages (fewer fsyncs per task), at FULL every 1 000 (SQLite's default: each
    commit syncs anyway); durability is unchanged (synchronous stays as asked).
    """
    for mode, code, pages in (("NORMAL", 1, 4000), ("FULL", 2, 1000)):
        s = SQLiteQueue(tmp_path / f"{mode}.db", synchronous=mode)  # type: ignore[arg-type]
        s.open()
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -16384
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == pages
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == code
        s.close()


def test_wal_and_synchronous_modes(tmp_path: Path) -> None:
    """The file is in WAL mode; synchronous is NORMAL by default and FULL on request."""
    for mode, code in (("NORMAL", 1), ("FULL", 2)):
        s = SQLiteQueue(tmp_path / f"{mode}.db", synchronous=mode)  # type: ignore[arg-type]
        s.open()
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == code
        s.close()
    with pytest.raises(ValueError):
        SQLiteQueue(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]


def test_enqueue_is_idempotent_on_id(store: SQLiteQueue) -> None:
    """A known id stores nothing new, within a batch and across calls, and after dead-lettering."""
    assert store.put_many([_new("a"), _new("b"), _new("a")], now=0) == [True, True, False]
    assert store.put_many([_new("a")], now=1) == [False]
    assert [t.id for t in store.pending()] == ["a", "b"]
    (c,) = store.claim(now=1, limit=1, lease_s=10, max_attempts=1)
    assert store.fail(c.id, c.lease, error="x", now=1, next_attempt_at=1, max_attempts=1) == (
        "dead"
    )
    assert store.put_many([_new(c.id)], now=2) == [False]


def test_claim_counts_the_attempt_and_leases(store: SQLiteQueue) -> None:
    """A claim increments attempts at once; a leased task is not claimed again until its lease ends."""
    store.put_many([_new("a")], now=0)
    (c,) = store.claim(now=1, limit=5, lease_s=10, max_attempts=3)
    assert (c.attempts, c.lease_until) == (1, 11)
    assert store.claim(now=5, limit=5, lease_s=10, max_attempts=3) == []
    assert store.next_due() == 11
    (again,) = store.claim(now=11, limit=5, lease_s=10, max_attempts=3)
    assert again.attempts == 2 and again.lease != c.lease
    # The first worker's late verdict no longer applies: its lease is gone.
    assert (
        store.fail("a", c.lease, error="late", now=12, next_attempt_at=12, max_attempts=3) == "lost"
    )
    assert store.pending()[0].leased


def test_fail_schedules_and_dead_letters_after_the_last(store: SQLiteQueue) -> None:
    """Failures reschedule with the error kept; the last allowed failure moves the task to dead letters."""
    store.put_many([_new("a")], now=0)
    for attempt in (1, 2):
        (c,) = store.claim(now=attempt * 10, limit=1, lease_s=1, max_attempts=3)
        out = store.fail(
            "a", c.lease, error=f"e{attempt}", now=c.lease_until, next_attempt_at=99, max_attempts=3
        )
        assert out == "retry"
        assert store.pending()[0].last_error == f"e{attempt}"
        assert store.claim(now=50, limit=1, lease_s=1, max_attempts=3) == []
        store._run(lambda c: c.execute("UPDATE tasks SET due_at = 0"), write=True)
    (c,) = store.claim(now=100, limit=1, lease_s=1, max_attempts=3)
    assert c.attempts == 3
    assert (
        store.fail("a", c.lease, error="final", now=100, next_attempt_at=0, max_attempts=3)
        == "dead"
    )
    assert store.pending() == []
    (d,) = store.dead_letters()
    assert (d.id, d.attempts, d.last_error) == ("a", 3, "final")


def test_expired_last_lease_is_dead_lettered_not_rerun(store: SQLiteQueue) -> None:
    """A worker that died during the last attempt: the next claim dead-letters the task."""
    store.put_many([_new("a")], now=0)
    (_c,) = store.claim(now=0, limit=1, lease_s=5, max_attempts=1)
    assert store.claim(now=6, limit=1, lease_s=5, max_attempts=1) == []
    (d,) = store.dead_letters()
    assert d.id == "a" and d.attempts == 1 and "lease expired" in (d.last_error or "")


def test_ack_many(store: SQLiteQueue) -> None:
    """Group acks delete every finished task in one transaction."""
    store.put_many([_new(f"t{i}") for i in range(5)], now=0)
    claimed = store.claim(now=0, limit=5, lease_s=60, max_attempts=3)
    assert store.ack_many([(c.id, c.lease) for c in claimed]) == 5
    assert store.pending() == []


def test_released_last_attempt_is_dead_lettered(store: SQLiteQueue) -> None:
    """A final attempt interrupted by a graceful stop still counts: dead-lettered, not rerun."""
    store.put_many([_new("a")], now=0)
    (c,) = store.claim(now=0, limit=1, lease_s=60, max_attempts=1)
    store.release([(c.id, c.lease)], now=1)
    assert store.claim(now=1, limit=1, lease_s=60, max_attempts=1) == []
    (d,) = store.dead_letters()
    assert d.attempts == 1


def test_ack_deletes_and_release_keeps_the_count(store: SQLiteQueue) -> None:
    """Success deletes the row; a released lease makes the task due now with its attempt counted."""
    store.put_many([_new("a"), _new("b")], now=0)
    a, b = store.claim(now=0, limit=2, lease_s=60, max_attempts=3)
    assert store.ack(a.id, a.lease) is True
    assert store.ack(a.id, a.lease) is False
    store.release([(b.id, b.lease)], now=1)
    (again,) = store.claim(now=1, limit=5, lease_s=60, max_attempts=3)
    assert (again.id, again.attempts) == ("b", 2)


def test_claim_reads_only_the_head_of_the_due_index(store: SQLiteQueue) -> None:
    """Claims and next-due use the due_at index (no scan of the backlog)."""
    conn = store._conn
    assert conn is not None
    from safla_diag.mcp_retry._sqlite import _CLAIM

    plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + _CLAIM, ("t", 2, 1, 4)))
    # The head of the due index (covering: it holds the rowids), then the rows by rowid.
    assert "SEARCH tasks USING COVERING INDEX tasks_due" in plan and "SCAN" not in plan
    plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN SELECT min(due_at) FROM tasks"))
    assert "tasks_due" in plan


def test_stats(store: SQLiteQueue) -> None:
    """Pending, in flight, dead, oldest and next due agree with the rows."""
    store.put_many([_new("a", 5.0), _new("b", 7.0), _new("c", 9.0)], now=2.0)
    store.claim(now=5.0, limit=1, lease_s=100, max_attempts=1)  # a in flight until 105
    s = store.stats(now=6.0)
    assert (s.pending, s.in_flight, s.dead, s.oldest_created_at, s.next_due_at) == (
        2,
        1,
        0,
        2.0,
        7.0,
    )
    d = s.to_dict(now=6.0)
    assert d["oldest_age_s"] == 4.0 and d["next_due_in_s"] == 1.0


def _bytes(p: Path) -> bytes:
    return p.read_bytes()


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database at all" * 40,
        b'[{"id": "x"}]',
        b"SQLite format 3\x00" + b"\xff" * 4080,
    ],
    ids=["text", "json", "garbage-after-header"],
)
def test_corrupt_file_refused_and_untouched(tmp_path: Path, content: bytes) -> None:
    """A file that is not a queue: a clear error naming the file; the file and folder unchanged."""
    p = tmp_path / "queue.db"
    p.write_bytes(content)
    s = SQLiteQueue(p)
    with pytest.raises(QueueStoreError) as err:
        s.open()
    assert str(p) in str(err.value) and isinstance(err.value, RecoveryError)
    assert _bytes(p) == content
    assert sorted(x.name for x in tmp_path.iterdir()) == ["queue.db"]


def test_foreign_sqlite_refused_and_untouched(tmp_path: Path) -> None:
    """Someone else's SQLite database is not converted into a queue."""
    p = tmp_path / "app.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = _bytes(p)
    with pytest.raises(QueueStoreError, match="something else") as err:
        SQLiteQueue(p).open()
    assert str(p) in str(err.value)
    assert _bytes(p) == before
    conn = sqlite3.connect(p)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    """A queue written by a newer library is refused with an upgrade hint."""
    p = tmp_path / "q.db"
    s = SQLiteQueue(p)
    s.open()
    s._run(
        lambda c: c.execute("UPDATE safla_meta SET value = '99' WHERE key = 'schema_version'"),
        write=True,
    )
    s.close()
    with pytest.raises(QueueStoreError, match="newer"):
        SQLiteQueue(p).open()


def test_readonly_never_creates(tmp_path: Path) -> None:
    """Read-only inspection of a missing file fails without creating it."""
    p = tmp_path / "missing.db"
    with pytest.raises(QueueStoreError, match="no such"):
        SQLiteQueue(p, readonly=True).open()
    assert not p.exists()


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    """Closing and reopening finds the same tasks, attempts and dead letters."""
    p = tmp_path / "q.db"
    s = SQLiteQueue(p)
    s.put_many([_new("a"), _new("b")], now=0)
    s.claim(now=0, limit=1, lease_s=1, max_attempts=3)
    s.close()
    s2 = SQLiteQueue(p, synchronous="FULL")
    assert {(t.id, t.attempts) for t in s2.pending()} == {("a", 1), ("b", 0)}
    s2.close()


@given(st.binary(max_size=600))
def test_random_bytes_never_crash_or_change(content: bytes) -> None:
    """Whatever bytes the file holds, opening either works or raises QueueStoreError, never more."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "q.db"
        p.write_bytes(content)
        s = SQLiteQueue(p)
        try:
            s.open()
        except QueueStoreError:
            assert _bytes(p) == content
        else:
            s.close()
            assert content == b"" or content.startswith(b"SQLite format 3\x00")


_V1_SCHEMA = (
    "CREATE TABLE safla_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE tasks (id TEXT PRIMARY KEY, payload TEXT NOT NULL, "
    "attempts INTEGER NOT NULL DEFAULT 0, due_at REAL NOT NULL, lease TEXT, "
    "created_at REAL NOT NULL, last_error TEXT)",
    "CREATE INDEX tasks_due ON tasks (due_at)",
    "CREATE TABLE dead_letters (id TEXT PRIMARY KEY, payload TEXT NOT NULL, "
    "attempts INTEGER NOT NULL, created_at REAL NOT NULL, dead_at REAL NOT NULL, last_error TEXT)",
)


def _write_v1_file(path: Path) -> None:
    """A queue file as version 1 of the schema wrote it: dead letters in a table of their own."""
    conn = sqlite3.connect(path)
    for stmt in _V1_SCHEMA:
        conn.execute(stmt)
    conn.executemany(
        "INSERT INTO safla_meta VALUES (?, ?)",
        [("kind", "safla_diag.mcp_task_queue"), ("schema_version", "1")],
    )
    conn.execute("INSERT INTO tasks VALUES ('p', '{\"id\": \"p\"}', 1, 5.0, NULL, 1.0, 'e1')")
    conn.execute("INSERT INTO dead_letters VALUES ('d', '{\"id\": \"d\"}', 3, 0.5, 2.0, 'boom')")
    conn.commit()
    conn.close()


def test_version_1_file_read_only_unchanged(tmp_path: Path) -> None:
    """A read-only view reads a version-1 file in today's shape and changes nothing in it."""
    path = tmp_path / "old.db"
    _write_v1_file(path)
    before = path.read_bytes()
    view = SQLiteQueue(path, readonly=True)
    stats = view.stats(now=3.0)
    assert (stats.pending, stats.in_flight, stats.dead) == (1, 0, 1)
    assert [(t.id, t.attempts, t.last_error) for t in view.pending()] == [("p", 1, "e1")]
    assert [(d.id, d.attempts, d.last_error) for d in view.dead_letters()] == [("d", 3, "boom")]
    assert view.next_due() == 5.0
    view.close()
    assert path.read_bytes() == before


def test_version_1_file_migrated_keeps_every_task(tmp_path: Path) -> None:
    """Opened for writing, a version-1 file is migrated: dead letters join tasks, nothing is lost."""
    path = tmp_path / "old.db"
    _write_v1_file(path)
    q = SQLiteQueue(path)
    q.open()
    assert q.meta("schema_version") == "2"
    assert [t.id for t in q.pending()] == ["p"]
    (d,) = q.dead_letters()
    assert (d.id, d.attempts, d.created_at, d.dead_at, d.last_error) == ("d", 3, 0.5, 2.0, "boom")
    assert q.put_many([_new("d"), _new("n")], now=6) == [False, True]  # a dead id stays dead
    claimed = q.claim(now=10, limit=10, lease_s=1, max_attempts=3)
    assert sorted(c.id for c in claimed) == ["n", "p"]
    q.close()
    conn = sqlite3.connect(path)
    kinds = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name = 'dead_letters'"))
    conn.close()
    assert kinds == {"dead_letters": "view"}
    reopened = SQLiteQueue(path)
    assert reopened.stats(now=10).dead == 1  # a second open finds it migrated
    reopened.close()


def test_queue_stats_is_a_report(store: SQLiteQueue) -> None:
    """QueueStats follows the report contract: dict, JSON, text and HTML agree."""
    from safla_diag._report import Report

    store.put_many([_new("a", 5.0)], now=1.0)
    stats = store.stats(now=3.0)
    assert isinstance(stats, Report)
    d = stats.to_dict()
    assert (d["pending"], d["oldest_age_s"], d["next_due_in_s"]) == (1, 2.0, 2.0)
    assert json.loads(stats.to_json()) == d
    assert stats.oldest_pending_age_s == 2.0
    assert "pending:" in stats.to_text() and "2.0s ago" in stats.to_text()
    assert "<table>" in stats._repr_html_() and str(store.path) in stats._repr_html_()


def test_a_failing_write_in_a_group_fails_alone(store: SQLiteQueue) -> None:
    """A group commits its writes together; one that fails fails alone and whole (the group is
    rolled back and its writes run one by one, each in its own transaction)."""

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO tasks (id, payload, due_at, created_at) VALUES ('x', '{}', 1, 1)")
        conn.execute("SELECT * FROM no_such_table")

    out = store.run_group(
        [
            lambda: store.put_many([_new("a", 1.0), _new("b", 1.0)], now=1.0),
            lambda: store._run(half_done, write=True),
            lambda: store.put_many([_new("c", 1.0), _new("a", 1.0)], now=1.0),
        ]
    )
    assert out[0] == (True, [True, True])
    assert out[1][0] is False and isinstance(out[1][1], QueueStoreError)
    assert out[2] == (True, [True, False])
    assert sorted(t.id for t in store.pending()) == ["a", "b", "c"]  # not x: all of it or none


def test_put_many_tells_new_from_known_ids(store: SQLiteQueue) -> None:
    """Per task, whether it was new: known ids (queued or dead) and repeats in the batch are not."""
    assert store.put_many([_new("a"), _new("b")], now=1.0) == [True, True]
    store.put_dead(_new("d"), error="x", now=1.0)
    got = store.put_many([_new("c"), _new("a"), _new("e"), _new("c"), _new("d")], now=2.0)
    assert got == [True, False, True, False, False]
    assert store.put_many([_new("f"), _new("f")], now=3.0) == [True, False]
    assert sorted(t.id for t in store.pending()) == ["a", "b", "c", "e", "f"]


@pytest.mark.anyio
async def test_a_posted_job_that_raises_leaves_the_lane_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A posted job's bug is logged; the lane's thread lives on and later calls still run."""
    from safla_diag.mcp_retry._threads import ThreadLane

    lane = ThreadLane("test-lane")
    try:
        lane.post(lambda: 1 / 0)
        async with asyncio.timeout(5):
            assert await lane.run(lambda: 41 + 1) == 42
    finally:
        lane.close()
    assert "a posted job failed on test-lane" in caplog.text
