"""
The behaviour every queue backend shares, run against SQLite and against the real PostgreSQL.

Each test gets a fresh queue: a file in ``tmp_path``, or a schema of its own in the ``test``
database (dropped afterwards), so the PostgreSQL tests can run in parallel.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from safla_diag import MCPTaskRecovery
from safla_diag.mcp_retry._backends import store_for
from safla_diag.mcp_retry._model import ClaimedTask, NewTask, QueueStoreError, TaskStore
from safla_diag.mcp_retry._postgres import PostgresTaskStore

from ._pg import pg_queue_url_fixture, pg_schema_fixture, sql  # noqa: F401

# "sqlite": the compiled committer where it was built; "sqlite-python": the store's Python thread.
BACKENDS = ["sqlite", "sqlite-python", "postgresql"]


def _new(i: str, due: float = 0.0) -> NewTask:
    return NewTask(id=i, payload=json.dumps({"id": i}), due_at=due)


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh queue lives: a SQLite file, or a PostgreSQL URL with a schema of its own."""
    if request.param.startswith("sqlite"):
        if request.param == "sqlite-python":
            request.getfixturevalue("python_commits")
        return str(tmp_path / "q.db")
    return str(request.getfixturevalue("pg_queue_url"))


@pytest.fixture
def make_store(location: str) -> Callable[[], TaskStore]:
    """A factory of stores on this test's queue (several = several processes' views of one queue)."""
    return lambda: store_for(location)


@pytest.fixture
async def store(make_store: Callable[[], TaskStore]) -> AsyncIterator[TaskStore]:
    """An open store on a fresh queue."""
    s = make_store()
    await s.open()
    yield s
    await s.close()


pytestmark = pytest.mark.anyio


async def test_satisfies_the_protocol(store: TaskStore) -> None:
    """Both backends implement the storage protocol."""
    assert isinstance(store, TaskStore)


async def test_enqueue_is_idempotent_on_id(store: TaskStore) -> None:
    """A known id stores nothing new, within a batch and across calls, and after dead-lettering."""
    assert await store.put_many([_new("a"), _new("b"), _new("a")], now=0) == [True, True, False]
    assert await store.put_many([_new("a")], now=1) == [False]
    assert [t.id for t in await store.pending()] == ["a", "b"]
    (c,) = await store.claim(now=1, limit=1, lease_s=10, max_attempts=1)
    assert (
        await store.fail(c.id, c.lease, error="x", now=1, next_attempt_at=1, max_attempts=1)
        == "dead"
    )
    assert await store.put_many([_new(c.id)], now=2) == [False]
    assert [t.id for t in await store.pending()] == ["b"]


async def test_claim_counts_the_attempt_and_leases(store: TaskStore) -> None:
    """A claim increments attempts at once; a leased task is not claimed again until its lease ends."""
    await store.put_many([_new("a")], now=0)
    (c,) = await store.claim(now=1, limit=5, lease_s=10, max_attempts=3)
    assert (c.attempts, c.lease_until) == (1, 11)
    assert await store.claim(now=5, limit=5, lease_s=10, max_attempts=3) == []
    assert await store.next_due() == 11
    (again,) = await store.claim(now=11, limit=5, lease_s=10, max_attempts=3)
    assert again.attempts == 2 and again.lease != c.lease
    # The first worker's late verdict no longer applies: its lease is gone.
    out = await store.fail("a", c.lease, error="late", now=12, next_attempt_at=12, max_attempts=3)
    assert out == "lost"
    assert (await store.pending())[0].leased


async def test_claim_takes_the_soonest_due_first(store: TaskStore) -> None:
    """Claims take due tasks in due order, and only due ones."""
    await store.put_many([_new("late", 9.0), _new("soon", 1.0), _new("mid", 5.0)], now=0)
    got = await store.claim(now=6, limit=5, lease_s=10, max_attempts=3)
    assert [c.id for c in got] == ["soon", "mid"]
    assert await store.claim(now=6, limit=5, lease_s=10, max_attempts=3) == []


