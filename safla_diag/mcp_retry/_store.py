"""
The storage layer of the failed-task queue: a small protocol and its SQLite (WAL) backend.

:class:`TaskStore` is what :class:`~safla_diag.MCPTaskRecovery` needs from a backend. Its methods
are coroutines, so a backend with a native async driver (a PostgreSQL backend with ``LISTEN/NOTIFY``
for several replicas sharing one queue) fits as well as this embedded one, whose blocking SQLite calls
run in the loop's default executor.

The model, shared by every backend:

- one row per task, keyed by the task id (the idempotency key: inserting a known id stores nothing);
- ``due_at`` is when the row can next be claimed: its ``next_attempt_at`` while it waits, the end of
  its lease while a worker holds it, so one index on ``due_at`` serves claims, expired-lease reclaims
  and "when is the next wake-up", whatever the backlog;
- a claim sets a lease token, pushes ``due_at`` to the end of the lease and increments ``attempts``
  in the same transaction, so a crash mid-task still counts as an attempt;
- success deletes the row; a failure releases the lease and schedules the next attempt, or, after
  the last allowed attempt, moves the row to the dead-letter table with its last error. A row whose
  lease expired after its last attempt is dead-lettered by the next claim, never run again.

The SQLite file holds three tables: ``safla_meta`` (kind, schema version, imports), ``tasks`` and
``dead_letters``. A file that is not SQLite, or is SQLite without our ``safla_meta`` table, is refused
with :class:`QueueStoreError` naming the file, and left untouched.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import attrs

from .._aio import off_loop
from .._errors import QueueStoreError

__all__ = [
    "SCHEMA_VERSION",
    "ClaimedTask",
    "DeadLetter",
    "NewTask",
    "QueueStats",
    "QueueStoreError",
    "SQLiteTaskStore",
    "StoredTask",
    "TaskStore",
    "check_meta",
    "dead_letter",
    "stored_task",
]

SCHEMA_VERSION = 1
KIND = "safla_diag.mcp_task_queue"
_SQLITE_MAGIC = b"SQLite format 3\x00"

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class NewTask:
    """A task to enqueue: its id, its payload as JSON text, and when it is first due."""

    id: str
    payload: str
    due_at: float


@attrs.frozen(kw_only=True)
class ClaimedTask:
    """A task claimed by a worker: ``attempts`` already counts this attempt."""

    id: str
    payload: str
    attempts: int
    lease: str
    lease_until: float


@attrs.frozen(kw_only=True)
class StoredTask:
    """A task waiting in (or leased from) the queue, as stored."""

    id: str
    payload: str
    attempts: int
    created_at: float
    due_at: float
    leased: bool
    last_error: str | None


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A task that used all its attempts, with the error of the last one."""

    id: str
    payload: str
    attempts: int
    created_at: float
    dead_at: float
    last_error: str | None


@attrs.frozen(kw_only=True)
class QueueStats:
    """
    Counts and times of a queue, for ``safla-diag mcp queue``.

    Attributes:
        pending: Tasks waiting (not leased, or whose lease expired).
        in_flight: Tasks leased by a worker whose lease has not expired.
        dead: Dead-lettered tasks.
        oldest_created_at: When the oldest queued task was saved (wall clock), or None.
        next_due_at: When the next task becomes due (wall clock), or None when the queue is empty.
        location: The queue file (or redacted URL).
    """

    pending: int
    in_flight: int
    dead: int
    oldest_created_at: float | None
    next_due_at: float | None
    location: str

    def _repr_html_(self) -> str:
        from ._html import queue_stats_html

        return queue_stats_html(self)

    def to_dict(self, *, now: float | None = None) -> dict[str, Any]:
        """Return a JSON-ready dict; with ``now``, also the oldest age and the delay until next due."""
        d: dict[str, Any] = attrs.asdict(self)
        if now is not None:
            d["oldest_age_s"] = (
                None if self.oldest_created_at is None else max(0.0, now - self.oldest_created_at)
            )
            d["next_due_in_s"] = (
                None if self.next_due_at is None else max(0.0, self.next_due_at - now)
            )
        return d


