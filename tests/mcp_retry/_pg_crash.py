"""
A crash-trial worker for the PostgreSQL queue: ``_crash.exercise`` (saves alone and in batches,
claims, acks and fails in a loop, a ledger line after each call returns) until killed with SIGKILL.

Run as ``python _pg_crash.py QUEUE_URL LEDGER SEED``; it prints ``ready`` once the queue is open.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _crash import exercise  # type: ignore[import-not-found]  # run as a script beside it

from safla_diag.mcp_retry._postgres import PostgresTaskStore

MAX_ATTEMPTS = 3


async def worker(url: str, ledger: str, seed: int) -> None:
    store = PostgresTaskStore(url)
    await store.open()
    print("ready", flush=True)
    await exercise(store, ledger, seed, lease_s=0.05, max_attempts=MAX_ATTEMPTS)


if __name__ == "__main__":
    asyncio.run(worker(sys.argv[1], sys.argv[2], int(sys.argv[3])))
