"""
Vector index recovery on a flat index of about 500 MB (1 M x 128 float32), side by side with the
naive guide versions, in one run:

- diagnose() and diagnose(deep=True) against faiss.read_index alone and against hashing the file;
- save_index against faiss.write_index + fsync;
- backup_index() against shutil.copyfile + fsync; restore_from_backup() likewise;
- refusing to back up a damaged index (verified before copying) against copy + hash of the copy;
- backup_index() of an index with a sidecar against copying both files + fsync;
- rebuild_index against raw index.add of the same vectors (and against load + add + write + fsync).

Targets from the issue (ours / theirs): diagnose <= 0.2x read_index (warm), save <= 1.2x write +
fsync, backup <= 1.5x copy + fsync, rebuild <= 1.2x raw add.

    python benchmarks/bench_vector.py            # 1 M x 128 (512 MB)
    python benchmarks/bench_vector.py --n 200000 # about 100 MB
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import faiss
import numpy as np
from _common import compare, save

from safla_diag import VectorIndexRecovery


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def evict(path: Path) -> None:
    """Drop a file's clean pages from the page cache (no root needed), for cold reads."""
    fsync_path(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def best(fn: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def pair(
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    repeat: int,
    *,
    after_theirs: Callable[[], Any] | None = None,
) -> tuple[float, float]:
    """Best of ``repeat`` for both, interleaved so that both see the same machine load."""
    a, b = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        theirs()
        b.append(time.perf_counter() - t)
        if after_theirs is not None:
            after_theirs()
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
    return min(a), min(b)


def hash_sha256(path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)


def hash_xxh3(path: Path) -> None:
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    n, d, repeat = args.n, args.d, args.repeat
    rows: list[dict[str, Any]] = []
    targets: list[str] = []

    def row(label: str, ours: float, theirs: float, name: str, target: float | None = None) -> None:
        r = compare(label, ours, theirs, "s", name)
        r["ours/theirs"] = ours / theirs
        rows.append(r)
        if target is not None:
            verdict = "met" if ours / theirs <= target else "MISSED"
            targets.append(
                f"{label}: ours/{name} = {ours / theirs:.2f}x (target <= {target}x: {verdict})"
            )

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_s:
        tmp = Path(tmp_s)
        t = time.perf_counter()
        x = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
        np.save(tmp / "vectors.npy", x)
        print(
            f"{n} x {d} float32 ({x.nbytes / 2**20:.0f} MB) generated in {time.perf_counter() - t:.1f} s"
        )

        # rebuild vs raw add
        def raw_add() -> Any:
            index = faiss.IndexFlatL2(d)
            index.add(x)
            return index

        rec = VectorIndexRecovery(tmp / "data", tmp / "backups", keep_backups=2)
        built: list[float] = []

        def rebuild() -> None:
            start = time.perf_counter()
            rec.rebuild_index(
                tmp / "vectors.npy",
                metric="l2",
                factory="Flat",
                batch_size=131072,
                progress=lambda done, total: (
                    built.append(time.perf_counter() - start) if done == total else None
                ),
            )

        def naive_rebuild() -> None:
            y = np.load(tmp / "vectors.npy")
            index = faiss.IndexFlatL2(d)
            index.add(y)
            faiss.write_index(index, str(tmp / "naive.faiss"))
            fsync_path(tmp / "naive.faiss")

        totals: list[float] = []
        adds: list[float] = []
        naive: list[float] = []
        for _ in range(repeat):  # interleaved, so that all three see the same machine load
            for fn, out in ((raw_add, adds), (rebuild, totals), (naive_rebuild, naive)):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
        t_add, t_rebuild, t_naive_rebuild, t_build = min(adds), min(totals), min(naive), min(built)
        index = raw_add()

        # save vs write + fsync (the guide writes the same file in place each time)
        def naive_write() -> None:
            faiss.write_index(index, str(tmp / "naive.faiss"))
            fsync_path(tmp / "naive.faiss")

        rec.save_index(index)
        t_save, t_write = pair(lambda: rec.save_index(index), naive_write, repeat)
        t_save0, t_write0 = pair(lambda: rec.save_index(index, canaries=0), naive_write, repeat)
        size = rec.index_path.stat().st_size
        print(f"index file: {size / 2**20:.0f} MB")

        # diagnose vs read_index and hashing (warm)
        path = rec.index_path
        faiss.read_index(str(path))  # warm the cache
        t_diag, t_read = pair(lambda: rec.diagnose(), lambda: faiss.read_index(str(path)), repeat)
        t_sha = best(lambda: hash_sha256(path), repeat)
        t_xxh = best(lambda: hash_xxh3(path), repeat)
        assert rec.diagnose().ok
        t_deep = best(lambda: rec.diagnose(deep=True), repeat)
        t_load = best(lambda: rec.load_index(), repeat)
        # cold: the file's pages evicted before each run
        t_read_cold = best(lambda: faiss.read_index(str(path)), repeat, before=lambda: evict(path))
        t_diag_cold = best(lambda: rec.diagnose(), repeat, before=lambda: evict(path))

        # backup vs copy + fsync into a new folder each time, as the guide's backup does
        counter = iter(range(1_000_000))

        def naive_backup() -> None:
            folder = tmp / f"naive-backup-{next(counter)}"
            folder.mkdir()
            shutil.copyfile(path, folder / "vector_index.faiss")
            fsync_path(folder / "vector_index.faiss")

        def drop_naive() -> None:
            for old in tmp.glob("naive-backup-*"):
                shutil.rmtree(old)

        t_backup, t_copy = pair(rec.backup_index, naive_backup, repeat, after_theirs=drop_naive)

        # restore vs copying the backup over the live file (the guide's restore)
        live_copy = tmp / "naive-live.faiss"
        shutil.copyfile(path, live_copy)
        newest = rec.list_backups()[0].path

        def naive_restore() -> None:
            shutil.copyfile(Path(newest) / "vector_index.faiss", live_copy)
            fsync_path(live_copy)

        def drop_aside() -> None:
            for p in rec.data_dir.glob("*.replaced-*"):
                p.unlink()

        t_restore, t_copy_restore = pair(
            rec.restore_from_backup, naive_restore, repeat, after_theirs=drop_aside
        )
        drop_aside()

        # refusing to back up a damaged index: ours verifies before copying a byte; the naive
        # order copies first and then hashes the copy to find out
        from safla_diag import IndexCorruptionError

        saved = path.read_bytes()
        damaged = bytearray(saved)
        damaged[len(damaged) // 2] ^= 0xFF
        path.write_bytes(bytes(damaged))

        def refuse() -> None:
            try:
                rec.backup_index()
            except IndexCorruptionError:
                return
            raise AssertionError("a damaged index was backed up")

        def copy_then_hash() -> None:
            folder = tmp / f"naive-backup-{next(counter)}"
            folder.mkdir()
            shutil.copyfile(path, folder / "vector_index.faiss")
            fsync_path(folder / "vector_index.faiss")
            hash_xxh3(folder / "vector_index.faiss")

        t_refuse, t_copy_hash = pair(refuse, copy_then_hash, repeat, after_theirs=drop_naive)
        path.write_bytes(saved)
        assert rec.diagnose().ok

        # a bundle: the index and a sidecar of a quarter of its size, backed up together
        bundle = VectorIndexRecovery(
            tmp / "bundle", tmp / "bundle-backups", keep_backups=2, sidecars=("index.pkl",)
        )
        pkl = os.urandom(size // 4)
        bundle.save_index(index, sidecars={"index.pkl": pkl}, canaries=0)

        def naive_bundle_backup() -> None:
            folder = tmp / f"naive-backup-{next(counter)}"
            folder.mkdir()
            for name in ("vector_index.faiss", "index.pkl"):
                shutil.copyfile(bundle.data_dir / name, folder / name)
                fsync_path(folder / name)

        t_bundle, t_bundle_copy = pair(
            bundle.backup_index, naive_bundle_backup, repeat, after_theirs=drop_naive
        )

    load = os.getloadavg()
    print()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (a shared machine)")
    print(f"vector index recovery, {n} x {d} flat index ({size / 2**20:.0f} MB), best of {repeat}")
    row("diagnose() vs read_index (warm)", t_diag, t_read, "read_index", 0.2)
    row("diagnose() vs sha256 of the file (warm)", t_diag, t_sha, "sha256")
    row("diagnose() vs xxh3_128 of the file (warm)", t_diag, t_xxh, "xxh3")
    row("diagnose() vs read_index (cold)", t_diag_cold, t_read_cold, "read_index")
    row("diagnose(deep=True) vs read_index (warm)", t_deep, t_read, "read_index")
    row("load_index() (verify + load) vs read_index", t_load, t_read, "read_index")
    row("save_index vs write_index + fsync", t_save, t_write, "write+fsync", 1.2)
    row("save_index(canaries=0) vs write_index + fsync", t_save0, t_write0, "write+fsync")
    row("backup_index vs copyfile + fsync", t_backup, t_copy, "copy+fsync", 1.5)
    row("restore_from_backup vs copyfile + fsync", t_restore, t_copy_restore, "copy+fsync")
    row("refusing a damaged backup vs copy + hash", t_refuse, t_copy_hash, "copy+hash")
    row("backup of index + sidecar vs copy both + fsync", t_bundle, t_bundle_copy, "copy+fsync")
    row("rebuild_index, adding only, vs raw add", t_build, t_add, "raw add", 1.2)
    row("rebuild_index incl. save vs load+add+write+fsync", t_rebuild, t_naive_rebuild, "naive")
    print()
    for line in targets:
        print(line)
    name = "bench_vector" if n == 1_000_000 else f"bench_vector_{n}"
    save(name, rows, n=n, d=d, size_bytes=size, repeat=repeat, targets=targets, loadavg=list(load))


if __name__ == "__main__":
    main()
