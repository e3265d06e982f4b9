"""
One replica of a service for the fleet tests: an MCPTaskRecovery worker on the shared PostgreSQL
queue whose ``execute`` records every execution in a table of the test's schema.

Run as ``python _fleet.py QUEUE_URL MAX_RETRIES LEASE_S SEED``. Each task says how many of its first
executions fail (``fail_first``); ``execute`` counts the task's earlier executions in the table to
know which one it is. SIGTERM stops the worker gracefully (leases given back); the tests also kill
it with SIGKILL at random moments.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg

from safla_diag import MCPTaskRecovery
from safla_diag.mcp_retry._postgres import PostgresTaskStore

EXEC_TABLE = "fleet_exec"


def exec_table_ddl(schema: str) -> str:
    """The executions ledger: one row per execution, stamped with the server's clock."""
    return (
        f'CREATE TABLE IF NOT EXISTS "{schema}".{EXEC_TABLE} ('
        "seq bigserial PRIMARY KEY, task_id text NOT NULL, pid integer NOT NULL, "
        "started timestamptz NOT NULL, ended timestamptz, ok boolean)"
    )


async def main(url: str, max_retries: int, lease_s: float, seed: int) -> None:
    rng = random.Random(seed)
    store = PostgresTaskStore(url)
    schema = store.schema
    # The test's own bookkeeping: commits need not wait for the disk (only a server crash loses them).
    ledger = await psycopg.AsyncConnection.connect(
        url.partition("?")[0], autocommit=True, options="-csynchronous_commit=off"
    )
    pid = os.getpid()
    table = f'"{schema}".{EXEC_TABLE}'

    async def execute(task: dict[str, Any]) -> None:
        cur = await ledger.execute(
            f"INSERT INTO {table} (task_id, pid, started) VALUES (%s, %s, clock_timestamp()) "
            f"RETURNING seq, (SELECT count(*) FROM {table} WHERE task_id = %s)",
            (task["id"], pid, task["id"]),
        )
        row = await cur.fetchone()
        assert row is not None
        seq, before = row
        await asyncio.sleep(rng.uniform(0, 0.002))
        ok = before >= task["fail_first"]
        await ledger.execute(
            f"UPDATE {table} SET ended = clock_timestamp(), ok = %s WHERE seq = %s", (ok, seq)
        )
        if not ok:
            raise ConnectionError(f"MCP server refused {task['id']} (execution {before + 1})")

    q = MCPTaskRecovery(
        url,
        execute=execute,
        max_retries=max_retries,
        retry_delay=0.005,
        max_delay=0.02,
        lease_s=lease_s,
        concurrency=4,
        store=store,
    )
    await q.load_failed_tasks()
    worker = asyncio.ensure_future(q.retry_failed_tasks())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.cancel)
    print("ready", flush=True)
    try:
        await worker
    except asyncio.CancelledError:
        pass
    finally:
        await q.aclose()
        await ledger.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
