"""
MCP retry queues: ours beside the guide's JSON rewrite and persist-queue, in one run.

1. Enqueue + claim + ack of ~300-byte tasks, the whole backlog enqueued first, then drained:
   the guide's design (the whole list rewritten as JSON on every save and every ack) at 1 000 and
   2 000 with a quadratic fit to 10 000; our SQLite store per operation at synchronous NORMAL and
   FULL; ours with group commit (100 operations per transaction); persist-queue's SQLiteAckQueue
   (WAL, its default synchronous=FULL, and with NORMAL for equal durability to ours at NORMAL);
   and ours through the async API (save_failed_task + retry_once in a loop).
2. The recovery gate's cost per healthy call, beside a tenacity-wrapped call.
3. A storm of 1 000 concurrent callers on a dead server (a refused port on 127.0.0.1): connect
   attempts ours (single-flight) beside naive per-caller recovery.

0. Through the public API (MCPTaskRecovery: concurrent awaited saves and the running worker) beside
   persist-queue's SQLiteAckQueue and raw sqlite3 at the same synchronous setting, on a 1 000 and a
   10 000 backlog, min and median of 5 interleaved rounds (``--api``: this table only;
   ``--rounds N``: N rounds), with the same calls committed on the store's Python thread
   (``SAFLA_DIAG_PURE=1``) beside the compiled committer. Every timed window starts after the
   disk settles; beside the time it counts the work (CPU of every thread, bytes written) per task,
   and gives the cost per task at 10 000 over 1 000 three ways (ratio of medians, median of each
   round's ratio, best rounds).

Run: python benchmarks/bench_mcp.py [--api] [--rounds N]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import compare, save

from safla_diag import MCPConnectionRecovery, MCPTaskRecovery
from safla_diag.mcp_retry._encode import new_task_id
from safla_diag.mcp_retry._model import NewTask
from safla_diag.mcp_retry._sqlite import SQLiteQueue

ARGS = "x" * 220


def _task(i: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "server": "search",
        "tool": "query",
        "args": {"q": ARGS, "n": i},
    }


def _timed(fn: Any) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


# -- 0. the public API beside persist-queue and raw sqlite3 -------------------------------------

API_TASKS = 1000  # tasks saved and processed per measurement, on top of the backlog
SAVERS = 64  # concurrent request handlers awaiting save_failed_task
WORKER_CONCURRENCY = 32


class Measured(NamedTuple):
    """One measurement of the public-API table."""

    wall: float  # s
    cpu: float  # process CPU s (every thread)
    save_us: float  # calling-thread CPU µs per awaited save (ours only, else nan)
    written: float  # bytes the process wrote per task (write syscalls; Linux only, else nan)


def _bytes_written() -> float:
    """Bytes this process has handed to write syscalls so far (``/proc/self/io``'s ``wchar``):
    the amount of work the disk is given, which unlike time does not move with the machine."""
    try:
        with open("/proc/self/io") as f:
            return float(next(int(v) for k, v in (ln.split(":") for ln in f) if k == "wchar"))
    except (OSError, StopIteration, ValueError):
        return float("nan")


SETTLE_S = 0.5


def _settle_disk() -> None:
    """
    Before a timed window: the backlog just written reaches the disk now, not during the window.
    Otherwise the first commits that sync pay for the preload's writeback (and, on a filesystem
    mounted with ``discard``, for trimming the blocks of a deleted WAL): ten times more of it at a
    10 000 backlog, which showed as a premium of 10-30% at 10 000 that no work of the queue's caused
    (the bytes written per task were the same). Every variant gets it.
    """
    os.sync()
    time.sleep(SETTLE_S)


def _preload(kind: str, path: Path, backlog: int, *, library_ids: bool = False) -> None:
    """
    Write a variant's backlog from a child process, as an earlier run of the service left it.
    Written in the measuring process, a 10 000 backlog left that process ten times the churn of
    a 1 000 one, and its timed window then waited for a CPU more often (runqueue time 2 to 6 ms
    against 0.1 to 2.5, per /proc's schedstat): up to 17% more time at 10 000 for the same work.
    """
    flag = "lib" if library_ids else "uuid"
    cmd = [sys.executable, __file__, "--preload", kind, str(path), str(backlog), flag]
    subprocess.run(cmd, check=True)


def _preload_here(kind: str, path: Path, backlog: int, library_ids: bool) -> None:
    if kind == "ours":
        _preload_ours(path, backlog, library_ids=library_ids)
    elif kind == "persist-queue":
        from persistqueue import SQLiteAckQueue

        q = SQLiteAckQueue(str(path), auto_resume=False)
        q._conn.execute("PRAGMA synchronous=NORMAL")
        for i in range(backlog):
            q.put(_task(i))
        q.close()
    else:
        import sqlite3

        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE tasks (id TEXT PRIMARY KEY, payload TEXT NOT NULL, attempts INTEGER "
            "NOT NULL DEFAULT 0, due_at REAL NOT NULL, lease TEXT, created_at REAL NOT NULL)"
        )
        conn.execute("CREATE INDEX tasks_due ON tasks (due_at)")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN")
        for i in range(backlog):
            conn.execute(
                "INSERT INTO tasks (id, payload, due_at, created_at) VALUES (?, ?, 0, 0)",
                (uuid.uuid4().hex, json.dumps(_task(i))),
            )
        conn.execute("COMMIT")
        conn.close()


def _preload_ours(path: Path, backlog: int, *, library_ids: bool = False) -> None:
    q = SQLiteQueue(path)
    payload = json.dumps(_task(0), separators=(",", ":"))
    new_id = new_task_id if library_ids else (lambda: uuid.uuid4().hex)
    for _ in range(0, backlog, 1000):
        q.put_many([NewTask(id=new_id(), payload=payload, due_at=0.0) for _ in range(1000)], now=0)
    q.close()


def _task_without_id(i: int) -> dict[str, Any]:
    t = _task(i)
    del t["id"]
    return t


def api_ours(d: Path, backlog: int, sync: str, *, library_ids: bool = False) -> Measured:
    """
    Through MCPTaskRecovery as a service calls it: SAVERS coroutines await save_failed_task for
    API_TASKS tasks while the running worker claims, executes and acks API_TASKS tasks (FIFO: the
    backlog's head). The calling-thread CPU per awaited save is measured apart (saves only).
    ``library_ids``: the tasks carry no id, so the library gives each a time-ordered one (the
    backlog's too); otherwise random uuid4 ids.
    """
    path = d / f"api-{sync}-{backlog}-{uuid.uuid4().hex[:6]}.db"
    _preload("ours", path, backlog, library_ids=library_ids)
    _settle_disk()
    make = _task_without_id if library_ids else _task
    tasks = [make(i) for i in range(API_TASKS)]

    async def main() -> Measured:
        done = asyncio.Event()
        ran = 0

        async def execute(task: dict[str, Any]) -> None:
            nonlocal ran
            ran += 1
            if ran == API_TASKS:
                done.set()

        rec = MCPTaskRecovery(
            path,
            execute=execute,
            concurrency=WORKER_CONCURRENCY,
            synchronous=sync,  # type: ignore[arg-type]
        )
        await rec.load_failed_tasks()

        async def saver(k: int) -> None:
            for t in tasks[k::SAVERS]:
                await rec.save_failed_task(t, delay=0)

        b, w, c = _bytes_written(), time.perf_counter(), time.process_time()
        worker = asyncio.ensure_future(rec.retry_failed_tasks())
        await asyncio.gather(*(saver(k) for k in range(SAVERS)))
        await done.wait()
        worker.cancel()
        # A stopped worker has committed its last acks (it waits for them before giving back
        # leases): every save and every ack is durable here. Closing the file (SQLite checkpoints
        # the WAL into it, which no commit waits for) is left out, as for the other two variants.
        await asyncio.gather(worker, return_exceptions=True)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        written = (_bytes_written() - b) / API_TASKS
        left = await rec.stats()  # every task run is acked; none is leased any more
        assert (left.pending, left.in_flight, left.dead) == (backlog + API_TASKS - ran, 0, 0), left
        await rec.aclose()
        return Measured(wall, cpu, await _save_cpu(d, sync), written)

    return asyncio.run(main())


def api_ours_python_commits(d: Path, backlog: int, sync: str) -> Measured:
    """:func:`api_ours` with ``SAFLA_DIAG_PURE=1``: the store commits on its Python thread, as
    where the compiled committer is not built (the comparison the committer is measured by)."""
    old = os.environ.get("SAFLA_DIAG_PURE")
    os.environ["SAFLA_DIAG_PURE"] = "1"
    try:
        return api_ours(d, backlog, sync)
    finally:
        if old is None:
            del os.environ["SAFLA_DIAG_PURE"]
        else:
            os.environ["SAFLA_DIAG_PURE"] = old


async def _save_cpu(d: Path, sync: str) -> float:
    """CPU µs on the calling thread per awaited save, SAVERS at once, no worker running."""
    rec = MCPTaskRecovery(d / f"saves-{uuid.uuid4().hex[:6]}.db", execute=lambda t: None,
                          synchronous=sync)  # type: ignore[arg-type]  # fmt: skip
    await rec.load_failed_tasks()
    tasks = [_task(i) for i in range(API_TASKS)]

    async def saver(k: int) -> None:
        for t in tasks[k::SAVERS]:
            await rec.save_failed_task(t, delay=0)

    c = time.thread_time()
    await asyncio.gather(*(saver(k) for k in range(SAVERS)))
    used = time.thread_time() - c
    await rec.aclose()
    return used / API_TASKS * 1e6


def api_persist_queue(d: Path, backlog: int, sync: str) -> Measured:
    """persist-queue's SQLiteAckQueue: API_TASKS puts, then API_TASKS get + ack, on a backlog."""
    from persistqueue import SQLiteAckQueue

    path = d / f"pq-{sync}-{backlog}-{uuid.uuid4().hex[:6]}"
    _preload("persist-queue", path, backlog)
    q = SQLiteAckQueue(str(path), auto_resume=False)
    q._conn.execute(f"PRAGMA synchronous={sync}")
    tasks = [_task(i) for i in range(API_TASKS)]
    _settle_disk()
    b, w, c = _bytes_written(), time.perf_counter(), time.process_time()
    for t in tasks:
        q.put(t)
    for _ in range(API_TASKS):
        q.ack(q.get(block=False))
    out = Measured(
        time.perf_counter() - w,
        time.process_time() - c,
        float("nan"),
        (_bytes_written() - b) / API_TASKS,
    )
    q.close()
    return out


def api_raw_sqlite(d: Path, backlog: int, sync: str) -> Measured:
    """Raw sqlite3, the same statements one at a time (autocommit), WAL, on a backlog."""
    import sqlite3

    path = d / f"raw-{sync}-{backlog}-{uuid.uuid4().hex[:6]}.db"
    _preload("raw sqlite3", path, backlog)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    tasks = [_task(i) for i in range(API_TASKS)]
    _settle_disk()
    b, w, c = _bytes_written(), time.perf_counter(), time.process_time()
    now = time.time()
    for t in tasks:
        conn.execute(
            "INSERT OR IGNORE INTO tasks (id, payload, due_at, created_at) VALUES (?, ?, ?, ?)",
            (t["id"], json.dumps(t), now, now),
        )
    for _ in range(API_TASKS):
        (tid, payload) = conn.execute(
            "UPDATE tasks SET attempts = attempts + 1, lease = 'l', due_at = ? WHERE id IN "
            "(SELECT id FROM tasks WHERE due_at <= ? ORDER BY due_at LIMIT 1) RETURNING id, payload",
            (now + 60, now),
        ).fetchone()
        json.loads(payload)
        conn.execute("DELETE FROM tasks WHERE id = ?", (tid,))
    out = Measured(
        time.perf_counter() - w,
        time.process_time() - c,
        float("nan"),
        (_bytes_written() - b) / API_TASKS,
    )
    conn.close()
    return out


def api_batch(
    d: Path, n: int, *, library_ids: bool, batch: int = 100
) -> tuple[float, float, float]:
    """
    The batch API, public: ``save_failed_tasks`` of ``batch`` tasks at a time until ``n`` wait,
    then the worker (``concurrency=batch``) drains them all. Returns tasks/s over both, tasks/s
    of the saves alone (group commit: one transaction per call, the backlog growing to ``n``)
    and tasks/s of the saves of the last tenth (a backlog near ``n``).
    """
    make = _task_without_id if library_ids else _task
    tasks = [make(i) for i in range(n)]

    async def main() -> tuple[float, float, float]:
        done = asyncio.Event()
        ran = 0

        async def execute(task: dict[str, Any]) -> None:
            nonlocal ran
            ran += 1
            if ran == n:
                done.set()

        rec = MCPTaskRecovery(d / f"batch-{n}-{uuid.uuid4().hex[:6]}.db", execute=execute,
                              concurrency=batch, retry_delay=0.0)  # due at once  # fmt: skip
        await rec.load_failed_tasks()
        w = time.perf_counter()
        tail = (n - n // 10) // batch * batch  # a batch boundary
        for i in range(0, n, batch):
            if i == tail:
                w_tail = time.perf_counter()
            await rec.save_failed_tasks(tasks[i : i + batch])
        saved = time.perf_counter()
        worker = asyncio.ensure_future(rec.retry_failed_tasks())
        await done.wait()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        wall = time.perf_counter() - w
        assert (await rec.stats()).pending == 0
        await rec.aclose()
        return n / wall, n / (saved - w), (n - tail) / (saved - w_tail)

    return asyncio.run(main())


def batch_table(tmp: Path, rounds: int = 3) -> list[dict[str, Any]]:
    """Issue 14's group commit against the backlog: the public batch API, both kinds of ids."""
    import statistics

    rows: list[dict[str, Any]] = []
    print("batch API (save_failed_tasks of 100, then the worker drains; tasks/s, median of "
          f"{rounds}; save_failed_tasks commits {100} at once, NORMAL; 'saves' the group "
          "commits alone, 'last tenth' their last tenth, on a backlog near the size)")  # fmt: skip
    for n in (1000, 10000, 50000):
        got: dict[str, list[float]] = {}
        for _ in range(rounds):
            for ids in ("library", "uuid4"):
                both, saves, tail = api_batch(tmp, n, library_ids=ids == "library")
                got.setdefault(f"{ids} ids", []).append(both)
                got.setdefault(f"{ids} ids, saves", []).append(saves)
                got.setdefault(f"{ids} ids, saves of the last tenth", []).append(tail)
            for ids in ("library", "uuid4"):  # the store layer alone: private, not a claim
                wall, _ = ours_group(n, tmp, "NORMAL", library_ids=ids == "library")
                got.setdefault(f"store layer (private), {ids} ids", []).append(n / wall)
        med = {k: statistics.median(v) for k, v in got.items()}
        print(f"  backlog {n:>6}: " + "  ".join(f"{k} {v:8.0f}/s" for k, v in med.items()))
        rows.append({"label": f"batch API, {n} tasks", **med})
    return rows


BLOCKING_SAVES = 1000


def blocking_saves(tmp: Path, rounds: int = 5) -> list[dict[str, Any]]:
    """
    The blocking save of a host without a loop (``save_failed_task_sync``: one commit per call,
    on the calling thread) beside persist-queue's ``put`` and a raw sqlite3 insert in autocommit,
    at the same synchronous setting: µs per durable save, median of interleaved rounds.
    """
    import sqlite3
    import statistics

    from persistqueue import SQLiteAckQueue

    def ours(sync: str) -> float:
        rec = MCPTaskRecovery(tmp / f"bs-{uuid.uuid4().hex[:6]}.db", execute=lambda t: None,
                              synchronous=sync)  # type: ignore[arg-type]  # fmt: skip
        tasks = [_task(i) for i in range(BLOCKING_SAVES)]
        rec.save_failed_task_sync(_task(-1))  # opens the file
        w = time.perf_counter()
        for t in tasks:
            rec.save_failed_task_sync(t)
        out = (time.perf_counter() - w) / BLOCKING_SAVES * 1e6
        rec.close()
        return out

    def pq(sync: str) -> float:
        q = SQLiteAckQueue(str(tmp / f"bpq-{uuid.uuid4().hex[:6]}"), auto_resume=False)
        q._conn.execute(f"PRAGMA synchronous={sync}")
        tasks = [_task(i) for i in range(BLOCKING_SAVES)]
        w = time.perf_counter()
        for t in tasks:
            q.put(t)
        out = (time.perf_counter() - w) / BLOCKING_SAVES * 1e6
        q.close()
        return out

    def raw(sync: str) -> float:
        conn = sqlite3.connect(tmp / f"braw-{uuid.uuid4().hex[:6]}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, payload TEXT, due_at REAL)")
        tasks = [_task(i) for i in range(BLOCKING_SAVES)]
        w = time.perf_counter()
        for t in tasks:
            conn.execute("INSERT OR IGNORE INTO t VALUES (?, ?, ?)", (t["id"], json.dumps(t), 0.0))
        out = (time.perf_counter() - w) / BLOCKING_SAVES * 1e6
        conn.close()
        return out

    rows: list[dict[str, Any]] = []
    print(f"blocking save (no loop), {BLOCKING_SAVES} saves, µs per durable save (lower is better)")
    for sync in ("NORMAL", "FULL"):
        got: dict[str, list[float]] = {"ours": [], "persist-queue": [], "raw sqlite3": []}
        for _ in range(rounds):
            got["ours"].append(ours(sync))
            got["persist-queue"].append(pq(sync))
            got["raw sqlite3"].append(raw(sync))
        med = {k: statistics.median(v) for k, v in got.items()}
        print(f"  {sync:<6} " + "  ".join(f"{k} {v:7.1f} µs" for k, v in med.items())
              + f"  persist-queue/ours {med['persist-queue'] / med['ours']:.2f}x")  # fmt: skip
        rows.append({"synchronous": sync, "label": "blocking save µs (median)", **med,
                     "ratio_persist_queue_over_ours": med["persist-queue"] / med["ours"]})  # fmt: skip
    return rows


def api_table(tmp: Path, rounds: int = 5) -> list[dict[str, Any]]:
    """The table of issue 14: min and median of interleaved rounds, tasks/s, with ratios."""
    import statistics

    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    variants = {"ours (public API)": api_ours,
                "ours, library ids": lambda *a: api_ours(*a, library_ids=True),
                "ours, Python commits": api_ours_python_commits,
                "persist-queue": api_persist_queue, "raw sqlite3": api_raw_sqlite}  # fmt: skip
    print(f"public API: {API_TASKS} tasks saved + processed on a backlog, {rounds} interleaved "
          f"rounds, each window after the disk settles (os.sync + {SETTLE_S} s); load average "
          f"{load_before[0]:.2f} (shared machine)")  # fmt: skip
    for sync in ("NORMAL", "FULL"):
        # Both backlogs in every round: the machine's speed drifts over minutes, and the cost per
        # task at 10 000 is compared with 1 000 measured in the same minutes.
        cells: dict[int, dict[str, list[Measured]]] = {
            backlog: {k: [] for k in variants} for backlog in (1000, 10000)
        }
        for _ in range(rounds):
            for backlog, got in cells.items():
                for name, fn in variants.items():
                    got[name].append(fn(tmp, backlog, sync))
        for backlog, got in cells.items():
            rate = {k: [API_TASKS / m.wall for m in v] for k, v in got.items()}
            row: dict[str, Any] = {"synchronous": sync, "backlog": backlog}
            for k, r in rate.items():
                row[k] = {"min": min(r), "median": statistics.median(r), "best": max(r),
                          "cpu_us_per_task": statistics.median(m.cpu for m in got[k]) / API_TASKS * 1e6,
                          "bytes_written_per_task": statistics.median(m.written for m in got[k])}  # fmt: skip
            save_us = statistics.median(m.save_us for m in got["ours (public API)"])
            row["awaited_save_cpu_us"] = save_us
            ours_med = row["ours (public API)"]["median"]
            row["ratio_vs_persist_queue"] = ours_med / row["persist-queue"]["median"]
            row["ratio_vs_raw_sqlite3"] = ours_med / row["raw sqlite3"]["median"]
            row["ratio_library_ids_vs_persist_queue"] = (
                row["ours, library ids"]["median"] / row["persist-queue"]["median"]
            )
            row["ratio_vs_python_commits"] = ours_med / row["ours, Python commits"]["median"]
            print(f"  {sync:<6} backlog {backlog:>6}: " + "  ".join(
                f"{k} {row[k]['median']:8.0f}/s (min {row[k]['min']:.0f})" for k in variants)
                + f"  ours/pq {row['ratio_vs_persist_queue']:.2f}x (library ids "
                f"{row['ratio_library_ids_vs_persist_queue']:.2f}x)  ours/raw "
                f"{row['ratio_vs_raw_sqlite3']:.2f}x  committer/Python commits "
                f"{row['ratio_vs_python_commits']:.2f}x  awaited save {save_us:.1f} µs CPU")  # fmt: skip
            rows.append(row)
        one, ten = rows[-2], rows[-1]
        extra = {k: one[k]["median"] / ten[k]["median"] - 1 for k in variants}
        rows.append({"synchronous": sync, "label": "cost per task at 10 000 over 1 000", **extra})
        print(f"  {sync:<6} a task at 10 000 costs, over 1 000: " + "  ".join(
            f"{k} {v:+.1%}" for k, v in extra.items()) + " (target: ours within 10%)")  # fmt: skip
        # The same, as the median of each round's own ratio: both backlogs run minutes apart at
        # most, so the machine's drift between rounds cancels out.
        paired = {
            k: statistics.median(t.wall / o.wall for o, t in
                                 zip(cells[1000][k], cells[10000][k], strict=True)) - 1
            for k in variants
        }  # fmt: skip
        rows.append({"synchronous": sync, "label": "cost per task at 10 000 over 1 000, "
                     "median of per-round ratios", **paired})  # fmt: skip
        print(f"  {sync:<6} the same, median of per-round ratios: " + "  ".join(
            f"{k} {v:+.1%}" for k, v in paired.items()))  # fmt: skip
        # And from each one's best round, as timeit reads its repeats: on a shared machine the
        # noise only ever adds time, so the fastest round is the one least disturbed.
        best = {k: one[k]["best"] / ten[k]["best"] - 1 for k in variants}
        rows.append({"synchronous": sync, "label": "cost per task at 10 000 over 1 000, "
                     "best rounds", **best})  # fmt: skip
        print(f"  {sync:<6} the same, best round of each: " + "  ".join(
            f"{k} {v:+.1%}" for k, v in best.items()))  # fmt: skip
        # The work behind the time, which the machine's noise does not move: CPU (every thread)
        # and bytes handed to the disk per task, 10 000 over 1 000.
        for label, key, unit in (("CPU", "cpu_us_per_task", "µs"),
                                 ("bytes written", "bytes_written_per_task", "B")):  # fmt: skip
            work = {k: (one[k][key], ten[k][key]) for k in variants}
            rows.append({"synchronous": sync, "label": f"{label} per task, 1 000 and 10 000",
                         **{k: list(v) for k, v in work.items()}})  # fmt: skip
            print(f"  {sync:<6} {label} per task at 1 000 -> 10 000: " + "  ".join(
                f"{k} {a:.0f} -> {b:.0f} {unit} ({b / a - 1:+.1%})" for k, (a, b) in work.items()))  # fmt: skip
    load_after = os.getloadavg()
    rows.append({"label": "load average before/after", "before": load_before, "after": load_after})
    print(f"  load average after: {load_after[0]:.2f}")
    return rows


# -- 1. queues ------------------------------------------------------------------------------------


def guide_json(n: int, d: Path) -> tuple[float, float]:
    """The guide's design: every save and every ack rewrites the whole list (indent=2)."""
    path = d / "mcp_tasks.json"
    tasks = [_task(i) for i in range(n)]

    def run() -> None:
        failed: list[dict[str, Any]] = []

        def persist() -> None:
            with open(path, "w") as f:
                json.dump(failed, f, indent=2)

        for t in tasks:
            t["failed_at"] = time.time()
            t["retry_count"] = t.get("retry_count", 0) + 1
            failed.append(t)
            persist()
        while failed:
            t = failed[0]  # dequeue, run, ack: removed and rewritten
            failed = [x for x in failed if x["id"] != t["id"]]
            persist()

    return _timed(run)


def ours_per_op(n: int, d: Path, sync: str) -> tuple[float, float]:
    store = SQLiteQueue(d / f"ours-{sync}-{n}.db", synchronous=sync)  # type: ignore[arg-type]
    store.open()
    payloads = [(t["id"], json.dumps(t, separators=(",", ":"))) for t in map(_task, range(n))]

    def run() -> None:
        for tid, p in payloads:
            now = time.time()
            store.put_many([NewTask(id=tid, payload=p, due_at=now)], now=now)
        now = time.time()
        while claimed := store.claim(now=now, limit=1, lease_s=60, max_attempts=3):
            store.ack(claimed[0].id, claimed[0].lease)

    out = _timed(run)
    assert store.stats(now=time.time()).pending == 0
    store.close()
    return out


def ours_group(
    n: int, d: Path, sync: str, batch: int = 100, *, library_ids: bool = False
) -> tuple[float, float]:
    name = f"group-{sync}-{n}-{uuid.uuid4().hex[:6]}.db"
    store = SQLiteQueue(d / name, synchronous=sync)  # type: ignore[arg-type]
    store.open()
    payloads = [
        (new_task_id() if library_ids else t["id"], json.dumps(t, separators=(",", ":")))
        for t in map(_task, range(n))
    ]

    def run() -> None:
        for i in range(0, n, batch):
            now = time.time()
            store.put_many(
                [NewTask(id=tid, payload=p, due_at=now) for tid, p in payloads[i : i + batch]],
                now=now,
            )
        now = time.time()
        while claimed := store.claim(now=now, limit=batch, lease_s=60, max_attempts=3):
            store.ack_many([(c.id, c.lease) for c in claimed])

    out = _timed(run)
    assert store.stats(now=time.time()).pending == 0
    store.close()
    return out


def persist_queue(n: int, d: Path, sync: str | None) -> tuple[float, float]:
    from persistqueue import SQLiteAckQueue

    q = SQLiteAckQueue(str(d / f"pq-{sync}-{n}"), auto_resume=False)
    if sync is not None:
        q._conn.execute(f"PRAGMA synchronous={sync}")
    tasks = [_task(i) for i in range(n)]

    def run() -> None:
        for t in tasks:
            q.put(t)
        for _ in range(n):
            item = q.get(block=False)
            q.ack(item)

    out = _timed(run)
    q.close()
    return out


def ours_async_api(n: int, d: Path) -> tuple[float, float]:
    async def execute(task: dict[str, Any]) -> None:
        return None

    async def main() -> None:
        rec = MCPTaskRecovery(d / f"api-{n}.db", execute=execute, retry_delay=0, concurrency=16)
        for t in map(_task, range(n)):
            await rec.save_failed_task(t, delay=0)
        while await rec.retry_once():
            pass
        assert await rec.load_failed_tasks() == 0
        await rec.aclose()

    return _timed(lambda: asyncio.run(main()))


def steady_cost(backlog: int, d: Path, rounds: int = 7, per_round: int = 300) -> float:
    """CPU µs per enqueue + claim + ack with the backlog held constant (claim cost vs backlog)."""
    store = SQLiteQueue(d / f"steady-{backlog}.db")
    store.open()
    payload = json.dumps(_task(0), separators=(",", ":"))
    now = time.time()
    for _ in range(0, backlog, 1000):
        store.put_many(
            [NewTask(id=uuid.uuid4().hex, payload=payload, due_at=now) for _ in range(1000)],
            now=now,
        )
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(per_round):
            store.put_many([NewTask(id=uuid.uuid4().hex, payload=payload, due_at=now)], now=now)
            (c,) = store.claim(now=now, limit=1, lease_s=60, max_attempts=3)
            store.ack(c.id, c.lease)
        best = min(best, (time.process_time() - t) / per_round)
    store.close()
    return best * 1e6


_GUIDE_CHILD = """
import json, sys, time, uuid
path = sys.argv[1]
failed = [{"id": uuid.uuid4().hex, "tool": "query", "args": {"q": "x" * 220}} for _ in range(300)]
while True:
    t = {"id": uuid.uuid4().hex, "tool": "query", "args": {"q": "x" * 220}}
    t["failed_at"] = time.time(); t["retry_count"] = 1
    failed.append(t)
    with open(path, "w") as f:
        json.dump(failed, f, indent=2)
"""


def kill_trials(d: Path, trials: int = 30) -> dict[str, int]:
    """SIGKILL at random moments: the guide's JSON file vs our queue (the crash-test helper)."""
    import random
    import signal
    import subprocess

    rng = random.Random(7)
    unreadable = 0
    for i in range(trials):
        path = d / f"guide-kill-{i}.json"
        child = subprocess.Popen([sys.executable, "-c", _GUIDE_CHILD, str(path)])
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        try:
            json.loads(path.read_text())
        except ValueError:
            unreadable += 1
    helper = Path(__file__).resolve().parent.parent / "tests" / "mcp_retry" / "_crash.py"
    out = subprocess.run(
        [sys.executable, str(helper), str(d / "ours-kill.db"), str(d / "ledger"), str(trials), "9"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {
        "trials": trials,
        "guide_unreadable": unreadable,
        "ours_with_problems": sum(1 for r in results if r["problems"]),
        "ours_killed": sum(1 for r in results if r["killed"]),
        "ours_committed_before_return": sum(1 for r in results if r["committed_before_return"]),
    }


# -- 2. the gate ----------------------------------------------------------------------------------


def gate_cost() -> tuple[float, float]:
    rec = MCPConnectionRecovery(connect=lambda cfg: cfg)
    check = rec.check
    n = 1_000_000
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            check("search")
        best = min(best, (time.perf_counter() - t) / n)

    from tenacity import AsyncRetrying, stop_after_attempt

    async def call() -> int:
        return 1

    async def wrapped() -> float:
        m = 20_000
        t = time.perf_counter()
        for _ in range(m):
            async for attempt in AsyncRetrying(stop=stop_after_attempt(3), reraise=True):
                with attempt:
                    await call()
        return (time.perf_counter() - t) / m

    return best, min(asyncio.run(wrapped()) for _ in range(3))


# -- 3. the storm ---------------------------------------------------------------------------------


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def storm(callers: int = 1000, attempts: int = 3) -> dict[str, float]:
    port = _dead_port()

    async def main() -> dict[str, float]:
        ours_connects = 0

        async def connect(cfg: dict[str, int]) -> Any:
            nonlocal ours_connects
            ours_connects += 1
            _, w = await asyncio.open_connection("127.0.0.1", cfg["port"])
            return w

        rec = MCPConnectionRecovery(attempts, 0.001, connect=connect, max_delay=0.01)
        t = time.perf_counter()
        res = await asyncio.gather(
            *(rec.recover_connection("dead", {"port": port}) for _ in range(callers)),
            return_exceptions=True,
        )
        ours_s = time.perf_counter() - t
        assert all(isinstance(r, ConnectionError) for r in res)

        naive_connects = 0

        async def naive_recover() -> Any:
            # The guide's loop, run by every caller on its own (its shared dict races).
            nonlocal naive_connects
            for i in range(attempts):
                try:
                    naive_connects += 1
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    return w
                except OSError:
                    if i < attempts - 1:
                        await asyncio.sleep(0.001 * 2**i)
            raise ConnectionError("cannot recover")

        t = time.perf_counter()
        await asyncio.gather(*(naive_recover() for _ in range(callers)), return_exceptions=True)
        naive_s = time.perf_counter() - t
        return {
            "ours_connects": ours_connects,
            "naive_connects": naive_connects,
            "ours_s": ours_s,
            "naive_s": naive_s,
        }

    return asyncio.run(main())


def main() -> None:
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_mcp_"))
    try:
        rounds = 5
        if "--rounds" in sys.argv[1:]:
            rounds = int(sys.argv[sys.argv.index("--rounds") + 1])
        save(
            "bench_mcp_api",
            api_table(tmp, rounds) + batch_table(tmp) + blocking_saves(tmp),
            cpus=os.cpu_count(),
        )
        if "--api" in sys.argv[1:]:
            return
        print("enqueue + claim + ack of ~300-byte tasks (tasks/s; higher is better)")
        g = {}
        for n in (1000, 2000):
            wall, _ = guide_json(n, tmp)
            g[n] = wall
            print(f"  guide JSON rewrite, {n:>6} tasks: {n / wall:10.0f} tasks/s ({wall:.2f} s)")
        # Quadratic fit t(n) = a n^2 + b n through the two points, extrapolated to 10 000.
        a = (g[2000] / 2000 - g[1000] / 1000) / 1000
        b = g[1000] / 1000 - a * 1000
        fit_10k = a * 10000**2 + b * 10000
        print(f"  guide JSON rewrite, 10 000 tasks (quadratic fit): {10000 / fit_10k:.1f} tasks/s "
              f"({fit_10k:.0f} s)")  # fmt: skip
        guide_rate = {1000: 1000 / g[1000], 10000: 10000 / fit_10k}

        # Every variant best of a few runs, interleaved, so that a burst of load on the shared
        # machine does not land on one variant only.
        variants: dict[str, Any] = {
            "NORMAL": lambda n: ours_per_op(n, tmp, "NORMAL"),
            "pq NORMAL": lambda n: persist_queue(n, tmp, "NORMAL"),
            "group NORMAL": lambda n: ours_group(n, tmp, "NORMAL"),
            "group FULL": lambda n: ours_group(n, tmp, "FULL"),
            "FULL": lambda n: ours_per_op(n, tmp, "FULL"),
            "pq FULL": lambda n: persist_queue(n, tmp, None),
        }
        results: dict[str, dict[int, tuple[float, float]]] = {}
        for n in (1000, 10000):
            for _ in range(3 if n == 1000 else 2):
                for name, fn in variants.items():
                    if "FULL" in name and "group" not in name and (n > 1000 or name in results):
                        continue  # fsync-bound per operation: one run, and minutes at 10 000
                    got = fn(n)
                    best = results.setdefault(name, {}).get(n)
                    if best is None or got[0] < best[0]:
                        results[name][n] = got
        results["api NORMAL"] = {1000: ours_async_api(1000, tmp)}

        for n in (1000, 10000):
            print(f"-- backlog {n}")
            rate = {k: n / v[n][0] for k, v in results.items() if n in v}
            cpu = {k: v[n][1] / n * 1e6 for k, v in results.items() if n in v}
            for k in rate:
                print(f"  {k:<14} {rate[k]:10.0f} tasks/s  {cpu[k]:7.1f} µs CPU/task  "
                      f"({1e6 / cpu[k]:8.0f} tasks per CPU-second)")  # fmt: skip
            us = {k: 1e6 / r for k, r in rate.items()}  # wall µs per task: ratios are speed-ups
            rows.append(compare(f"NORMAL per-op vs guide JSON ({n})", us["NORMAL"],
                                1e6 / guide_rate[n], "µs/task", "guide"))  # fmt: skip
            if "FULL" in rate:
                rows.append(compare(f"FULL per-op vs persist-queue FULL ({n})", us["FULL"],
                                    us["pq FULL"], "µs/task", "persistqueue"))  # fmt: skip
            rows.append(compare(f"NORMAL per-op vs persist-queue NORMAL ({n})", us["NORMAL"],
                                us["pq NORMAL"], "µs/task", "persistqueue"))  # fmt: skip
            rows.append(compare(f"NORMAL CPU/task vs persist-queue NORMAL ({n})",
                                cpu["NORMAL"], cpu["pq NORMAL"], "µs CPU", "persistqueue"))  # fmt: skip
            rows.append(compare(f"group commit NORMAL vs per-op NORMAL ({n})",
                                us["group NORMAL"], us["NORMAL"], "µs/task", "per-op"))  # fmt: skip
            if "FULL" in rate:
                rows.append(compare(f"group commit FULL vs per-op FULL ({n})",
                                    us["group FULL"], us["FULL"], "µs/task", "per-op"))  # fmt: skip
            rows.append({"label": f"CPU µs/task ({n})", **cpu, "unit": "µs"})
            rows.append({"label": f"tasks/s ({n})", **rate, "unit": "tasks/s"})
        slow = 1 - (10000 / results["NORMAL"][10000][0]) / (1000 / results["NORMAL"][1000][0])
        print(f"  NORMAL per-op, wall: the 10 000 backlog runs {slow * 100:+.1f}% slower than the "
              "1 000 one (negative: faster)")  # fmt: skip
        rows.append({"label": "NORMAL 10k vs 1k slowdown (wall)", "value": slow})

        print("steady state (backlog held constant): CPU µs per enqueue + claim + ack, best of 7")
        steady = {b: steady_cost(b, tmp) for b in (1000, 10000, 100000)}
        for b, v in steady.items():
            print(f"  backlog {b:>7}: {v:7.1f} µs CPU/task  ({(v / steady[1000] - 1) * 100:+.1f}%)")
        rows.append({"label": "steady-state CPU µs/task by backlog", **steady, "unit": "µs"})

        ours_gate, tenacity_call = gate_cost()
        rows.append(compare("recovery gate per healthy call", ours_gate * 1e6,
                            tenacity_call * 1e6, "µs", "tenacity"))  # fmt: skip

        s = storm()
        rows.append(compare("1 000 callers, dead server: connect attempts", s["ours_connects"],
                            s["naive_connects"], "conn", "naive"))  # fmt: skip
        rows.append(compare("1 000 callers, dead server: wall time", s["ours_s"], s["naive_s"],
                            "s", "naive"))  # fmt: skip
        k = kill_trials(tmp)
        print(f"SIGKILL at random moments, {k['trials']} trials: guide JSON file unreadable in "
              f"{k['guide_unreadable']}; our queue: {k['ours_with_problems']} trials with a lost, "
              f"duplicated or resurrected task or an unreadable file; in "
              f"{k['ours_committed_before_return']} the kill fell between a save's commit and its "
              f"return (saved again: no duplicate)")  # fmt: skip
        rows.append({"label": "SIGKILL trials", **k})
        save("bench_mcp", rows, cpus=os.cpu_count())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--preload"]:  # a child of _preload
        kind, where, size, ids = sys.argv[2:6]
        _preload_here(kind, Path(where), int(size), ids == "lib")
    else:
        main()
