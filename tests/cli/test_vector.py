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


def _on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a real pseudo-terminal; (exit code, stdout, stderr)."""
    import os
    import pty
    import subprocess
    import sys

    from ..conftest import cli_env

    master, slave = pty.openpty()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "safla_diag", *args],
            stdout=subprocess.PIPE, stderr=slave, env=cli_env(), timeout=60, check=False,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return r.returncode, r.stdout.decode(), b"".join(chunks).decode("utf-8", "replace")


def test_progress_shows_on_a_terminal_and_never_with_json_or_a_pipe(tmp_path: Path) -> None:
    """backup and restore draw a progress line on a terminal's stderr; --json and pipes get none."""
    data = str(tmp_path / "data")
    src = _vectors(tmp_path, n=20_000, d=32)
    assert run_cli("vector", "rebuild-index", data, "--from", str(src)).returncode == 0
    code, out, err = _on_a_terminal("vector", "backup", data)
    assert code == 0 and "backed up" in out
    assert "backup" in err and "%" in err  # the shared progress bar (drawn, then cleared)
    code, out, err = _on_a_terminal("vector", "backup", data, "--json")
    assert code == 0 and json.loads(out)["ok"] and err == ""
    r = run_cli("vector", "restore", data, "--backup-dir", str(Path(data, "backups")))
    assert r.returncode == 0 and r.stderr == ""
    code, out, err = _on_a_terminal("vector", "health-check", data, "--deep")
    assert code == 0 and "deep check" in err


def test_a_langchain_folder_from_the_command_line(tmp_path: Path) -> None:
    """--index-file index.faiss --sidecar index.pkl: backed up and restored as one bundle."""
    import pickle

    import faiss

    store = tmp_path / "store"
    store.mkdir()
    index = faiss.IndexFlatL2(8)
    index.add(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    faiss.write_index(index, str(store / "index.faiss"))
    pkl = pickle.dumps(({"a": 1}, {0: "a"}))
    (store / "index.pkl").write_bytes(pkl)
    flags = ("--index-file", "index.faiss", "--sidecar", "index.pkl")
    assert run_cli("vector", "health-check", str(store), *flags).returncode == 0
    r = run_cli("vector", "backup", str(store), *flags, "--json")
    assert r.returncode == 0, r.stderr
    assert Path(json.loads(r.stdout)["backup"], "index.pkl").read_bytes() == pkl
    (store / "index.pkl").write_bytes(b"garbage")
    (store / "index.faiss").write_bytes(b"garbage")
    assert run_cli("vector", "restore", str(store), *flags).returncode == 0
    assert (store / "index.pkl").read_bytes() == pkl


def test_rebuild_a_binary_index_with_hamming(tmp_path: Path) -> None:
    """--metric hamming builds a binary index from uint8 codes; health-check --deep passes."""
    data = str(tmp_path / "data")
    codes = np.random.default_rng(0).integers(0, 256, (500, 16), dtype=np.uint8)
    np.save(tmp_path / "codes.npy", codes)
    r = run_cli(
        "vector", "rebuild-index", data, "--from", str(tmp_path / "codes.npy"),
        "--metric", "hamming", "--factory", "HNSW16", "--json",
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)["health"]
    assert doc["metric"] == "hamming" and doc["dimension"] == 128
    r = run_cli("vector", "health-check", data, "--deep", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["index_class"] == "IndexBinaryHNSW"
