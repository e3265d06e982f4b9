"""
A SAFLA-like service for the end-to-end healing tests, run as a real child process.

``python _service.py MODE WORKDIR`` runs ``async with Diagnostics(cfg, heal=...)`` in its own loop
and prints one JSON object per line on stdout: ``{"ready": ...}`` once the healer runs, then the
result. Modes: ``index`` (waits for the parent to corrupt the live index, then for the host
callback), ``leak`` (really leaks on the marked line while the detector's alarm is raised),
``memory`` (a memory reader that says 99 %), ``dry`` (all three, in a dry run).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from safla_diag import Diagnostics, HealPolicy, VectorIndexRecovery

DIM = 8


def emit(**data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


class Cache(dict[str, int]):
    """A cache the host registers; it counts its clears."""

    clears = 0

    def clear(self) -> None:
        self.clears += 1
        super().clear()


def make_index(work: Path) -> tuple[VectorIndexRecovery, Any, Any]:
    import faiss
    import numpy as np

    rng = np.random.default_rng(11)
    xb = rng.random((500, DIM), dtype=np.float32)
    index = faiss.IndexFlatL2(DIM)
    index.add(xb)
    rec = VectorIndexRecovery(work / "data", work / "backups", dimension=DIM)
    rec.save_index(index)
    rec.backup_index()
    return rec, index, xb[:10]


def raise_alarm(diag: Diagnostics) -> None:
    """An hour of steady RSS growth, fed to the running detector (later than its own samples)."""
    detector = diag.leak_detector
    assert detector is not None
    t0 = time.monotonic() + 10
    for i in range(60):
        detector.add_sample(100 + 2 * i, t0 + i * 60)


async def until(cond: Any, what: str) -> None:
    async with asyncio.timeout(60):
        while True:
            if cond():
                return
            await asyncio.sleep(0.01)


async def index_mode(work: Path) -> None:
    rec, index, queries = make_index(work)
    expected = index.search(queries, 5)[1].tolist()
    swapped: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def on_index(new: Any) -> None:
        swapped.set_result(new)

    cfg = {
        "data_dir": str(rec.data_dir),
        "backup_dir": str(rec.backup_dir),
        "vector_dimension": DIM,
    }
    policy = HealPolicy(index_check_interval_s=0.2, on_index=on_index)
    async with Diagnostics(cfg, heal=policy) as diag:
        healer = diag.healer
        assert healer is not None
        await until(lambda: healer.index_checks >= 1, "a first check")
        emit(ready=True, index=str(rec.index_path))
        # The parent corrupts the file on disk, then writes a line.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        checks_at_corruption = healer.index_checks
        new = await asyncio.wait_for(swapped, 60)
        checks_at_restore = healer.index_checks
        got = new.search(queries, 5)[1].tolist()
        emit(
            expected=expected,
            got=got,
            ntotal=new.ntotal,
            checks=[checks_at_corruption, checks_at_restore],
            history=diag.heal_history(),
        )


async def leak_mode(work: Path) -> None:
    hoard: list[bytearray] = []
    policy = HealPolicy(tick_s=0.02, leak_window_s=1.0)
    async with Diagnostics({}, heal=policy) as diag:
        emit(ready=True)
        raise_alarm(diag)

        def traced() -> bool:
            return any(h["action"] == "leak_trace" for h in diag.heal_history())

        while not traced():
            hoard.append(bytearray(8192))  # THE LEAKING LINE
            await asyncio.sleep(0.002)
        emit(history=diag.heal_history(), tracing_after=tracemalloc.is_tracing())


async def memory_mode(work: Path) -> None:
    cache = Cache(a=1, b=2)
    policy = HealPolicy(
        tick_s=0.01, min_interval_s=3600, memory_percent=lambda: 99.0, caches=[cache]
    )
    async with Diagnostics({}, heal=policy) as diag:
        healer = diag.healer
        assert healer is not None
        emit(ready=True)
        await until(lambda: healer.ticks >= 30, "30 ticks")
        emit(clears=cache.clears, ticks=healer.ticks, history=diag.heal_history())


async def dry_mode(work: Path) -> None:
    rec, _, _ = make_index(work)
    data = bytearray(rec.index_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rec.index_path.write_bytes(bytes(data))
    cache = Cache(a=1)
    called: list[Any] = []
    policy = HealPolicy(
        dry_run=True,
        tick_s=0.01,
        index_check_interval_s=0.05,
        leak_window_s=0.5,
        memory_percent=lambda: 99.0,
        caches=[cache],
        on_index=called.append,
    )
    cfg = {"data_dir": str(rec.data_dir), "backup_dir": str(rec.backup_dir)}
    ever_traced = False
    async with Diagnostics(cfg, heal=policy) as diag:
        healer = diag.healer
        assert healer is not None
        emit(ready=True, index=str(rec.index_path))
        raise_alarm(diag)
        kinds = {"restore_index", "clear_caches", "leak_trace"}
        while not kinds <= {h["action"] for h in diag.heal_history()}:
            ever_traced = ever_traced or tracemalloc.is_tracing()
            await asyncio.sleep(0.005)
        ticks = healer.ticks
        while healer.ticks < ticks + 20:
            ever_traced = ever_traced or tracemalloc.is_tracing()
            await asyncio.sleep(0.005)
        emit(
            history=diag.heal_history(),
            clears=cache.clears,
            callback_calls=len(called),
            ever_traced=ever_traced,
        )


MODES = {"index": index_mode, "leak": leak_mode, "memory": memory_mode, "dry": dry_mode}

if __name__ == "__main__":
    asyncio.run(MODES[sys.argv[1]](Path(sys.argv[2])))
