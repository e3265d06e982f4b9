"""
The PostgreSQL backend of the failed-task queue: one queue shared by every replica of a service.

It implements :class:`~._store.TaskStore` with the same model as the SQLite backend (see ``_store``):
one row per task keyed by its id, ``due_at`` = ``next_attempt_at`` while the task waits and the end
of its lease while a worker holds it, so one index on ``due_at`` serves claims, expired-lease
reclaims and the next wake-up, whatever the backlog. What PostgreSQL adds:

- claims are one statement, ``... FOR UPDATE SKIP LOCKED`` in a CTE and an ``UPDATE ... RETURNING``
  that sets the lease and increments ``attempts``: concurrent workers in any number of processes
  never claim the same task, and never wait for each other's rows;
- ``LISTEN/NOTIFY``: saving a task (or giving a lease back, or scheduling a retry) notifies every
  replica's worker, which is sleeping in :meth:`PostgresTaskStore.wait_for_change`;
- dead letters stay in the tasks table (``dead_at`` set, due at infinity, so claims never reach
  them), shown by the view ``mcp_dead_letters``: queued and dead tasks share the primary key, so
  ``INSERT ... ON CONFLICT DO NOTHING`` is an idempotent enqueue against both in one statement,
  even while another replica dead-letters the same id;
- the schema (``safla_meta``, ``mcp_tasks`` and the view, in a schema of their own, ``safla_diag``
  by default) is created and migrated by the library under an advisory lock, with its version
  recorded in ``safla_meta``; a database whose queue schema is newer than this library is refused;
- a lost connection is reported as :class:`~._store.QueueStoreError` (a save is never reported
  durable unless its commit returned), and the next operation reconnects; verdicts (ack, fail) are
  retried on a fresh connection for a bounded time, as they are safe to repeat.

Everything runs on psycopg's ``AsyncConnection`` in the host's loop: no threads, no blocking calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._lazy import import_optional
from .._redact import redact
from ._backoff import Backoff
from ._model import (
    INF,
    LEASE_EXPIRED,
    ClaimedTask,
    DeadLetter,
    NewTask,
    Outcome,
    QueueStats,
    QueueStoreError,
    StoredTask,
    dead_letter,
    map_rows,
    queue_stats,
    stored_task,
)
from ._pglisten import PgListener
from ._pgtarget import (
    DEFAULT_SCHEMA,
    PG_SCHEMA_VERSION,
    PgTarget,
    PostgresQueueView,
    describe_pg_error,
    inserted_flags,
    is_postgres_url,
    logger,
    put_params,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_SCHEMA",
    "PG_SCHEMA_VERSION",
    "PostgresQueueView",
    "PostgresTaskStore",
    "is_postgres_url",
]

T = TypeVar("T")


class _Unreachable(QueueStoreError):
    """PostgreSQL could not be reached: worth another try later, unlike a schema problem."""


class PostgresTaskStore:
    """
    The shared queue backend: one PostgreSQL schema, used by any number of replicas at once.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?schema=NAME&...]``; other query
            parameters go to libpq (``sslmode``, ``connect_timeout``, ...). The password never
            appears in messages, logs or reprs.
        schema: The schema holding the queue (overrides the URL's ``schema``); default
            ``safla_diag``. Replicas sharing a queue use the same one; separate queues, separate
            schemas.
        readonly: Inspect an existing queue only (never creates or migrates anything).
        op_timeout_s: Seconds after which a statement counts as lost (the connection is dropped).
        verdict_retry_s: How long an ack or a failure report keeps retrying on a fresh connection
            when PostgreSQL is unreachable (a lost verdict means the task runs again).

    Raises:
        ValueError: A URL that is not PostgreSQL's, or a schema name that is not a plain identifier.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        readonly: bool = False,
        op_timeout_s: float = 30.0,
        verdict_retry_s: float = 15.0,
    ) -> None:
        self.target = PgTarget(url, schema=schema)
        self.readonly = readonly
        self.op_timeout_s = op_timeout_s
        self.verdict_retry_s = verdict_retry_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock: asyncio.Lock | None = None
        self._schema_ok = False
        self._s = self.target.quoted
        self._reconnect = Backoff(0.05, 2.0)
        self._listener = PgListener(self.target, self._connect)

    def __repr__(self) -> str:
        state = "open" if self._conn is not None and not self._conn.closed else "closed"
        return f"<PostgresTaskStore {self.location!r} {state}>"

    @property
    def location(self) -> str:
        """The URL with its ``schema`` parameter, password redacted."""
        return self.target.location

    @property
    def schema(self) -> str:
        """The schema holding the queue."""
        return self.target.schema

    @property
    def channel(self) -> str:
        """The ``NOTIFY`` channel of this queue."""
        return self.target.channel

    # -- connections ------------------------------------------------------------------------------

    def _error(self, what: str) -> QueueStoreError:
        return self.target.error(what)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        pg = import_optional("psycopg")
        try:
            conn: psycopg.AsyncConnection[Any] = await pg.AsyncConnection.connect(
                self.target.conninfo, autocommit=True
            )
        except pg.Error as err:
            msg = f"{self.location}: cannot connect to PostgreSQL: {describe_pg_error(err)}"
            raise _Unreachable(redact(msg), location=self.location) from err
        return conn

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _ready(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            conn = await self._connect()
            try:
                if not self._schema_ok:
                    await self.target.ensure_schema(conn, readonly=self.readonly)
                    self._schema_ok = True
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(
        self,
        what: str,
        fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
        *,
        retry_for: float = 0.0,
        safe_to_repeat: bool = False,
    ) -> T:
        """
        Run ``fn`` on the operations connection under the store's lock.

        A connection error drops the connection (the next call reconnects). ``safe_to_repeat``
        operations are tried once more at once when a reused connection turns out dead (PostgreSQL
        restarted since the last call); ``retry_for`` keeps retrying with backoff for that long.
        """
        pg = import_optional("psycopg")
        deadline = time.monotonic() + retry_for
        tries = sleeps = 0
        self._listener.closed = False
        while True:
            tries += 1
            async with self._get_lock():
                reused = self._conn is not None and not self._conn.closed
                try:
                    conn = await self._ready()
                    async with asyncio.timeout(self.op_timeout_s):
                        return await fn(conn)
                except asyncio.CancelledError:
                    # The statement may be half done on the wire: never reuse the connection.
                    await self._drop()
                    raise
                except TimeoutError as err:
                    await self._drop()
                    problem: QueueStoreError = self._error(
                        f"{what}: no answer from PostgreSQL within {self.op_timeout_s:g}s"
                    )
                    problem.__cause__ = err
                except _Unreachable as err:
                    await self._drop()
                    problem = err
                except (pg.OperationalError, pg.InterfaceError) as err:
                    await self._drop()
                    problem = self._error(
                        f"{what}: connection to PostgreSQL lost ({describe_pg_error(err)}); "
                        "the operation may not have completed"
                    )
                    problem.__cause__ = err
                except pg.Error as err:
                    raise self._error(f"{what}: database error: {describe_pg_error(err)}") from err
            if safe_to_repeat and reused and tries == 1:
                continue
            delay = self._reconnect.delay(sleeps)
            sleeps += 1
            if time.monotonic() + delay > deadline:
                raise problem
            logger.warning("%s; retrying in %.2fs", problem, delay)
            await asyncio.sleep(delay)

    # -- schema -----------------------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        """The queue schema version recorded in the database, or None when there is no queue."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> int | None:
            meta = await self.target.read_meta(conn)
            return None if meta is None else int(meta.get("schema_version", "0"))

        return await self._run("reading the schema version", work, safe_to_repeat=True)

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, creating or migrating the schema; raise QueueStoreError when that fails."""
        await self._run("opening the queue", lambda conn: _noop(), safe_to_repeat=True)

    async def close(self) -> None:
        """Close both connections; idempotent."""
        self._listener.closed = True
        await self._drop()
        await self._listener.close()
        self._schema_ok = False

    # -- the protocol -----------------------------------------------------------------------------

    async def put_many(self, tasks: Sequence[NewTask], *, now: float) -> list[bool]:
        """
        Store new tasks in one statement; per task, False when its id was queued or dead.

        Returns only once the statement committed. Dead letters share the table (and the primary
        key) with queued tasks, so a dead letter's id is never queued again, even when another
        replica dead-letters it while this insert runs.
        """
        if not tasks:
            return []
        self._writable()

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[bool]:
            cur = await conn.execute(
                self.target.sql["put"], put_params(tasks, now=now, channel=self.channel)
            )
            return inserted_flags(tasks, {str(r[0]) for r in await cur.fetchall()})

        return await self._run("saving tasks", work, safe_to_repeat=True)

    async def put_dead(self, task: NewTask, *, error: str, now: float) -> bool:
        """Store a task straight into the dead letters; False when its id is already known."""
        self._writable()
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> bool:
            cur = await conn.execute(
                f"""INSERT INTO {s}.mcp_tasks
                    (id, payload, attempts, due_at, created_at, dead_at, last_error)
                VALUES (%s, %s, 0, 'Infinity'::float8, %s, %s, %s)
                ON CONFLICT (id) DO NOTHING""",
                (task.id, task.payload, now, now, error),
            )
            return cur.rowcount == 1

        return await self._run("saving a dead letter", work, safe_to_repeat=True)

    async def claim(
        self, *, now: float, limit: int, lease_s: float, max_attempts: int
    ) -> list[ClaimedTask]:
        """
        Lease up to ``limit`` due tasks, incrementing their attempts, in one statement.

        Rows locked by another worker's claim are skipped, never waited for. A due task that
        already had its last attempt (its worker died during it) is dead-lettered, not run again.
        """
        if limit <= 0:
            return []
        self._writable()
        token = uuid.uuid4().hex
        until = now + lease_s
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[ClaimedTask]:
            cur = await conn.execute(
                f"""WITH picked AS (
                    SELECT id, attempts >= %(max)s AS spent, due_at FROM {s}.mcp_tasks
                    WHERE due_at <= %(now)s ORDER BY due_at LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE {s}.mcp_tasks t SET
                    attempts = CASE WHEN p.spent THEN least(t.attempts, %(max)s)
                        ELSE t.attempts + 1 END,
                    lease = CASE WHEN p.spent THEN NULL ELSE %(token)s END,
                    due_at = CASE WHEN p.spent THEN 'Infinity'::float8 ELSE %(until)s END,
                    dead_at = CASE WHEN p.spent THEN %(now)s END,
                    last_error = CASE WHEN p.spent THEN %(expired)s ELSE t.last_error END
                FROM picked p
                WHERE t.id = p.id
                RETURNING t.id, t.payload, t.attempts, p.due_at, p.spent""",
                {
                    "now": now,
                    "limit": limit,
                    "max": max_attempts,
                    "expired": LEASE_EXPIRED,
                    "token": token,
                    "until": until,
                },
            )
            rows = sorted(await cur.fetchall(), key=lambda r: (r[3], r[0]))
            return [
                ClaimedTask(
                    id=str(r[0]),
                    payload=str(r[1]),
                    attempts=int(r[2]),
                    lease=token,
                    lease_until=until,
                )
                for r in rows
                if not r[4]
            ]

        return await self._run("claiming tasks", work)

    async def extend(self, leases: Sequence[tuple[str, str]], *, until: float) -> None:
        """Push the end of the given leases to ``until`` (leases lost meanwhile are left alone)."""
        if not leases:
            return
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                f"""UPDATE {s}.mcp_tasks t SET due_at = %(until)s
                FROM unnest(%(ids)s::text[], %(leases)s::text[]) AS l(id, lease)
                WHERE t.id = l.id AND t.lease = l.lease""",
                {"until": until, "ids": [i for i, _ in leases], "leases": [x for _, x in leases]},
            )

        await self._run("renewing leases", work, safe_to_repeat=True)

    async def ack(self, task_id: str, lease: str) -> bool:
        """Delete a finished task (whoever holds it now: it has succeeded); False when gone."""
        del lease  # success ends the task even if its lease expired and was taken over
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> bool:
            cur = await conn.execute(
                f"DELETE FROM {s}.mcp_tasks WHERE id = %s AND dead_at IS NULL", (task_id,)
            )
            return cur.rowcount == 1

        return await self._run("acknowledging a task", work, retry_for=self.verdict_retry_s)

    async def ack_many(self, leases: Sequence[tuple[str, str]]) -> int:
        """Delete many finished tasks in one statement (group commit of acks); how many were there."""
        if not leases:
            return 0
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(
                f"DELETE FROM {s}.mcp_tasks WHERE id = ANY(%s::text[]) AND dead_at IS NULL",
                ([i for i, _ in leases],),
            )
            return cur.rowcount

        return await self._run("acknowledging tasks", work, retry_for=self.verdict_retry_s)

    async def fail(
        self,
        task_id: str,
        lease: str,
        *,
        error: str,
        now: float,
        next_attempt_at: float,
        max_attempts: int,
    ) -> Outcome:
        """Record a failed attempt under ``lease``: schedule a retry, or dead-letter after the last."""
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> Outcome:
            cur = await conn.execute(
                f"""WITH done AS (
                    UPDATE {s}.mcp_tasks SET
                        lease = NULL,
                        attempts = least(attempts, %(max)s),
                        last_error = %(error)s,
                        due_at = CASE WHEN attempts >= %(max)s THEN 'Infinity'::float8
                            ELSE %(next)s END,
                        dead_at = CASE WHEN attempts >= %(max)s THEN %(now)s END
                    WHERE id = %(id)s AND lease = %(lease)s
                    RETURNING dead_at IS NOT NULL AS dead
                )
                SELECT dead, CASE WHEN dead THEN NULL ELSE pg_notify(%(channel)s, 'retry') END
                FROM done
                UNION ALL
                SELECT true, NULL FROM {s}.mcp_tasks
                WHERE id = %(id)s AND dead_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM done)""",
                {
                    "id": task_id,
                    "lease": lease,
                    "max": max_attempts,
                    "now": now,
                    "error": error,
                    "next": next_attempt_at,
                    "channel": self.channel,
                },
            )
            row = await cur.fetchone()
            # No row: our lease is gone, another worker owns the task now. A dead row without our
            # update: a repeat of a report that committed before the connection dropped.
            if row is None:
                return "lost"
            return "dead" if row[0] else "retry"

        return await self._run("recording a failed attempt", work, retry_for=self.verdict_retry_s)

    async def release(self, leases: Sequence[tuple[str, str]], *, now: float) -> None:
        """Give leases back, due now; the attempts stay counted. Other replicas are woken."""
        if not leases:
            return
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                f"""WITH freed AS (
                    UPDATE {s}.mcp_tasks t SET lease = NULL, due_at = %(now)s
                    FROM unnest(%(ids)s::text[], %(leases)s::text[]) AS l(id, lease)
                    WHERE t.id = l.id AND t.lease = l.lease
                    RETURNING t.id
                )
                SELECT pg_notify(%(channel)s, 'release') WHERE EXISTS (SELECT 1 FROM freed)""",
                {
                    "now": now,
                    "ids": [i for i, _ in leases],
                    "leases": [x for _, x in leases],
                    "channel": self.channel,
                },
            )

        await self._run("releasing leases", work, safe_to_repeat=True)

    async def _select(self, what: str, name: str, params: dict[str, Any]) -> list[Any]:
        sql = self.target.sql[name]

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            return await (await conn.execute(sql, params)).fetchall()

        return await self._run(what, work, safe_to_repeat=True)

    async def next_due(self) -> float | None:
        """When the next task becomes claimable (a lease expiry counts), or None when empty."""
        rows = await self._select("reading the next due time", "next_due", {"inf": INF})
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def pending(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        return map_rows(
            await self._select("listing tasks", "pending", {"limit": limit}),
            stored_task,
            self._error,
        )

    async def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        rows = await self._select("listing dead letters", "dead", {"limit": limit})
        return map_rows(rows, dead_letter, self._error)

    async def stats(self, *, now: float) -> QueueStats:
        """Counts and times for a status display, read in one statement (one snapshot)."""
        rows = await self._select("reading queue stats", "stats", {"now": now})
        return map_rows(
            rows[:1] or [()],
            lambda r: queue_stats(r or None, location=self.location, now=now),
            self._error,
        )[0]

    async def requeue_dead(self, ids: Sequence[str] | None = None, *, now: float) -> int:
        """Dead letters (all, or these ids) back to the queue, due ``now``; every worker is woken."""
        return await self._dead_op("requeueing dead letters", "requeue", ids, {"now": now})

    async def purge_dead(
        self, ids: Sequence[str] | None = None, *, dead_before: float = INF
    ) -> int:
        """Delete dead letters (all, or these ids) that died at or before ``dead_before``."""
        return await self._dead_op("purging dead letters", "purge", ids, {"cutoff": dead_before})

    async def _dead_op(
        self, what: str, name: str, ids: Sequence[str] | None, params: dict[str, Any]
    ) -> int:
        self._writable()
        sql = self.target.sql[name]
        params = {"cutoff": INF, **params, "ids": None if ids is None else list(ids)}
        sql += " AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))"

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            async with conn.transaction():
                n = (await conn.execute(sql, params)).rowcount
                if n and name == "requeue":
                    await conn.execute("SELECT pg_notify(%s, 'requeue')", (self.channel,))
            return n

        return await self._run(what, work, safe_to_repeat=True)

    async def meta(self, key: str) -> str | None:
        """Read one ``safla_meta`` value."""
        sql = f"SELECT value FROM {self._s}.safla_meta WHERE key = %s"

        async def work(conn: psycopg.AsyncConnection[Any]) -> str | None:
            row = await (await conn.execute(sql, (key,))).fetchone()
            return None if row is None else str(row[0])

        return await self._run("reading queue metadata", work, safe_to_repeat=True)

    async def set_meta(self, key: str, value: str) -> None:
        """Write one ``safla_meta`` value."""
        self._writable()
        sql = (
            f"INSERT INTO {self._s}.safla_meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(sql, (key, value))

        await self._run("writing queue metadata", work, safe_to_repeat=True)

    async def import_rows(self, rows: Sequence[tuple[str, str, int]], *, now: float) -> int:
        """Insert ``(id, payload, attempts)`` rows due ``now`` in one transaction; how many were new."""
        self._writable()
        s = self._s
        merge = self.target.sql["merge"]

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            async with conn.transaction():
                cur = await conn.execute(
                    f"""INSERT INTO {s}.mcp_tasks (id, payload, attempts, due_at, created_at)
                    SELECT r.id, r.payload, r.attempts, %(now)s, %(now)s
                    FROM unnest(%(ids)s::text[], %(payloads)s::text[], %(attempts)s::int[])
                        AS r(id, payload, attempts)
                    ON CONFLICT (id) DO NOTHING RETURNING id""",
                    {
                        "now": now,
                        "ids": [r[0] for r in rows],
                        "payloads": [r[1] for r in rows],
                        "attempts": [r[2] for r in rows],
                    },
                )
                new = {str(r[0]) for r in await cur.fetchall()}
                for task_id, payload, attempts in rows:
                    if task_id not in new:
                        args = {"id": task_id, "payload": payload, "attempts": attempts}
                        await conn.execute(merge, {**args, "now": now})
                if new:
                    await conn.execute("SELECT pg_notify(%s, 'import')", (self.channel,))
            return len(new)

        return await self._run("importing tasks", work, safe_to_repeat=True)

    async def wait_for_change(self) -> None:
        """Return when any replica saved a task, scheduled a retry, requeued or gave leases back
        (see :meth:`~._pglisten.PgListener.wait`)."""
        await self._listener.wait()

    def _writable(self) -> None:
        if self.readonly:
            raise self._error("is open read-only")


async def _noop() -> None:
    return None
