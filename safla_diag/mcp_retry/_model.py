"""
The model of the failed-task queue, shared by every backend: records, protocols, SQL, row mappers.

The model:

- one row per task, keyed by the task id (the idempotency key: inserting a known id stores nothing,
  whether the id is queued or dead-lettered, since both live in the same table);
- ``due_at`` is when the row can next be claimed: its ``next_attempt_at`` while it waits, the end of
  its lease while a worker holds it, infinity once it is dead, so one index on ``due_at`` serves
  claims, expired-lease reclaims and "when is the next wake-up", whatever the backlog;
- a claim sets a lease token, pushes ``due_at`` to the end of the lease and increments ``attempts``
  in the same transaction, so a crash mid-task still counts as an attempt;
- success deletes the row; a failure releases the lease and schedules the next attempt, or, after
  the last allowed attempt, sets ``dead_at`` with its last error (a view lists the dead letters).
  A row whose lease expired after its last attempt is dead-lettered by the next claim.

:class:`TaskStore` is what :class:`~safla_diag.MCPTaskRecovery` needs from a backend (coroutines);
:class:`QueueView` is the blocking, read-only view tools without a loop use (the CLI).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol, TypeVar, runtime_checkable

import attrs

from .._errors import QueueStoreError
from .._report import JsonMixin, html_block, html_table

__all__ = [
    "INF",
    "KIND",
    "LEASE_EXPIRED",
    "SQL_DEAD",
    "SQL_IMPORT_MERGE",
    "SQL_NEXT_DUE",
    "SQL_PENDING",
    "SQL_PURGE_ALL",
    "SQL_REQUEUE_ALL",
    "SQL_STATS",
    "ClaimedTask",
    "DeadLetter",
    "NewTask",
    "Outcome",
    "QueueStats",
    "QueueStoreError",
    "QueueView",
    "StoredTask",
    "TaskStore",
    "check_meta",
    "dead_letter",
    "map_rows",
    "queue_stats",
    "stored_task",
]

KIND = "safla_diag.mcp_task_queue"
INF = math.inf

LEASE_EXPIRED = (
    "the last attempt never reported back: its lease expired or was released "
    "(worker died, stalled or stopped)"
)

Outcome = Literal["retry", "dead", "lost"]


class NewTask(NamedTuple):
    """A task to enqueue: its id, its payload as JSON text, and when it is first due.
    (A named tuple: one is made per save, and a tuple is made in half the time.)"""

    id: str
    payload: str
    due_at: float


class ClaimedTask(NamedTuple):
    """A task claimed by a worker: ``attempts`` already counts this attempt. (A named tuple:
    one is made per task run.)"""

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


def _age(seconds: float | None, *, future: bool = False) -> str:
    if seconds is None:
        return "-"
    if seconds <= 0 and future:
        return "now"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            text = f"{seconds / size:.1f}{unit}"
            break
    else:
        text = f"{seconds:.1f}s"
    return f"in {text}" if future else f"{text} ago"


@attrs.frozen(kw_only=True)
class QueueStats(JsonMixin):
    """
    Counts and times of a queue, for ``safla-diag mcp queue`` and ``MCPTaskRecovery.stats()``.

    Attributes:
        pending: Tasks waiting (not leased, or whose lease expired).
        in_flight: Tasks leased by a worker whose lease has not expired.
        dead: Dead-lettered tasks.
        oldest_created_at: When the oldest queued task was saved (wall clock), or None.
        next_due_at: When the next task becomes due (wall clock), or None when the queue is empty.
        location: The queue file (or redacted URL).
        measured_at: When the figures were read (wall clock), or None.
    """

    pending: int
    in_flight: int
    dead: int
    oldest_created_at: float | None
    next_due_at: float | None
    location: str
    measured_at: float | None = None

    @property
    def oldest_pending_age_s(self) -> float | None:
        """Seconds since the oldest queued task was saved, at ``measured_at`` (None when empty)."""
        if self.oldest_created_at is None or self.measured_at is None:
            return None
        return max(0.0, self.measured_at - self.oldest_created_at)

    def to_dict(self, *, now: float | None = None) -> dict[str, Any]:
        """
        Return a JSON-ready dict, with the oldest task's age and the delay until the next is due
        (at ``now``, by default when the figures were read).
        """
        d: dict[str, Any] = attrs.asdict(self)
        now = self.measured_at if now is None else now
        if now is not None:
            d["oldest_age_s"] = (
                None if self.oldest_created_at is None else max(0.0, now - self.oldest_created_at)
            )
            d["next_due_in_s"] = (
                None if self.next_due_at is None else max(0.0, self.next_due_at - now)
            )
        return d

    def _rows(self) -> list[tuple[str, object]]:
        d = self.to_dict()
        return [
            ("pending", self.pending),
            ("in flight", self.in_flight),
            ("dead-lettered", self.dead),
            ("oldest task", _age(d.get("oldest_age_s"))),
            ("next due", _age(d.get("next_due_in_s"), future=True)),
        ]

    def to_text(self) -> str:
        """The figures as aligned lines, under the queue's location."""
        lines = [f"MCP task queue: {self.location}"]
        lines += [f"  {(k + ':'):<15} {v}" for k, v in self._rows()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return html_block(
            f"MCP task queue: {self.location}",
            html_table(["", "value"], self._rows()),
            ok=self.dead == 0,
        )


def stored_task(r: Sequence[Any]) -> StoredTask:
    """A :class:`StoredTask` from a row ``(id, payload, attempts, created_at, due_at, lease,
    last_error)``, as every backend selects it (:data:`SQL_PENDING`)."""
    return StoredTask(
        id=str(r[0]),
        payload=str(r[1]),
        attempts=int(r[2]),
        created_at=float(r[3]),
        due_at=float(r[4]),
        leased=r[5] is not None,
        last_error=None if r[6] is None else str(r[6]),
    )


def dead_letter(r: Sequence[Any]) -> DeadLetter:
    """A :class:`DeadLetter` from a row ``(id, payload, attempts, created_at, dead_at, last_error)``
    (:data:`SQL_DEAD`)."""
    return DeadLetter(
        id=str(r[0]),
        payload=str(r[1]),
        attempts=int(r[2]),
        created_at=float(r[3]),
        dead_at=float(r[4]),
        last_error=None if r[5] is None else str(r[5]),
    )


R = TypeVar("R")


def map_rows(
    rows: Iterable[Sequence[Any]],
    mapper: Callable[[Sequence[Any]], R],
    error: Callable[[str], QueueStoreError],
) -> list[R]:
    """Rows as records; a row with wrong column types (a damaged or hand-edited queue) raises
    QueueStoreError, one line, instead of a TypeError or ValueError from deep inside."""
    try:
        return [mapper(r) for r in rows]
    except (TypeError, ValueError, OverflowError) as err:
        raise error(
            f"holds a row that is not a task ({type(err).__name__}: {str(err)[:120]}); "
            "the queue was damaged or edited by hand"
        ) from None


def queue_stats(r: Sequence[Any] | None, *, location: str, now: float) -> QueueStats:
    """A :class:`QueueStats` from the row of :data:`SQL_STATS`."""
    if r is None:
        r = (0, 0, 0, None, None)
    return QueueStats(
        pending=int(r[1] or 0) - int(r[0] or 0),
        in_flight=int(r[0] or 0),
        dead=int(r[2] or 0),
        oldest_created_at=None if r[3] is None else float(r[3]),
        next_due_at=None if r[4] is None else float(r[4]),
        location=location,
        measured_at=now,
    )


# The SQL every backend shares. ``{tasks}`` and ``{dead}`` are the backend's table and dead-letter
# view; parameters are named ``:name`` (SQLite's style; the PostgreSQL backend converts them).
SQL_PENDING = """SELECT id, payload, attempts, created_at, due_at, lease, last_error
    FROM {tasks} WHERE dead_at IS NULL ORDER BY due_at, id LIMIT :limit"""
SQL_DEAD = """SELECT id, payload, attempts, created_at, dead_at, last_error
    FROM {dead} ORDER BY dead_at, id LIMIT :limit"""
# Dead rows are due at infinity: the head of the due index is the next claimable task.
SQL_NEXT_DUE = "SELECT min(due_at) FROM {tasks} WHERE due_at < :inf"
# One statement, so the figures come from one snapshot and agree with each other.
SQL_STATS = """SELECT
    count(*) FILTER (WHERE lease IS NOT NULL AND due_at > :now AND dead_at IS NULL),
    count(*) FILTER (WHERE dead_at IS NULL),
    count(*) FILTER (WHERE dead_at IS NOT NULL),
    min(created_at) FILTER (WHERE dead_at IS NULL),
    coalesce(
        min(due_at) FILTER (WHERE dead_at IS NULL AND (lease IS NULL OR due_at <= :now)),
        min(due_at) FILTER (WHERE dead_at IS NULL))
    FROM {tasks}"""


# Dead letters back to the queue (due now, a fresh attempt count) or deleted; ``:cutoff`` is the
# latest ``dead_at`` touched (infinity: all).
SQL_REQUEUE_ALL = """UPDATE {tasks} SET dead_at = NULL, due_at = :now, attempts = 0, lease = NULL
    WHERE dead_at IS NOT NULL AND dead_at <= :cutoff"""
SQL_PURGE_ALL = "DELETE FROM {tasks} WHERE dead_at IS NOT NULL AND dead_at <= :cutoff"
# A guide import: new ids inserted; an id this import inserted earlier (same created_at) takes the
# higher attempt count of a later copy. Anything else already there is left as it is.
SQL_IMPORT_MERGE = """UPDATE {tasks} SET attempts = :attempts, payload = :payload
    WHERE id = :id AND created_at = :now AND attempts < :attempts
    AND lease IS NULL AND dead_at IS NULL"""


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


@runtime_checkable
class QueueView(Protocol):
    """A blocking, read-only view of a queue, for tools without an event loop (the CLI)."""

    @property
    def location(self) -> str:
        """The queue's file or redacted URL, for messages."""
        ...

    def stats(self, *, now: float) -> QueueStats:
        """Counts and times for a status display."""
        ...

    def pending(self, limit: int | None = None) -> list[StoredTask]:
        """The queued tasks, soonest due first."""
        ...

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest first."""
        ...

    def close(self) -> None:
        """Release the view's connection; idempotent."""
        ...


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
        """Return when another process or object changed the queue (a notification or a poll)."""
        ...

    async def requeue_dead(self, ids: Sequence[str] | None = None, *, now: float) -> int:
        """Dead letters (all, or these ids) back to the queue, due ``now``, attempts reset."""
        ...

    async def purge_dead(
        self, ids: Sequence[str] | None = None, *, dead_before: float = INF
    ) -> int:
        """Delete dead letters (all, or these ids) that died at or before ``dead_before``."""
        ...

    async def meta(self, key: str) -> str | None:
        """Read one ``safla_meta`` value (import markers)."""
        ...

    async def set_meta(self, key: str, value: str) -> None:
        """Write one ``safla_meta`` value."""
        ...

    async def import_rows(self, rows: Sequence[tuple[str, str, int]], *, now: float) -> int:
        """Insert ``(id, payload, attempts)`` rows due ``now`` in one transaction; how many were new."""
        ...
