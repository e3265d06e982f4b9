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
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._lazy import import_optional
from .._redact import redact
from ._store import (
    _LEASE_EXPIRED,
    KIND,
    ClaimedTask,
    DeadLetter,
    NewTask,
    Outcome,
    QueueStats,
    QueueStoreError,
    StoredTask,
    check_meta,
    dead_letter,
    stored_task,
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

logger = logging.getLogger("safla_diag.mcp_retry")

PG_SCHEMA_VERSION = 1
DEFAULT_SCHEMA = "safla_diag"
_SCHEMES = ("postgresql://", "postgres://")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Key of the advisory lock that serialises schema creation and migration across replicas.
_LOCK_CLASS = 0x5AF1A

T = TypeVar("T")

# Migrations: target version -> statements ({s} is the quoted schema). Never edit a released one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # One table for queued and dead-lettered tasks: they share the primary key, so enqueueing
        # a dead letter's id stores nothing, even while another replica dead-letters it. A dead
        # row is due at infinity: claims never reach it and it sits at the far end of the index.
        """CREATE TABLE {s}.mcp_tasks (
            id text PRIMARY KEY,
            payload text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            due_at double precision NOT NULL,
            lease text,
            created_at double precision NOT NULL,
            last_error text,
            dead_at double precision
        )""",
        "CREATE INDEX mcp_tasks_due ON {s}.mcp_tasks (due_at)",
        "CREATE INDEX mcp_tasks_dead ON {s}.mcp_tasks (dead_at) WHERE dead_at IS NOT NULL",
        """CREATE VIEW {s}.mcp_dead_letters AS
            SELECT id, payload, attempts, created_at, dead_at, last_error
            FROM {s}.mcp_tasks WHERE dead_at IS NOT NULL""",
    ),
}


_SQL_RELATIONS = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'p')"
)
_SQL_META = "SELECT key, value FROM {s}.safla_meta"
_SQL_PENDING = """SELECT id, payload, attempts, created_at, due_at, lease, last_error
    FROM {s}.mcp_tasks WHERE dead_at IS NULL ORDER BY due_at, id LIMIT %s"""
_SQL_DEAD = """SELECT id, payload, attempts, created_at, dead_at, last_error
    FROM {s}.mcp_dead_letters ORDER BY dead_at, id LIMIT %s"""
# One statement, so the figures come from one snapshot and agree with each other.
_SQL_STATS = """SELECT
    count(*) FILTER (WHERE lease IS NOT NULL AND due_at > %(now)s),
    count(*) FILTER (WHERE dead_at IS NULL),
    count(*) FILTER (WHERE dead_at IS NOT NULL),
    min(created_at) FILTER (WHERE dead_at IS NULL),
    coalesce(
        min(due_at) FILTER (WHERE dead_at IS NULL AND (lease IS NULL OR due_at <= %(now)s)),
        min(due_at) FILTER (WHERE dead_at IS NULL))
    FROM {s}.mcp_tasks"""


def _stats(r: Sequence[Any] | None, location: str) -> QueueStats:
    assert r is not None
    return QueueStats(
        pending=int(r[1]) - int(r[0]),
        in_flight=int(r[0]),
        dead=int(r[2]),
        oldest_created_at=None if r[3] is None else float(r[3]),
        next_due_at=None if r[4] is None else float(r[4]),
        location=location,
    )


