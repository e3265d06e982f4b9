"""
A fleet: four worker processes share one PostgreSQL queue, tasks fail at random, workers are killed
with SIGKILL at random moments. Every execution is recorded (server clock) by the workers' ``execute``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from safla_diag.mcp_retry._model import NewTask
from safla_diag.mcp_retry._postgres import PostgresTaskStore

from ._crash import read_ledger
from ._fleet import EXEC_TABLE, exec_table_ddl
from ._pg import pg_queue_url_fixture, pg_schema_fixture, sql  # noqa: F401

HELPER = Path(__file__).with_name("_fleet.py")
CRASH_HELPER = Path(__file__).with_name("_pg_crash.py")
MAX_RETRIES = 3


class Fleet:
    """The test's side: enqueues, starts, kills and stops worker processes, then checks."""

    def __init__(self, url: str, base_url: str, schema: str, tmp: Path, lease_s: float) -> None:
        self.url, self.base, self.schema, self.tmp, self.lease_s = (
            url,
            base_url,
            schema,
            tmp,
            lease_s,
        )
        self.procs: list[subprocess.Popen[str]] = []
        self.killed: dict[int, datetime] = {}
        self.expected: dict[str, int] = {}
        self.spawned = 0
        self.drain_s = 0.0

    def prepare(self) -> None:
        async def create() -> None:
            s = PostgresTaskStore(self.url)
            await s.open()
            await s.close()

        asyncio.run(create())
        sql(self.base, exec_table_ddl(self.schema))

    def enqueue(self, ids: list[str], rng: random.Random) -> None:
        tasks = []
        for i in ids:
            fail_first = rng.choices([0, 1, 2, MAX_RETRIES, MAX_RETRIES + 2], [50, 15, 10, 15, 10])[
                0
            ]
            self.expected[i] = fail_first
            tasks.append(
                NewTask(
                    id=i,
                    payload=json.dumps({"id": i, "fail_first": fail_first, "args": "x" * 200}),
                    due_at=0.0,
                )
            )

        async def put() -> None:
            s = PostgresTaskStore(self.url)
            for k in range(0, len(tasks), 100):
                new = await s.put_many(tasks[k : k + 100], now=time.time())
                assert all(new)
            await s.close()

        asyncio.run(put())

    def spawn(self) -> None:
        self.spawned += 1
        err = (self.tmp / f"worker{self.spawned}.err").open("w")
        p = subprocess.Popen(
            [
                sys.executable,
                str(HELPER),
                self.url,
                str(MAX_RETRIES),
                str(self.lease_s),
                str(self.spawned),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        err.close()
        self.procs.append(p)

    def kill_one(self, rng: random.Random) -> None:
        live = [p for p in self.procs if p.poll() is None]
        victim = rng.choice(live)
        victim.kill()
        victim.wait(timeout=30)
        if victim.stdout is not None:
            victim.stdout.close()
        # An upper bound of the moment it died, on the server's clock (as the ledger's).
        ((now,),) = sql(self.base, "SELECT clock_timestamp()")
        assert isinstance(now, datetime)
        self.killed[victim.pid] = now
        self.procs.remove(victim)

    def remaining(self) -> int:
        ((n,),) = sql(
            self.base, f'SELECT count(*) FROM "{self.schema}".mcp_tasks WHERE dead_at IS NULL'
        )
        return int(n)  # type: ignore[call-overload]

    def wait_drained(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.remaining():
            for p in self.procs:
                assert p.poll() is None, self.stderr()
            assert time.monotonic() < deadline, f"{self.remaining()} tasks left\n{self.stderr()}"
            time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            assert p.wait(timeout=60) == 0, self.stderr()

    def stderr(self) -> str:
        return "\n".join(
            f.read_text()[-1500:] for f in sorted(self.tmp.glob("worker*.err")) if f.stat().st_size
        )

    def check(self, *, kills: bool) -> dict[str, int]:
        s = f'"{self.schema}"'
        assert sql(self.base, f"SELECT count(*) FROM {s}.mcp_tasks WHERE dead_at IS NULL") == [(0,)]
        dead = dict(sql(self.base, f"SELECT id, attempts FROM {s}.mcp_dead_letters"))
        runs: dict[str, list[tuple[datetime, datetime | None, bool | None, int]]] = defaultdict(
            list
        )
        for task_id, started, ended, ok, pid in sql(
            self.base,
            f"SELECT task_id, started, ended, ok, pid FROM {s}.{EXEC_TABLE} ORDER BY started, seq",
        ):
            runs[str(task_id)].append((started, ended, ok, pid))  # type: ignore[arg-type]
        assert set(runs) <= set(self.expected)
        # Dead letters used exactly their attempts, and nothing else is missing.
        assert set(dead.values()) <= {MAX_RETRIES}
        for task_id, fail_first in self.expected.items():
            executions = runs[task_id]
            oks = [r for r in executions if r[2]]
            assert len(executions) <= MAX_RETRIES, (task_id, executions)
            if not kills:
                want_dead = fail_first >= MAX_RETRIES
                assert (task_id in dead) == want_dead, (task_id, fail_first, executions)
                assert len(executions) == min(fail_first + 1, MAX_RETRIES), (task_id, executions)
                assert len(oks) == (0 if want_dead else 1)
                assert want_dead or executions[-1][2] is True
            else:
                # Acked (an execution succeeded) or dead-lettered: a task is never just gone.
                assert task_id in dead or oks, (task_id, executions)
        # No two executions of one task overlapped (a killed one ends when its process died).
        for task_id, executions in runs.items():
            for (_s1, e1, _ok1, pid1), (s2, _e2, _ok2, _pid2) in itertools.pairwise(executions):
                end = e1 if e1 is not None else self.killed.get(pid1)
                assert end is not None, (task_id, executions)
                assert end <= s2, ("overlap", task_id, executions)
        return {
            "tasks": len(self.expected),
            "dead": len(dead),
            "executions": sum(len(v) for v in runs.values()),
            "kills": len(self.killed),
            "drain_ms": int(self.drain_s * 1000),
        }


def _fleet(
    pg_queue_url: str, postgres_url: str, pg_schema: str, tmp_path: Path, lease_s: float
) -> Fleet:
    f = Fleet(pg_queue_url, postgres_url, pg_schema, tmp_path, lease_s)
    f.prepare()
    return f


def _run(fleet: Fleet, n: int, *, kills: int, seed: int, timeout: float) -> dict[str, int]:
    rng = random.Random(seed)
    ids = [f"task-{i:05}" for i in range(n)]
    half = n // 2
    fleet.enqueue(ids[:half], rng)
    try:
        for _ in range(4):
            fleet.spawn()
        for p in fleet.procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", fleet.stderr()
        # The rest arrives while the workers run: saved by "another replica", woken by NOTIFY.
        for k in range(half, n, 50):
            fleet.enqueue(ids[k : k + 50], rng)
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 0.4))
            fleet.kill_one(rng)
            fleet.spawn()
        t0 = time.monotonic()
        fleet.wait_drained(timeout)
        fleet.drain_s = time.monotonic() - t0
        fleet.stop()
    finally:
        for p in fleet.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
    return fleet.check(kills=kills > 0)


def test_four_workers_share_the_queue_exactly(
    pg_queue_url: str, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """
    4 processes x 1 200 tasks with random failures: each task acked or dead-lettered exactly once,
    executed exactly as often as its failures require (attempts exact), never by two at once.
    """
    fleet = _fleet(pg_queue_url, postgres_url, pg_schema, tmp_path, lease_s=10.0)
    out = _run(fleet, 1200, kills=0, seed=1, timeout=240)
    print(out)
    assert out["dead"] > 0 and out["executions"] > out["tasks"]


def test_sigkill_random_workers_loses_nothing(
    pg_queue_url: str, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """Workers killed with SIGKILL at random moments and replaced: no task lost, none run in parallel."""
    fleet = _fleet(pg_queue_url, postgres_url, pg_schema, tmp_path, lease_s=2.0)
    out = _run(fleet, 800, kills=4, seed=2, timeout=240)
    print(out)
    assert out["kills"] == 4


@pytest.mark.slow
def test_four_workers_times_two_thousand(
    pg_queue_url: str, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """The acceptance run: 4 processes x 2 000 tasks each, random failures, exact outcomes."""
    fleet = _fleet(pg_queue_url, postgres_url, pg_schema, tmp_path, lease_s=10.0)
    print(_run(fleet, 8000, kills=0, seed=3, timeout=900))


@pytest.mark.slow
def test_sigkill_soak(pg_queue_url: str, postgres_url: str, pg_schema: str, tmp_path: Path) -> None:
    """4 processes x 2 000 tasks each with 30 random SIGKILLs: nothing lost, nothing overlapping."""
    fleet = _fleet(pg_queue_url, postgres_url, pg_schema, tmp_path, lease_s=2.0)
    out = _run(fleet, 8000, kills=30, seed=4, timeout=900)
    print(out)
    assert out["kills"] == 30


def _crash_trials(
    url: str, base: str, schema: str, tmp: Path, trials: int, seed: int
) -> dict[str, int]:
    """Start a saving/claiming/acking worker, kill it at a random moment, check; ``trials`` times."""
    rng = random.Random(seed)
    ledger = tmp / "ledger.txt"
    ledger.touch()
    s = f'"{schema}"'
    resaved_known = 0
    for trial in range(trials):
        start = ledger.stat().st_size
        p = subprocess.Popen(
            [sys.executable, str(CRASH_HELPER), url, str(ledger), str(seed * 1000 + trial)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while ledger.stat().st_size <= start and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.15))
        p.kill()
        p.wait(timeout=30)
        p.stdout.close()
        assert p.returncode == -signal.SIGKILL
        led = read_ledger(str(ledger))
        rows = dict(sql(base, f"SELECT id, dead_at IS NOT NULL FROM {s}.mcp_tasks"))
        queued = {i for i, dead in rows.items() if not dead}
        dead = {i for i, d in rows.items() if d}
        assert not led["A"] & set(rows), "an acknowledged task came back"
        # A claim whose C line the kill cut off counts an attempt unseen: after the last one the
        # next claim dead-letters the task. Still stored, never lost.
        assert not (led["S"] - led["C"]) - queued - dead, "a saved task was lost"
        assert not led["D"] - dead, "a dead letter was lost"
        # Saves whose call did not return: saving again is safe, and stores nothing twice.
        doubt = sorted(led["I"] - led["S"])
        if doubt:

            async def resave(ids: list[str] = doubt) -> list[bool]:
                st = PostgresTaskStore(url)
                now = time.time()
                out = await st.put_many(
                    [NewTask(id=i, payload=json.dumps({"id": i}), due_at=now) for i in ids],
                    now=now,
                )
                await st.close()
                return out

            news = asyncio.run(resave())
            resaved_known += news.count(False)
            with ledger.open("a") as f:
                f.writelines(f"S {i}\n" for i in doubt)
    led = read_ledger(str(ledger))
    assert led["S"] and led["A"]
    return {"saved": len(led["S"]), "acked": len(led["A"]), "resaved_known": resaved_known}


def test_sigkill_mid_operation_loses_nothing(
    pg_queue_url: str, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """A worker killed at random moments of saves, claims, acks and failures: no ack undone, no
    returned save lost, no dead letter lost; saves in doubt can be repeated safely."""
    _fleet(pg_queue_url, postgres_url, pg_schema, tmp_path, lease_s=1.0)
    print(_crash_trials(pg_queue_url, postgres_url, pg_schema, tmp_path, trials=20, seed=5))


@pytest.mark.slow
def test_sigkill_mid_operation_soak(
    pg_queue_url: str, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """The same, 100 trials."""
    _fleet(pg_queue_url, postgres_url, pg_schema, tmp_path, lease_s=1.0)
    print(_crash_trials(pg_queue_url, postgres_url, pg_schema, tmp_path, trials=100, seed=6))
