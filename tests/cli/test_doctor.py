"""`safla-diag doctor` as a real subprocess: text, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..checks._servers import closed_port


def test_doctor_on_defaults(cli: Any) -> None:
    """No configuration: a text report of every base section; exit 0 when healthy, 1 otherwise."""
    proc = cli("doctor")
    assert proc.returncode in (0, 1), proc.stderr
    for section in ("platform", "configuration", "dependencies", "memory", "cpu", "disk"):
        assert section in proc.stdout
    assert "doctor:" in proc.stdout and "Traceback" not in proc.stderr


def test_doctor_json_matches_exit_code(cli: Any) -> None:
    """--json is machine-readable and its exit_code is the process's."""
    proc = cli("doctor", "--json")
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode
    assert doc["ok"] == (proc.returncode == 0)
    assert {f["severity"] for f in doc["findings"]} <= {"info", "warning", "error"}


@pytest.mark.parametrize(
    "args",
    [
        ("doctor", "--config", "/no/such/file.toml"),
        ("doctor", "--timeout", "0"),
        ("doctor", "--timeout", "soon"),
        ("doctor", "--bogus"),
    ],
)
def test_doctor_usage_errors(cli: Any, args: tuple[str, ...]) -> None:
    """A missing file or a bad argument: one line on stderr, exit 2, no traceback."""
    proc = cli(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_doctor_config_with_a_service_down(
    cli: Any, tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """A valid configuration whose extra service is down: exit 1 and the service named."""
    cfg = {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "vector_dimension": 8,
        "mcp_servers": [{"name": "main", "url": f"http://127.0.0.1:{closed_port()}/mcp"}],
        "service_timeout": 2,
    }
    path = tmp_path / "safla.json"
    path.write_text(json.dumps(cfg))
    proc = cli("doctor", "--config", str(path), "--json")
    doc = json.loads(proc.stdout)
    services = next(s for s in doc["sections"] if s["name"] == "services")
    errors = [f for f in services["findings"] if f["severity"] == "error"]
    if any(s["name"] == "configuration" and s["severity"] == "error" for s in doc["sections"]):
        pytest.fail(f"configuration unexpectedly invalid: {doc['findings']}")
    assert proc.returncode == 1
    assert len(errors) == 1 and "mcp:main" in errors[0]["message"]


def test_doctor_invalid_configuration_exits_2(cli: Any, tmp_path: Path) -> None:
    """A configuration with problems: every issue reported, exit 2."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"vector_dimension": True, "redis_url": "ftp://x"}))
    proc = cli("doctor", "--config", str(path))
    assert proc.returncode == 2
    assert "configuration" in proc.stdout + proc.stderr
