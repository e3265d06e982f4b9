"""
A fleet on one PostgreSQL queue: throughput with 1, 2 and 4 worker processes, beside the SQLite
backend in one process, and claim latency under contention beside a naive claim.

1. Enqueue + claim + ack of ~300-byte tasks, N tasks split between 1, 2 and 4 worker processes,
   each enqueueing its share and then claiming and acking until the queue is empty; the same
   through the SQLite backend (WAL; synchronous NORMAL, and FULL whose commits, like PostgreSQL's,
   wait for the disk) in one process. Twice: one commit per operation (a replica saving one failed
   call, a worker acking one task at a time), and 100 tasks per commit (put_many, claims of 100,
   ack_many: what MCPTaskRecovery's coalesced saves and acks do under load), with 10 N tasks.
2. Hand-over between replicas: a task saved on one replica, run by another replica's worker that
   was sleeping on an empty queue (woken by LISTEN/NOTIFY): time from save to execution.
3. Claim latency under contention: 4 processes claim one task at a time from a shared backlog and
   ack it; ours (one statement, ``FOR UPDATE SKIP LOCKED``) beside a naive claim (``SELECT ... FOR
   UPDATE`` then ``UPDATE`` in a transaction, no SKIP LOCKED): median and p99 latency per claim, and
   how many naive claims came back empty although tasks were due (the row they waited for was
   taken meanwhile).

Needs the PostgreSQL on 127.0.0.1 (database test); every run uses a schema of its own, dropped
afterwards. Run: python benchmarks/bench_fleet.py [N]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import compare, save

from safla_diag.mcp_retry._model import NewTask, TaskStore
from safla_diag.mcp_retry._postgres import PostgresTaskStore
from safla_diag.mcp_retry._sqlite_store import SQLiteTaskStore

BASE = "postgresql://postgres@127.0.0.1:5432/test"
ARGS = "x" * 240
LEASE = 60.0


def _task() -> NewTask:
    tid = uuid.uuid4().hex
    payload = json.dumps({"id": tid, "server": "search", "tool": "query", "args": {"q": ARGS}})
    return NewTask(id=tid, payload=payload, due_at=0.0)


async def _enqueue_claim_ack(store: TaskStore, n: int, batch: int = 1) -> dict[str, float]:
    """
    Enqueue n tasks, then claim and ack until the queue is empty: one commit per operation
    (``batch`` 1), or ``batch`` tasks per commit (put_many, claim limit, ack_many: group commit).
    """
    t0 = time.perf_counter()
    for k in range(0, n, batch):
        await store.put_many([_task() for _ in range(min(batch, n - k))], now=time.time())
    t1 = time.perf_counter()
    done = 0
    while claimed := await store.claim(now=time.time(), limit=batch, lease_s=LEASE, max_attempts=5):
        if batch == 1:
            for c in claimed:
                await store.ack(c.id, c.lease)
        else:
            await store.ack_many([(c.id, c.lease) for c in claimed])
        done += len(claimed)
    t2 = time.perf_counter()
    return {"enqueue_s": t1 - t0, "drain_s": t2 - t1, "acked": done, "start": t0, "end": t2}


# -- worker processes -------------------------------------------------------------------------------


async def _worker_throughput(url: str, n: int, batch: int) -> dict[str, float]:
    store = PostgresTaskStore(url)
    await store.open()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = time.time()
    out = await _enqueue_claim_ack(store, n, batch)
    out["start_wall"], out["end_wall"] = start, time.time()
    await store.close()
    return out


async def _claim_naive(conn: Any, s: str, now: float) -> str | None:
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT id FROM {s}.mcp_tasks WHERE due_at <= %s ORDER BY due_at LIMIT 1 FOR UPDATE",
            (now,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        await conn.execute(
            f"UPDATE {s}.mcp_tasks SET attempts = attempts + 1, lease = 'x', due_at = %s "
            "WHERE id = %s",
            (now + LEASE, row[0]),
        )
        return str(row[0])


async def _worker_latency(url: str, naive: bool, quota: int) -> dict[str, Any]:
    import psycopg

    store = PostgresTaskStore(url)
    await store.open()
    conn = await psycopg.AsyncConnection.connect(BASE, autocommit=True)
    s = f'"{store.schema}"'
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    lat: list[float] = []
    empty = 0
    while len(lat) < quota:
        t = time.perf_counter()
        if naive:
            tid = await _claim_naive(conn, s, time.time())
        else:
            got = await store.claim(now=time.time(), limit=1, lease_s=LEASE, max_attempts=5)
            tid = got[0].id if got else None
        lat.append(time.perf_counter() - t)
        if tid is None:
            empty += 1
            if empty > quota:
                break
            continue
        await conn.execute(f"DELETE FROM {s}.mcp_tasks WHERE id = %s", (tid,))
    await conn.close()
    await store.close()
    return {"latencies": lat, "empty": empty}


async def _worker_handover(url: str, count: int) -> dict[str, Any]:
    """Replica B: a worker idle on an empty queue; records how long after its save each task ran."""
    from safla_diag import MCPTaskRecovery

    lat: list[float] = []
    done = asyncio.Event()

    async def execute(task: dict[str, Any]) -> None:
        lat.append(time.time() - task["saved_at"])
        if len(lat) >= count:
            done.set()

    q = MCPTaskRecovery(url, execute=execute, retry_delay=0)
    await q.load_failed_tasks()
    worker = asyncio.ensure_future(q.retry_failed_tasks())
    await asyncio.sleep(0.5)  # let it reach its sleep, listening
    print("ready", flush=True)
    async with asyncio.timeout(120):
        await done.wait()
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    await q.aclose()
    return {"latencies": lat}


def _spawn(procs: int, *args: str) -> list[dict[str, Any]]:
    """Start ``procs`` worker processes, release them at once, and collect their JSON results."""
    ps = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    for p in ps:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in ps:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    out = []
    for p in ps:
        stdout, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


# -- the runs -----------------------------------------------------------------------------------------


def _fresh_schema() -> tuple[str, str]:
    schema = "bench_" + uuid.uuid4().hex[:10]
    url = f"{BASE}?schema={schema}"

    async def create() -> None:
        s = PostgresTaskStore(url)
        await s.open()
        await s.close()

    asyncio.run(create())
    return schema, url


def _drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def _left(schema: str) -> int:
    import psycopg

    with psycopg.connect(BASE, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{schema}".mcp_tasks WHERE dead_at IS NULL'  # type: ignore[arg-type]
        ).fetchone()
    return int(row[0]) if row else -1


def throughput_pg(n: int, procs: int, batch: int) -> dict[str, Any]:
    schema, url = _fresh_schema()
    try:
        results = _spawn(procs, "throughput", url, str(n // procs), str(batch))
        span = max(r["end_wall"] for r in results) - min(r["start_wall"] for r in results)
        assert _left(schema) == 0
        acked = sum(r["acked"] for r in results)
        enq = max(r["enqueue_s"] for r in results)
        return {
            "procs": procs,
            "tasks": n,
            "acked": acked,
            "tasks_per_s": n / span,
            "enqueue_per_s": n / enq,
        }
    finally:
        _drop(schema)


def throughput_sqlite(n: int, batch: int, synchronous: Literal["NORMAL", "FULL"]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteTaskStore(Path(d) / "q.db", synchronous=synchronous)

        async def run() -> dict[str, float]:
            await store.open()
            try:
                return await _enqueue_claim_ack(store, n, batch)
            finally:
                await store.close()

        r = asyncio.run(run())
    return {
        "procs": 1,
        "tasks": n,
        "tasks_per_s": n / (r["end"] - r["start"]),
        "enqueue_per_s": n / r["enqueue_s"],
    }


def latency(procs: int, naive: bool, backlog: int, quota: int) -> dict[str, Any]:
    schema, url = _fresh_schema()
    try:

        async def fill() -> None:
            s = PostgresTaskStore(url)
            for k in range(0, backlog, 500):
                await s.put_many([_task() for _ in range(min(500, backlog - k))], now=0)
            await s.close()

        asyncio.run(fill())
        results = _spawn(procs, "latency", url, "1" if naive else "0", str(quota))
        lat = sorted(x for r in results for x in r["latencies"])
        return {
            "procs": procs,
            "naive": naive,
            "claims": len(lat),
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
            "empty_claims": sum(r["empty"] for r in results),
        }
    finally:
        _drop(schema)


def handover(count: int) -> dict[str, Any]:
    """Replica A (this process) saves a task every 50 ms; replica B's idle worker runs it."""
    from safla_diag import MCPTaskRecovery

    schema, url = _fresh_schema()
    try:
        p = subprocess.Popen(
            [sys.executable, __file__, "--worker", "handover", url, str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

        async def save() -> None:
            q = MCPTaskRecovery(url, execute=lambda t: None, retry_delay=0)
            for _ in range(count):
                await q.save_failed_task({"tool": "x", "saved_at": time.time()}, delay=0)
                await asyncio.sleep(0.05)
            await q.aclose()

        asyncio.run(save())
        stdout, _ = p.communicate(timeout=120)
        lat = sorted(json.loads(stdout.strip().splitlines()[-1])["latencies"])
        return {
            "tasks": len(lat),
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] * 1000,
        }
    finally:
        _drop(schema)


def _throughputs(n: int, batch: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    how = "one commit per operation" if batch == 1 else f"{batch} tasks per commit"
    print(f"enqueue + claim + ack, {n} tasks of ~300 bytes, {how} (best of 2)")
    out: dict[str, Any] = {}
    for sync in ("NORMAL", "FULL"):
        r = max(
            (throughput_sqlite(n, batch, sync) for _ in range(2)), key=lambda r: r["tasks_per_s"]
        )
        out[f"sqlite_{sync}"] = r
        print(f"  SQLite (WAL, {sync:<6}), 1 process:      {r['tasks_per_s']:9.0f} tasks/s")
    for procs in (1, 2, 4):
        r = max((throughput_pg(n, procs, batch) for _ in range(2)), key=lambda r: r["tasks_per_s"])
        out[f"pg_{procs}"] = r
        print(
            f"  PostgreSQL, {procs} worker process(es):    {r['tasks_per_s']:9.0f} tasks/s"
            f"   (enqueue phase {r['enqueue_per_s']:.0f}/s)"
        )
    for procs in (1, 2, 4):
        rows.append(
            compare(
                f"[{how}] PG {procs} procs vs SQLite FULL",
                out[f"pg_{procs}"]["tasks_per_s"],
                out["sqlite_FULL"]["tasks_per_s"],
                "tasks/s",
                "sqlite_full",
            )
        )
    rows.append(
        compare(
            f"[{how}] PG 4 procs vs PG 1 proc",
            out["pg_4"]["tasks_per_s"],
            out["pg_1"]["tasks_per_s"],
            "tasks/s",
            "pg_1proc",
        )
    )
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rows: list[dict[str, Any]] = []
    per_op = _throughputs(n, 1, rows)
    batched = _throughputs(n * 10, 100, rows)
    print("hand-over: saved on replica A (this process), run by replica B's idle worker")
    hand = handover(60)
    print(
        f"  save -> execution on the other replica: p50 {hand['p50_ms']:.1f} ms"
        f"  p99 {hand['p99_ms']:.1f} ms  ({hand['tasks']} tasks; without NOTIFY: never,"
        " the idle worker has no due time to wake for)"
    )
    print("claim latency: processes claiming one task at a time from a 2 000-task backlog")
    quota = 150
    ours1 = latency(1, naive=False, backlog=2000, quota=quota)
    ours4 = latency(4, naive=False, backlog=2000, quota=quota)
    naive4 = latency(4, naive=True, backlog=2000, quota=quota)
    for r in (ours1, ours4, naive4):
        kind = "naive FOR UPDATE" if r["naive"] else "ours SKIP LOCKED"
        print(
            f"  {kind}, {r['procs']} proc(s): p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
            f"  empty claims {r['empty_claims']} of {r['claims']}"
        )
    rows.append(
        compare("claim p50 under contention (4 procs)", ours4["p50_ms"], naive4["p50_ms"], "ms")
    )
    rows.append(
        compare("claim p99 under contention (4 procs)", ours4["p99_ms"], naive4["p99_ms"], "ms")
    )
    save(
        "fleet",
        rows,
        tasks=n,
        per_operation=per_op,
        group_commit=batched,
        latency=[ours1, ours4, naive4],
        handover=hand,
        cpus=os.cpu_count(),
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind = sys.argv[2]
        if kind == "handover":
            result: Any = asyncio.run(_worker_handover(sys.argv[3], int(sys.argv[4])))
        elif kind == "throughput":
            result = asyncio.run(
                _worker_throughput(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
            )
        else:
            result = asyncio.run(_worker_latency(sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])))
        print(json.dumps(result), flush=True)
    else:
        main()
