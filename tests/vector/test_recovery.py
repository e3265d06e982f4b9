"""VectorIndexRecovery with real faiss files: save, diagnose, load, backup, restore, rebuild."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from safla_diag import (
    BackupInfo,
    IndexCorruptionError,
    IndexHealth,
    RecoveryError,
    VectorIndexRecovery,
)
from safla_diag.vector._fs import hash_file
from safla_diag.vector._manifest import Manifest

from ._damage import DIM, make_index


def _rec(tmp_path: Path, **kw: object) -> VectorIndexRecovery:
    return VectorIndexRecovery(tmp_path / "data", tmp_path / "backups", dimension=DIM, **kw)  # type: ignore[arg-type]


def _flip(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------- save


def test_save_writes_index_and_manifest_with_everything_the_issue_lists(tmp_path: Path) -> None:
    """The manifest records format, generation, class, d, ntotal, metric, files, canaries."""
    rec = _rec(tmp_path)
    path = rec.save_index(make_index("Flat"))
    assert path == str(rec.index_path)
    body = json.loads(rec.manifest_path.read_text())
    assert body["format_version"] == 1 and body["generation"] == 1
    assert body["index"] == {
        "kind": "float",
        "class": "IndexFlatL2",
        "dimension": DIM,
        "ntotal": 300,
        "metric": "l2",
        "is_trained": True,
    }
    assert body["checksum_algorithm"] == "xxh3_128"
    assert body["faiss_version"] == faiss.__version__
    entry = body["files"]["vector_index.faiss"]
    assert (entry["size"], entry["checksum"]) == hash_file(rec.index_path)
    assert len(body["canaries"]["expected_ids"]) == 4
    assert not rec.next_manifest_path.exists()
    assert [p.name for p in rec.data_dir.iterdir() if ".tmp-" in p.name] == []
    rec.save_index(make_index("Flat", seed=3))
    assert json.loads(rec.manifest_path.read_text())["generation"] == 2


def test_saved_file_is_what_faiss_writes(tmp_path: Path) -> None:
    """Streaming through the Python writer produces the same bytes as faiss.write_index."""
    index = make_index("HNSW")
    rec = _rec(tmp_path)
    rec.save_index(index)
    faiss.write_index(index, str(tmp_path / "plain.faiss"))
    assert rec.index_path.read_bytes() == (tmp_path / "plain.faiss").read_bytes()


def test_save_replaces_the_file_never_rewrites_it_in_place(tmp_path: Path) -> None:
    """A new save is a new inode: a reader holding the old file keeps reading the old bytes."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    before = rec.index_path.stat().st_ino
    with open(rec.index_path, "rb") as old:
        old_bytes = old.read()
        rec.save_index(make_index("Flat", seed=5))
        old.seek(0)
        assert old.read() == old_bytes
    assert rec.index_path.stat().st_ino != before


def test_save_with_sha256_verifies_too(tmp_path: Path) -> None:
    """The checksum algorithm is recorded; sha256 manifests verify like xxh3 ones."""
    rec = _rec(tmp_path, checksum="sha256")
    rec.save_index(make_index("IVF"))
    assert json.loads(rec.manifest_path.read_text())["checksum_algorithm"] == "sha256"
    assert rec.diagnose().ok
    _flip(rec.index_path)
    assert not rec.diagnose().ok


def test_save_refuses_wrong_dimension_and_non_index(tmp_path: Path) -> None:
    """A save of an index of another dimension, or of something else, is refused; nothing is written."""
    rec = _rec(tmp_path)
    with pytest.raises(ValueError, match="dimension 8"):
        rec.save_index(make_index("Flat", d=8))
    with pytest.raises(TypeError):
        rec.save_index(object())
    assert not rec.index_path.exists()


