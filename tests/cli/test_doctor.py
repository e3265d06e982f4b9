"""`safla-diag doctor` as a real subprocess: text, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..checks._servers import closed_port, fake_http, mcp_routes, serve
from ..diagnosis import _world as world
from ..mcp_retry._pg import pg_queue_url_fixture, pg_schema_fixture  # noqa: F401


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


# --- end to end: a real deployment on this machine ------------------------------------------


@pytest.fixture
async def deployment(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> AsyncIterator[dict[str, Any]]:
    """A configuration against the real services, an MCP server on loopback and a saved index."""
    pytest.importorskip("faiss")
    async with serve(fake_http(mcp_routes())) as port:
        yield world.base_config(
            tmp_path,
            redis_url=redis_url,
            postgres_url=postgres_url,
            mcp_url=f"http://127.0.0.1:{port}/mcp",
        )


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["sections"] if s["name"] == name)


@pytest.mark.anyio
async def test_doctor_healthy_then_corrupted_index(
    deployment: dict[str, Any], tmp_path: Path
) -> None:
    """A healthy deployment exits 0 with a vector info finding; flipped bytes make it an error, 1."""
    path = world.write_config(tmp_path / "safla.json", deployment)
    code, out, err = await world.run_doctor("--config", str(path), "--json")
    doc = json.loads(out)
    assert world.deployment_problems(doc) == [], err
    assert code == (0 if world.machine_ok(doc) else 1) == doc["exit_code"]
    vector = _section(doc, "vector")
    assert vector["severity"] == "info"
    assert "is healthy" in vector["findings"][0]["message"]
    assert {f["message"].split(": ")[0] for f in _section(doc, "services")["findings"]} == {
        "database",
        "redis",
        "mcp:main",
    }

    world.corrupt(Path(deployment["data_dir"]) / "vector_index.faiss")
    code, out, err = await world.run_doctor("--config", str(path))
    assert code == 1, out + err
    line = next(ln for ln in out.splitlines() if ln.startswith("vector"))
    assert "ERROR" in line and "checksum" in line and "damaged" in line
    assert f"safla-diag vector rebuild-index {deployment['data_dir']}" in out


@pytest.mark.anyio
async def test_doctor_dead_letters_and_log_errors(
    deployment: dict[str, Any], tmp_path: Path
) -> None:
    """A queue with dead letters and a log with recent errors: two warnings, exit 1."""
    queue, log = tmp_path / "mcp_tasks.db", tmp_path / "safla.log"
    await world.dead_letter_queue(queue)
    world.write_log(log)
    cfg = {**deployment, "mcp_task_queue": str(queue), "log_paths": [str(log)]}
    path = world.write_config(tmp_path / "safla.json", cfg)
    code, out, err = await world.run_doctor("--config", str(path), "--json")
    doc = json.loads(out)
    assert code == 1 == doc["exit_code"], err
    found = {f["section"]: f for f in world.deployment_problems(doc)}
    assert sorted(found) == ["logs", "mcp_queue"]
    assert found["mcp_queue"]["severity"] == "warning"
    assert "2 tasks dead-lettered" in found["mcp_queue"]["message"]
    assert found["logs"]["severity"] == "warning"
    assert world.TOP_TEMPLATE in found["logs"]["message"]
    assert found["logs"]["hint"].startswith("safla-diag logs scan")


@pytest.mark.anyio
async def test_doctor_unreachable_mcp_server(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """An MCP server that is not running: an error naming it, with the next step; exit 1."""
    cfg = {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "vector_dimension": 8,
        "mcp_servers": [{"name": "orchestrator", "url": f"http://127.0.0.1:{closed_port()}/mcp"}],
        "service_timeout": 2,
    }
    path = world.write_config(tmp_path / "safla.json", cfg)
    code, out, _ = await world.run_doctor("--config", str(path))
    assert code == 1
    assert "mcp:orchestrator" in out and "[refused]" in out and "next: start the service" in out


@pytest.mark.anyio
async def test_doctor_shared_postgres_queue(
    deployment: dict[str, Any], tmp_path: Path, pg_queue_url: str
) -> None:
    """mcp_task_queue as a postgresql:// URL: probed as a service, read as a queue; exit 1."""
    await world.dead_letter_queue(pg_queue_url)
    cfg = {**deployment, "mcp_task_queue": pg_queue_url}
    path = world.write_config(tmp_path / "safla.json", cfg)
    code, out, err = await world.run_doctor("--config", str(path), "--json")
    doc = json.loads(out)
    assert code == 1 == doc["exit_code"], err
    (problem,) = world.deployment_problems(doc)
    assert problem["section"] == "mcp_queue" and "2 tasks dead-lettered" in problem["message"]
    probes = {f["message"].split(": ")[0]: f for f in _section(doc, "services")["findings"]}
    assert probes["mcp_task_queue"]["severity"] == "info"
