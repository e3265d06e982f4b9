"""
Kill -9 of a process in the middle of save_index and of backup_index, at random moments: afterwards
the live index is always the old or the new one, whole, and diagnose() is ok; unfinished backups
never show up as backups, and the next start removes their leftovers.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safla_diag import VectorIndexRecovery
from safla_diag.vector._fs import hash_file

from ..conftest import cli_env

CHILD = r"""
import sys
import numpy as np, faiss
from safla_diag import VectorIndexRecovery

mode, data, backups = sys.argv[1:4]
rng = np.random.default_rng(0)
indexes = []
for seed in (1, 2):
    index = faiss.IndexFlatL2(32)
    index.add(np.random.default_rng(seed).standard_normal((30000, 32)).astype("float32"))
    indexes.append(index)
sidecars = ("ids.bin",) if mode == "bundle" else ()
rec = VectorIndexRecovery(data, backups, keep_backups=3, sidecars=sidecars)
sys.stdout.write("ready\n")
sys.stdout.flush()
i = 0
while True:
    if mode == "save":
        rec.save_index(indexes[i % 2], canaries=0)
    elif mode == "bundle":
        rec.save_index(indexes[i % 2], canaries=0, sidecars={"ids.bin": bytes([i % 2]) * 2**20})
    else:
        rec.backup_index()
    i += 1
"""


def _versions(tmp_path: Path) -> tuple[set[str], VectorIndexRecovery]:
    """Save both versions the child writes once, to know their checksums."""
    import faiss
    import numpy as np

    digests = set()
    rec = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups", keep_backups=3)
    for seed in (2, 1):  # the live index starts as version 1 (seed 1)
        index = faiss.IndexFlatL2(32)
        index.add(np.random.default_rng(seed).standard_normal((30000, 32)).astype("float32"))
        rec.save_index(index, canaries=0)
        digests.add(hash_file(rec.index_path)[1])
    return digests, rec


def _kill_at_random(mode: str, tmp_path: Path, rnd: random.Random) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(tmp_path / "data"), str(tmp_path / "backups")],
        stdout=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline() == b"ready\n", "child did not start"
        # A random moment within the next few saves (each takes a few to tens of milliseconds).
        time.sleep(rnd.uniform(0.0, 0.25))
        assert proc.poll() is None, "the child died on its own"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _save_trials(tmp_path: Path, trials: int) -> None:
    digests, rec = _versions(tmp_path)
    rnd = random.Random(1234)
    states: dict[str, int] = {"temp file left": 0, "save in flight (next manifest)": 0}
    for trial in range(trials):
        _kill_at_random("save", tmp_path, rnd)
        states["temp file left"] += any(".tmp-" in p.name for p in rec.data_dir.iterdir())
        states["save in flight (next manifest)"] += rec.next_manifest_path.exists()
        assert hash_file(rec.index_path)[1] in digests, f"trial {trial}: index is neither version"
        health = rec.diagnose(deep=trial == 0)
        assert health.ok, f"trial {trial}: {health.to_text()}"
        # The next start cleans up: no temp files, no pending manifest, still healthy.
        fresh = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups")
        leftovers = [p.name for p in fresh.data_dir.iterdir() if ".tmp-" in p.name]
        assert leftovers == [] and not fresh.next_manifest_path.exists()
        assert fresh.diagnose().ok
    print(f"\nkill -9 during save, {trials} trials; states seen after the kill: {states}")


def _backup_trials(tmp_path: Path, trials: int) -> None:
    _, rec = _versions(tmp_path)
    live = rec.index_path.read_bytes()
    rnd = random.Random(4321)
    unfinished = 0
    for trial in range(trials):
        _kill_at_random("backup", tmp_path, rnd)
        unfinished += any(p.name.startswith(".") for p in (tmp_path / "backups").iterdir())
        assert rec.index_path.read_bytes() == live
        assert rec.diagnose().ok
        infos = rec.list_backups(verify=True)
        assert all(i.ok for i in infos), f"trial {trial}: {[i.to_text() for i in infos]}"
        VectorIndexRecovery(tmp_path / "data", tmp_path / "backups", keep_backups=3)
        hidden = [p.name for p in (tmp_path / "backups").iterdir() if p.name.startswith(".")]
        assert hidden == [], f"trial {trial}: leftovers {hidden}"
    print(f"\nkill -9 during backup, {trials} trials; unfinished backups seen: {unfinished}")
    if not rec.list_backups():  # on a loaded machine every kill may land mid-backup
        rec.backup_index()
    assert rec.restore_from_backup()
    assert rec.diagnose(deep=True).ok


def test_kill_during_a_bundle_save_never_mixes_index_and_sidecar(tmp_path: Path) -> None:
    """kill -9 while index and sidecar are saved together: after the next start the sidecar is
    always the one saved with the index that is there (version 1 with 1s, version 2 with 0s)."""
    import faiss
    import numpy as np

    versions = {}
    for seed in (1, 2):  # the child saves version 1 with 0s, version 2 with 1s, in turn
        index = faiss.IndexFlatL2(32)
        index.add(np.random.default_rng(seed).standard_normal((30000, 32)).astype("float32"))
        versions[bytes(faiss.serialize_index(index))] = bytes([seed - 1]) * 2**20
    start = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups", sidecars=("ids.bin",))
    start.save_index(index, canaries=0, sidecars={"ids.bin": bytes([1]) * 2**20})
    rnd = random.Random(99)
    for trial in range(3):
        _kill_at_random("bundle", tmp_path, rnd)
        fresh = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups", sidecars=("ids.bin",))
        assert fresh.diagnose().ok, f"trial {trial}: {fresh.diagnose().to_text()}"
        expected = versions[fresh.index_path.read_bytes()]
        assert fresh.read_sidecar("ids.bin") == expected, f"trial {trial}: a mixed bundle"


def test_kill_during_save_leaves_old_or_new_index(tmp_path: Path) -> None:
    """A handful of kill -9 at random moments of save_index: always a whole, healthy index."""
    _save_trials(tmp_path, trials=3)


def test_kill_during_backup_leaves_no_damaged_backup(tmp_path: Path) -> None:
    """A handful of kill -9 at random moments of backup_index: the live index is untouched,
    every listed backup verifies, leftovers are removed on the next start."""
    _backup_trials(tmp_path, trials=3)


@pytest.mark.slow
def test_kill_during_save_many_trials(tmp_path: Path) -> None:
    """Many kill -9 trials during save_index."""
    _save_trials(tmp_path, trials=40)


@pytest.mark.slow
def test_kill_during_backup_many_trials(tmp_path: Path) -> None:
    """Many kill -9 trials during backup_index."""
    _backup_trials(tmp_path, trials=40)
