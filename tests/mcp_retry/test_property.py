"""
Property: a task that always fails runs exactly ``max_retries`` times and is dead-lettered once,
through the public API, whatever the worker restarts. The store-level state machine (workers, lease
expiries, crashes, graceful stops, restarts) runs on both backends in ``test_backends.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from safla_diag import MCPTaskRecovery

WORKERS = st.integers(0, 2)
LEASE = 10.0


@settings(max_examples=25)
@given(
    max_retries=st.integers(1, 4),
    plan=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([0.0, 0.6, 5.0])), max_size=20),
)
def test_exact_attempts_through_the_public_api(max_retries: int, plan: list[Any]) -> None:
    """Several MCPTaskRecovery instances (replicas, restarts) on one file, an injected clock:
    an always-failing task runs max_retries times and is dead-lettered once."""

    async def scenario(path: Path) -> tuple[Counter[str], list[dict[str, Any]]]:
        now = [0.0]
        runs: Counter[str] = Counter()

        async def execute(task: dict[str, Any]) -> None:
            runs[task["id"]] += 1
            raise RuntimeError("always")

        def make() -> MCPTaskRecovery:
            return MCPTaskRecovery(
                path,
                execute=execute,
                max_retries=max_retries,
                retry_delay=0.5,
                clock=lambda: now[0],
            )

        workers = [make() for _ in range(3)]
        await workers[0].save_failed_tasks([{"id": "a"}, {"id": "b"}])
        for who, dt in plan:
            now[0] += dt
            if dt == 5.0:  # a restart of that worker
                await workers[who].aclose()
                workers[who] = make()
            await workers[who].retry_once()
        for _ in range(3 * max_retries + 2):
            now[0] += 1000
            await workers[0].retry_once()
        dead = await workers[0].adead_letters()
        for w in workers:
            await w.aclose()
        return runs, dead

    d = Path(tempfile.mkdtemp())
    try:
        runs, dead = asyncio.run(scenario(d / "q.db"))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert runs == {"a": max_retries, "b": max_retries}
    assert sorted(x["id"] for x in dead) == ["a", "b"]
    assert all(x["attempts"] == max_retries for x in dead)


@settings(max_examples=40, deadline=None)
@given(
    states=st.lists(st.sampled_from(["pending", "leased", "dead"]), min_size=1, max_size=8),
    op=st.sampled_from(["requeue", "purge"]),
    pick=st.one_of(st.none(), st.sets(st.integers(0, 9), max_size=6)),
    cutoff=st.one_of(st.none(), st.floats(0, 20)),
    max_attempts=st.integers(1, 4),
)
def test_requeue_and_purge_touch_only_dead_letters(
    states: list[str], op: str, pick: set[int] | None, cutoff: float | None, max_attempts: int
) -> None:
    """
    Requeue and purge never touch pending or in-flight tasks (by id, or all); a requeued task then
    runs exactly ``max_attempts`` more times before it is dead again.
    """
    import json as _json

    from safla_diag.mcp_retry._model import NewTask
    from safla_diag.mcp_retry._sqlite import SQLiteQueue

    folder = Path(tempfile.mkdtemp())
    q = SQLiteQueue(folder / "q.db")
    try:
        for i, state in enumerate(states):
            # Pending tasks are not due yet; the ones to lease are, so one claim takes exactly them.
            due = 0.0 if state == "leased" else 1e12
            task = NewTask(id=f"t{i}", payload=_json.dumps({"id": f"t{i}"}), due_at=due)
            if state == "dead":
                q.put_dead(task, error="x", now=float(i))
            else:
                q.put_many([task], now=0.0)
        leased = {f"t{i}" for i, s in enumerate(states) if s == "leased"}
        claimed = q.claim(now=1.0, limit=len(states), lease_s=1e13, max_attempts=9)
        assert {c.id for c in claimed} == leased
        before = {t.id: t for t in q.pending()}
        dead_before = {d.id for d in q.dead_letters()}
        ids = None if pick is None else [f"t{i}" for i in sorted(pick)]
        if op == "requeue":
            n = q.requeue_dead(ids, now=100.0)
        else:
            n = q.purge_dead(ids, dead_before=float("inf") if cutoff is None else cutoff)
        selected = {
            i
            for i in dead_before
            if (ids is None or i in ids)
            and (op == "requeue" or cutoff is None or int(i[1:]) <= cutoff)
        }
        assert n == len(selected)
        after = {t.id: t for t in q.pending()}
        for tid, t in before.items():
            assert after[tid] == t  # pending and in-flight rows unchanged
        assert {d.id for d in q.dead_letters()} == dead_before - selected
        if op == "requeue":
            assert set(after) - set(before) == selected
            runs: Counter[str] = Counter()
            now = 2e9
            while claimed := q.claim(now=now, limit=100, lease_s=1, max_attempts=max_attempts):
                for c in claimed:
                    runs[c.id] += 1
                    q.fail(
                        c.id,
                        c.lease,
                        error="e",
                        now=now,
                        next_attempt_at=now,
                        max_attempts=max_attempts,
                    )
                now += 10
            assert runs == dict.fromkeys(selected, max_attempts)
            assert selected <= {d.id for d in q.dead_letters()}
    finally:
        q.close()
        shutil.rmtree(folder, ignore_errors=True)