def stored_task(r: Sequence[Any]) -> StoredTask:
    """A :class:`StoredTask` from a row ``(id, payload, attempts, created_at, due_at, lease,
    last_error)``, as every backend selects it."""
    return StoredTask(
        id=str(r[0]),
        payload=str(r[1]),
        attempts=int(r[2]),
        created_at=float(r[3]),
        due_at=float(r[4]),
        leased=r[5] is not None,
        last_error=r[6],
    )


def dead_letter(r: Sequence[Any]) -> DeadLetter:
    """A :class:`DeadLetter` from a row ``(id, payload, attempts, created_at, dead_at, last_error)``."""
    return DeadLetter(
        id=str(r[0]),
        payload=str(r[1]),
        attempts=int(r[2]),
        created_at=float(r[3]),
        dead_at=float(r[4]),
        last_error=r[5],
    )


def check_meta(
    meta: Mapping[str, str],
    *,
    newest: int,
    error: Callable[[str], QueueStoreError],
    foreign: str,
    hint: str = "",
) -> int:
    """
    Check a queue's ``safla_meta`` (kind and schema version) and return its schema version.

    Raises (through ``error``) for another kind of store (``foreign``), an unreadable version, or
    a version newer than ``newest``, the one this library writes.
    """
    if meta.get("kind") != KIND:
        raise error(foreign)
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise error("has an unreadable queue schema version") from None
    if version > newest:
        raise error(
            f"has queue schema version {version}, newer than this library's ({newest}); "
            f"upgrade safla-diag{hint}"
        )
    return version


Outcome = Literal["retry", "dead", "lost"]