async def test_fail_schedules_and_dead_letters_after_the_last(store: TaskStore) -> None:
    """Failures reschedule with the error kept; the last allowed failure dead-letters the task."""
    await store.put_many([_new("a")], now=0)
    t = 0.0
    for attempt in (1, 2):
        t += 100
        (c,) = await store.claim(now=t, limit=1, lease_s=1, max_attempts=3)
        assert c.attempts == attempt
        out = await store.fail(
            "a", c.lease, error=f"e{attempt}", now=t, next_attempt_at=t + 50, max_attempts=3
        )
        assert out == "retry"
        (p,) = await store.pending()
        assert (p.last_error, p.due_at, p.leased) == (f"e{attempt}", t + 50, False)
        assert await store.claim(now=t + 49, limit=1, lease_s=1, max_attempts=3) == []
    (c,) = await store.claim(now=t + 100, limit=1, lease_s=1, max_attempts=3)
    assert c.attempts == 3
    out = await store.fail("a", c.lease, error="final", now=t, next_attempt_at=0, max_attempts=3)
    assert out == "dead"
    assert await store.pending() == []
    (d,) = await store.dead_letters()
    assert (d.id, d.attempts, d.last_error) == ("a", 3, "final")


async def test_expired_last_lease_is_dead_lettered_not_rerun(store: TaskStore) -> None:
    """A worker that died during the last attempt: the next claim dead-letters the task."""
    await store.put_many([_new("a"), _new("b", 3.0)], now=0)
    (_c,) = await store.claim(now=0, limit=1, lease_s=5, max_attempts=1)
    got = await store.claim(now=6, limit=5, lease_s=5, max_attempts=1)
    assert [c.id for c in got] == ["b"]
    (d,) = await store.dead_letters()
    assert d.id == "a" and d.attempts == 1 and "lease expired" in (d.last_error or "")


async def test_ack_deletes_and_release_keeps_the_count(store: TaskStore) -> None:
    """Success deletes the row; a released lease makes the task due now with its attempt counted."""
    await store.put_many([_new("a"), _new("b")], now=0)
    a, b = await store.claim(now=0, limit=2, lease_s=60, max_attempts=3)
    assert await store.ack(a.id, a.lease) is True
    assert await store.ack(a.id, a.lease) is False
    await store.release([(b.id, b.lease), ("nope", "x")], now=1)
    (again,) = await store.claim(now=1, limit=5, lease_s=60, max_attempts=3)
    assert (again.id, again.attempts) == ("b", 2)
    # An acked id may be used again: it is a new task.
    assert await store.put_many([_new("a")], now=2) == [True]


async def test_ack_many_and_put_dead(store: TaskStore) -> None:
    """Acks in one batch delete what is there; a task put straight into the dead letters is known."""
    await store.put_many([_new("a"), _new("b"), _new("c")], now=0)
    got = await store.claim(now=0, limit=3, lease_s=60, max_attempts=3)
    assert await store.ack_many([(c.id, c.lease) for c in got if c.id != "c"]) == 2
    assert await store.ack_many([("a", "x")]) == 0
    assert [t.id for t in await store.pending()] == ["c"]
    assert await store.put_dead(_new("d"), error="needs a decision", now=5) is True
    assert await store.put_dead(_new("d"), error="again", now=6) is False
    assert await store.put_dead(_new("c"), error="queued already", now=6) is False
    assert await store.put_many([_new("d")], now=7) == [False]
    (d,) = await store.dead_letters()
    assert (d.id, d.attempts, d.last_error) == ("d", 0, "needs a decision")
    assert await store.claim(now=30, limit=5, lease_s=60, max_attempts=3) == []  # c is leased
    assert (await store.stats(now=30)).dead == 1


