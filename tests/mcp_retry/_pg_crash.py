"""
A crash-trial worker for the PostgreSQL queue: saves (alone and in batches), claims, acks and fails
in a loop, writing a ledger line after each call returns, until it is killed with SIGKILL.

Run as ``python _pg_crash.py QUEUE_URL LEDGER SEED``. Ledger lines: ``I id`` before a save, ``S id``
once it returned, ``C id`` claimed, ``A id`` acked, ``F id`` failed (retry), ``D id`` dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from safla_diag.mcp_retry._postgres import PostgresTaskStore
from safla_diag.mcp_retry._store import NewTask

MAX_ATTEMPTS = 3


def _line(fd: int, kind: str, task_id: str) -> None:
    os.write(fd, f"{kind} {task_id}\n".encode())


async def worker(url: str, ledger: str, seed: int) -> None:
    rng = random.Random(seed)
    store = PostgresTaskStore(url)
    await store.open()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", flush=True)
    while True:
        r = rng.random()
        now = time.time()
        if r < 0.5:
            ids = [uuid.uuid4().hex for _ in range(1 if r < 0.4 else rng.randint(2, 6))]
            for tid in ids:
                _line(fd, "I", tid)
            await store.put_many(
                [NewTask(id=t, payload=json.dumps({"id": t}), due_at=now) for t in ids], now=now
            )
            for tid in ids:
                _line(fd, "S", tid)
        else:
            for c in await store.claim(now=now, limit=3, lease_s=0.05, max_attempts=MAX_ATTEMPTS):
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
                        max_attempts=MAX_ATTEMPTS,
                    )
                    _line(fd, "D" if out == "dead" else "F", c.id)


def read_ledger(ledger: str) -> dict[str, set[str]]:
    """Ledger kind -> ids; a torn last line (killed mid-write) is ignored."""
    out: dict[str, set[str]] = {k: set() for k in "ISCAFD"}
    with open(ledger, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and len(parts[1]) == 32 and parts[0] in out:
                out[parts[0]].add(parts[1])
    return out


if __name__ == "__main__":
    asyncio.run(worker(sys.argv[1], sys.argv[2], int(sys.argv[3])))
