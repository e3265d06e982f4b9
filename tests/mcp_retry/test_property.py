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