def test_folders_created_by_save_and_backup_are_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data or backup folder the library creates has its parent fsynced (else a power cut can
    lose the folder, with the fsynced index inside it)."""
    from safla_diag.vector import _fs

    synced: list[Path] = []
    real = _fs.fsync_dir

    def recording(folder: Path) -> None:
        synced.append(Path(folder))
        real(folder)

    monkeypatch.setattr(_fs, "fsync_dir", recording)
    rec = VectorIndexRecovery(tmp_path / "a" / "data", tmp_path / "b" / "backups")
    rec.save_index(make_index("Flat"))
    assert {tmp_path, tmp_path / "a"} <= set(synced)
    rec.backup_index()
    assert {tmp_path / "b"} <= set(synced)
    assert rec.diagnose().ok and len(rec.list_backups()) == 1


def test_orphaned_temp_files_are_removed_on_start(tmp_path: Path) -> None:
    """Temp files of a dead writer go at start; a live process's temp files are left alone."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    dead = rec.data_dir / f".vector_index.faiss.tmp-{_dead_pid()}-0123abcd"
    mine = rec.data_dir / f".vector_index.faiss.tmp-{os.getpid()}-0123abcd"
    backup_orphan = tmp_path / "backups" / f".vector_index.faiss.backup.tmp-{_dead_pid()}-89abcdef"
    # Another index's unfinished backup in a shared backup folder is its own business too.
    other_backup = tmp_path / "backups" / f".other.faiss.backup.tmp-{_dead_pid()}-89abcdef"
    other_backup.mkdir(parents=True)
    backup_orphan.mkdir(parents=True)
    (backup_orphan / "vector_index.faiss").write_bytes(b"partial")
    dead.write_bytes(b"half an index")
    mine.write_bytes(b"in flight")
    dead_manifest = rec.data_dir / f".vector_index.faiss.manifest.json.tmp-{_dead_pid()}-0123abcd"
    dead_manifest.write_bytes(b"{")
    # Another index in the same folder has its own lock: its temp files are its own business.
    other = rec.data_dir / f".other.faiss.tmp-{_dead_pid()}-0123abcd"
    other.write_bytes(b"another index's save, maybe alive in another container")
    _rec(tmp_path)
    assert not dead.exists() and not backup_orphan.exists() and not dead_manifest.exists()
    assert mine.exists() and other.exists() and other_backup.exists()
    mine.unlink()


def test_interrupted_save_after_the_swap_is_completed_on_start(tmp_path: Path) -> None:
    """New data in place but the manifest not yet committed: diagnose is ok, start rolls forward."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    old_manifest = rec.manifest_path.read_bytes()
    rec.save_index(make_index("Flat", seed=9))
    # Recreate the state of a crash between the data swap and the manifest commit.
    rec.manifest_path.rename(rec.next_manifest_path)
    rec.manifest_path.write_bytes(old_manifest)
    health = rec.diagnose()
    assert health.ok and health.generation == 2
    assert any("interrupted" in n for n in health.notes)
    _rec(tmp_path)
    assert not rec.next_manifest_path.exists()
    assert json.loads(rec.manifest_path.read_text())["generation"] == 2


def test_interrupted_save_before_the_swap_is_rolled_back_on_start(tmp_path: Path) -> None:
    """A next manifest whose data never arrived is discarded; the old index stands."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    m = Manifest.read(rec.manifest_path)
    assert m is not None
    m.evolve(generation=2, files={"vector_index.faiss": {"size": 1, "checksum": "00"}}).write(
        rec.next_manifest_path
    )
    assert rec.diagnose().ok
    _rec(tmp_path)
    assert not rec.next_manifest_path.exists()
    assert rec.diagnose().generation == 1


# ---------------------------------------------------------------------------------- diagnose


def test_missing_index_is_reported_with_advice(tmp_path: Path) -> None:
    """No file: not ok, the problem says missing, the advice says restore or rebuild."""
    health = _rec(tmp_path).diagnose()
    assert not health.ok and not health
    assert "missing" in (health.problem or "")
    assert "restore" in (health.advice or "")
    assert _rec(tmp_path).detect_corruption() is True


def test_advice_is_runnable_as_printed(tmp_path: Path) -> None:
    """The advice names this index's folder (shell-quoted) and its non-default flags, not DIR."""
    data = tmp_path / "my data"
    health = VectorIndexRecovery(data, data / "backups").diagnose()
    assert f"safla-diag vector restore '{data}')" in (health.advice or "")
    assert " DIR" not in (health.advice or "")
    other = VectorIndexRecovery(data, tmp_path / "bk", index_file="x.faiss").diagnose()
    assert f"restore '{data}' --backup-dir {tmp_path / 'bk'} --index-file x.faiss" in (
        other.advice or ""
    )


