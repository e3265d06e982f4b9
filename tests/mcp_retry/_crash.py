"""
Crash trials for the queue: a worker enqueues, claims, fails and acks in a loop, writing a
ledger of every call that returned; it is killed with SIGKILL at a random moment; the queue is then
reopened and checked against the ledger.

Run as ``python _crash.py DB LEDGER TRIALS SEED``: a small single-threaded supervisor forks one
worker per trial (fork is cheap and safe here: no threads), kills it, checks the file and prints one
JSON line per trial. The tests import ``check`` to verify the final state themselves.
:func:`exercise` is the worker's loop for any backend (``_pg_crash.py`` runs it on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2]))

from safla_diag.mcp_retry._model import NewTask, TaskStore  # noqa: E402
from safla_diag.mcp_retry._sqlite import SQLiteQueue  # noqa: E402
from safla_diag.mcp_retry._sqlite_store import SQLiteTaskStore  # noqa: E402

MAX_ATTEMPTS = 4
PAYLOAD = "x" * 260


def _line(fd: int, kind: str, task_id: str) -> None:
    os.write(fd, f"{kind} {task_id}\n".encode())


async def exercise(
    store: TaskStore, ledger: str, seed: int, *, lease_s: float, max_attempts: int
) -> None:
    """
    Loop forever over any opened backend: save (alone or in a batch), claim, ack or fail; log what returned.

    Ledger lines: ``I id`` before a save, ``S id`` once it returned, ``C id`` claimed, ``A id``
    acked, ``F id`` failed (retry), ``D id`` dead-lettered.
    """
    rng = random.Random(seed)
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        r = rng.random()
        now = time.time()
        if r < 0.55:
            ids = [uuid.uuid4().hex for _ in range(1 if r < 0.45 else rng.randint(2, 6))]
            for tid in ids:
                _line(fd, "I", tid)
            await store.put_many(
                [NewTask(id=t, payload=_payload(t), due_at=now) for t in ids], now=now
            )
            for tid in ids:
                _line(fd, "S", tid)
        else:
            for c in await store.claim(
                now=now, limit=3, lease_s=lease_s, max_attempts=max_attempts
            ):
                _line(fd, "C", c.id)
                if rng.random() < 0.6:
                    await store.ack(c.id, c.lease)
                    _line(fd, "A", c.id)
                else:
                    out = await store.fail(
                        c.id,
                        c.lease,
                        error="boom",
                        now=now,
                        next_attempt_at=now,
                        max_attempts=max_attempts,
                    )
                    _line(fd, "D" if out == "dead" else "F", c.id)


def _payload(task_id: str) -> str:
    return json.dumps({"id": task_id, "tool": "search", "args": PAYLOAD})


def worker(db: str, ledger: str, seed: int) -> None:
    """The SQLite worker: :func:`exercise` on the queue file until killed."""

    async def main() -> None:
        store = SQLiteTaskStore(db)
        await store.open()
        await exercise(store, ledger, seed, lease_s=0.02, max_attempts=MAX_ATTEMPTS)

    asyncio.run(main())


def read_ledger(ledger: str) -> dict[str, set[str]]:
    """Ledger kind -> ids; a torn last line (killed mid-write) is ignored."""
    out: dict[str, set[str]] = {k: set() for k in "ISCAFD"}
    with open(ledger, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and len(parts[1]) == 32 and parts[0] in out:
                out[parts[0]].add(parts[1])
    return out


def check(db: str, ledger: str) -> tuple[list[str], dict[str, int]]:
    """Problems found (empty when all is well), and counts."""
    problems: list[str] = []
    conn = sqlite3.connect(db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        rows = [r[0] for r in conn.execute("SELECT id FROM tasks WHERE dead_at IS NULL")]
        dead = [r[0] for r in conn.execute("SELECT id FROM dead_letters")]
    finally:
        conn.close()
    led = read_ledger(ledger)
    stored = set(rows)
    if len(rows) != len(stored) or len(dead) != len(set(dead)) or stored & set(dead):
        problems.append("a task is stored twice")
    acked_present = led["A"] & (stored | set(dead))
    if acked_present:
        problems.append(f"{len(acked_present)} acknowledged tasks came back")
    never_claimed = led["S"] - led["C"]
    lost = never_claimed - stored
    if lost:
        problems.append(f"{len(lost)} saved tasks lost")
    touched = led["S"] - led["A"] - led["D"]
    lost2 = {t for t in touched if t in led["C"]} - stored - set(dead)
    # A claimed task whose ack or fail committed just before the kill may be gone: in doubt, fine.
    in_doubt_gone = len(lost2)
    counts = {
        "saved": len(led["S"]),
        "acked": len(led["A"]),
        "queued": len(stored),
        "dead": len(dead),
        "in_doubt_saves": len(led["I"] - led["S"]),
        "in_doubt_gone": in_doubt_gone,
    }
    return problems, counts


def resave_in_doubt(db: str, ledger: str) -> int:
    """Save again every task whose save did not return: idempotent, never a duplicate."""
    led = read_ledger(ledger)
    doubt = led["I"] - led["S"]
    store = SQLiteQueue(db)
    try:
        now = time.time()
        news = store.put_many(
            [NewTask(id=t, payload=json.dumps({"id": t}), due_at=now) for t in sorted(doubt)],
            now=now,
        )
    finally:
        store.close()
    with open(ledger, "a", encoding="utf-8") as f:
        for t in sorted(doubt):
            f.write(f"S {t}\n")
    return sum(1 for n in news if not n)  # already there: the kill landed after the commit


def supervise(db: str, ledger: str, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    for trial in range(trials):
        start = os.path.getsize(ledger) if os.path.exists(ledger) else 0
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                worker(db, ledger, seed * 1000 + trial)
            finally:
                os._exit(1)
        # Let it get going, then kill it at a random moment.
        deadline = time.monotonic() + 10
        while (
            not os.path.exists(ledger) or os.path.getsize(ledger) <= start
        ) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        problems, counts = check(db, ledger)
        committed_before_return = resave_in_doubt(db, ledger)
        print(
            json.dumps(
                {
                    "trial": trial,
                    "killed": killed,
                    "problems": problems,
                    "committed_before_return": committed_before_return,
                    **counts,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    supervise(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
