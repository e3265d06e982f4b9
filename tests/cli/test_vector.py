"""`safla-diag vector ...` as a real subprocess: exit codes scripts and Kubernetes probes rely on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..conftest import run_cli


def _vectors(tmp_path: Path, n: int = 400, d: int = 8) -> Path:
    path = tmp_path / "vectors.npy"
    np.save(path, np.random.default_rng(0).standard_normal((n, d)).astype(np.float32))
    return path


def test_health_check_of_a_missing_index_exits_1(tmp_path: Path) -> None:
    """No index: unhealthy (1), with the reason and what to do."""
    result = run_cli("vector", "health-check", str(tmp_path / "data"))
    assert result.returncode == 1
    assert "missing" in result.stdout and "what to do" in result.stdout


def test_rebuild_backup_check_damage_restore_round_trip(tmp_path: Path) -> None:
    """rebuild-index, backup, health-check (0), damage (1), restore (0), health-check (0)."""
    data = str(tmp_path / "data")
    src = _vectors(tmp_path)
    r = run_cli("vector", "rebuild-index", data, "--from", str(src), "--factory", "HNSW8")
    assert r.returncode == 0, r.stderr
    r = run_cli("vector", "backup", data, "--json")
    assert r.returncode == 0, r.stderr
    backup = json.loads(r.stdout)["backup"]
    assert Path(backup, "manifest.json").exists()
    r = run_cli("vector", "health-check", data, "--deep", "--json", "--dimension", "8")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["ntotal"] == 400 and doc["deep"]
    index = Path(data, "vector_index.faiss")
    index.write_bytes(index.read_bytes()[:-50])
    r = run_cli("vector", "health-check", data)
    assert r.returncode == 1 and "truncated" in r.stdout
    r = run_cli("vector", "backup", data)
    assert r.returncode == 1 and "refused" in r.stdout
    r = run_cli("vector", "restore", data, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["restored"] == Path(backup).name
    assert run_cli("vector", "health-check", data).returncode == 0
    r = run_cli("vector", "list-backups", data, "--verify")
    assert r.returncode == 0 and "verified" in r.stdout


def test_restore_without_backups_exits_1(tmp_path: Path) -> None:
    """Nothing to restore from: failed (1), said plainly."""
    r = run_cli("vector", "restore", str(tmp_path / "data"))
    assert r.returncode == 1 and "nothing restored" in r.stdout


def test_restore_refuses_a_backup_outside_the_backup_folder(tmp_path: Path) -> None:
    """--backup outside the backup folder: one-line error, exit 2."""
    r = run_cli("vector", "restore", str(tmp_path / "data"), "--backup", str(tmp_path))
    assert r.returncode == 2
    assert "refusing" in r.stderr and "Traceback" not in r.stderr


def test_rebuild_from_vectors_with_nan_fails_with_exit_1(tmp_path: Path) -> None:
    """Source vectors holding NaN are a failed rebuild (1), naming the vector, not a usage error."""
    bad = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    bad[7, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    r = run_cli(
        "vector", "rebuild-index", str(tmp_path / "data"), "--from", str(tmp_path / "bad.npy")
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "vector 7" in r.stdout and "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "vector_index.faiss").exists()


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    """Missing --from, a missing file, a bad number, a bad factory: exit 2, one line."""
    data = str(tmp_path / "data")
    cases = [
        ("vector", "rebuild-index", data),
        ("vector", "rebuild-index", data, "--from", str(tmp_path / "nope.npy")),
        ("vector", "health-check", data, "--dimension", "zero"),
        ("vector", "rebuild-index", data, "--from", str(_vectors(tmp_path)), "--factory", "Nope"),
        ("vector",),
        ("vector", "health-check", data, "--index-file", "a/b"),
    ]
    for args in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr


def test_help_lists_the_actions() -> None:
    """`vector --help` names every action."""
    r = run_cli("vector", "--help")
    assert r.returncode == 0
    for action in ("health-check", "backup", "restore", "rebuild-index", "list-backups"):
        assert action in r.stdout
