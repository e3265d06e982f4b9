"""
Property: a task that always fails runs exactly ``max_retries`` times and is dead-lettered once,
whatever the interleaving of workers, lease expiries, crashes, graceful stops and restarts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from safla_diag import MCPTaskRecovery
from safla_diag.mcp_retry._store import ClaimedTask, NewTask, SQLiteTaskStore

WORKERS = st.integers(0, 2)
LEASE = 10.0


class QueueMachine(RuleBasedStateMachine):
    """Workers share one SQLite file; every execution fails; the clock is ours."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.path = self.dir / "q.db"
        self.store = SQLiteTaskStore(self.path)
        self.t = 0.0
        self.runs: Counter[str] = Counter()
        self.held: dict[int, list[ClaimedTask]] = {0: [], 1: [], 2: []}
        self.ids: list[str] = []
        self.max_attempts = 3

    @initialize(max_attempts=st.integers(1, 4), n=st.integers(1, 4))
    def enqueue(self, max_attempts: int, n: int) -> None:
        self.max_attempts = max_attempts
        self.ids = [f"t{i}" for i in range(n)]
        self.store.put_many_sync(
            [NewTask(id=i, payload=json.dumps({"id": i}), due_at=0.0) for i in self.ids], now=0.0
        )

    @rule(w=WORKERS, limit=st.integers(1, 3))
    def claim(self, w: int, limit: int) -> None:
        for c in self.store.claim_sync(
            now=self.t, limit=limit, lease_s=LEASE, max_attempts=self.max_attempts
        ):
            self.runs[c.id] += 1
            assert c.attempts == self.runs[c.id]
            # No live lease on this task is held by anyone else.
            for other in self.held.values():
                for h in other:
                    assert not (h.id == c.id and h.lease_until > self.t)
            self.held[w].append(c)

    @precondition(lambda self: any(self.held.values()))
    @rule(w=WORKERS, delay=st.sampled_from([0.0, 1.0, 30.0]))
    def fail(self, w: int, delay: float) -> None:
        if not self.held[w]:
            return
        c = self.held[w].pop(0)
        self.store.fail_sync(
            c.id,
            c.lease,
            error=f"fail {c.attempts}",
            now=self.t,
            next_attempt_at=self.t + delay,
            max_attempts=self.max_attempts,
        )

    @rule(w=WORKERS)
    def crash(self, w: int) -> None:
        self.held[w] = []  # its leases are left to expire

    @rule(w=WORKERS)
    def stop(self, w: int) -> None:
        self.store.release_sync([(c.id, c.lease) for c in self.held[w]], now=self.t)
        self.held[w] = []

    @rule(w=WORKERS)
    def renew(self, w: int) -> None:
        live = [c for c in self.held[w] if c.lease_until > self.t]
        self.store.extend_sync([(c.id, c.lease) for c in live], until=self.t + LEASE)
        self.held[w] = [attr_evolve(c, self.t + LEASE) for c in live]

    @rule(dt=st.sampled_from([0.5, 5.0, 11.0, 40.0]))
    def advance(self, dt: float) -> None:
        self.t += dt

    @rule()
    def restart(self) -> None:
        self.store.close_sync()
        self.store = SQLiteTaskStore(self.path)

    @invariant()
    def never_more_than_allowed(self) -> None:
        assert all(n <= self.max_attempts for n in self.runs.values())

    def teardown(self) -> None:
        try:
            if self.ids:
                for w in self.held:
                    self.held[w] = []
                for _ in range(10 * self.max_attempts + 10):
                    self.t += 1000
                    for c in self.store.claim_sync(
                        now=self.t, limit=10, lease_s=LEASE, max_attempts=self.max_attempts
                    ):
                        self.runs[c.id] += 1
                        self.store.fail_sync(
                            c.id,
                            c.lease,
                            error="last",
                            now=self.t,
                            next_attempt_at=self.t,
                            max_attempts=self.max_attempts,
                        )
                    if not self.store.pending_sync():
                        break
                assert self.store.pending_sync() == []
                dead = [d.id for d in self.store.dead_letters_sync()]
                assert sorted(dead) == sorted(self.ids)
                assert {i: self.runs[i] for i in self.ids} == dict.fromkeys(
                    self.ids, self.max_attempts
                )
        finally:
            self.store.close_sync()
            shutil.rmtree(self.dir, ignore_errors=True)


def attr_evolve(c: ClaimedTask, until: float) -> ClaimedTask:
    import attrs

    return attrs.evolve(c, lease_until=until)


def test_exact_attempts_across_interleavings() -> None:
    """Whatever workers, expiries, crashes and restarts do: exactly max_retries runs, one dead letter."""
    run_state_machine_as_test(
        QueueMachine, settings=settings(max_examples=60, stateful_step_count=30)
    )


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
