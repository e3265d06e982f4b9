"""
Where a PostgreSQL queue lives, and its schema: the URL, the schema name, the migrations.

:class:`PgTarget` is shared by the queue (:class:`~._postgres.PostgresTaskStore`, async) and the
blocking read-only :class:`PostgresQueueView` the CLI uses: both read and check the schema through
it, neither reaches into the other. SQL is written with ``:name`` parameters, as in ``_model``;
:func:`pg_sql` turns them into psycopg's ``%(name)s``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._lazy import import_optional
from .._redact import redact
from ._model import (
    KIND,
    SQL_DEAD,
    SQL_IMPORT_MERGE,
    SQL_NEXT_DUE,
    SQL_PENDING,
    SQL_PURGE_ALL,
    SQL_REQUEUE_ALL,
    SQL_STATS,
    DeadLetter,
    NewTask,
    QueueStats,
    QueueStoreError,
    StoredTask,
    check_meta,
    dead_letter,
    map_rows,
    queue_stats,
    stored_task,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_SCHEMA",
    "PG_SCHEMA_VERSION",
    "PgTarget",
    "PostgresQueueView",
    "describe_pg_error",
    "inserted_flags",
    "is_postgres_url",
    "pg_sql",
    "put_params",
]

logger = logging.getLogger("safla_diag.mcp_retry")

PG_SCHEMA_VERSION = 1
DEFAULT_SCHEMA = "safla_diag"
_SCHEMES = ("postgresql://", "postgres://")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Key of the advisory lock that serialises schema creation and migration across replicas.
_LOCK_CLASS = 0x5AF1A

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
_PARAM = re.compile(r"(?<![:\w]):([a-z_]+)\b")


def pg_sql(sql: str) -> str:
    """``:name`` parameters (the shared SQL's style) as psycopg's ``%(name)s``."""
    return _PARAM.sub(r"%(\1)s", sql)


def put_params(tasks: Sequence[NewTask], *, now: float, channel: str) -> dict[str, Any]:
    """The parameters of the ``put`` statement for these tasks."""
    return {
        "ids": [t.id for t in tasks],
        "payloads": [t.payload for t in tasks],
        "dues": [t.due_at for t in tasks],
        "now": now,
        "channel": channel,
    }


def inserted_flags(tasks: Sequence[NewTask], inserted: set[str]) -> list[bool]:
    """Per task, whether the ``put`` statement stored it (a repeated id is new only once)."""
    out = []
    for t in tasks:
        out.append(t.id in inserted)
        inserted.discard(t.id)
    return out


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` is a ``postgresql://`` or ``postgres://`` URL (not a file path)."""
    return isinstance(location, str) and location.lower().startswith(_SCHEMES)


def describe_pg_error(err: BaseException) -> str:
    """One redacted line for a driver error."""
    text = " ".join(str(err).split()) or type(err).__name__
    return redact(text[:500])


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


class PgTarget:
    """
    A queue's place in PostgreSQL: connection info, schema, the SQL for it, its schema checks.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?schema=NAME&...]``.
        schema: The schema holding the queue (overrides the URL's ``schema``).

    Raises:
        ValueError: Not a PostgreSQL URL, or a schema name that is not a plain identifier.
    """

    __slots__ = ("channel", "conninfo", "location", "quoted", "schema", "sql")

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"not a postgresql:// URL: {redact(url)!r}")
        self.conninfo, self.schema, self.location = _split_url(url, schema)
        self.quoted = '"' + self.schema.replace('"', '""') + '"'
        digest = hashlib.sha1(self.schema.encode(), usedforsecurity=False).hexdigest()[:16]
        self.channel = f"safla_diag_mcp_{digest}"
        names = {"tasks": f"{self.quoted}.mcp_tasks", "dead": f"{self.quoted}.mcp_dead_letters"}
        self.sql = {
            "pending": pg_sql(SQL_PENDING.format(**names)),
            "dead": pg_sql(SQL_DEAD.format(**names)),
            "next_due": pg_sql(SQL_NEXT_DUE.format(**names)),
            "stats": pg_sql(SQL_STATS.format(**names)),
            "requeue": pg_sql(SQL_REQUEUE_ALL.format(**names)),
            "purge": pg_sql(SQL_PURGE_ALL.format(**names)),
            "merge": pg_sql(SQL_IMPORT_MERGE.format(**names)),
            "meta": f"SELECT key, value FROM {self.quoted}.safla_meta",
            # New tasks in one statement, each notifying the queue's workers; a known id (queued
            # or dead: they share the primary key) is skipped and not returned.
            "put": f"""WITH new AS (
                INSERT INTO {names["tasks"]} (id, payload, attempts, due_at, created_at)
                SELECT n.id, n.payload, 0, n.due_at, %(now)s
                FROM unnest(%(ids)s::text[], %(payloads)s::text[], %(dues)s::float8[])
                    WITH ORDINALITY AS n(id, payload, due_at, ord)
                ORDER BY n.ord
                ON CONFLICT (id) DO NOTHING
                RETURNING id
            )
            SELECT id, pg_notify(%(channel)s, 'put') FROM new""",
        }

    def __repr__(self) -> str:
        return f"<PgTarget {self.location!r}>"

    def error(self, what: str, *, missing: bool = False) -> QueueStoreError:
        """A QueueStoreError about this queue (redacted); ``missing``: there is no queue at all."""
        return QueueStoreError(
            redact(f"{self.location}: {what}"), location=self.location, missing=missing
        )

    def meta_present(self, names: Iterable[str]) -> bool:
        """Whether the schema's relations include ``safla_meta``; refuse our tables without it."""
        names = set(names)
        if "safla_meta" in names:
            return True
        ours = {"mcp_tasks", "mcp_dead_letters"} & names
        if ours:
            raise self.error(
                f"schema holds {', '.join(sorted(ours))} but no safla_meta: "
                "not a queue made by safla_diag; refusing to touch it"
            )
        return False

    def check_meta(self, meta: dict[str, str]) -> int:
        """The queue's schema version; refuse another kind of store or a newer version."""
        return check_meta(
            meta,
            newest=PG_SCHEMA_VERSION,
            error=self.error,
            foreign="schema has a safla_meta table of something else",
            hint=" on this replica",
        )

    async def read_meta(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, str] | None:
        """The queue's ``safla_meta``, or None when the schema holds no queue."""
        cur = await conn.execute(_SQL_RELATIONS, (self.schema,))
        if not self.meta_present(str(r[0]) for r in await cur.fetchall()):
            return None
        cur = await conn.execute(self.sql["meta"])
        return {str(k): str(v) for k, v in await cur.fetchall()}

    async def ensure_schema(self, conn: psycopg.AsyncConnection[Any], *, readonly: bool) -> None:
        """Check the queue's schema; create or migrate it (unless ``readonly``) under a lock."""
        meta = await self.read_meta(conn)
        if meta is not None and self.check_meta(meta) == PG_SCHEMA_VERSION:
            return
        if readonly:
            if meta is None:
                raise self.error("no MCP task queue in this schema", missing=True)
            raise self.error("queue schema needs a migration; open it read-write once")
        s = self.quoted
        # Replicas starting together: one creates or migrates, the others wait and then see it.
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, self.schema)
            )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            meta = await self.read_meta(conn)
            if meta is None:
                await conn.execute(
                    f"CREATE TABLE {s}.safla_meta (key text PRIMARY KEY, value text NOT NULL)"
                )
                await conn.execute(
                    f"INSERT INTO {s}.safla_meta (key, value) VALUES "
                    "('kind', %s), ('schema_version', '0')",
                    (KIND,),
                )
                version = 0
            else:
                version = self.check_meta(meta)
            for target in range(version + 1, PG_SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[target]:
                    await conn.execute(stmt.format(s=s))
                await conn.execute(
                    f"UPDATE {s}.safla_meta SET value = %s WHERE key = 'schema_version'",
                    (str(target),),
                )
                logger.info(
                    "MCP task queue %s: schema migrated to version %d", self.location, target
                )


class PostgresQueueView:
    """
    A blocking, read-only view of a shared queue, for tools without an event loop (the CLI).

    It implements :class:`~._model.QueueView` on one short-lived connection.

    Args:
        url: As for :class:`~._postgres.PostgresTaskStore`.
        schema: As for :class:`~._postgres.PostgresTaskStore`.
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.target = PgTarget(url, schema=schema)
        self._conn: psycopg.Connection[Any] | None = None

    @classmethod
    def of(cls, target: PgTarget) -> PostgresQueueView:
        """A view of the queue at ``target`` (a store's), on a connection of its own."""
        view = cls.__new__(cls)
        view.target = target
        view._conn = None
        return view

    def __repr__(self) -> str:
        return f"<PostgresQueueView {self.location!r}>"

    @property
    def location(self) -> str:
        """The URL with its ``schema`` parameter, password redacted."""
        return self.target.location

    def _connect(self) -> psycopg.Connection[Any]:
        pg = import_optional("psycopg")
        t = self.target
        conn: psycopg.Connection[Any] = pg.Connection.connect(t.conninfo, autocommit=True)
        try:
            cur = conn.execute(_SQL_RELATIONS, (t.schema,))
            if not t.meta_present(str(r[0]) for r in cur.fetchall()):
                raise t.error("no MCP task queue in this schema", missing=True)
            t.check_meta({str(k): str(v) for k, v in conn.execute(t.sql["meta"]).fetchall()})
        except BaseException:
            conn.close()
            raise
        return conn

    def _query(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        pg = import_optional("psycopg")
        try:
            if self._conn is None:
                self._conn = self._connect()
            return self._conn.execute(self.target.sql[name], params).fetchall()
        except pg.Error as err:
            self.close()
            raise self.target.error(f"cannot read the queue: {describe_pg_error(err)}") from err

    def stats(self, *, now: float) -> QueueStats:
        """Counts and times for a status display."""
        rows = self._query("stats", {"now": now})
        return map_rows(
            rows[:1] or [()],
            lambda r: queue_stats(r or None, location=self.location, now=now),
            self.target.error,
        )[0]

    def pending(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        return map_rows(self._query("pending", {"limit": limit}), stored_task, self.target.error)

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        return map_rows(self._query("dead", {"limit": limit}), dead_letter, self.target.error)

    def put_many(self, tasks: Sequence[NewTask], *, now: float) -> list[bool]:
        """
        Store new tasks, committed (and the workers notified) before it returns; per task, False
        when its id was already queued or dead. The one write of this view: the blocking save of
        hosts without an event loop.
        """
        if not tasks:
            return []
        pg = import_optional("psycopg")
        params = put_params(tasks, now=now, channel=self.target.channel)
        try:
            if self._conn is None:
                self._conn = self._connect()
            rows = self._conn.execute(self.target.sql["put"], params).fetchall()
        except pg.Error as err:
            self.close()
            raise self.target.error(f"cannot save tasks: {describe_pg_error(err)}") from err
        return inserted_flags(tasks, {str(r[0]) for r in rows})

    def close(self) -> None:
        """Close the connection; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