def test_empty_index_is_healthy(tmp_path: Path) -> None:
    """An index with no vectors is healthy, cheap and deep."""
    rec = _rec(tmp_path)
    rec.save_index(faiss.IndexFlatL2(DIM))
    assert rec.diagnose().ok
    deep = rec.diagnose(deep=True)
    assert deep.ok and deep.deep and deep.ntotal == 0
    assert rec.detect_corruption() is False


def test_deep_diagnose_reports_class_dimension_ntotal_metric_and_canaries(tmp_path: Path) -> None:
    """The isolated load reports what is inside and runs the canary queries."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("IDMap2"))
    health = rec.diagnose(deep=True)
    assert health.ok, health.to_text()
    names = [c.name for c in health.checks]
    assert {"checksum", "isolated load", "matches manifest", "canaries"} <= set(names)
    assert (health.index_class, health.dimension, health.ntotal, health.metric) == (
        "IndexIDMap2",
        DIM,
        300,
        "inner_product",
    )


def test_truncated_file_names_the_size_check(tmp_path: Path) -> None:
    """A short file fails the size check, saying how many bytes are missing."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    data = rec.index_path.read_bytes()
    rec.index_path.write_bytes(data[:-10])
    health = rec.diagnose()
    assert health.failed_check is not None and health.failed_check.name == "size"
    assert "10 bytes missing" in (health.problem or "")
    rec.index_path.write_bytes(data + b"xx")
    assert "2 bytes of garbage appended" in (rec.diagnose().problem or "")


def test_a_read_error_while_hashing_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad sector (EIO) under the index is a finding of the health check, not an exception."""
    import errno

    from safla_diag.vector import _diagnose

    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))

    def failing(path: object, algorithm: str = "xxh3_128") -> tuple[int, str]:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(_diagnose, "hash_file", failing)
    health = rec.diagnose()
    assert not health.ok and health.checksum_ok is False
    assert health.failed_check is not None and health.failed_check.name == "checksum"
    assert "Input/output error" in (health.problem or "")
    assert rec.detect_corruption()


def test_damaged_manifest_is_reported(tmp_path: Path) -> None:
    """An edited or damaged manifest fails its own checksum: the index cannot be verified."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    body = json.loads(rec.manifest_path.read_text())
    body["index"]["ntotal"] = 5
    rec.manifest_path.write_text(json.dumps(body))
    health = rec.diagnose()
    assert not health.ok and "manifest" in (health.problem or "")
    assert health.checksum_ok is None


def test_file_without_manifest_is_checked_in_isolation(tmp_path: Path) -> None:
    """A file written by faiss directly is loaded in a child; the report says it is unverified."""
    rec = _rec(tmp_path)
    rec.data_dir.mkdir(parents=True)
    faiss.write_index(make_index("IVF"), str(rec.index_path))
    health = rec.diagnose()
    assert health.ok and health.deep and health.checksum_ok is None
    assert any("checksum could not be verified" in n for n in health.notes)
    assert (health.ntotal, health.index_class) == (300, "IndexIVFFlat")


def test_wrong_dimension_is_unusable(tmp_path: Path) -> None:
    """An index of another dimension than the host's is reported, with what to do."""
    VectorIndexRecovery(tmp_path / "data", tmp_path / "b").save_index(make_index("Flat", d=8))
    health = _rec(tmp_path).diagnose()
    assert not health.ok
    assert "dimension 8 but the host expects 16" in (health.problem or "")
    assert "rebuild" in (health.advice or "")


def test_canary_failure_is_reported_when_the_data_changed_under_a_valid_manifest(
    tmp_path: Path,
) -> None:
    """Canaries catch an index whose content differs from the one the manifest describes."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    canaries = Manifest.read(rec.manifest_path)
    assert canaries is not None
    # Another index of the same shape, with its own checksum but the first one's canaries.
    rec.save_index(make_index("Flat", seed=42))
    m = Manifest.read(rec.manifest_path)
    assert m is not None
    m.evolve(canaries=canaries.canaries).write(rec.manifest_path)
    health = rec.diagnose(deep=True)
    assert not health.ok and health.failed_check is not None
    assert health.failed_check.name == "canaries"


def test_backup_info_outputs_are_redacted() -> None:
    """A BackupInfo's text, dict, JSON and HTML never show a secret found in its path or problem."""
    info = BackupInfo(
        path="/mnt/token=hunter2/b",
        name="20260101T000000.000000Z-g000001",
        problem="api_key=hunter2",
    )
    outputs = (info.to_text(), info.to_json(), info._repr_html_(), repr(info))
    assert all("hunter2" not in out for out in outputs)
    assert "UNUSABLE" in info.to_text() and info.to_dict()["ok"] is False
    health = IndexHealth(ok=False, problem="manifest: token=hunter2", path="/data/x")
    outputs = (health.to_text(), health.to_json(), health._repr_html_(), repr(health))
    assert all("hunter2" not in out for out in outputs)


