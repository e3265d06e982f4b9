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


async def _run_cli(*args: str) -> tuple[int, str, str]:
    """The CLI as a child process, awaited, so that this loop keeps serving the test's servers."""
    import asyncio
    import sys

    from ..conftest import cli_env

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safla_diag",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.anyio
async def test_one_target_model_for_cli_doctor_and_api(tmp_path: Path) -> None:
    """A streamable-HTTP MCP server answering 405 to GET is ok for `services`, doctor and the API."""
    from safla_diag import Diagnostics, acheck_external_services

    from ..checks._servers import fake_http, mcp_routes, serve

    async with serve(fake_http(mcp_routes())) as port:
        config = {"mcp_servers": [{"name": "main", "url": f"http://127.0.0.1:{port}/mcp"}]}
        path = tmp_path / "safla.json"
        path.write_text(json.dumps(config))
        code, out, err = await _run_cli("services", "--config", str(path), "--json")
        assert code == 0, out + err
        (result,) = json.loads(out)["results"]
        assert (result["name"], result["kind"], result["ok"]) == ("mcp:main", "mcp", True)
        api = await acheck_external_services(config)
        assert api.ok and api["mcp:main"].kind == "mcp"
        doctor = await Diagnostics(config, sections=["services"]).adoctor()
        assert doctor.section("services").severity == "info"
        # A URL given beside the configuration joins it under its own name.
        code, out, err = await _run_cli(
            "services", "--config", str(path), f"http://127.0.0.1:{port}/mcp", "--json"
        )
        names = [r["name"] for r in json.loads(out)["results"]]
        assert names == ["mcp:main", "http"], out + err


def test_huge_configured_timeout_is_not_a_traceback(cli: Any, tmp_path: Path) -> None:
    """A service_timeout of 10**400 in the file falls back to the default: no OverflowError."""
    path = tmp_path / "safla.json"
    path.write_text(
        '{"service_timeout": 1'
        + "0" * 400
        + f', "redis_url": "redis://127.0.0.1:{closed_port()}/0"'
        + "}"
    )
    proc = cli("services", "--config", str(path))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "refused" in proc.stdout
