"""
The PostgreSQL backend's own behaviour: URLs and schemas, migrations, wake-ups across replicas,
connection loss, and secrets kept out of messages. Against the real PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import MCPTaskRecovery, RecoveryError
from safla_diag.mcp_retry._backends import is_postgres_url, store_for
from safla_diag.mcp_retry._model import NewTask, QueueStoreError
from safla_diag.mcp_retry._postgres import (
    DEFAULT_SCHEMA,
    PG_SCHEMA_VERSION,
    PostgresTaskStore,
)
from safla_diag.mcp_retry._sqlite_store import SQLiteTaskStore

from ._pg import Proxy, drop_schema, pg_queue_url_fixture, pg_schema_fixture, poll, sql  # noqa: F401

SECRET = "s3cr3t-pw"


def _new(i: str, due: float = 0.0) -> NewTask:
    return NewTask(id=i, payload=f'{{"id": "{i}"}}', due_at=due)


# -- URLs and schemas (no server needed) --------------------------------------------------------------


def test_backend_chosen_by_url() -> None:
    """postgresql:// and postgres:// URLs select PostgreSQL; anything else is a SQLite file."""
    assert isinstance(store_for("postgresql://u@h/db"), PostgresTaskStore)
    assert isinstance(store_for("POSTGRES://u@h/db"), PostgresTaskStore)
    assert isinstance(store_for("queue.db"), SQLiteTaskStore)
    assert isinstance(store_for("postgresql.db"), SQLiteTaskStore)
    assert not is_postgres_url(b"postgresql://x")


def test_schema_from_url_or_argument() -> None:
    """The schema comes from the argument, else the URL's ``schema`` parameter, else the default."""
    assert PostgresTaskStore("postgresql://h/db").schema == DEFAULT_SCHEMA
    assert PostgresTaskStore("postgresql://h/db?schema=fleet_a").schema == "fleet_a"
    s = PostgresTaskStore("postgresql://h/db?schema=fleet_a&sslmode=disable", schema="b")
    assert s.schema == "b"
    assert "schema=b" in s.location and "sslmode=disable" in s.location
    assert "schema" not in s.target.conninfo.partition("?")[2].split("&")[0]


@pytest.mark.parametrize(
    "name", ["", "1abc", "a-b", 'x"; DROP TABLE t; --', "a" * 64, "ü", "a b", "public.x"]
)
def test_bad_schema_names_refused(name: str) -> None:
    """A schema name that is not a plain identifier is refused before anything is sent."""
    with pytest.raises(ValueError, match="schema"):
        PostgresTaskStore("postgresql://h/db", schema=name)


@given(st.text(max_size=80))
def test_any_schema_text_is_refused_or_a_plain_identifier(name: str) -> None:
    """Whatever the text, a schema name is refused or is a plain identifier (nothing to inject)."""
    try:
        s = PostgresTaskStore("postgresql://h/db", schema=name)
    except ValueError:
        return
    assert s.schema == name and len(name) <= 63
    assert all(c.isascii() and (c.isalnum() or c in "_$") for c in name)


def test_password_never_in_repr_or_location() -> None:
    """The password in the URL (userinfo or parameter) is redacted in location and repr."""
    for url in (
        f"postgresql://app:{SECRET}@db.internal:5432/prod",
        f"postgresql://app@db.internal/prod?password={SECRET}&schema=q",
    ):
        s = PostgresTaskStore(url)
        assert SECRET not in s.location and SECRET not in repr(s)
        assert "db.internal" in s.location
        q = MCPTaskRecovery(url, execute=lambda t: None)
        assert SECRET not in repr(q)
        assert isinstance(q.store, PostgresTaskStore)


def test_not_a_postgres_url() -> None:
    """Constructing the backend with something else is a programmer error."""
    with pytest.raises(ValueError, match="postgresql"):
        PostgresTaskStore("sqlite:///x.db")


# -- against the server ----------------------------------------------------------------------------

pytestmark = pytest.mark.anyio