def test_health_report_formats(tmp_path: Path) -> None:
    """to_text, to_dict, to_json, _repr_html_ and a short repr."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    _flip(rec.index_path)
    health = rec.diagnose()
    assert isinstance(health, IndexHealth)
    assert repr(health) == "<IndexHealth ok=False problem='checksum' ntotal=300>"
    assert json.loads(health.to_json())["checks"][-1]["name"] == "checksum"
    assert "UNHEALTHY" in health.to_text() and "what to do" in health.to_text()
    assert "<table>" in health._repr_html_()


# ------------------------------------------------------------------------------------- load


def test_load_index_returns_the_verified_index(tmp_path: Path) -> None:
    """load_index verifies, loads with the byte limit, and restores faiss's global limit."""
    rec = _rec(tmp_path)
    original = make_index("HNSW")
    rec.save_index(original)
    limit = faiss.get_deserialization_vector_byte_limit()
    loaded = rec.load_index()
    assert faiss.get_deserialization_vector_byte_limit() == limit
    assert loaded.ntotal == original.ntotal
    q = np.ones((1, DIM), dtype=np.float32)
    assert (loaded.search(q, 5)[1] == original.search(q, 5)[1]).all()


def test_load_index_refuses_a_damaged_file(tmp_path: Path) -> None:
    """A damaged file is never loaded in the host: IndexCorruptionError names the problem."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    _flip(rec.index_path, 40)
    with pytest.raises(IndexCorruptionError, match="checksum"):
        rec.load_index()


def test_load_index_of_a_verified_file_faiss_cannot_read_is_index_corruption(
    tmp_path: Path,
) -> None:
    """Bytes that match their manifest but that this faiss cannot read (another faiss wrote them,
    or the manifest was rewritten over damage) raise IndexCorruptionError, chained to faiss's."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    garbage = b"IxF2" + bytes(range(256)) * 40
    rec.index_path.write_bytes(garbage)
    m = Manifest.read(rec.manifest_path)
    assert m is not None
    size, digest = hash_file(rec.index_path)
    m.evolve(files={"vector_index.faiss": {"size": size, "checksum": digest}}).write(
        rec.manifest_path
    )
    assert rec.diagnose().ok  # the cheap check only vouches for the bytes
    with pytest.raises(IndexCorruptionError, match="faiss cannot read") as info:
        rec.load_index()
    assert isinstance(info.value.__cause__, RuntimeError)


def test_load_index_without_manifest_checks_in_a_child_first(tmp_path: Path) -> None:
    """No manifest: the isolated load vouches for the file before it is loaded here."""
    rec = _rec(tmp_path)
    rec.data_dir.mkdir(parents=True)
    data = bytes(faiss.serialize_index(make_index("Flat")))
    rec.index_path.write_bytes(data[:70])
    with pytest.raises(IndexCorruptionError):
        rec.load_index()
    rec.index_path.write_bytes(data)
    assert rec.load_index().ntotal == 300


# ------------------------------------------------------------------------------- backups


def test_backup_is_verified_immutable_and_named_by_time(tmp_path: Path) -> None:
    """Each backup is a folder with the index and its manifest; names are unique and sort by time."""
    rec = _rec(tmp_path, keep_backups=10)
    rec.save_index(make_index("Flat"))
    paths = [rec.backup_index() for _ in range(3)]
    assert len(set(paths)) == 3 and paths == sorted(paths)
    for p in paths:
        assert sorted(os.listdir(p)) == ["manifest.json", "vector_index.faiss"]
        assert Path(p, "vector_index.faiss").read_bytes() == rec.index_path.read_bytes()
    infos = rec.list_backups(verify=True)
    assert [i.path for i in infos] == paths[::-1]
    assert all(isinstance(i, BackupInfo) and i.ok and i.verified for i in infos)
    assert infos[0].ntotal == 300 and "ok=True" in repr(infos[0])


