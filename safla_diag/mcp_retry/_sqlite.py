"""
The embedded backend of the failed-task queue: one SQLite file in WAL mode, one row per task.

:class:`SQLiteQueue` is the plain blocking queue (for tools, the CLI, a REPL, hosts without a loop);
:class:`~._sqlite_store.SQLiteTaskStore` adapts it to the :class:`~._model.TaskStore` protocol. The model and the SQL for listings and stats are shared with PostgreSQL (``_model``):
queued and dead-lettered tasks share the ``tasks`` table (``dead_at`` set, due at infinity), and the
view ``dead_letters`` lists the dead ones.

The file holds ``safla_meta`` (kind, schema version, imports) and ``tasks``. Schema versions are
migrations applied in order in one transaction (version 1 had a separate ``dead_letters`` table;
version 2 moved dead letters into ``tasks``); a read-only view of an older file reads it through
temporary views, changing nothing. A file that is not SQLite, or is SQLite without our
``safla_meta`` table, is refused with :class:`QueueStoreError` naming the file, and left untouched.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar

from .._files import NotRegularFile, open_regular
from ._model import (
    INF,
    KIND,
    LEASE_EXPIRED,
    SQL_DEAD,
    SQL_IMPORT_MERGE,
    SQL_NEXT_DUE,
    SQL_PENDING,
    SQL_PURGE_ALL,
    SQL_REQUEUE_ALL,
    SQL_STATS,
    ClaimedTask,
    DeadLetter,
    NewTask,
    Outcome,
    QueueStats,
    QueueStoreError,
    StoredTask,
    check_meta,
    dead_letter,
    map_rows,
    queue_stats,
    stored_task,
)

__all__ = ["SCHEMA_VERSION", "SQLiteOptions", "SQLiteQueue"]

SCHEMA_VERSION = 2
_SQLITE_MAGIC = b"SQLite format 3\x00"

T = TypeVar("T")

# Migrations: target version -> statements. Never edit a released one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            payload TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            due_at REAL NOT NULL,
            lease TEXT,
            created_at REAL NOT NULL,
            last_error TEXT
        )""",
        # due_at is next_attempt_at while waiting and the lease's end while leased: claims,
        # reclaims and next wake-up all read the head of this one index, whatever the backlog.
        "CREATE INDEX tasks_due ON tasks (due_at)",
        """CREATE TABLE dead_letters (
            id TEXT PRIMARY KEY,
            payload TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            created_at REAL NOT NULL,
            dead_at REAL NOT NULL,
            last_error TEXT
        )""",
    ),
    2: (
        # PostgreSQL's shape: dead letters stay in tasks (dead_at set, due at infinity, 9e999 in
        # SQLite), so an insert of a dead id is ignored by the primary key alone.
        "ALTER TABLE tasks ADD COLUMN dead_at REAL",
        """INSERT OR IGNORE INTO tasks
            (id, payload, attempts, due_at, lease, created_at, last_error, dead_at)
            SELECT id, payload, attempts, 9e999, NULL, created_at, last_error, dead_at
            FROM dead_letters""",
        "DROP TABLE dead_letters",
        "CREATE INDEX tasks_dead ON tasks (dead_at) WHERE dead_at IS NOT NULL",
        """CREATE VIEW dead_letters AS
            SELECT id, payload, attempts, created_at, dead_at, last_error
            FROM tasks WHERE dead_at IS NOT NULL""",
    ),
}

# A version-1 file opened read-only: temporary views in its shape of today (shadowing its tables).
_V1_READ_VIEWS = (
    """CREATE TEMP VIEW tasks AS
        SELECT id, payload, attempts, due_at, lease, created_at, last_error, NULL AS dead_at
        FROM main.tasks
        UNION ALL
        SELECT id, payload, attempts, 9e999, NULL, created_at, last_error, dead_at
        FROM main.dead_letters""",
    """CREATE TEMP VIEW dead_letters AS
        SELECT id, payload, attempts, created_at, dead_at, last_error FROM main.dead_letters""",
)

