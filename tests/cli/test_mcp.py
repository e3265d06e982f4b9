"""`safla-diag mcp queue FILE` as a real subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

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
    q = SQLiteQueue(p)
    q.open()
    q.close()  # left open, its connection would be collected (and warned about) in a later test
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


def _rich_queue(path: Path) -> None:
    """Tasks as a service saves them: server, tool, arguments (one holding a secret)."""
    s = SQLiteQueue(path)
    task = {
        "id": "call-1",
        "server": "search",
        "tool": "query",
        "arguments": {"q": "x", "api_key": "s3cretKEY", "url": "postgresql://u:pw0rd@h/db"},
    }
    s.put_many([NewTask(id="call-1", payload=json.dumps(task), due_at=1e12)], now=1000.0)
    for i in range(3):
        s.put_dead(
            NewTask(id=f"d{i}", payload=json.dumps({"id": f"d{i}", "tool": "t"}), due_at=0),
            error="boom",
            now=1000.0 + i,
        )
    s.close()


def test_queue_show_lists_server_tool_and_redacted_arguments(tmp_path: Path, cli: Cli) -> None:
    """--show gives each task's server, tool and arguments, secrets masked, in text and JSON."""
    p = tmp_path / "q.db"
    _rich_queue(p)
    r = cli("mcp", "queue", str(p), "--show", "5")
    assert "server=search tool=query" in r.stdout and '"q": "x"' in r.stdout
    assert "s3cretKEY" not in r.stdout and "pw0rd" not in r.stdout
    doc = json.loads(cli("mcp", "queue", str(p), "--show", "5", "--json").stdout)
    (pending,) = doc["tasks"]["pending"]
    assert (pending["server"], pending["tool"]) == ("search", "query")
    assert "s3cretKEY" not in pending["arguments"] and len(doc["tasks"]["dead"]) == 3


def test_requeue_and_purge(tmp_path: Path, cli: Cli) -> None:
    """requeue ID / purge ID / purge --all print what they did; pending tasks are never touched."""
    p = tmp_path / "q.db"
    _rich_queue(p)
    r = cli("mcp", "requeue", str(p), "d0", "nope")
    assert r.returncode == 0 and "requeued 1 dead letter(s)" in r.stdout, r.stderr
    doc = json.loads(cli("mcp", "purge", str(p), "--all", "--older-than", "1s", "--json").stdout)
    assert (doc["action"], doc["count"], doc["older_than_s"]) == ("purge", 2, 1.0)
    view = SQLiteQueue(p, readonly=True)
    assert sorted(t.id for t in view.pending()) == ["call-1", "d0"]
    assert view.dead_letters() == []
    view.close()
    r = cli("mcp", "requeue", str(p), "--all", "--json")
    assert json.loads(r.stdout)["count"] == 0


def test_operations_refuse_bad_arguments(tmp_path: Path, cli: Cli) -> None:
    """No ids and no --all, both, a bad age, a missing file: one line, exit 2, nothing created."""
    p = tmp_path / "q.db"
    _rich_queue(p)
    for args in (
        ("requeue", str(p)),
        ("purge", str(p), "d0", "--all"),
        ("purge", str(p), "--all", "--older-than", "-3d"),
        ("purge", str(p), "--all", "--older-than", "1e23"),
        ("requeue", str(tmp_path / "missing.db"), "--all"),
        ("queue", str(p), "--show", "1e23"),
    ):
        r = cli("mcp", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "missing.db").exists()


def test_bad_schema_name_and_bad_rows_are_one_line(tmp_path: Path, cli: Cli) -> None:
    """A schema name that is not an identifier, and a row with wrong column types: one line."""
    r = cli("mcp", "queue", "postgresql://postgres@127.0.0.1/test?schema=bad-name")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad-name" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    p = tmp_path / "q.db"
    _rich_queue(p)
    conn = sqlite3.connect(p)
    conn.execute("UPDATE tasks SET attempts = 'many' WHERE id = 'd1'")
    conn.execute("UPDATE tasks SET created_at = 'yesterday' WHERE id = 'call-1'")
    conn.commit()
    conn.close()
    for args in (("queue", str(p)), ("queue", str(p), "--show", "5")):
        r = cli("mcp", *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "not a task" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_read_only_queue_reported_as_read_only(tmp_path: Path, cli: Cli) -> None:
    """An immutable queue file: inspected fine; a change says read-only, not 'not a queue'."""
    p = tmp_path / "q.db"
    _rich_queue(p)
    if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        assert cli("mcp", "queue", str(p)).returncode == 1  # dead letters: findings
        r = cli("mcp", "requeue", str(p), "--all")
        assert r.returncode == 2 and "is read-only" in r.stderr, r.stderr
        assert "not a usable" not in r.stderr and "Traceback" not in r.stderr
    finally:
        subprocess.run(["chattr", "-i", str(p)], check=False)
