"""
Hostile files and faults, done for real: FIFOs and /dev/zero where manifests belong, sparse files,
factory strings faiss aborts on, foreign and symlinked backups, read-only folders, a file size
limit in the middle of a restore, unreadable indexes.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from safla_diag import RecoveryError, VectorIndexRecovery
from safla_diag.vector._manifest import Manifest, ManifestError
from safla_diag.vector._probe import ProbeJob, disk_bytes, probe_files, timeout_for

from ..conftest import cli_env, run_cli
from ._damage import DIM, make_index

pytestmark = pytest.mark.timeout(60)


def _rec(root: Path, **kw: object) -> VectorIndexRecovery:
    return VectorIndexRecovery(root / "data", root / "backups", dimension=DIM, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ 8: what a manifest really is


def test_a_fifo_as_a_backups_manifest_is_a_one_line_problem_not_a_hang(tmp_path: Path) -> None:
    """list-backups, backup and restore go on past a FIFO named manifest.json nobody writes."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    good = Path(rec.backup_index())
    rec.save_index(make_index("Flat", seed=1))
    bad = Path(rec.backup_index())
    (bad / "manifest.json").unlink()
    os.mkfifo(bad / "manifest.json")
    listed = {i.name: i for i in rec.list_backups()}
    assert "FIFO" in (listed[bad.name].problem or "")
    assert "\n" not in (listed[bad.name].problem or "")
    r = run_cli("vector", "list-backups", str(rec.data_dir), "--backup-dir", str(rec.backup_dir))
    assert r.returncode == 1 and "FIFO" in r.stdout and "Traceback" not in r.stderr
    assert rec.backup_index()
    rec.index_path.write_bytes(b"damaged")
    assert rec.restore_from_backup()
    assert rec.last_restored is not None and rec.last_restored.name != bad.name
    assert good.exists()


def test_dev_zero_as_the_live_manifest_is_a_one_line_manifest_problem(tmp_path: Path) -> None:
    """A symlink to /dev/zero as the manifest: a one-line error, no MemoryError, no hang."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    rec.manifest_path.unlink()
    rec.manifest_path.symlink_to("/dev/zero")
    health = rec.diagnose()
    assert not health.ok and health.failed_check is not None
    assert health.failed_check.name == "manifest"
    assert "character device" in (health.problem or "") and "\n" not in (health.problem or "")
    with pytest.raises(ManifestError, match="character device"):
        Manifest.read(rec.manifest_path)


def test_a_huge_manifest_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A manifest past the size cap (a sparse 1 GiB file) is refused from its size alone."""
    path = tmp_path / "big.manifest.json"
    with open(path, "wb") as f:
        f.truncate(1 << 30)
    with pytest.raises(ManifestError, match="larger than"):
        Manifest.read(path)


def test_a_fifo_as_the_live_index_is_reported_not_opened(tmp_path: Path) -> None:
    """The index path is a FIFO: diagnose, load and backup say so at once."""
    rec = _rec(tmp_path)
    rec.data_dir.mkdir(parents=True)
    os.mkfifo(rec.index_path)
    health = rec.diagnose(deep=True)
    assert not health.ok and "FIFO" in (health.problem or "")
    from safla_diag import IndexCorruptionError

    with pytest.raises(IndexCorruptionError, match="FIFO"):
        rec.backup_index()
    with pytest.raises(IndexCorruptionError):
        rec.load_index()


