"""
The queue as services and operators use it: woken by every writer, dead letters requeued and purged,
poison payloads failing alone, stuck host work never starving the queue. On both backends.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safla_diag import MCPTaskRecovery

from ._pg import pg_queue_url_fixture, pg_schema_fixture  # noqa: F401

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh queue: a SQLite file, or a PostgreSQL URL with a schema of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "q.db")
    return str(request.getfixturevalue("pg_queue_url"))


def _recorder() -> tuple[list[str], asyncio.Event, Callable[[dict[str, Any]], Any]]:
    ran: list[str] = []
    event = asyncio.Event()

    async def execute(task: dict[str, Any]) -> None:
        ran.append(task["id"])
        event.set()

    return ran, event, execute


async def _idle_worker(q: MCPTaskRecovery) -> asyncio.Task[None]:
    """Start the worker and let it reach its idle wait on an empty queue."""
    assert await q.load_failed_tasks() == 0
    worker = asyncio.ensure_future(q.retry_failed_tasks())
    for _ in range(20):
        await asyncio.sleep(0)
    return worker


async def _stop(worker: asyncio.Task[None], *queues: MCPTaskRecovery) -> None:
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    for q in queues:
        await q.aclose()


async def test_save_by_another_object_wakes_an_idle_worker(location: str) -> None:
    """A second MCPTaskRecovery on the same queue saves: the idle worker runs the task (poll < 1 s)."""
    ran, event, execute = _recorder()
    q = MCPTaskRecovery(location, execute=execute)
    other = MCPTaskRecovery(location, execute=execute)
    worker = await _idle_worker(q)
    try:
        await other.save_failed_task({"id": "from-other"}, delay=0)
        # Generous: the worker polls every 0.25 s (SQLite) or is notified (PostgreSQL).
        await asyncio.wait_for(event.wait(), 10)
        assert ran == ["from-other"]
    finally:
        await _stop(worker, q, other)


async def test_save_by_another_process_wakes_an_idle_worker(location: str) -> None:
    """A second process saves into the queue: the idle worker runs the task."""
    ran, event, execute = _recorder()
    q = MCPTaskRecovery(location, execute=execute)
    worker = await _idle_worker(q)
    code = (
        "import asyncio, sys\n"
        "from safla_diag import MCPTaskRecovery\n"
        "async def main():\n"
        "    q = MCPTaskRecovery(sys.argv[1], execute=lambda t: None)\n"
        "    await q.save_failed_task({'id': 'from-process'}, delay=0)\n"
        "    await q.aclose()\n"
        "asyncio.run(main())\n"
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, location, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await asyncio.wait_for(event.wait(), 10)
        assert ran == ["from-process"]
    finally:
        await _stop(worker, q)


async def test_poison_payload_fails_only_its_own_save(location: str) -> None:
    """A lone surrogate fails its own save with a ValueError naming the field; the others commit."""
    q = MCPTaskRecovery(location, execute=lambda t: None)
    poison = {"id": "poison", "args": {"path": os.fsdecode(b"\xff")}}
    saves = [q.save_failed_task({"id": f"ok{i}"}) for i in range(20)]
    out = await asyncio.gather(*saves, q.save_failed_task(poison), return_exceptions=True)
    err = out[-1]
    assert isinstance(err, ValueError) and "['args']['path']" in str(err)
    assert out[:-1] == [f"ok{i}" for i in range(20)]
    assert sorted(t["id"] for t in await q.afailed_tasks()) == sorted(f"ok{i}" for i in range(20))
    await q.aclose()


async def test_stuck_blocking_tasks_never_starve_the_queue(tmp_path: Path) -> None:
    """
    Eight plain (blocking) tasks hang past their timeout: the host's default executor keeps its
    threads, and a save still commits (the queue has threads of its own).
    """
    release = threading.Event()

    def stuck(task: dict[str, Any]) -> None:
        release.wait(60)

    q = MCPTaskRecovery(tmp_path / "q.db", execute=stuck, task_timeout=0.2, concurrency=8)
    try:
        for i in range(8):
            await q.save_failed_task({"id": f"s{i}"}, delay=0)
        assert await asyncio.wait_for(q.retry_once(), 30) == 8  # each gave up after its timeout
        # The eight threads are still stuck, yet a save commits and the default executor is free.
        assert await asyncio.wait_for(q.save_failed_task({"id": "after"}), 30) == "after"
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 42), 30) == 42
        assert "after" in {t["id"] for t in await q.afailed_tasks()}
    finally:
        release.set()
        await q.aclose()


async def test_requeue_gives_max_retries_more_attempts(location: str) -> None:
    """A requeued dead letter is pending again, due now, and runs exactly max_retries more times."""
    runs: list[str] = []

    async def fail(task: dict[str, Any]) -> None:
        runs.append(task["id"])
        raise RuntimeError("still broken")

    clock = [1000.0]
    q = MCPTaskRecovery(location, execute=fail, max_retries=2, clock=lambda: clock[0])
    await q.save_failed_task({"id": "t"}, delay=0)
    for _ in range(5):
        clock[0] += 10_000
        await q.retry_once()
    assert runs == ["t", "t"] and len(await q.adead_letters()) == 1
    assert await q.requeue_dead(["unknown"]) == 0
    assert await q.requeue_dead() == 1
    assert [t["id"] for t in await q.afailed_tasks()] == ["t"]
    for _ in range(5):
        clock[0] += 10_000
        await q.retry_once()
    assert runs == ["t"] * 4
    (dead,) = await q.adead_letters()
    assert dead["attempts"] == 2
    await q.aclose()


async def test_purge_older_than_and_by_id(location: str) -> None:
    """purge_dead deletes dead letters only: by id, by age, or all."""
    clock = [1000.0]
    q = MCPTaskRecovery(location, execute=lambda t: None, clock=lambda: clock[0])
    for i in range(3):
        await q.save_needs_decision({"id": f"d{i}"}, reason="decide")
        clock[0] += 100
    await q.save_failed_task({"id": "p"})
    assert await q.purge_dead(["p", "d1"]) == 1
    assert await q.purge_dead(older_than=150) == 1  # d0 died 300 s ago, d2 100 s ago
    assert [d["id"] for d in await q.adead_letters()] == ["d2"]
    with pytest.raises(ValueError):
        await q.purge_dead(older_than=float("nan"))
    assert await q.purge_dead() == 1
    assert [t["id"] for t in await q.afailed_tasks()] == ["p"]
    assert [t["id"] for t in q.failed_tasks] == ["p"]  # the blocking accessor, both backends
    assert q.dead_letters() == []
    await q.aclose()


async def test_stats_expose_the_gauges(location: str) -> None:
    """stats(): pending, in flight, dead and the age of the oldest pending task."""
    clock = [1000.0]
    q = MCPTaskRecovery(location, execute=lambda t: None, clock=lambda: clock[0])
    await q.save_failed_task({"id": "a"})
    await q.save_needs_decision({"id": "b"}, reason="x")
    clock[0] += 30
    stats = await q.stats()
    assert (stats.pending, stats.in_flight, stats.dead) == (1, 0, 1)
    assert stats.oldest_pending_age_s == 30.0
    assert json.loads(stats.to_json())["oldest_age_s"] == 30.0
    await q.aclose()


def test_generated_ids_are_time_ordered() -> None:
    """Ids made for tasks without one sort in creation order (a batch lands on the index tail)."""
    from safla_diag.mcp_retry._encode import encode_task

    ids = [encode_task({"x": i})[0] for i in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == 2000


def test_cli_process_helper_runs() -> None:
    """The helper interpreter used above imports this tree (a broken PYTHONPATH fails loudly)."""
    out = subprocess.run(
        [sys.executable, "-c", "import safla_diag, sys; print(safla_diag.__file__)"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().startswith(str(ROOT))


# -- the blocking save, for hosts without a loop ------------------------------------------------


async def test_blocking_save_from_a_thread_wakes_this_object_s_worker(location: str) -> None:
    """
    A plain thread of the host (no loop) saves through the object whose worker idles in the
    loop: committed when it returns, and the worker runs the task at once (on SQLite the file's
    own connection sees no change of its own, so the save wakes the worker itself).
    """
    ran, event, execute = _recorder()
    q = MCPTaskRecovery(location, execute=execute)
    worker = await _idle_worker(q)
    try:
        got = await asyncio.to_thread(q.save_failed_task_sync, {"id": "from-thread"}, delay=0)
        assert got == "from-thread"
        await asyncio.wait_for(event.wait(), 10)
        assert ran == ["from-thread"]
    finally:
        await _stop(worker, q)


def test_blocking_save_in_a_process_without_a_loop(location: str) -> None:
    """
    A script with no event loop at all saves (twice: the id is the idempotency key) and exits;
    what it saved is there, once, for an ordinary async reader afterwards.
    """
    if location.startswith("postgresql"):
        # The PostgreSQL queue must exist first (a worker, a save or the CLI creates it).
        asyncio.run(_touch(location))
    code = (
        "import sys\n"
        "from safla_diag import MCPTaskRecovery\n"
        "q = MCPTaskRecovery(sys.argv[1], execute=lambda t: None)\n"
        "print(q.save_failed_task_sync({'id': 'plain', 'tool': 'query', 'args': {'q': 'x y'}}))\n"
        "print(q.save_failed_task_sync({'id': 'plain'}))\n"
        "print(q.save_failed_task_sync({'tool': 'no id'}, delay=30))\n"
        "q.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, location],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out[:2] == ["plain", "plain"] and len(out[2]) == 32

    async def read() -> list[dict[str, Any]]:
        q = MCPTaskRecovery(location, execute=lambda t: None)
        try:
            return await q.afailed_tasks()
        finally:
            await q.aclose()

    tasks = asyncio.run(read())
    assert sorted(t["id"] for t in tasks) == sorted(["plain", out[2]])
    assert next(t for t in tasks if t["id"] == "plain")["args"] == {"q": "x y"}


async def _touch(location: str) -> None:
    q = MCPTaskRecovery(location, execute=lambda t: None)
    await q.load_failed_tasks()
    await q.aclose()


def test_blocking_save_refuses_what_the_async_one_refuses(tmp_path: Path) -> None:
    q = MCPTaskRecovery(tmp_path / "q.db", execute=lambda t: None)
    with pytest.raises(ValueError, match="lone surrogate"):
        q.save_failed_task_sync({"id": "x", "a": "\udcff"})
    with pytest.raises(TypeError):
        q.save_failed_task_sync({"id": "x", "a": object()})
    with pytest.raises(ValueError):
        q.save_failed_task_sync({"id": "x", "a": float("nan")})
    assert q.failed_tasks == []  # nothing half-saved
    assert q.save_failed_task_sync({"id": "ok"}) == "ok"
    q.close()
    q.close()  # idempotent
    assert [t["id"] for t in q.failed_tasks] == ["ok"]  # reopens to read, as before
    q.close()


def test_blocking_save_on_a_missing_postgres_queue_is_a_clear_error(pg_queue_url: str) -> None:
    from safla_diag import QueueStoreError

    q = MCPTaskRecovery(pg_queue_url, execute=lambda t: None)
    with pytest.raises(QueueStoreError, match="no MCP task queue"):
        q.save_failed_task_sync({"id": "x"})


async def test_blocking_and_awaited_saves_interleave_while_the_worker_runs(location: str) -> None:
    """Two threads saving blocking, the loop saving awaited, the worker running: each runs once."""
    ran: list[str] = []
    done = asyncio.Event()
    total = 300

    async def execute(task: dict[str, Any]) -> None:
        ran.append(task["id"])
        if len(ran) >= total:
            done.set()

    q = MCPTaskRecovery(location, execute=execute, concurrency=8)
    worker = await _idle_worker(q)

    def blocking(prefix: str) -> None:
        for i in range(100):
            q.save_failed_task_sync({"id": f"{prefix}{i}"}, delay=0)

    async def awaited() -> None:
        for i in range(100):
            await q.save_failed_task({"id": f"a{i}"}, delay=0)

    try:
        await asyncio.gather(
            asyncio.to_thread(blocking, "t"), asyncio.to_thread(blocking, "u"), awaited()
        )
        await asyncio.wait_for(done.wait(), 30)
        assert sorted(ran) == sorted(f"{p}{i}" for p in "tua" for i in range(100))
        assert (await q.stats()).pending == 0
    finally:
        await _stop(worker, q)


# -- paths that are not what they claim ---------------------------------------------------------


def _not_files(tmp_path: Path) -> list[Path]:
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.db"
    zero.symlink_to("/dev/zero")
    return [fifo, zero]


async def test_a_fifo_or_a_device_as_the_queue_file_is_refused_at_once(tmp_path: Path) -> None:
    """
    A FIFO (no writer: opening or reading it would block the store's thread for good) or a
    symlink to /dev/zero in place of the queue file: a clear error, awaited or blocking, not a
    hang.
    """
    from safla_diag import QueueStoreError

    for path in _not_files(tmp_path):
        q = MCPTaskRecovery(path, execute=lambda t: None)
        with pytest.raises(QueueStoreError, match=r"is a (FIFO|character device), not an MCP task"):
            await asyncio.wait_for(q.save_failed_task({"id": "x"}), 10)
        with pytest.raises(QueueStoreError, match=r"is a (FIFO|character device), not an MCP task"):
            await asyncio.wait_for(asyncio.to_thread(q.save_failed_task_sync, {"id": "x"}), 10)
        await q.aclose()


async def test_a_fifo_or_a_device_as_the_guide_file_is_refused_at_once(tmp_path: Path) -> None:
    """The guide's mcp_tasks.json as a FIFO or /dev/zero: an OSError naming why, no hang, and
    the queue keeps working."""
    q = MCPTaskRecovery(tmp_path / "q.db", execute=lambda t: None)
    for path in _not_files(tmp_path):
        with pytest.raises(OSError, match="not a regular file"):
            await asyncio.wait_for(q.import_guide_file(path), 10)
    assert await q.save_failed_task({"id": "still"}) == "still"
    await q.aclose()
