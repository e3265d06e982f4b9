"""`safla-diag services` as a real subprocess: URLs, exit codes, JSON, port holders."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from ..checks._servers import closed_port

SECRET = "s3cr3t-Pa55"


def test_services_up_exit_0(cli: Any, redis_url: str, postgres_url: str) -> None:
    """Both real services answer: exit 0 and each marked ok."""
    proc = cli("services", redis_url, postgres_url, "--timeout", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 ok" in proc.stdout and "PONG" in proc.stdout


def test_services_down_exit_1_json(cli: Any) -> None:
    """A closed port: exit 1, the JSON says refused, and the password is not shown."""
    url = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"
    proc = cli("services", url, "--json", "--timeout", "2")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["results"][0]["status"] == "refused"
    assert SECRET not in proc.stdout + proc.stderr


def test_port_holder(cli: Any) -> None:
    """--port names the process listening on a port (here: this test process)."""
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = cli("services", "--port", str(port))
    assert proc.returncode == 0
    assert f"pid {os.getpid()}" in proc.stdout
    free = cli("services", "--port", str(closed_port()))
    assert "free" in free.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("services",),
        ("services", "--port", "70000"),
        ("services", "--timeout", "-1", "redis://x"),
        ("services", "--config", "/no/such.toml"),
    ],
)
def test_services_usage_errors(cli: Any, args: tuple[str, ...]) -> None:
    """Nothing to check, bad ports, bad timeouts, missing files: one line, exit 2."""
    proc = cli(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_services_from_a_configuration_file(cli: Any, tmp_path: Path, redis_url: str) -> None:
    """--config probes the configuration's services, with its service_timeout."""
    path = tmp_path / "safla.json"
    path.write_text(
        json.dumps(
            {
                "database_url": f"postgresql://u:{SECRET}@127.0.0.1:{closed_port()}/x",
                "redis_url": redis_url,
                "vector_dimension": 4,
                "mcp_servers": [f"http://127.0.0.1:{closed_port()}/mcp"],
                "service_timeout": 2,
            }
        )
    )
    proc = cli("services", "--config", str(path), "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["timeout"] == 2
    assert {r["name"]: r["status"] for r in doc["results"]} == {
        "database": "refused",
        "redis": "ok",
        "mcp:1": "refused",
    }
    assert SECRET not in proc.stdout
