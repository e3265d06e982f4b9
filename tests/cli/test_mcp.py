"""`safla-diag mcp queue FILE` as a real subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

from safla_diag.mcp_retry._model import NewTask
from safla_diag.mcp_retry._sqlite import SQLiteQueue

Cli = Callable[..., CompletedProcess[str]]


def _queue(path: Path) -> None:
    s = SQLiteQueue(path)
    s.put_many(
        [NewTask(id=f"t{i}", payload=json.dumps({"id": f"t{i}"}), due_at=1e12) for i in range(3)],
        now=1000.0,
    )
    s.put_many([NewTask(id="d", payload='{"id": "d"}', due_at=0)], now=1000.0)
    (c,) = s.claim(now=1.0, limit=1, lease_s=1, max_attempts=1)
    s.fail(
        c.id,
        c.lease,
        error="ConnectionError: token=abc",
        now=2.0,
        next_attempt_at=0,
        max_attempts=1,
    )
    s.close()


def test_queue_text(tmp_path: Path, cli: Cli) -> None:
    """The text view shows counts, ages and next due; dead letters make exit 1."""
    p = tmp_path / "q.db"
    _queue(p)
    r = cli("mcp", "queue", str(p), "--show", "5")
    assert r.returncode == 1, r.stderr
    assert "pending:        3" in r.stdout and "dead-lettered:  1" in r.stdout
    assert "ago" in r.stdout and "next due:       in" in r.stdout
    assert "d  attempts=1" in r.stdout and "abc" not in r.stdout


def test_queue_json(tmp_path: Path, cli: Cli) -> None:
    """--json gives the same figures as a document."""
    p = tmp_path / "q.db"
    _queue(p)
    r = cli("mcp", "queue", str(p), "--json")
    doc = json.loads(r.stdout)
    assert (doc["pending"], doc["in_flight"], doc["dead"]) == (3, 0, 1)
    assert doc["oldest_age_s"] > 0 and doc["next_due_in_s"] > 0


def test_empty_queue_exit_0(tmp_path: Path, cli: Cli) -> None:
    """An empty queue is healthy."""
    p = tmp_path / "q.db"
    SQLiteQueue(p).open()
    r = cli("mcp", "queue", str(p), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["next_due_at"] is None


def test_bad_files_one_line_exit_2(tmp_path: Path, cli: Cli) -> None:
    """Missing, corrupt and foreign files: one line naming the file, exit 2, file untouched."""
    missing = tmp_path / "nope.db"
    corrupt = tmp_path / "bad.db"
    corrupt.write_bytes(b"\x00garbage" * 50)
    guide = tmp_path / "mcp_tasks.json"
    guide.write_text('[{"id": "x"}]')
    for p in (missing, corrupt, guide):
        before = p.read_bytes() if p.exists() else None
        r = cli("mcp", "queue", str(p))
        assert r.returncode == 2, (p, r.stdout, r.stderr)
        assert str(p) in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "Traceback" not in r.stderr
        assert (p.read_bytes() if p.exists() else None) == before
    assert not missing.exists()


def test_help_and_bad_args(cli: Cli) -> None:
    """--help works; an unknown subcommand or a URL is a usage error."""
    assert cli("mcp", "queue", "--help").returncode == 0
    assert cli("mcp", "nope").returncode == 2
    r = cli("mcp", "queue", "postgresql://u:secret@h/db")
    assert r.returncode == 2 and "secret" not in r.stderr