def test_a_negative_generation_is_a_damaged_manifest(tmp_path: Path) -> None:
    """A manifest with generation -5 (self-checksum intact) is refused, not listed nowhere."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    m = Manifest.read(rec.manifest_path)
    assert m is not None
    rec.manifest_path.write_bytes(m.evolve(generation=-5).to_bytes())
    health = rec.diagnose()
    assert not health.ok and "negative" in (health.problem or "")


# ------------------------------------------------------------------ 9: sparse files


def _sparse_index(path: Path, apparent: int) -> None:
    """A real IndexFlatL2 whose codes vector announces ``apparent`` bytes, held as a hole."""
    index = make_index("Flat", n=10)
    import faiss

    data = bytearray(faiss.serialize_index(index))
    codes = 10 * DIM * 4
    at = len(data) - codes - 8
    assert int.from_bytes(data[at : at + 8], "little") == 10 * DIM  # a count of floats
    data[at : at + 8] = (apparent // 4).to_bytes(8, "little")
    with open(path, "wb") as f:
        f.write(data[: at + 8])
        f.truncate(at + 8 + apparent)


def test_the_loaders_limits_come_from_bytes_on_disk_not_the_announced_size(
    tmp_path: Path,
) -> None:
    """A sparse 1 GiB index (a few KiB on disk) gets the small file's memory cap and timeout."""
    path = tmp_path / "sparse.faiss"
    _sparse_index(path, 1 << 30)
    assert path.stat().st_size > 1 << 30
    assert disk_bytes(str(path)) < 1 << 20
    assert timeout_for(disk_bytes(str(path))) < 31
    assert timeout_for(10**15) == 600.0
    (result,) = probe_files([ProbeJob(path=str(path))], timeout=60)
    # faiss asks for the 1 GiB the header announces; the cap from the bytes on disk refuses it
    # (before, the cap was 4 x 1 GiB and the loader read a gigabyte of holes).
    assert result.status == "memory", result


# ------------------------------------------------------------------ 10: factory strings


@pytest.mark.parametrize(
    ("factory", "words"),
    [
        ("HNSW0", "at least 2 links"),
        ("IVF100000,Flat", "needs at least 100000 vectors"),
        ("IDMap,Flat", "no ids were given"),
    ],
)
def test_factories_faiss_aborts_or_fails_on_are_one_line_errors(
    tmp_path: Path, factory: str, words: str
) -> None:
    """HNSW0 (SIGABRT in faiss), too many IVF lists, IDMap without ids: RecoveryError, CLI exit 1."""
    x = np.random.default_rng(0).standard_normal((2000, DIM)).astype(np.float32)
    rec = _rec(tmp_path)
    with pytest.raises(RecoveryError, match=words):
        rec.rebuild_index(x, factory=factory)
    assert not rec.index_path.exists()
    np.save(tmp_path / "x.npy", x)
    r = run_cli(
        "vector", "rebuild-index", str(rec.data_dir), "--from", str(tmp_path / "x.npy"),
        "--factory", factory,
    )  # fmt: skip
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert words in r.stdout and "Traceback" not in r.stderr and r.stderr.count("\n") <= 1


def test_a_factory_that_aborts_faiss_kills_a_trial_child_not_the_host(tmp_path: Path) -> None:
    """The trial build runs where an abort cannot reach the host: HNSW0 behind IVF's quantizer."""
    from safla_diag.vector._rebuild import trial_build

    with pytest.raises(RecoveryError, match="aborts"):
        trial_build(DIM, "HNSW0", "l2")
    trial_build(DIM, "HNSW8", "l2")


# ------------------------------------------------------------------ 12: whose backup is it


def test_restore_never_installs_another_indexs_backup(tmp_path: Path) -> None:
    """Two indexes share a backup folder: each restores only its own backups."""
    shared = tmp_path / "backups"
    users = VectorIndexRecovery(tmp_path / "users", shared, dimension=DIM)
    docs = VectorIndexRecovery(tmp_path / "docs", shared, dimension=DIM)
    users.save_index(make_index("Flat", seed=1))
    docs.save_index(make_index("Flat", seed=2))
    users_backup = users.backup_index()
    docs.backup_index()
    docs_bytes = docs.index_path.read_bytes()
    assert not docs.restore_from_backup(users_backup)
    assert "another index" in (docs.last_restore_skipped[0].problem or "")
    assert docs.index_path.read_bytes() == docs_bytes
    # Only docs' backup is ever a candidate for docs, newest first or not.
    docs.index_path.write_bytes(b"damaged")
    users.backup_index()
    assert docs.restore_from_backup()
    assert docs.index_path.read_bytes() == docs_bytes