async def test_extend_only_touches_live_leases(store: TaskStore) -> None:
    """Renewing pushes the lease's end; a lease taken over by another worker is left alone."""
    await store.put_many([_new("a", 0.0), _new("b", 1.0)], now=0)
    (a,) = await store.claim(now=0, limit=1, lease_s=10, max_attempts=5)
    (b,) = await store.claim(now=1, limit=1, lease_s=50, max_attempts=5)
    (a2,) = await store.claim(now=10, limit=1, lease_s=10, max_attempts=5)  # a's lease expired
    assert (a.id, b.id, a2.id) == ("a", "b", "a")
    await store.extend([(a.id, a.lease), (b.id, b.lease)], until=100)
    due = {t.id: t.due_at for t in await store.pending()}
    assert due == {"a": 20, "b": 100}


async def test_stats(store: TaskStore) -> None:
    """Pending, in flight, dead, oldest and next due agree with the rows."""
    await store.put_many([_new("a", 5.0), _new("b", 7.0), _new("c", 9.0)], now=2.0)
    await store.claim(now=5.0, limit=1, lease_s=100, max_attempts=1)  # a in flight until 105
    s = await store.stats(now=6.0)
    assert (s.pending, s.in_flight, s.dead, s.oldest_created_at, s.next_due_at) == (
        2,
        1,
        0,
        2.0,
        7.0,
    )
    d = s.to_dict(now=6.0)
    assert d["oldest_age_s"] == 4.0 and d["next_due_in_s"] == 1.0
    assert s.location == store.location


async def test_reopen_keeps_everything(make_store: Callable[[], TaskStore]) -> None:
    """Closing and reopening finds the same tasks, attempts and dead letters."""
    s = make_store()
    await s.open()
    await s.put_many([_new("a", 0.0), _new("b", 1.0), _new("c", 2.0)], now=0)
    await s.claim(now=0, limit=1, lease_s=10, max_attempts=3)
    (c,) = await s.claim(now=1, limit=1, lease_s=10, max_attempts=1)
    await s.fail(c.id, c.lease, error="gone", now=0, next_attempt_at=0, max_attempts=1)
    await s.close()
    s2 = make_store()
    await s2.open()
    assert {(t.id, t.attempts) for t in await s2.pending()} == {("a", 1), ("c", 0)}
    assert [(d.id, d.last_error) for d in await s2.dead_letters()] == [("b", "gone")]
    await s2.close()


async def test_concurrent_claimers_never_share_a_task(make_store: Callable[[], TaskStore]) -> None:
    """Several stores (as in several processes) claiming at once: each task leased to exactly one."""
    n, workers = 200, 4
    stores = [make_store() for _ in range(workers)]
    for s in stores:
        await s.open()
    await stores[0].put_many([_new(f"t{i:03}") for i in range(n)], now=0)
    got: list[list[ClaimedTask]] = [[] for _ in range(workers)]

    async def drain(w: int) -> None:
        while batch := await stores[w].claim(now=1, limit=7, lease_s=100, max_attempts=3):
            got[w].extend(batch)
            await asyncio.sleep(0)

    await asyncio.gather(*(drain(w) for w in range(workers)))
    ids = Counter(c.id for batch in got for c in batch)
    assert len(ids) == n and set(ids.values()) == {1}
    assert all(c.attempts == 1 for batch in got for c in batch)
    for s in stores:
        await s.close()


async def test_newer_schema_refused(location: str, make_store: Callable[[], TaskStore]) -> None:
    """A queue written by a newer library is refused with an upgrade hint, and left as it is."""
    s = make_store()
    await s.open()
    await s.put_many([_new("a")], now=0)
    await s.close()
    if isinstance(s, PostgresTaskStore):
        base = location.partition("?")[0]
        sql(
            base,
            f"UPDATE \"{s.schema}\".safla_meta SET value = '99' WHERE key = 'schema_version'",
        )
    else:
        import sqlite3

        conn = sqlite3.connect(location)
        with conn:
            conn.execute("UPDATE safla_meta SET value = '99' WHERE key = 'schema_version'")
        conn.close()
    s2 = make_store()
    with pytest.raises(QueueStoreError, match="newer"):
        await s2.open()
    await s2.close()


# -- the worker, on either backend ------------------------------------------------------------------