@runtime_checkable
class TaskStore(Protocol):
    """
    What :class:`~safla_diag.MCPTaskRecovery` needs from a queue backend.

    Times are wall-clock seconds supplied by the caller (so tests can inject a clock, and every
    replica agrees on what "due" means). Every method is a coroutine that never blocks the loop.
    """

    @property
    def location(self) -> str:
        """The queue's file or redacted URL, for messages."""
        ...

    async def open(self) -> None:
        """Open (creating the schema when new); raise QueueStoreError for a corrupt or foreign store."""
        ...

    async def close(self) -> None:
        """Release the backend's resources; idempotent."""
        ...

    async def put_many(self, tasks: Sequence[NewTask], *, now: float) -> list[bool]:
        """Store new tasks in one durable transaction; per task, False when its id was known."""
        ...

    async def put_dead(self, task: NewTask, *, error: str, now: float) -> bool:
        """Store a task straight into the dead letters (a call that needs a human decision)."""
        ...

    async def claim(
        self, *, now: float, limit: int, lease_s: float, max_attempts: int
    ) -> list[ClaimedTask]:
        """Lease up to ``limit`` due tasks, incrementing their attempts in the same transaction."""
        ...

    async def extend(self, leases: Sequence[tuple[str, str]], *, until: float) -> None:
        """Push the end of the given ``(id, lease)`` leases to ``until``."""
        ...

    async def ack(self, task_id: str, lease: str) -> bool:
        """Delete a finished task; False when it was no longer there."""
        ...

    async def ack_many(self, leases: Sequence[tuple[str, str]]) -> int:
        """Delete many finished tasks in one transaction; return how many were there."""
        ...

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
        """Record a failed attempt: schedule a retry, or dead-letter after the last attempt."""
        ...

    async def release(self, leases: Sequence[tuple[str, str]], *, now: float) -> None:
        """Give leases back without a verdict (worker stopping); the attempts stay counted."""
        ...

    async def next_due(self) -> float | None:
        """When the next task becomes claimable (a lease expiry counts), or None when empty."""
        ...

    async def pending(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        ...

    async def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        ...

    async def stats(self, *, now: float) -> QueueStats:
        """Counts and times for a status display."""
        ...

    async def wait_for_change(self) -> None:
        """Return when another process changed the queue; backends without notifications never return."""
        ...


_SCHEMA = (
    """CREATE TABLE safla_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        lease TEXT,
        created_at REAL NOT NULL,
        last_error TEXT
    )""",
    # due_at is next_attempt_at while waiting and the lease's end while leased: claims, reclaims and
    # next wake-up all read the head of this one index, whatever the backlog.
    """CREATE INDEX tasks_due ON tasks (due_at)""",
    """CREATE TABLE dead_letters (
        id TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        created_at REAL NOT NULL,
        dead_at REAL NOT NULL,
        last_error TEXT
    )""",
)

# A known id (queued or dead-lettered) stores nothing: the id is the idempotency key.
_INSERT = (
    "INSERT OR IGNORE INTO tasks (id, payload, attempts, due_at, created_at) "
    "SELECT ?, ?, 0, ?, ? WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE id = ?)"
)

# One statement claims the head of the due index: lease, lease end and attempt count together.
_CLAIM = (
    "UPDATE tasks SET attempts = attempts + 1, lease = ?, due_at = ? WHERE id IN "
    "(SELECT id FROM tasks WHERE due_at <= ? ORDER BY due_at LIMIT ?) "
    "RETURNING id, payload, attempts"
)

_SQL_PENDING = (
    "SELECT id, payload, attempts, created_at, due_at, lease, last_error FROM tasks "
    "ORDER BY due_at LIMIT ?"
)
_SQL_DEAD = (
    "SELECT id, payload, attempts, created_at, dead_at, last_error FROM dead_letters "
    "ORDER BY dead_at LIMIT ?"
)

_CACHE_KIB = -16384  # negative: KiB (16 MiB at most, allocated as pages are used)
_CHECKPOINT_PAGES = 4000

_LEASE_EXPIRED = (
    "the last attempt never reported back: its lease expired or was released "
    "(worker died, stalled or stopped)"
)


class SQLiteTaskStore:
    """
    The embedded queue backend: one SQLite file in WAL mode, one row per task.

    Each operation is one short transaction (``BEGIN IMMEDIATE`` for writes); ``put_many`` writes a
    whole batch in one. ``synchronous=NORMAL`` (the default) makes a commit survive the process being
    killed; ``FULL`` also survives power loss, at a few times the cost per commit.

    The sync ``*_sync`` methods do the work under one connection guarded by a lock; the coroutines run
    them in the loop's default executor. The sync methods are for tools and tests (the CLI, a REPL).

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
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<SQLiteTaskStore {str(self.path)!r} synchronous={self.synchronous} {state}>"

    @property
    def location(self) -> str:
        """The queue file."""
        return str(self.path)

    # -- opening ----------------------------------------------------------------------------------

    def _error(self, what: str) -> QueueStoreError:
        return QueueStoreError(f"{self.path}: {what}", location=str(self.path))

    def open_sync(self) -> None:
        """Open the file (create the schema if new). Raises QueueStoreError for a bad file."""
        with self._lock:
            if self._conn is not None:
                return
            self._conn = self._open()

    def _check_header(self) -> bool:
        """Return whether the file exists with content; refuse a non-SQLite file before connecting."""
        try:
            with self.path.open("rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            raise self._error("is a folder, not an MCP task queue file") from None
        except OSError as err:
            raise self._error(f"cannot be read: {err.strerror or err}") from err
        if not head:
            return False
        if head != _SQLITE_MAGIC:
            hint = ""
            if head.lstrip()[:1] in (b"[", b"{"):
                hint = " (it looks like JSON: pass a .json file to import a guide-format queue)"
            raise self._error(f"is not an MCP task queue: not a SQLite database{hint}")
        return True

    def _open(self) -> sqlite3.Connection:
        exists = self._check_header()
        if self.readonly:
            if not exists:
                raise self._error("no such MCP task queue file")
            uri = "file:" + _quote_path(self.path) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                check_same_thread=False,
                isolation_level=None,
                timeout=self.busy_timeout_s,
            )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._check_schema(conn, exists)
            if not self.readonly:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise self._error(f"cannot switch to WAL mode (journal_mode={mode})")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                # A 10 000-task backlog (rows and both indexes) stays in the page cache, and the WAL
                # is checkpointed (fsync of WAL and file) every 4 000 pages rather than 1 000: a few
                # times fewer fsyncs per task; what a commit guarantees is unchanged.
                conn.execute(f"PRAGMA cache_size = {_CACHE_KIB}")
                conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
                self._create_schema(conn)
        except sqlite3.DatabaseError as err:
            conn.close()
            raise self._error(f"is not a usable MCP task queue: {err}") from err
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: sqlite3.Connection, exists: bool) -> None:
        # Reading sqlite_master validates the header and the first page; nothing is written.
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not names:
            if self.readonly:
                raise self._error("is an empty database, not an MCP task queue")
            return
        if "safla_meta" not in names:
            shown = ", ".join(sorted(names)[:5])
            raise self._error(f"is a SQLite database of something else (tables: {shown})")
        check_meta(
            dict(conn.execute("SELECT key, value FROM safla_meta").fetchall()),
            newest=SCHEMA_VERSION,
            error=self._error,
            foreign="is a SQLite database of something else (unknown safla_meta kind)",
        )
        if not {"tasks", "dead_letters"} <= names:
            raise self._error("is an incomplete MCP task queue (tables missing)")

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            have = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='safla_meta'"
            ).fetchone()
            if have is None:
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.executemany(
                    "INSERT INTO safla_meta (key, value) VALUES (?, ?)",
                    [("kind", KIND), ("schema_version", str(SCHEMA_VERSION))],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close_sync(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- the work, sync -----------------------------------------------------------------------------

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
                if not write or single:
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
                if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                    raise self._error(f"is locked by another process: {err}") from err
                raise self._error(f"database error: {err}") from err

    def put_many_sync(self, tasks: Sequence[NewTask], *, now: float) -> list[bool]:
        """Insert tasks in one transaction; per task, whether it was new (a known id is kept as is)."""

        def work(conn: sqlite3.Connection) -> list[bool]:
            return [
                conn.execute(_INSERT, (t.id, t.payload, t.due_at, now, t.id)).rowcount == 1
                for t in tasks
            ]

        return self._run(work, write=True, single=len(tasks) == 1)

    def put_dead_sync(self, task: NewTask, *, error: str, now: float) -> bool:
        """Store a task straight into the dead letters; False when its id is already known."""

        def work(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM tasks WHERE id = ?", (task.id,)).fetchone():
                return False
            cur = conn.execute(
                "INSERT OR IGNORE INTO dead_letters "
                "(id, payload, attempts, created_at, dead_at, last_error) VALUES (?, ?, 0, ?, ?, ?)",
                (task.id, task.payload, now, now, error),
            )
            return cur.rowcount == 1

        return self._run(work, write=True)

    def import_rows_sync(
        self, rows: Iterable[tuple[str, str, int]], *, now: float, marker: tuple[str, str]
    ) -> int:
        """Insert ``(id, payload, attempts)`` rows and record ``marker`` in one transaction."""

        def work(conn: sqlite3.Connection) -> int:
            n = 0
            for task_id, payload, attempts in rows:
                if conn.execute("SELECT 1 FROM dead_letters WHERE id = ?", (task_id,)).fetchone():
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO tasks (id, payload, attempts, due_at, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (task_id, payload, attempts, now, now),
                )
                n += cur.rowcount
            conn.execute("INSERT OR REPLACE INTO safla_meta (key, value) VALUES (?, ?)", marker)
            return n

        return self._run(work, write=True)

    def meta_sync(self, key: str) -> str | None:
        """Read one ``safla_meta`` value."""
        row = self._run(
            lambda c: c.execute("SELECT value FROM safla_meta WHERE key = ?", (key,)).fetchone(),
            write=False,
        )
        return None if row is None else str(row[0])

    def claim_sync(
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
        out = []
        exhausted = []
        for task_id, payload, attempts in rows:
            if attempts > max_attempts:
                # Its last attempt started and never reported back (the lease expired): that
                # attempt counts, and the task is not run again.
                exhausted.append(task_id)
                continue
            out.append(
                ClaimedTask(
                    id=task_id, payload=payload, attempts=attempts, lease=token, lease_until=until
                )
            )
        if exhausted:

            def bury(conn: sqlite3.Connection) -> None:
                for task_id in exhausted:
                    _move_to_dead(
                        conn, task_id, now=now, error=_LEASE_EXPIRED, attempts=max_attempts
                    )

            self._run(bury, write=True)
        return out

    def extend_sync(self, leases: Sequence[tuple[str, str]], *, until: float) -> None:
        """Push the end of the given leases to ``until`` (leases lost meanwhile are left alone)."""
        if not leases:
            return
        self._run(
            lambda c: c.executemany(
                "UPDATE tasks SET due_at = ? WHERE id = ? AND lease = ?",
                [(until, i, token) for i, token in leases],
            ),
            write=True,
        )

    def ack_sync(self, task_id: str, lease: str) -> bool:
        """Delete a finished task (whoever holds it now: it has succeeded)."""
        del lease  # success ends the task even if its lease expired and was taken over
        return self._run(
            lambda c: c.execute("DELETE FROM tasks WHERE id = ?", (task_id,)).rowcount == 1,
            write=True,
            single=True,
        )

    def ack_many_sync(self, leases: Sequence[tuple[str, str]]) -> int:
        """Delete many finished tasks in one transaction (group commit of acks)."""
        if not leases:
            return 0
        return self._run(
            lambda c: (
                c.executemany(
                    "DELETE FROM tasks WHERE id = ?", [(task_id,) for task_id, _ in leases]
                ).rowcount
            ),
            write=True,
        )

    def fail_sync(
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

        def retry(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE tasks SET lease = NULL, due_at = ?, last_error = ? "
                "WHERE id = ? AND lease = ? AND attempts < ?",
                (next_attempt_at, error, task_id, lease, max_attempts),
            )
            return cur.rowcount == 1

        if self._run(retry, write=True, single=True):
            return "retry"

        def work(conn: sqlite3.Connection) -> Outcome:
            row = conn.execute(
                "SELECT attempts FROM tasks WHERE id = ? AND lease = ?", (task_id, lease)
            ).fetchone()
            if row is None:
                return "lost"  # the lease expired and another worker owns the task now
            _move_to_dead(conn, task_id, now=now, error=error, attempts=min(row[0], max_attempts))
            return "dead"

        return self._run(work, write=True)

    def release_sync(self, leases: Sequence[tuple[str, str]], *, now: float) -> None:
        """Give leases back, due now; the attempt stays counted (it may have had effects)."""
        if not leases:
            return
        self._run(
            lambda c: c.executemany(
                "UPDATE tasks SET lease = NULL, due_at = ? WHERE id = ? AND lease = ?",
                [(now, i, token) for i, token in leases],
            ),
            write=True,
        )

    def next_due_sync(self) -> float | None:
        """When the next task becomes claimable, or None when the queue is empty."""
        row = self._run(
            lambda c: c.execute("SELECT min(due_at) FROM tasks").fetchone(), write=False
        )
        return None if row is None or row[0] is None else float(row[0])

    def pending_sync(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        return [stored_task(r) for r in self._select(_SQL_PENDING, limit)]

    def dead_letters_sync(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        return [dead_letter(r) for r in self._select(_SQL_DEAD, limit)]

    def _select(self, sql: str, limit: int | None) -> list[Any]:
        return self._run(
            lambda c: c.execute(sql, (-1 if limit is None else limit,)).fetchall(), write=False
        )

    def stats_sync(self, *, now: float) -> QueueStats:
        """Counts and times for a status display."""

        def work(conn: sqlite3.Connection) -> QueueStats:
            # One read transaction so the figures agree with each other.
            conn.execute("BEGIN")
            try:
                in_flight = conn.execute(
                    "SELECT count(*) FROM tasks WHERE lease IS NOT NULL AND due_at > ?", (now,)
                ).fetchone()[0]
                total = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
                dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
                oldest = conn.execute("SELECT min(created_at) FROM tasks").fetchone()[0]
                nxt = conn.execute(
                    "SELECT min(due_at) FROM tasks WHERE lease IS NULL OR due_at <= ?", (now,)
                ).fetchone()[0]
                if nxt is None:
                    nxt = conn.execute("SELECT min(due_at) FROM tasks").fetchone()[0]
            finally:
                conn.execute("COMMIT")
            return QueueStats(
                pending=total - in_flight,
                in_flight=in_flight,
                dead=dead,
                oldest_created_at=oldest,
                next_due_at=nxt,
                location=str(self.path),
            )

        return self._run(work, write=False)

    # -- the protocol, async ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file off the loop (see :meth:`open_sync`)."""
        await off_loop(self.open_sync)

    async def close(self) -> None:
        """Close the connection off the loop."""
        await off_loop(self.close_sync)

    async def put_many(self, tasks: Sequence[NewTask], *, now: float) -> list[bool]:
        """See :meth:`put_many_sync`."""
        return await off_loop(self.put_many_sync, tasks, now=now)

    async def put_dead(self, task: NewTask, *, error: str, now: float) -> bool:
        """See :meth:`put_dead_sync`."""
        return await off_loop(self.put_dead_sync, task, error=error, now=now)

    async def claim(
        self, *, now: float, limit: int, lease_s: float, max_attempts: int
    ) -> list[ClaimedTask]:
        """See :meth:`claim_sync`."""
        return await off_loop(
            self.claim_sync, now=now, limit=limit, lease_s=lease_s, max_attempts=max_attempts
        )

    async def extend(self, leases: Sequence[tuple[str, str]], *, until: float) -> None:
        """See :meth:`extend_sync`."""
        await off_loop(self.extend_sync, leases, until=until)

    async def ack(self, task_id: str, lease: str) -> bool:
        """See :meth:`ack_sync`."""
        return await off_loop(self.ack_sync, task_id, lease)

    async def ack_many(self, leases: Sequence[tuple[str, str]]) -> int:
        """See :meth:`ack_many_sync`."""
        return await off_loop(self.ack_many_sync, leases)

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
        """See :meth:`fail_sync`."""
        return await off_loop(
            self.fail_sync,
            task_id,
            lease,
            error=error,
            now=now,
            next_attempt_at=next_attempt_at,
            max_attempts=max_attempts,
        )

    async def release(self, leases: Sequence[tuple[str, str]], *, now: float) -> None:
        """See :meth:`release_sync`."""
        await off_loop(self.release_sync, leases, now=now)

    async def next_due(self) -> float | None:
        """See :meth:`next_due_sync`."""
        return await off_loop(self.next_due_sync)

    async def pending(self, limit: int | None = None) -> list[StoredTask]:
        """See :meth:`pending_sync`."""
        return await off_loop(self.pending_sync, limit)

    async def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """See :meth:`dead_letters_sync`."""
        return await off_loop(self.dead_letters_sync, limit)

    async def stats(self, *, now: float) -> QueueStats:
        """See :meth:`stats_sync`."""
        return await off_loop(self.stats_sync, now=now)

    async def wait_for_change(self) -> None:
        """SQLite has no cross-process notifications: wait until cancelled."""
        await asyncio.get_running_loop().create_future()


def _move_to_dead(
    conn: sqlite3.Connection, task_id: str, *, now: float, error: str | None, attempts: int
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO dead_letters (id, payload, attempts, created_at, dead_at, last_error) "
        "SELECT id, payload, ?, created_at, ?, coalesce(?, last_error) FROM tasks WHERE id = ?",
        (attempts, now, error, task_id),
    )
    conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))


def _quote_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.resolve()))
