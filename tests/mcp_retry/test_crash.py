"""SIGKILL crash trials: the queue file survives a kill at any moment, losing and duplicating nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._crash import check

HELPER = Path(__file__).with_name("_crash.py")


def _run_trials(tmp_path: Path, trials: int, seed: int) -> list[dict[str, object]]:
    db, ledger = tmp_path / "q.db", tmp_path / "ledger.txt"
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(db), str(ledger), str(trials), str(seed)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == trials
    problems, counts = check(str(db), str(ledger))
    assert problems == [], problems
    assert counts["saved"] > 0 and counts["acked"] > 0
    return results


def _assert_clean(results: list[dict[str, object]]) -> None:
    for r in results:
        assert r["killed"] is True, r
        assert r["problems"] == [], r


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """30 workers killed with SIGKILL mid-loop: no ack undone, no save lost, no task twice, file readable."""
    results = _run_trials(tmp_path, trials=30, seed=1)
    _assert_clean(results)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_soak(tmp_path: Path) -> None:
    """The same, 300 trials."""
    results = _run_trials(tmp_path, trials=300, seed=2)
    _assert_clean(results)


def test_sigkill_after_a_blocking_save_returns_loses_nothing(tmp_path: Path) -> None:
    """
    A loop-less child saves with ``save_failed_task_sync`` and reports each id once the call
    returns; a SIGKILL lands mid-stream, whatever it is doing: every reported id is in the file.
    """
    import signal
    import time

    db = tmp_path / "q.db"
    code = (
        "import os, sys\n"
        "from safla_diag import MCPTaskRecovery\n"
        "q = MCPTaskRecovery(sys.argv[1], execute=lambda t: None)\n"
        "for i in range(100000):\n"
        "    q.save_failed_task_sync({'id': f't{i}', 'args': {'q': 'x' * 200}})\n"
        "    os.write(1, f't{i}\\n'.encode())\n"
    )
    root = Path(__file__).resolve().parents[2]
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(db)],
            stdout=subprocess.PIPE,
            stderr=err_file,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # read raw: nothing may sit in a reader's buffer at the kill
    got = b""
    deadline = time.monotonic() + 60
    while got.count(b"\n") < 300 and time.monotonic() < deadline:
        chunk = os.read(fd, 65536)
        if not chunk:
            break  # the child ended by itself: its stderr says why
        got += chunk
    proc.send_signal(signal.SIGKILL)
    while chunk := os.read(fd, 65536):  # what it wrote before it died
        got += chunk
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, err_path.read_text()[-2000:]
    reported = got.decode().split()
    assert len(reported) >= 300

    import sqlite3

    with sqlite3.connect(db) as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM tasks")}
    conn.close()
    assert sorted(set(reported) - stored) == []  # every save that returned is in the file
    assert len(stored - set(reported)) <= 1  # and at most the one the kill interrupted