_SQL = {
    "pending": SQL_PENDING.format(tasks="tasks"),
    "dead": SQL_DEAD.format(dead="dead_letters"),
    "next_due": SQL_NEXT_DUE.format(tasks="tasks"),
    "stats": SQL_STATS.format(tasks="tasks"),
    "requeue": SQL_REQUEUE_ALL.format(tasks="tasks"),
    "purge": SQL_PURGE_ALL.format(tasks="tasks"),
    "merge": SQL_IMPORT_MERGE.format(tasks="tasks"),
}

# A known id (queued or dead-lettered) stores nothing: the id is the idempotency key.
_INSERT = (
    "INSERT OR IGNORE INTO tasks (id, payload, attempts, due_at, created_at) VALUES (?, ?, 0, ?, ?)"
)

_INSERT_MANY = "INSERT OR IGNORE INTO tasks (id, payload, attempts, due_at, created_at) VALUES "
_ROWS_PER_INSERT = 500

# One statement claims the head of the due index: lease, lease end and attempt count together.
# By rowid: the due index holds it (a covering read, no look-up of the random ids' index).
_CLAIM = (
    "UPDATE tasks SET attempts = attempts + 1, lease = ?, due_at = ? WHERE rowid IN "
    "(SELECT rowid FROM tasks WHERE due_at <= ? ORDER BY due_at LIMIT ?) "
    "RETURNING id, payload, attempts"
)

_ACK = "DELETE FROM tasks WHERE id = ? AND dead_at IS NULL"

_BURY = (
    "UPDATE tasks SET lease = NULL, due_at = 9e999, dead_at = ?, attempts = ?, "
    "last_error = coalesce(?, last_error) WHERE id = ?"
)

_CACHE_KIB = -16384  # negative: KiB (16 MiB at most, allocated as pages are used)
# WAL pages between checkpoints, by synchronous setting. At NORMAL a checkpoint is the only fsync,
# so a longer WAL means a few times fewer fsyncs per task. At FULL every commit syncs the WAL
# anyway, and a WAL that keeps growing into new blocks makes each of those syncs write the file's
# size too (about a quarter more per blocking save on ext4): SQLite's default there.
_CHECKPOINT_PAGES = {"NORMAL": 4000, "FULL": 1000}


def _limit(limit: int | None) -> int:
    return -1 if limit is None else limit


class SQLiteOptions(TypedDict, total=False):
    """The options of a SQLite queue, shared by :class:`SQLiteQueue` and its async adapter."""

    synchronous: Literal["NORMAL", "FULL"]
    readonly: bool
    busy_timeout_s: float