class Recorder:
    """An execute callback that fails the first ``fail`` calls per task and records every call."""

    def __init__(self, fail: float = 0) -> None:
        self.fail = fail
        self.calls: Counter[str] = Counter()
        self.done: list[str] = []
        self.changed = asyncio.Event()

    async def __call__(self, task: dict[str, Any]) -> None:
        self.calls[task["id"]] += 1
        self.changed.set()
        if self.calls[task["id"]] <= self.fail:
            raise ConnectionError(f"server down for {task['id']}")
        self.done.append(task["id"])


async def _until(cond: Callable[[], bool], event: asyncio.Event, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            event.clear()
            if cond():
                return
            await event.wait()


async def test_always_failing_task_runs_max_retries_then_dead_letter(location: str) -> None:
    """retry_once runs a failing task once per call; after max_retries it is a dead letter."""
    rec = Recorder(fail=99)
    q = MCPTaskRecovery(location, execute=rec, max_retries=3, retry_delay=0)
    await q.save_failed_task({"id": "t1", "tool": "x"})
    for _ in range(5):
        await q.retry_once()
    assert rec.calls["t1"] == 3
    (dead,) = await q.adead_letters()
    assert dead["id"] == "t1" and dead["attempts"] == 3 and "server down" in dead["last_error"]
    assert await q.load_failed_tasks() == 0
    await q.aclose()


async def test_worker_retries_until_success_and_wakes_on_save(location: str) -> None:
    """The worker, idle on an empty queue, runs a task as soon as it is saved, retrying on failure."""
    rec = Recorder(fail=2)
    q = MCPTaskRecovery(location, execute=rec, max_retries=5, retry_delay=0, max_delay=0)
    worker = asyncio.create_task(q.retry_failed_tasks())
    await q.save_failed_task({"id": "w1"})
    await _until(lambda: rec.done == ["w1"], rec.changed)
    assert rec.calls["w1"] == 3
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert await q.afailed_tasks() == []
    await q.aclose()


async def test_cancel_releases_leases(location: str) -> None:
    """Cancelling the worker mid-task gives the lease back: the task is due at once, attempt counted."""
    started = asyncio.Event()

    async def hang(task: dict[str, Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    q = MCPTaskRecovery(location, execute=hang, max_retries=3, retry_delay=0, lease_s=600)
    await q.save_failed_task({"id": "h1"})
    worker = asyncio.create_task(q.retry_failed_tasks())
    async with asyncio.timeout(20):
        await started.wait()
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    stats = await q.stats()
    assert (stats.pending, stats.in_flight) == (1, 0)
    (t,) = await q.store.pending()
    assert t.attempts == 1 and not t.leased
    await q.aclose()


# -- the property: exact retry counts, whatever the interleaving ------------------------------------

LEASE = 10.0
WORKERS = st.integers(0, 2)


class QueueMachine(RuleBasedStateMachine):
    """
    Three workers share one queue; every execution fails; the clock is ours. Workers claim, fail,
    crash (leases left to expire), stop (leases given back), renew; the store is reopened at times.
    """

    location: str = ""
    reset: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.reset()
        self.store = self._open()
        self.t = 0.0
        self.runs: Counter[str] = Counter()
        self.held: dict[int, list[ClaimedTask]] = {0: [], 1: [], 2: []}
        self.ids: list[str] = []
        self.max_attempts = 3

    def _open(self) -> TaskStore:
        s = store_for(self.location)
        self.runner.run(s.open())
        return s

    def _do(self, coro: Any) -> Any:
        return self.runner.run(coro)

    @initialize(max_attempts=st.integers(1, 4), n=st.integers(1, 4))
    def enqueue(self, max_attempts: int, n: int) -> None:
        self.max_attempts = max_attempts
        self.ids = [f"t{i}" for i in range(n)]
        self._do(self.store.put_many([_new(i) for i in self.ids], now=0.0))

    @rule(w=WORKERS, limit=st.integers(1, 3))
    def claim(self, w: int, limit: int) -> None:
        got = self._do(
            self.store.claim(now=self.t, limit=limit, lease_s=LEASE, max_attempts=self.max_attempts)
        )
        for c in got:
            self.runs[c.id] += 1
            assert c.attempts == self.runs[c.id]
            for other in self.held.values():
                for h in other:
                    assert not (h.id == c.id and h.lease_until > self.t)
            self.held[w].append(c)

    @precondition(lambda self: any(self.held.values()))
    @rule(w=WORKERS, delay=st.sampled_from([0.0, 1.0, 30.0]))
    def fail(self, w: int, delay: float) -> None:
        if not self.held[w]:
            return
        c = self.held[w].pop(0)
        self._do(
            self.store.fail(
                c.id,
                c.lease,
                error=f"fail {c.attempts}",
                now=self.t,
                next_attempt_at=self.t + delay,
                max_attempts=self.max_attempts,
            )
        )

    @rule(w=WORKERS)
    def crash(self, w: int) -> None:
        self.held[w] = []

    @rule(w=WORKERS)
    def stop(self, w: int) -> None:
        self._do(self.store.release([(c.id, c.lease) for c in self.held[w]], now=self.t))
        self.held[w] = []

    @rule(w=WORKERS)
    def renew(self, w: int) -> None:
        live = [c for c in self.held[w] if c.lease_until > self.t]
        self._do(self.store.extend([(c.id, c.lease) for c in live], until=self.t + LEASE))
        self.held[w] = [c._replace(lease_until=self.t + LEASE) for c in live]

    @rule(dt=st.sampled_from([0.5, 5.0, 11.0, 40.0]))
    def advance(self, dt: float) -> None:
        self.t += dt

    @rule()
    def restart(self) -> None:
        self._do(self.store.close())
        self.store = self._open()

    @invariant()
    def never_more_than_allowed(self) -> None:
        assert all(n <= self.max_attempts for n in self.runs.values())

    def teardown(self) -> None:
        try:
            if self.ids:
                self.held = {0: [], 1: [], 2: []}
                for _ in range(10 * self.max_attempts + 10):
                    self.t += 1000
                    got = self._do(
                        self.store.claim(
                            now=self.t, limit=10, lease_s=LEASE, max_attempts=self.max_attempts
                        )
                    )
                    for c in got:
                        self.runs[c.id] += 1
                        self._do(
                            self.store.fail(
                                c.id,
                                c.lease,
                                error="last",
                                now=self.t,
                                next_attempt_at=self.t,
                                max_attempts=self.max_attempts,
                            )
                        )
                    if not self._do(self.store.pending()):
                        break
                assert self._do(self.store.pending()) == []
                dead = self._do(self.store.dead_letters())
                assert sorted(d.id for d in dead) == sorted(self.ids)
                assert all(d.attempts == self.max_attempts for d in dead)
                assert {i: self.runs[i] for i in self.ids} == dict.fromkeys(
                    self.ids, self.max_attempts
                )
        finally:
            self._do(self.store.close())
            self.runner.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_attempts_across_interleavings(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A task that always fails runs exactly max_attempts times and is dead-lettered once, on both."""
    if backend.startswith("sqlite"):
        if backend == "sqlite-python":
            request.getfixturevalue("python_commits")
        counter = [0]

        def reset() -> None:
            counter[0] += 1
            QueueMachine.location = str(tmp_path / f"q{counter[0]}.db")

        QueueMachine.location = str(tmp_path / "q0.db")
        examples, steps = 60, 30
    else:
        url = request.getfixturevalue("pg_queue_url")
        base = url.partition("?")[0]
        schema = request.getfixturevalue("pg_schema")
        # The schema is created by the first store; each example then starts from empty tables.
        QueueMachine.location = url

        def reset() -> None:
            rows = sql(
                base,
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = 'mcp_tasks'",
                (schema,),
            )
            if rows:
                sql(base, f'TRUNCATE "{schema}".mcp_tasks')

        examples, steps = settings.default.max_examples // 4, 25
    QueueMachine.reset = staticmethod(reset)  # type: ignore[assignment]
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(settings.default, max_examples=examples, stateful_step_count=steps),
    )