def test_backup_retention_keeps_the_newest(tmp_path: Path) -> None:
    """Only the newest keep_backups remain."""
    rec = _rec(tmp_path, keep_backups=2)
    rec.save_index(make_index("Flat"))
    paths = [rec.backup_index() for _ in range(4)]
    assert [i.path for i in rec.list_backups()] == paths[:1:-1]


def test_backup_of_a_damaged_index_is_refused(tmp_path: Path) -> None:
    """A damaged live index is never backed up (it would push good backups out)."""
    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    _flip(rec.index_path)
    with pytest.raises(IndexCorruptionError, match="damaged"):
        rec.backup_index()
    assert rec.list_backups() == []
    assert [p for p in (tmp_path / "backups").iterdir() if not p.name.startswith(".")] == []


def test_backup_of_a_file_without_manifest_checks_it_first(tmp_path: Path) -> None:
    """A foreign file is backed up after a deep check, with a manifest built from what it holds."""
    rec = _rec(tmp_path)
    rec.data_dir.mkdir(parents=True)
    faiss.write_index(make_index("Flat"), str(rec.index_path))
    path = rec.backup_index()
    info = rec.list_backups(verify=True)[0]
    assert info.path == path and info.verified and info.ntotal == 300
    rec.index_path.write_bytes(b"\x00" * 100)
    with pytest.raises(IndexCorruptionError):
        rec.backup_index()


# ------------------------------------------------------------------------------- restore


def _three_generations(rec: VectorIndexRecovery) -> list[str]:
    paths = []
    for n in (100, 200, 300):
        rec.save_index(make_index("Flat", n=n))
        paths.append(rec.backup_index())
    return paths