class SQLiteQueue:
    """
    The queue file, blocking: each operation is one short transaction under one connection.

    Writes use ``BEGIN IMMEDIATE`` (``put_many`` writes a whole batch in one). ``synchronous=NORMAL``
    (the default) makes a commit survive the process being killed; ``FULL`` also survives power
    loss, at a few times the cost per commit. Thread-safe (one lock around the connection).

    Args:
        path: The queue file; created with its folder when missing (unless ``readonly``).
        synchronous: ``"NORMAL"`` or ``"FULL"``.
        readonly: Open an existing queue for inspection only (never creates or converts anything).
        busy_timeout_s: How long a write waits for another process's transaction.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        readonly: bool = False,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.readonly = readonly
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        # Re-entrant: the writes of a group (run_group) run their own _run inside its transaction.
        self._lock = threading.RLock()
        self._in_group = False

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<SQLiteQueue {str(self.path)!r} synchronous={self.synchronous} {state}>"

    @property
    def location(self) -> str:
        """The queue file."""
        return str(self.path)

    # -- opening ----------------------------------------------------------------------------------

    def _error(self, what: str, *, missing: bool = False) -> QueueStoreError:
        return QueueStoreError(f"{self.path}: {what}", location=str(self.path), missing=missing)

    def _db_error(self, err: sqlite3.DatabaseError, what: str) -> QueueStoreError:
        """One line for a database error: read-only and locked files get their own advice."""
        text = str(err)
        if isinstance(err, sqlite3.OperationalError):
            if "readonly" in text or "read-only" in text:
                return self._error(
                    f"is read-only ({text}): the service needs write access to the file and its "
                    "folder (check permissions and mounts); inspect it with safla-diag mcp queue"
                )
            if "locked" in text:
                return self._error(f"is locked by another process: {text}")
        return self._error(f"{what}: {text}")

    def open(self) -> None:
        """Open the file (create or migrate the schema). Raises QueueStoreError for a bad file."""
        with self._lock:
            if self._conn is None:
                self._conn = self._open()

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _check_header(self) -> bool:
        """Return whether the file exists with content; refuse a non-SQLite file before connecting."""
        try:
            fd = open_regular(self.path)  # a FIFO would block this thread for good
        except FileNotFoundError:
            return False
        except NotRegularFile as err:
            raise self._error(f"is {err.kind}, not an MCP task queue file") from None
        except OSError as err:
            raise self._error(f"cannot be read: {err.strerror or err}") from err
        try:
            head = os.read(fd, len(_SQLITE_MAGIC))
        except OSError as err:
            raise self._error(f"cannot be read: {err.strerror or err}") from err
        finally:
            os.close(fd)
        if not head:
            return False
        if head != _SQLITE_MAGIC:
            hint = ""
            if head.lstrip()[:1] in (b"[", b"{"):
                hint = " (it looks like JSON: pass a .json file to import a guide-format queue)"
            raise self._error(f"is not an MCP task queue: not a SQLite database{hint}")
        return True

    def _connect(self, exists: bool) -> sqlite3.Connection:
        if self.readonly:
            if not exists:
                raise self._error("no such MCP task queue file", missing=True)
            uri = "file:" + _quote_path(self.path) + "?mode=ro"
            return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=self.busy_timeout_s
        )

    def _open(self) -> sqlite3.Connection:
        conn = self._connect(self._check_header())
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            version = self._check_schema(conn)
            if self.readonly:
                if version == 1:
                    for stmt in _V1_READ_VIEWS:
                        conn.execute(stmt)
            else:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise self._error(f"cannot switch to WAL mode (journal_mode={mode})")
                for pragma in self.writer_pragmas():
                    conn.execute(pragma)
                if version < SCHEMA_VERSION:
                    self._migrate(conn)
        except sqlite3.DatabaseError as err:
            conn.close()
            raise self._db_error(err, "is not a usable MCP task queue") from err
        except BaseException:
            conn.close()
            raise
        return conn

    def writer_pragmas(self) -> list[str]:
        """The settings of a connection that writes the queue (this one's, the committer's)."""
        # A 10 000-task backlog (rows and both indexes) stays in the page cache; at NORMAL the WAL
        # is checkpointed (fsync of WAL and file) every 4 000 pages rather than 1 000. What a
        # commit guarantees is unchanged.
        return [
            f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}",
            f"PRAGMA synchronous = {self.synchronous}",
            f"PRAGMA cache_size = {_CACHE_KIB}",
            f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES[self.synchronous]}",
        ]

    def _read_version(self, conn: sqlite3.Connection) -> int:
        """The file's schema version (0: an empty database); refuse a foreign or newer one."""
        # Reading sqlite_master validates the header and the first page; nothing is written.
        names = {r[0] for r in conn.execute("SELECT name FROM main.sqlite_master")}
        if not names:
            return 0
        if "safla_meta" not in names:
            tables = conn.execute("SELECT name FROM main.sqlite_master WHERE type='table'")
            shown = ", ".join(sorted(r[0] for r in tables)[:5])
            raise self._error(f"is a SQLite database of something else (tables: {shown})")
        version = check_meta(
            dict(conn.execute("SELECT key, value FROM main.safla_meta").fetchall()),
            newest=SCHEMA_VERSION,
            error=self._error,
            foreign="is a SQLite database of something else (unknown safla_meta kind)",
        )
        if not {"tasks", "dead_letters"} <= names:
            raise self._error("is an incomplete MCP task queue (tables missing)")
        return version

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        version = self._read_version(conn)
        if version == 0 and self.readonly:
            raise self._error("is an empty database, not an MCP task queue")
        return version

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema or bring it to :data:`SCHEMA_VERSION`, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._read_version(conn)  # another process may have done it meanwhile
            if version == 0:
                conn.execute("CREATE TABLE safla_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.executemany(
                    "INSERT INTO safla_meta (key, value) VALUES (?, ?)",
                    [("kind", KIND), ("schema_version", "0")],
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[target]:
                    conn.execute(stmt)
            conn.execute(
                "UPDATE safla_meta SET value = ? WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- running statements -----------------------------------------------------------------------

    def _run(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool, single: bool = False
    ) -> T:
        """Run ``fn`` under the lock; a write in one transaction (``single``: one statement, atomic
        and committed on its own, which saves the BEGIN and COMMIT round trips)."""
        with self._lock:
            if self._conn is None:
                self._conn = self._open()
            conn = self._conn
            try:
                if write and self.readonly:
                    raise self._error("is open read-only")
                if not write or single or self._in_group:
                    return fn(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return out
            except sqlite3.DatabaseError as err:
                raise self._db_error(err, "database error") from err

    def run_group(self, calls: Sequence[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """
        Run writes (calls of this queue's methods) in one transaction, committed once: group commit
        across operations, one commit (one fsync at ``FULL``) for all. When one fails, or the
        commit does, the whole transaction is rolled back and each call runs again on its own, so
        each gets its own outcome (no savepoints: they would copy every page a call touches).

        Returns:
            Per call, ``(True, result)`` or ``(False, exception)``.
        """
        if len(calls) > 1:
            with self._lock:
                out = self._try_group(calls)
            if out is not None:
                return out
        return [_outcome(call) for call in calls]

    def _try_group(self, calls: Sequence[Callable[[], Any]]) -> list[tuple[bool, Any]] | None:
        """All calls in one transaction; None when something failed (nothing is committed)."""
        try:
            if self._conn is None:
                self._conn = self._open()
            conn = self._conn
            if self.readonly:
                return None
            conn.execute("BEGIN IMMEDIATE")
        except Exception:
            return None  # each call meets the error on its own, and reports it
        self._in_group = True
        try:
            out = [(True, call()) for call in calls]
            conn.execute("COMMIT")
        except BaseException as err:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if not isinstance(err, Exception):
                raise
            return None
        finally:
            self._in_group = False
        return out

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
        return self._run(lambda c: c.execute(sql, params).fetchall(), write=False)

    # -- writing ------------------------------------------------------------------------------------

    def put_many(self, tasks: Sequence[NewTask], *, now: float) -> list[bool]:
        """Insert tasks in one transaction; per task, whether it was new (a known id is kept as is)."""

        if len(tasks) == 1:
            t = tasks[0]
            row = (t.id, t.payload, t.due_at, now)
            return [
                self._run(lambda c: c.execute(_INSERT, row).rowcount == 1, write=True, single=True)
            ]

        def work(conn: sqlite3.Connection) -> list[bool]:
            # One multi-row statement per chunk. When it inserted every distinct id (the usual
            # case) all are new, with no row to fetch (RETURNING would hand back each new id).
            # Otherwise the new ones are those with the rowids it just took: SQLite gives the rows
            # of a table without AUTOINCREMENT the rowids after the largest, in order, and this
            # transaction is the only writer.
            known: set[str] = set()
            for k in range(0, len(tasks), _ROWS_PER_INSERT):
                chunk = tasks[k : k + _ROWS_PER_INSERT]
                ids = list(dict.fromkeys(t.id for t in chunk))
                sql = _INSERT_MANY + ", ".join(["(?, ?, 0, ?, ?)"] * len(chunk))
                args = [v for t in chunk for v in (t.id, t.payload, t.due_at, now)]
                inserted = conn.execute(sql, args).rowcount
                if inserted != len(ids):
                    marks = ", ".join(["?"] * len(ids))
                    new = {
                        r[0]
                        for r in conn.execute(
                            f"SELECT id FROM tasks WHERE id IN ({marks}) "
                            "AND rowid > (SELECT max(rowid) FROM tasks) - ?",
                            [*ids, inserted],
                        )
                    }
                    known.update(i for i in ids if i not in new)
            out = []
            for t in tasks:
                out.append(t.id not in known)
                known.add(t.id)  # a repeated id in one batch is new only once
            return out

        return self._run(work, write=True)

    def put_dead(self, task: NewTask, *, error: str, now: float) -> bool:
        """Store a task straight into the dead letters; False when its id is already known."""
        return self._run(
            lambda c: (
                c.execute(
                    "INSERT OR IGNORE INTO tasks "
                    "(id, payload, attempts, due_at, created_at, dead_at, last_error) "
                    "VALUES (?, ?, 0, 9e999, ?, ?, ?)",
                    (task.id, task.payload, now, now, error),
                ).rowcount
                == 1
            ),
            write=True,
            single=True,
        )

    def import_rows(self, rows: Iterable[tuple[str, str, int]], *, now: float) -> int:
        """Insert ``(id, payload, attempts)`` rows due ``now`` in one transaction; how many were new."""

        def work(conn: sqlite3.Connection) -> int:
            n = 0
            for task_id, payload, attempts in rows:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO tasks (id, payload, attempts, due_at, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (task_id, payload, attempts, now, now),
                )
                if cur.rowcount == 1:
                    n += 1
                else:
                    args = {"id": task_id, "payload": payload, "attempts": attempts, "now": now}
                    conn.execute(_SQL["merge"], args)
            return n

        return self._run(work, write=True)

    def meta(self, key: str) -> str | None:
        """Read one ``safla_meta`` value."""
        rows = self._rows("SELECT value FROM safla_meta WHERE key = ?", (key,))
        return None if not rows else str(rows[0][0])

    def set_meta(self, key: str, value: str) -> None:
        """Write one ``safla_meta`` value."""
        self._run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO safla_meta (key, value) VALUES (?, ?)", (key, value)
            ),
            write=True,
            single=True,
        )

    def requeue_dead(self, ids: Sequence[str] | None = None, *, now: float) -> int:
        """Dead letters (all, or these ids) back to the queue, due ``now``, attempts reset."""
        return self._dead_op("requeue", ids, {"now": now, "cutoff": INF})

    def purge_dead(self, ids: Sequence[str] | None = None, *, dead_before: float = INF) -> int:
        """Delete dead letters (all, or these ids) that died at or before ``dead_before``."""
        return self._dead_op("purge", ids, {"cutoff": dead_before})

    def _dead_op(self, name: str, ids: Sequence[str] | None, params: dict[str, Any]) -> int:
        sql = _SQL[name]
        if ids is None:
            return self._run(lambda c: c.execute(sql, params).rowcount, write=True, single=True)
        one = sql + " AND id = :id"
        unique = list(dict.fromkeys(ids))
        return self._run(
            lambda c: sum(c.execute(one, {**params, "id": i}).rowcount for i in unique),
            write=True,
        )

    def claim(
        self, *, now: float, limit: int, lease_s: float, max_attempts: int
    ) -> list[ClaimedTask]:
        """Lease up to ``limit`` due tasks; dead-letter those whose last attempt's lease expired."""
        if limit <= 0:
            return []
        until = now + lease_s
        token = os.urandom(12).hex()
        rows = self._run(
            lambda c: c.execute(_CLAIM, (token, until, now, limit)).fetchall(),
            write=True,
            single=True,
        )
        # A task past its last attempt started that attempt and never reported back (the lease
        # expired): that attempt counts, and the task is not run again.
        exhausted = [r[0] for r in rows if r[2] > max_attempts]
        if exhausted:
            self.bury_expired(exhausted, now=now, max_attempts=max_attempts)
        return [
            ClaimedTask(i, p, a, token, until)  # (id, payload, attempts, lease, lease_until)
            for i, p, a in rows
            if a <= max_attempts
        ]

    def bury_expired(self, ids: Sequence[str], *, now: float, max_attempts: int) -> None:
        """Dead-letter claimed tasks past their last attempt (whose last lease expired)."""
        rows = [(now, max_attempts, LEASE_EXPIRED, i) for i in ids]
        self._run(lambda c: c.executemany(_BURY, rows), write=True)

    def extend(self, leases: Sequence[tuple[str, str]], *, until: float) -> None:
        """Push the end of the given leases to ``until`` (leases lost meanwhile are left alone)."""
        self._set_due(leases, until, free=False)

    def release(self, leases: Sequence[tuple[str, str]], *, now: float) -> None:
        """Give leases back, due now; the attempt stays counted (it may have had effects)."""
        self._set_due(leases, now, free=True)

    def _set_due(self, leases: Sequence[tuple[str, str]], due: float, *, free: bool) -> None:
        if not leases:
            return
        sql = "UPDATE tasks SET due_at = ?" + (", lease = NULL" if free else "")
        self._run(
            lambda c: c.executemany(
                sql + " WHERE id = ? AND lease = ?", [(due, i, token) for i, token in leases]
            ),
            write=True,
        )

    def ack(self, task_id: str, lease: str) -> bool:
        """Delete a finished task (whoever holds it now: it has succeeded)."""
        return self.ack_many([(task_id, lease)]) == 1

    def ack_many(self, leases: Sequence[tuple[str, str]]) -> int:
        """Delete finished tasks in one transaction (group commit of acks); how many were there."""
        if not leases:
            return 0
        # Success ends a task even if its lease expired and was taken over: the lease is not used.
        ids = [i for i, _ in leases]

        def work(conn: sqlite3.Connection) -> int:
            n = 0
            for k in range(0, len(ids), _ROWS_PER_INSERT):  # one statement per chunk
                chunk = ids[k : k + _ROWS_PER_INSERT]
                marks = ", ".join(["?"] * len(chunk))
                sql = f"DELETE FROM tasks WHERE id IN ({marks}) AND dead_at IS NULL"
                n += conn.execute(sql, chunk).rowcount
            return n

        return self._run(work, write=True, single=len(ids) <= _ROWS_PER_INSERT)

    def fail(
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

        def work(conn: sqlite3.Connection) -> Outcome:
            cur = conn.execute(
                "UPDATE tasks SET lease = NULL, due_at = ?, last_error = ? "
                "WHERE id = ? AND lease = ? AND attempts < ?",
                (next_attempt_at, error, task_id, lease, max_attempts),
            )
            if cur.rowcount == 1:
                return "retry"
            row = conn.execute(
                "SELECT attempts FROM tasks WHERE id = ? AND lease = ?", (task_id, lease)
            ).fetchone()
            if row is None:
                return "lost"  # the lease expired and another worker owns the task now
            conn.execute(_BURY, (now, min(row[0], max_attempts), error, task_id))
            return "dead"

        return self._run(work, write=True)

    # -- reading ------------------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When the next task becomes claimable, or None when the queue is empty."""
        rows = self._rows(_SQL["next_due"], {"inf": INF})
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def pending(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        return map_rows(
            self._rows(_SQL["pending"], {"limit": _limit(limit)}), stored_task, self._error
        )

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        return map_rows(
            self._rows(_SQL["dead"], {"limit": _limit(limit)}), dead_letter, self._error
        )

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it changes when another connection commits."""
        return int(self._rows("PRAGMA data_version", ())[0][0])

    def stats(self, *, now: float) -> QueueStats:
        """Counts and times for a status display (one statement: the figures agree)."""
        rows = self._rows(_SQL["stats"], {"now": now})
        return map_rows(
            rows[:1] or [()],
            lambda r: queue_stats(r or None, location=self.location, now=now),
            self._error,
        )[0]


def _outcome(call: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, call()
    except Exception as err:  # delivered to the caller of that operation
        return False, err


def _quote_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.resolve()))