def test_symlinks_and_future_names_in_the_backup_folder_are_never_candidates(
    tmp_path: Path,
) -> None:
    """A symlink named like a backup (pointing outside) and a copy with a future name are ignored."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat", seed=1))
    good = Path(rec.backup_index())
    rec.save_index(make_index("Flat", seed=2))
    elsewhere = Path(rec.backup_index())
    outside = tmp_path / "outside"
    shutil.move(str(elsewhere), outside)
    link = rec.backup_dir / "29991231T235959.000000Z-g000009"
    link.symlink_to(outside, target_is_directory=True)
    future = rec.backup_dir / "29991231T235959.999999Z-g000002"
    shutil.copytree(outside, future)
    names = [i.name for i in rec.list_backups()]
    assert names == [good.name]
    rec.index_path.write_bytes(b"damaged")
    assert rec.restore_from_backup()
    assert rec.last_restored is not None and rec.last_restored.name == good.name
    with pytest.raises(RecoveryError, match="not a backup"):
        rec.restore_from_backup(link)


def test_a_renamed_backup_is_not_one_the_library_made(tmp_path: Path) -> None:
    """A backup copied under another name (an older time, another generation) is refused."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    made = Path(rec.backup_index())
    fake = rec.backup_dir / "20000101T000000.000000Z-g000007"
    shutil.copytree(made, fake)
    info = {i.name: i for i in rec.list_backups()}[fake.name]
    assert "was not made by safla-diag" in (info.problem or "")


# ------------------------------------------------------------------ 14 and 15: folders, disks


@pytest.fixture
def shared_root(tmp_path: Path) -> Iterator[Path]:
    """A folder whose modes are put back afterwards (pytest must be able to remove it)."""
    yield tmp_path
    for folder, _, _ in os.walk(tmp_path):
        os.chmod(folder, 0o755)


def _without_file_powers(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as root without the power to ignore file permissions (as a service user runs)."""
    return subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--",
         sys.executable, "-m", "safla_diag", *args],
        capture_output=True, text=True, env=cli_env(), timeout=60, check=False,
    )  # fmt: skip


_NEEDS = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to drop the power to ignore file permissions",
)


@_NEEDS
def test_a_read_only_data_folder_can_be_backed_up(shared_root: Path) -> None:
    """A reader without write access to the data folder (a read-only sidecar) takes a backup."""
    rec = VectorIndexRecovery(shared_root / "data", shared_root / "backups")
    rec.save_index(make_index("Flat"))
    rec.data_dir.chmod(0o555)
    r = _without_file_powers(
        "vector", "backup", str(rec.data_dir), "--backup-dir", str(shared_root / "backups")
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    (info,) = rec.list_backups(verify=True)
    assert info.verified and info.ok


@_NEEDS
def test_an_unreadable_index_gets_permission_advice_not_restore_advice(shared_root: Path) -> None:
    """EACCES on the index: the advice is about access, not about restoring a good index."""
    rec = VectorIndexRecovery(shared_root / "data", shared_root / "backups")
    rec.save_index(make_index("Flat"))
    rec.index_path.chmod(0o000)
    r = _without_file_powers("vector", "health-check", str(rec.data_dir), "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert "Permission denied" in doc["problem"]
    assert "read access" in doc["advice"] and "restore" not in doc["advice"]


def test_restore_failing_on_a_full_disk_exits_1_and_leaves_the_index(tmp_path: Path) -> None:
    """A restore the disk refuses (a real file size limit) is a failed restore (1), not usage (2)."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat", n=2000))
    rec.backup_index()
    rec.index_path.write_bytes(b"damaged")
    before = sorted(os.listdir(rec.data_dir))

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = subprocess.run(
        [sys.executable, "-m", "safla_diag", "vector", "restore", str(rec.data_dir),
         "--backup-dir", str(rec.backup_dir)],
        capture_output=True, text=True, env=cli_env(), preexec_fn=small_files, timeout=60,
        check=False,
    )  # fmt: skip
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "restore failed" in r.stdout and "Traceback" not in r.stderr
    assert rec.index_path.read_bytes() == b"damaged"
    assert sorted(os.listdir(rec.data_dir)) == before


def test_replaced_copies_are_bounded_like_backups(tmp_path: Path) -> None:
    """Restore after restore over a healthy index keeps only keep_backups .replaced-* copies."""
    rec = _rec(tmp_path, keep_backups=2)
    rec.save_index(make_index("Flat"))
    rec.backup_index()
    for _ in range(5):
        assert rec.restore_from_backup()
    replaced = [p for p in os.listdir(rec.data_dir) if ".replaced-" in p]
    assert len(replaced) == 2
    for _ in range(4):
        rec.index_path.write_bytes(b"damaged")
        assert rec.restore_from_backup()
    assert len([p for p in os.listdir(rec.data_dir) if ".corrupt-" in p]) == 2