def test_restore_skips_a_damaged_newest_backup_and_names_it(tmp_path: Path) -> None:
    """Newest backup damaged: the next good one is restored, the damaged one is reported."""
    rec = _rec(tmp_path)
    paths = _three_generations(rec)
    _flip(Path(paths[-1]) / "vector_index.faiss")
    _flip(rec.index_path)
    assert rec.detect_corruption()
    assert rec.restore_from_backup() is True
    assert [s.path for s in rec.last_restore_skipped] == [paths[-1]]
    assert "checksum" in (rec.last_restore_skipped[0].problem or "")
    assert rec.last_restored is not None and rec.last_restored.path == paths[1]
    health = rec.diagnose(deep=True)
    assert health.ok and health.ntotal == 200
    aside = [p.name for p in rec.data_dir.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1  # the broken index is kept, not deleted


def test_restore_skips_incomplete_and_truncated_backups(tmp_path: Path) -> None:
    """A backup without a manifest or with a short file is skipped with its reason."""
    rec = _rec(tmp_path)
    paths = _three_generations(rec)
    (Path(paths[2]) / "manifest.json").unlink()
    p1 = Path(paths[1]) / "vector_index.faiss"
    p1.write_bytes(p1.read_bytes()[:-1])
    assert rec.restore_from_backup()
    problems = [s.problem or "" for s in rec.last_restore_skipped]
    assert "no manifest" in problems[0] and "bytes" in problems[1]
    assert rec.diagnose().ntotal == 100


def test_restore_with_no_good_backup_leaves_the_index_alone(tmp_path: Path) -> None:
    """Every backup damaged: False, and the live index (even broken) is still there, untouched."""
    rec = _rec(tmp_path)
    paths = _three_generations(rec)
    for p in paths:
        _flip(Path(p) / "vector_index.faiss")
    before = rec.index_path.read_bytes()
    assert rec.restore_from_backup() is False
    assert len(rec.last_restore_skipped) == 3
    assert rec.index_path.read_bytes() == before
    assert [p for p in rec.data_dir.iterdir() if ".tmp-" in p.name] == []


def test_restore_that_cannot_keep_the_old_index_aside_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hard links and the disk fills while copying the broken index aside: the restore fails
    with the OSError, the live index is untouched, and no partial copy or pending manifest stays."""
    import errno
    import shutil

    rec = _rec(tmp_path)
    _three_generations(rec)
    _flip(rec.index_path)
    before = sorted(os.listdir(rec.data_dir))
    live = rec.index_path.read_bytes()

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    def disk_full(src: object, dst: object) -> None:
        Path(str(dst)).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copy2", disk_full)
    with pytest.raises(OSError, match="No space"):
        rec.restore_from_backup()
    assert sorted(os.listdir(rec.data_dir)) == before
    assert rec.index_path.read_bytes() == live
    monkeypatch.undo()

    # Kept aside (a hard link) but the disk is full for the manifest: the spare name goes too.
    from safla_diag.vector import _manifest

    def manifest_disk_full(final: Path, data: bytes, *, sync_dir: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_manifest, "atomic_write_bytes", manifest_disk_full)
    with pytest.raises(OSError, match="No space"):
        rec.restore_from_backup()
    assert sorted(os.listdir(rec.data_dir)) == before
    assert rec.index_path.read_bytes() == live


def test_restore_into_an_empty_folder(tmp_path: Path) -> None:
    """The live index is gone entirely: restore brings it back."""
    rec = _rec(tmp_path)
    _three_generations(rec)
    rec.index_path.unlink()
    rec.manifest_path.unlink()
    assert rec.restore_from_backup()
    assert rec.diagnose().ok


def test_restore_a_chosen_backup_and_refuse_paths_outside(tmp_path: Path) -> None:
    """backup_path picks one; a path outside the backup folder is refused."""
    rec = _rec(tmp_path)
    paths = _three_generations(rec)
    assert rec.restore_from_backup(paths[0])
    assert rec.diagnose().ntotal == 100
    assert "replaced-" in " ".join(os.listdir(rec.data_dir))  # the healthy one was kept too
    assert rec.restore_from_backup(Path(paths[1]) / "vector_index.faiss")
    assert rec.diagnose().ntotal == 200
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for bad in (outside, tmp_path / "backups" / ".." / "elsewhere", "/", rec.data_dir):
        with pytest.raises(RecoveryError, match="refusing"):
            rec.restore_from_backup(bad)


def test_restore_refuses_folders_in_the_backup_folder_that_are_not_backups(tmp_path: Path) -> None:
    """Only a backup generation can be restored: an unfinished backup (temp folder), a backup
    being deleted by retention, or any other folder in the backup folder is refused."""
    import shutil

    rec = _rec(tmp_path)
    good = Path(_three_generations(rec)[-1])
    for name in (
        f".vector_index.faiss.backup.tmp-{os.getpid()}-0123abcd",
        f".vector_index.faiss.{good.name}.tmp-1-89abcdef",
        "mine",
    ):
        shutil.copytree(good, good.parent / name)
        with pytest.raises(RecoveryError, match="refusing"):
            rec.restore_from_backup(good.parent / name)
        shutil.rmtree(good.parent / name)
    assert rec.restore_from_backup(good.name)  # a bare name is looked up in the backup folder


def test_indexes_sharing_a_backup_folder_never_get_each_others_backups(tmp_path: Path) -> None:
    """Two indexes in one folder share the default backup folder: each restores, lists and
    prunes only its own backups (restoring the other's would hand out another index's memory)."""
    backups = tmp_path / "data" / "backups"
    a = VectorIndexRecovery(tmp_path / "data", backups, index_file="a.faiss", keep_backups=1)
    b = VectorIndexRecovery(tmp_path / "data", backups, index_file="b.faiss", keep_backups=1)
    a.save_index(make_index("Flat", n=100))
    b.save_index(make_index("Flat", n=200))
    a_backup = a.backup_index()
    b_backup = b.backup_index()  # newer, and keep_backups=1: must not prune a's
    assert [i.path for i in a.list_backups()] == [a_backup]
    assert [i.path for i in b.list_backups()] == [b_backup]
    _flip(a.index_path)
    assert a.restore_from_backup()
    assert a.last_restored is not None and a.last_restored.path == a_backup
    assert a.diagnose(deep=True).ntotal == 100 and b.diagnose().ntotal == 200


def test_restore_bumps_the_generation_and_records_where_from(tmp_path: Path) -> None:
    """The restored manifest is a new generation that says which backup it came from."""
    rec = _rec(tmp_path)
    paths = _three_generations(rec)
    assert rec.restore_from_backup(paths[0])
    body = json.loads(rec.manifest_path.read_text())
    assert body["generation"] == 4 and body["restored_from"] == Path(paths[0]).name


# ------------------------------------------------------------------------------- rebuild


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW16"])
def test_rebuild_from_a_memory_mapped_npy(tmp_path: Path, factory: str) -> None:
    """Rebuild from .npy in batches with progress; the health check then passes (deep too)."""
    x = np.random.default_rng(3).standard_normal((1000, DIM)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    seen: list[tuple[int, int]] = []
    rec = _rec(tmp_path)
    assert rec.rebuild_index(
        tmp_path / "v.npy",
        factory=factory,
        batch_size=300,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(300, 1000), (600, 1000), (900, 1000), (1000, 1000)]
    health = rec.diagnose(deep=True)
    assert health.ok and health.ntotal == 1000 and health.metric == "inner_product"
    source = json.loads(rec.manifest_path.read_text())["source"]
    assert source["path"] == str((tmp_path / "v.npy").resolve())
    # Cosine: stored vectors are normalised, so a vector's best match is itself with score 1.
    index = rec.load_index()
    q = x[:5] / np.linalg.norm(x[:5], axis=1, keepdims=True)
    dist, ids = index.search(q, 1)
    if factory == "Flat":
        assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
        assert np.allclose(dist[:, 0], 1.0, atol=1e-5)


def test_rebuild_with_ids_uses_idmap2_and_l2(tmp_path: Path) -> None:
    """Ids wrap the index in IndexIDMap2; an l2 metric keeps the vectors as they are."""
    x = np.random.default_rng(4).standard_normal((500, DIM)).astype(np.float32)
    ids = np.arange(10_000, 10_500, dtype=np.int64)
    rec = _rec(tmp_path)
    rec.rebuild_index(x, ids=ids, metric="l2")
    index = rec.load_index()
    assert type(index).__name__ == "IndexIDMap2"
    assert index.search(x[7:8], 1)[1][0, 0] == 10_007


def test_rebuild_from_the_recorded_source(tmp_path: Path) -> None:
    """With no source given, the one recorded in the manifest is used."""
    x = np.random.default_rng(5).standard_normal((200, DIM)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    rec = _rec(tmp_path)
    rec.rebuild_index(tmp_path / "v.npy")
    rec.index_path.write_bytes(b"garbage")
    assert rec.detect_corruption()
    assert rec.rebuild_index()
    assert rec.diagnose().ok


def test_rebuild_rejects_bad_input(tmp_path: Path) -> None:
    """NaN vectors, wrong dimension, bad ids, unknown metric or factory: clear errors, no write."""
    rec = _rec(tmp_path)
    x = np.random.default_rng(6).standard_normal((50, DIM)).astype(np.float32)
    bad = x.copy()
    bad[17, 3] = np.nan
    with pytest.raises(RecoveryError, match="vector 17"):
        rec.rebuild_index(bad)
    with pytest.raises(ValueError, match="dimension"):
        rec.rebuild_index(x[:, :8])
    with pytest.raises(ValueError, match="unique"):
        rec.rebuild_index(x, ids=np.zeros(50, dtype=np.int64))
    with pytest.raises(ValueError, match="metric"):
        rec.rebuild_index(x, metric="hamming")
    with pytest.raises(ValueError, match="faiss cannot build") as built:
        rec.rebuild_index(x, factory="NoSuchThing")
    assert isinstance(built.value.__cause__, RuntimeError)  # faiss's own words stay reachable
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"not a readable \.npy") as loaded:
        rec.rebuild_index(tmp_path / "bad.npy")
    assert loaded.value.__cause__ is not None
    with pytest.raises(RecoveryError, match="no source"):
        rec.rebuild_index()
    with pytest.raises(ValueError, match="shape"):
        rec.rebuild_index(np.zeros(10, dtype=np.float32))
    assert not rec.index_path.exists()


def test_constructor_validates_arguments(tmp_path: Path) -> None:
    """Bad arguments are plain ValueErrors."""
    for kw in (
        {"keep_backups": 0},
        {"keep_backups": True},
        {"dimension": 0},
        {"dimension": True},
        {"index_file": "a/b"},
        {"checksum": "md5"},
    ):
        with pytest.raises(ValueError):
            VectorIndexRecovery(tmp_path, tmp_path / "b", **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- async


@pytest.mark.anyio
async def test_async_twins_run_off_the_loop(tmp_path: Path) -> None:
    """asave_index, adiagnose, abackup_index, arestore_from_backup work from a running loop."""
    rec = _rec(tmp_path)
    await rec.asave_index(make_index("Flat"))
    assert (await rec.adiagnose()).ok
    assert not await rec.adetect_corruption()
    path = await rec.abackup_index()
    assert [b.path for b in await rec.alist_backups()] == [path]
    _flip(rec.index_path)
    assert await rec.arestore_from_backup()
    assert (await rec.aload_index()).ntotal == 300


@pytest.mark.anyio
async def test_async_twins_run_in_the_executor_with_the_callers_contextvars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocking work runs on another thread than the loop's, and sees the caller's contextvars."""
    import contextvars
    import threading

    var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")
    seen: list[tuple[str, int]] = []
    rec = _rec(tmp_path)
    real = rec.diagnose

    def spy(*, deep: bool = False, progress: object = None) -> IndexHealth:
        seen.append((var.get(), threading.get_ident()))
        return real(deep=deep)

    monkeypatch.setattr(rec, "diagnose", spy)
    var.set("req-42")
    assert not (await rec.adiagnose()).ok
    assert seen == [("req-42", seen[0][1])] and seen[0][1] != threading.get_ident()


@pytest.mark.parametrize("with_ids", [False, True])
def test_large_flat_index_canaries_run_over_a_subset(tmp_path: Path, with_ids: bool) -> None:
    """Past 50 000 vectors a flat index's canaries search an evenly spaced subset; they still pass,
    and they still catch an index that is not the one saved."""
    x = np.random.default_rng(8).standard_normal((60_000, DIM)).astype(np.float32)
    ids = np.arange(60_000, dtype=np.int64) * 3 if with_ids else None
    rec = _rec(tmp_path)
    rec.rebuild_index(x, ids=ids, metric="l2", batch_size=25_000)
    body = json.loads(rec.manifest_path.read_text())
    assert body["canaries"]["subset"] == 8192
    health = rec.diagnose(deep=True)
    assert health.ok, health.to_text()
    canaries = Manifest.read(rec.manifest_path)
    assert canaries is not None
    rec.rebuild_index(x[::-1].copy(), ids=ids, metric="l2")
    m = Manifest.read(rec.manifest_path)
    assert m is not None
    m.evolve(canaries=canaries.canaries).write(rec.manifest_path)
    assert rec.diagnose(deep=True).failed_check.name == "canaries"  # type: ignore[union-attr]


def test_start_up_clean_up_waits_for_no_one_and_spares_a_busy_writer(tmp_path: Path) -> None:
    """While another writer holds the folder's lock (maybe in a container whose pids we cannot
    see), a new instance leaves temp files alone and does not block; the next start cleans up."""
    from safla_diag.vector._fs import folder_lock

    rec = _rec(tmp_path)
    rec.save_index(make_index("Flat"))
    orphan = rec.data_dir / f".vector_index.faiss.tmp-{_dead_pid()}-0123abcd"
    orphan.write_bytes(b"someone else's save")
    with folder_lock(rec.data_dir, rec.index_file) as held:
        assert held
        assert _rec(tmp_path).diagnose().ok
        assert orphan.exists()
    _rec(tmp_path)
    assert not orphan.exists()


def test_reports_follow_the_report_contract_and_stay_redacted(tmp_path: Path) -> None:
    """IndexHealth and BackupInfo are Reports: dict, JSON, text and HTML, none showing a secret."""
    from safla_diag._report import Report

    secret = "hunter2hunter2"
    rec = VectorIndexRecovery(tmp_path / f"password={secret}", tmp_path / "backups", dimension=DIM)
    rec.save_index(make_index("Flat"))
    rec.backup_index()
    _flip(rec.index_path)
    health = rec.diagnose()
    (info,) = rec.list_backups(verify=True)
    for report in (health, info):
        assert isinstance(report, Report)
        rendered = [
            json.dumps(report.to_dict()),
            report.to_json(),
            report.to_json(indent=None, sort_keys=True),
            report.to_text(),
            report._repr_html_(),
            repr(report),
        ]
        assert json.loads(report.to_json()) == json.loads(json.dumps(report.to_dict()))
        assert all(secret not in text for text in rendered)
    html = health._repr_html_()
    assert "<table>" in html and "checksum" in html and "#cf222e" in html