async def test_unreachable_server_clear_error_without_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listening: save_failed_task raises QueueStoreError; the password is nowhere."""
    caplog.set_level(logging.DEBUG, logger="safla_diag")
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/test?connect_timeout=2"
    q = MCPTaskRecovery(url, execute=lambda t: None)
    with pytest.raises(QueueStoreError) as err:
        await q.save_failed_task({"id": "x"})
    assert isinstance(err.value, RecoveryError)
    assert "cannot connect" in str(err.value) and "127.0.0.1" in str(err.value)
    assert SECRET not in str(err.value) and SECRET not in err.value.location
    assert SECRET not in caplog.text
    await q.aclose()


async def test_schema_created_with_recorded_version(
    pg_queue_url: str, pg_schema: str, postgres_url: str
) -> None:
    """Opening creates the schema and records its kind and version in safla_meta."""
    s = PostgresTaskStore(pg_queue_url)
    await s.open()
    assert await s.schema_version() == PG_SCHEMA_VERSION
    meta = dict(sql(postgres_url, f'SELECT key, value FROM "{pg_schema}".safla_meta'))
    assert meta == {"kind": "safla_diag.mcp_task_queue", "schema_version": str(PG_SCHEMA_VERSION)}
    await s.close()


async def test_replicas_opening_together_create_the_schema_once(
    pg_queue_url: str, pg_schema: str, postgres_url: str
) -> None:
    """Eight replicas opening a new queue at the same moment: all succeed, one schema, one version."""
    stores = [PostgresTaskStore(pg_queue_url) for _ in range(8)]
    await asyncio.gather(*(s.open() for s in stores))
    rows = sql(postgres_url, f'SELECT count(*) FROM "{pg_schema}".safla_meta')
    assert rows == [(2,)]
    await asyncio.gather(*(s.close() for s in stores))


async def test_foreign_schema_refused_and_untouched(
    pg_queue_url: str, pg_schema: str, postgres_url: str
) -> None:
    """A schema with a mcp_tasks table we did not make is refused, and nothing in it is changed."""
    sql(postgres_url, f'CREATE SCHEMA "{pg_schema}"')
    sql(postgres_url, f'CREATE TABLE "{pg_schema}".mcp_tasks (name text)')
    s = PostgresTaskStore(pg_queue_url)
    with pytest.raises(QueueStoreError, match="not a queue made by safla_diag"):
        await s.open()
    tables = sql(
        postgres_url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        (pg_schema,),
    )
    assert tables == [("mcp_tasks",)]
    await s.close()


async def test_readonly_never_creates(pg_queue_url: str, pg_schema: str, postgres_url: str) -> None:
    """Read-only inspection of a missing queue fails without creating the schema."""
    s = PostgresTaskStore(pg_queue_url, readonly=True)
    with pytest.raises(QueueStoreError, match="no MCP task queue"):
        await s.open()
    assert sql(postgres_url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,)) == []
    rw = PostgresTaskStore(pg_queue_url)
    await rw.put_many([_new("a")], now=0)
    await s.open()
    assert [t.id for t in await s.pending()] == ["a"]
    with pytest.raises(QueueStoreError, match="read-only"):
        await s.put_many([_new("b")], now=0)
    await s.close()
    await rw.close()


async def test_saves_on_one_replica_wake_the_worker_of_another(pg_queue_url: str) -> None:
    """
    Replica A's worker sleeps on an empty queue (no due time: it would sleep forever); replica B
    saves a task; A runs it, woken by NOTIFY.
    """
    ran = asyncio.Event()
    calls: list[str] = []

    async def execute(task: dict[str, Any]) -> None:
        calls.append(task["id"])
        ran.set()

    a = MCPTaskRecovery(pg_queue_url, execute=execute, retry_delay=0)
    b = MCPTaskRecovery(pg_queue_url, execute=lambda t: None, retry_delay=0)
    await a.load_failed_tasks()
    worker = asyncio.create_task(a.retry_failed_tasks())
    # Let A reach its sleep, listening: its first wait starts listening, its second blocks.
    store = a.store
    assert isinstance(store, PostgresTaskStore)

    async def listening() -> bool:
        return store._listener._conn is not None

    await poll(listening)
    await asyncio.sleep(0.1)
    await b.save_failed_task({"id": "from-b"})
    async with asyncio.timeout(20):
        await ran.wait()
    assert calls == ["from-b"]
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    await a.aclose()
    await b.aclose()


async def test_enqueue_racing_a_dead_letter_does_not_resurrect_it(
    pg_queue_url: str, pg_schema: str, postgres_url: str
) -> None:
    """
    A save of a task id that another replica is dead-lettering at that moment waits for it, then
    stores nothing: a dead letter never comes back to the queue.
    """
    import psycopg

    s = PostgresTaskStore(pg_queue_url)
    await s.put_many([_new("x")], now=0)
    other = await psycopg.AsyncConnection.connect(postgres_url)
    sch = f'"{pg_schema}"'
    # Another replica, mid-transaction: x dead-lettered, not committed yet.
    await other.execute(
        f"UPDATE {sch}.mcp_tasks SET dead_at = 5, due_at = 'Infinity', last_error = 'boom', "
        "attempts = 1 WHERE id = 'x'"
    )
    save = asyncio.create_task(s.put_many([_new("x"), _new("y")], now=6))

    async def save_waits() -> bool:
        return bool(
            sql(
                postgres_url,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (f"%INSERT INTO {sch}.mcp_tasks%",),
            )
        )

    await poll(save_waits)
    await other.commit()
    await other.close()
    async with asyncio.timeout(20):
        assert await save == [False, True]
    assert [t.id for t in await s.pending()] == ["y"]
    assert [d.id for d in await s.dead_letters()] == ["x"]
    await s.close()


async def test_terminated_backend_reconnects_transparently(
    pg_queue_url: str, postgres_url: str
) -> None:
    """The server drops our connection (restart, idle kill): the next save reconnects and works."""
    s = PostgresTaskStore(pg_queue_url)
    await s.put_many([_new("a")], now=0)
    assert s._conn is not None
    pid = s._conn.info.backend_pid
    assert sql(postgres_url, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    assert await s.put_many([_new("b")], now=0) == [True]
    assert {t.id for t in await s.pending()} == {"a", "b"}
    await s.close()


async def test_connection_loss_worker_backs_off_and_resumes(
    pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """
    PostgreSQL goes away mid-run: saves raise a clear error (never a false success), the worker
    backs off; when it is back, every task runs to success exactly once, none lost.
    """
    caplog.set_level(logging.WARNING, logger="safla_diag")
    proxy = Proxy()
    await proxy.start()
    url = proxy.url(pg_schema)
    calls: Counter[str] = Counter()
    changed = asyncio.Event()

    async def execute(task: dict[str, Any]) -> None:
        calls[task["id"]] += 1
        changed.set()

    q = MCPTaskRecovery(url, execute=execute, retry_delay=0, max_retries=3, lease_s=30)
    saved = [await q.save_failed_task({"id": f"a{i}"}) for i in range(10)]
    worker = asyncio.create_task(q.retry_failed_tasks())
    await _until(lambda: len(calls) >= 10, changed)

    proxy.cut()
    with pytest.raises(QueueStoreError) as err:
        await q.save_failed_task({"id": "during-outage"})
    assert "PostgreSQL" in str(err.value)
    # The caller does not know whether that save committed: saving again later is the remedy.

    async def noticed() -> bool:  # the worker notices the outage and backs off
        # Through its claims, or its notification connection (lost, or not yet listening when cut).
        return "MCP task queue error" in caplog.text or "notification connection" in caplog.text

    await poll(noticed)
    proxy.restore()
    saved += [await q.save_failed_task({"id": "during-outage"})]
    saved += [await q.save_failed_task({"id": f"b{i}"}) for i in range(10)]
    await _until(lambda: set(calls) == set(saved), changed)

    async def drained() -> bool:
        s = await q.stats()
        return s.pending + s.in_flight == 0

    await poll(drained)
    assert set(calls.values()) == {1}
    assert (await q.stats()).dead == 0
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    await q.aclose()
    await proxy.close()
    assert "MCP task queue error" in caplog.text or "retrying" in caplog.text


async def test_verdict_waits_out_a_short_outage(pg_schema: str) -> None:
    """An ack sent while PostgreSQL is away is retried on a fresh connection and lands once back."""
    proxy = Proxy()
    await proxy.start()
    s = PostgresTaskStore(proxy.url(pg_schema), verdict_retry_s=20)
    await s.put_many([_new("a"), _new("b")], now=0)
    a, b = await s.claim(now=0, limit=2, lease_s=60, max_attempts=3)
    proxy.cut()
    with pytest.raises(QueueStoreError, match="claiming"):
        await s.claim(now=0, limit=1, lease_s=60, max_attempts=3)  # claims are not retried
    asyncio.get_running_loop().call_later(0.3, proxy.restore)
    assert await s.ack(a.id, a.lease) is True
    assert await s.fail(b.id, b.lease, error="x", now=0, next_attempt_at=0, max_attempts=3) == (
        "retry"
    )
    assert [(t.id, t.attempts) for t in await s.pending()] == [("b", 1)]
    await s.close()
    await proxy.close()


async def _until(cond: Callable[[], bool], event: asyncio.Event, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            event.clear()
            await event.wait()


def test_drop_schema_helper_is_idempotent(postgres_url: str) -> None:
    """Dropping a schema that is not there is fine (fixtures clean up after failed tests)."""
    drop_schema(postgres_url, "t_never_created")


async def test_cli_shows_the_shared_queue(pg_queue_url: str, cli: Any) -> None:
    """`safla-diag mcp queue postgresql://...` shows the shared queue; the password stays hidden."""
    s = PostgresTaskStore(pg_queue_url)
    now = time.time()
    await s.put_many([_new("a", now + 60), _new("b", now + 120), _new("c", now)], now=now)
    (c,) = await s.claim(now=now, limit=1, lease_s=600, max_attempts=1)
    await s.fail(
        c.id,
        c.lease,
        error="password=hunter2 refused",
        now=now,
        next_attempt_at=now,
        max_attempts=1,
    )
    await s.close()
    url = pg_queue_url.replace("postgres@", f"postgres:{SECRET}@")
    r = await asyncio.to_thread(cli, "mcp", "queue", url, "--json", "--show", "5")
    assert r.returncode == 1, r.stderr  # a dead letter is a finding
    doc = json.loads(r.stdout)
    assert (doc["pending"], doc["in_flight"], doc["dead"]) == (2, 0, 1)
    assert [t["id"] for t in doc["tasks"]["pending"]] == ["a", "b"]
    assert [t["id"] for t in doc["tasks"]["dead"]] == ["c"]
    assert SECRET not in r.stdout + r.stderr and "hunter2" not in r.stdout
    r = await asyncio.to_thread(cli, "mcp", "queue", url)
    assert r.returncode == 1 and "dead-lettered:  1" in r.stdout and SECRET not in r.stdout


async def test_cli_missing_or_unreachable_queue(pg_queue_url: str, cli: Any) -> None:
    """A schema without a queue, or no server: one line on stderr, exit 2, nothing created."""
    r = await asyncio.to_thread(cli, "mcp", "queue", pg_queue_url)
    assert r.returncode == 2 and "no MCP task queue" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = await asyncio.to_thread(
        cli, "mcp", "queue", f"postgresql://postgres:{SECRET}@127.0.0.1:1/test?connect_timeout=2"
    )
    assert r.returncode == 2 and SECRET not in r.stderr and "Traceback" not in r.stderr
    r = await asyncio.to_thread(cli, "mcp", "queue", "redis://127.0.0.1/0")
    assert r.returncode == 2 and "postgresql://" in r.stderr