class _Unreachable(QueueStoreError):
    """PostgreSQL could not be reached: worth another try later, unlike a schema problem."""


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` is a ``postgresql://`` or ``postgres://`` URL (not a file path)."""
    return isinstance(location, str) and location.lower().startswith(_SCHEMES)


def _split_url(url: str, schema: str | None) -> tuple[str, str, str]:
    """
    Return ``(conninfo URL for libpq, schema, URL to show)``: our ``schema`` parameter is taken out
    of the first and set in the last (whose password is redacted).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    from_url = [v for k, v in query if k == "schema"]
    rest = [(k, v) for k, v in query if k != "schema"]
    keys = {k for k, _ in rest}
    name = schema if schema is not None else (from_url[-1] if from_url else DEFAULT_SCHEMA)
    if not _SCHEMA_NAME.match(name):
        raise ValueError(
            f"schema {name!r} is not a plain identifier (letters, digits, _ and $; at most 63)"
        )
    shown = redact(urlunsplit(parts._replace(query=urlencode([*rest, ("schema", name)]))))
    # Defaults a shared queue wants: a bounded connect, keepalives to notice a dead peer, a name.
    for k, v in (
        ("connect_timeout", "5"),
        ("application_name", "safla_diag.mcp_retry"),
        ("keepalives", "1"),
        ("keepalives_idle", "30"),
        ("keepalives_interval", "10"),
        ("keepalives_count", "3"),
    ):
        if k not in keys:
            rest.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(rest))), name, shown


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
        if not is_postgres_url(url):
            raise ValueError(f"not a postgresql:// URL: {redact(url)!r}")
        self._conninfo, self.schema, self._url_shown = _split_url(url, schema)
        self.readonly = readonly
        self.op_timeout_s = op_timeout_s
        self.verdict_retry_s = verdict_retry_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._listen: psycopg.AsyncConnection[Any] | None = None
        self._lock: asyncio.Lock | None = None
        self._schema_ok = False
        self._closed = False
        digest = hashlib.sha1(self.schema.encode(), usedforsecurity=False).hexdigest()[:16]
        self.channel = f"safla_diag_mcp_{digest}"
        self._s = '"' + self.schema.replace('"', '""') + '"'

    def __repr__(self) -> str:
        state = "open" if self._conn is not None and not self._conn.closed else "closed"
        return f"<PostgresTaskStore {self.location!r} {state}>"

    @property
    def location(self) -> str:
        """The URL with its ``schema`` parameter, password redacted."""
        return self._url_shown

    # -- connections ------------------------------------------------------------------------------

    def _error(self, what: str, *, missing: bool = False) -> QueueStoreError:
        return QueueStoreError(
            redact(f"{self.location}: {what}"), location=self.location, missing=missing
        )

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        pg = import_optional("psycopg")
        try:
            conn: psycopg.AsyncConnection[Any] = await pg.AsyncConnection.connect(
                self._conninfo, autocommit=True
            )
        except pg.Error as err:
            msg = f"{self.location}: cannot connect to PostgreSQL: {_describe(err)}"
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
                    await self._check_or_create_schema(conn)
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
        delay = 0.05
        tries = 0
        self._closed = False
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
                        f"{what}: connection to PostgreSQL lost ({_describe(err)}); "
                        "the operation may not have completed"
                    )
                    problem.__cause__ = err
                except pg.Error as err:
                    raise self._error(f"{what}: database error: {_describe(err)}") from err
            if safe_to_repeat and reused and tries == 1:
                continue
            if time.monotonic() + delay > deadline:
                raise problem
            logger.warning("%s; retrying in %.2fs", problem, delay)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    # -- schema -----------------------------------------------------------------------------------

    async def _read_meta(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, str] | None:
        cur = await conn.execute(_SQL_RELATIONS, (self.schema,))
        if not self._meta_present({str(r[0]) for r in await cur.fetchall()}):
            return None
        cur = await conn.execute(_SQL_META.format(s=self._s))
        return {str(k): str(v) for k, v in await cur.fetchall()}

    def _meta_present(self, names: set[str]) -> bool:
        if "safla_meta" in names:
            return True
        ours = {"mcp_tasks", "mcp_dead_letters"} & names
        if ours:
            raise self._error(
                f"schema holds {', '.join(sorted(ours))} but no safla_meta: "
                "not a queue made by safla_diag; refusing to touch it"
            )
        return False

    def _check_meta(self, meta: dict[str, str]) -> int:
        return check_meta(
            meta,
            newest=PG_SCHEMA_VERSION,
            error=self._error,
            foreign="schema has a safla_meta table of something else",
            hint=" on this replica",
        )

    async def _check_or_create_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        meta = await self._read_meta(conn)
        if meta is not None and self._check_meta(meta) == PG_SCHEMA_VERSION:
            return
        if self.readonly:
            if meta is None:
                raise self._error("no MCP task queue in this schema", missing=True)
            raise self._error("queue schema needs a migration; open it read-write once")
        # Replicas starting together: one creates or migrates, the others wait and then see it.
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, self.schema)
            )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._s}")
            meta = await self._read_meta(conn)
            if meta is None:
                await conn.execute(
                    f"CREATE TABLE {self._s}.safla_meta (key text PRIMARY KEY, value text NOT NULL)"
                )
                await conn.execute(
                    f"INSERT INTO {self._s}.safla_meta (key, value) VALUES "
                    "('kind', %s), ('schema_version', '0')",
                    (KIND,),
                )
                version = 0
            else:
                version = self._check_meta(meta)
            for target in range(version + 1, PG_SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[target]:
                    await conn.execute(stmt.format(s=self._s))
                await conn.execute(
                    f"UPDATE {self._s}.safla_meta SET value = %s WHERE key = 'schema_version'",
                    (str(target),),
                )
                logger.info(
                    "MCP task queue %s: schema migrated to version %d", self.location, target
                )

    async def schema_version(self) -> int | None:
        """The queue schema version recorded in the database, or None when there is no queue."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> int | None:
            meta = await self._read_meta(conn)
            return None if meta is None else int(meta.get("schema_version", "0"))

        return await self._run("reading the schema version", work, safe_to_repeat=True)

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, creating or migrating the schema; raise QueueStoreError when that fails."""
        await self._run("opening the queue", lambda conn: _noop(), safe_to_repeat=True)

    async def close(self) -> None:
        """Close both connections; idempotent."""
        self._closed = True
        await self._drop()
        await self._close_listen()
        self._schema_ok = False

    async def _close_listen(self) -> None:
        conn, self._listen = self._listen, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

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
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[bool]:
            cur = await conn.execute(
                f"""WITH new AS (
                    INSERT INTO {s}.mcp_tasks (id, payload, attempts, due_at, created_at)
                    SELECT n.id, n.payload, 0, n.due_at, %(now)s
                    FROM unnest(%(ids)s::text[], %(payloads)s::text[], %(dues)s::float8[])
                        WITH ORDINALITY AS n(id, payload, due_at, ord)
                    ORDER BY n.ord
                    ON CONFLICT (id) DO NOTHING
                    RETURNING id
                )
                SELECT id, pg_notify(%(channel)s, 'put') FROM new""",
                {
                    "ids": [t.id for t in tasks],
                    "payloads": [t.payload for t in tasks],
                    "dues": [t.due_at for t in tasks],
                    "now": now,
                    "channel": self.channel,
                },
            )
            inserted = {str(r[0]) for r in await cur.fetchall()}
            out = []
            for t in tasks:
                out.append(t.id in inserted)
                inserted.discard(t.id)  # a repeated id in one batch is new only once
            return out

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
                    "expired": _LEASE_EXPIRED,
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

    async def next_due(self) -> float | None:
        """When the next task becomes claimable (a lease expiry counts), or None when empty."""
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> float | None:
            cur = await conn.execute(
                f"SELECT min(due_at) FROM {s}.mcp_tasks WHERE due_at < 'Infinity'::float8"
            )
            row = await cur.fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._run("reading the next due time", work, safe_to_repeat=True)

    async def pending(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[StoredTask]:
            cur = await conn.execute(_SQL_PENDING.format(s=s), (limit,))
            return [stored_task(r) for r in await cur.fetchall()]

        return await self._run("listing tasks", work, safe_to_repeat=True)

    async def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[DeadLetter]:
            cur = await conn.execute(_SQL_DEAD.format(s=s), (limit,))
            return [dead_letter(r) for r in await cur.fetchall()]

        return await self._run("listing dead letters", work, safe_to_repeat=True)

    async def stats(self, *, now: float) -> QueueStats:
        """Counts and times for a status display, read in one statement (one snapshot)."""
        s = self._s

        async def work(conn: psycopg.AsyncConnection[Any]) -> QueueStats:
            cur = await conn.execute(_SQL_STATS.format(s=s), {"now": now})
            return _stats(await cur.fetchone(), self.location)

        return await self._run("reading queue stats", work, safe_to_repeat=True)

    async def wait_for_change(self) -> None:
        """
        Return when any replica saved a task, scheduled a retry or gave leases back.

        The first call (and the first after a lost connection) starts listening and returns at
        once, so that nothing saved before listening began is missed: the caller looks again.
        Cancelling the wait stops listening until the next call. When PostgreSQL cannot be reached
        this keeps trying with backoff, and returns once it listens again.
        """
        pg = import_optional("psycopg")
        if self._listen is not None and not self._listen.closed and not self._listen.broken:
            conn = self._listen
            try:
                async with contextlib.aclosing(conn.notifies(stop_after=1)) as gen:
                    async for _ in gen:
                        break
                # Drain what else is buffered: one wake-up covers them all.
                async with contextlib.aclosing(conn.notifies(timeout=0)) as gen:
                    async for _ in gen:
                        pass
                return
            except asyncio.CancelledError:
                await self._close_listen()
                raise
            except pg.Error as err:
                await self._close_listen()
                logger.warning(
                    "MCP task queue %s: lost the notification connection (%s); reconnecting",
                    self.location,
                    _describe(err),
                )
        if self._closed:
            # Closed meanwhile (the worker is stopping): listen no more, wait to be cancelled.
            await asyncio.get_running_loop().create_future()
        delay = 0.1
        while True:
            try:
                conn = await self._connect()
            except QueueStoreError as err:
                logger.warning("%s; retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
                continue
            try:
                await conn.execute(f'LISTEN "{self.channel}"')
            except pg.Error as err:
                with contextlib.suppress(Exception):
                    await conn.close()
                logger.warning(
                    "%s: cannot listen (%s); retrying in %.1fs",
                    self.location,
                    _describe(err),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
                continue
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            self._listen = conn
            return

    def _writable(self) -> None:
        if self.readonly:
            raise self._error("is open read-only")


async def _noop() -> None:
    return None


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return redact(text[:500])


class PostgresQueueView:
    """
    A blocking, read-only view of a shared queue, for tools without an event loop (the CLI).

    It has the inspection methods of :class:`~._store.SQLiteTaskStore` (``stats_sync``,
    ``pending_sync``, ``dead_letters_sync``, ``close_sync``) on one short-lived connection.

    Args:
        url: As for :class:`PostgresTaskStore`.
        schema: As for :class:`PostgresTaskStore`.
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self._store = PostgresTaskStore(url, schema=schema, readonly=True)
        self._conn: psycopg.Connection[Any] | None = None

    def __repr__(self) -> str:
        return f"<PostgresQueueView {self.location!r}>"

    @property
    def location(self) -> str:
        """The URL with its ``schema`` parameter, password redacted."""
        return self._store.location

    def _query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        pg = import_optional("psycopg")
        st = self._store
        try:
            if self._conn is None:
                conn: psycopg.Connection[Any] = pg.Connection.connect(st._conninfo, autocommit=True)
                try:
                    cur = conn.execute(_SQL_RELATIONS, (st.schema,))
                    if not st._meta_present({str(r[0]) for r in cur.fetchall()}):
                        raise st._error("no MCP task queue in this schema", missing=True)
                    meta = conn.execute(_SQL_META.format(s=st._s)).fetchall()
                    st._check_meta({str(k): str(v) for k, v in meta})
                except BaseException:
                    conn.close()
                    raise
                self._conn = conn
            return self._conn.execute(sql.format(s=st._s), params).fetchall()
        except pg.Error as err:
            self.close_sync()
            raise st._error(f"cannot read the queue: {_describe(err)}") from err

    def stats_sync(self, *, now: float) -> QueueStats:
        """Counts and times for a status display."""
        rows = self._query(_SQL_STATS, {"now": now})
        return _stats(rows[0] if rows else None, self.location)

    def pending_sync(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        return [stored_task(r) for r in self._query(_SQL_PENDING, (limit,))]

    def dead_letters_sync(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        return [dead_letter(r) for r in self._query(_SQL_DEAD, (limit,))]

    def close_sync(self) -> None:
        """Close the connection; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
