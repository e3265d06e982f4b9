"""End to end: the healer inside a real child process (tests/heal/_service.py), acting on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safla_diag import VectorIndexRecovery

from ..conftest import cli_env

SERVICE = Path(__file__).with_name("_service.py")


class Child:
    """The service in a child process; JSON lines on its stdout."""

    def __init__(self, mode: str, work: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVICE), mode, str(work)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            self.proc.wait(timeout=30)
            assert self.proc.stderr is not None
            pytest.fail(f"the service ended early: {self.proc.stderr.read()[-3000:]}")
        out: dict[str, Any] = json.loads(text)
        return out

    def finish(self, stdin: str = "") -> dict[str, Any]:
        out, err = self.proc.communicate(stdin, timeout=90)
        assert self.proc.returncode == 0, err[-3000:]
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def child(tmp_path: Path) -> Any:
    started: list[Child] = []

    def start(mode: str) -> Child:
        c = Child(mode, tmp_path)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_index_corrupted_while_running_is_restored(child: Any, tmp_path: Path) -> None:
    """Corrupted on disk while the service runs: restored from the newest verified backup at the
    next check, the damaged file kept aside, and the host's callback gets an index that answers
    exactly as the backup does."""
    service = child("index")
    ready = service.line()
    live = Path(ready["index"])
    _corrupt(live)
    damaged = live.read_bytes()
    result = service.finish("corrupted\n")
    assert result["got"] == result["expected"]
    assert result["ntotal"] == 500
    at_corruption, at_restore = result["checks"]
    assert at_restore - at_corruption <= 1  # the check running then, or the next one
    (action,) = result["history"]
    assert (action["action"], action["outcome"]) == ("restore_index", "done")
    assert action["data"]["backup"] and action["data"]["host_notified"] is True
    (aside,) = action["data"]["kept_aside"]
    assert (live.parent / aside).read_bytes() == damaged  # kept aside, never deleted
    rec = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups", dimension=8)
    assert rec.diagnose().ok


def test_a_leaking_process_gets_the_leaking_line(child: Any) -> None:
    """The detector's alarm opens a bounded tracemalloc window whose report names the line that
    leaks; tracing is off again afterwards."""
    lineno = next(
        i
        for i, text in enumerate(SERVICE.read_text().splitlines(), 1)
        if "# THE LEAKING LINE" in text
    )
    service = child("leak")
    service.line()
    result = service.finish()
    (trace,) = [h for h in result["history"] if h["action"] == "leak_trace"]
    assert trace["outcome"] == "done"
    top = trace["data"]["sites"][0]
    assert top["site"].endswith(f"_service.py:{lineno}"), trace["data"]["sites"][:3]
    assert top["size_diff_kb"] > 0
    assert f"_service.py:{lineno}" in trace["detail"]
    assert result["tracing_after"] is False


def test_memory_pressure_clears_the_registered_cache_once_per_interval(child: Any) -> None:
    """At the critical level (an injected reader says 99 %), the registered cache is cleared once
    over many checks within one interval, and the freed amount is reported."""
    service = child("memory")
    service.line()
    result = service.finish()
    assert result["ticks"] >= 30
    assert result["clears"] == 1
    (action,) = result["history"]
    assert (action["action"], action["outcome"]) == ("clear_caches", "done")
    assert action["data"]["caches_cleared"] == 1
    assert isinstance(action["data"]["freed_mb"], float)
    assert "freed" in action["detail"] and "99.0%" in action["detail"]


def test_dry_run_performs_nothing_and_reports_each(child: Any, tmp_path: Path) -> None:
    """dry_run: the damaged index stays as it is, the cache keeps its content, tracemalloc never
    starts, the host is never called, and each remedy is reported as skipped, once."""
    service = child("dry")
    ready = service.line()
    result = service.finish()
    kinds = sorted(h["action"] for h in result["history"])
    assert kinds == ["clear_caches", "leak_trace", "restore_index"]
    for h in result["history"]:
        assert h["outcome"] == "skipped"
        assert h["detail"].startswith("dry run: would ")
    assert result["clears"] == 0
    assert result["callback_calls"] == 0
    assert result["ever_traced"] is False
    live = Path(ready["index"])
    assert not list(live.parent.glob("*.corrupt-*"))
    rec = VectorIndexRecovery(tmp_path / "data", tmp_path / "backups")
    assert rec.detect_corruption()
