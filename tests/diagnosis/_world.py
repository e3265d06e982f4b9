"""
A small real SAFLA deployment for the doctor's end-to-end tests.

A FAISS index saved with ``VectorIndexRecovery.save_index``, a SQLite MCP task queue with a
dead-lettered task, a log with recent errors, and a configuration that points at the real Redis
and PostgreSQL on 127.0.0.1 and at a tiny MCP-over-HTTP server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..conftest import cli_env

DIMENSION = 8
VECTORS = 64


def save_index(data_dir: Path, backup_dir: Path) -> Path:
    """Save a real flat index of ``VECTORS`` vectors with the library; return the index file."""
    import faiss
    import numpy as np

    from safla_diag import VectorIndexRecovery

    index = faiss.IndexFlatL2(DIMENSION)
    index.add(np.random.default_rng(7).random((VECTORS, DIMENSION), dtype=np.float32))
    recovery = VectorIndexRecovery(data_dir, backup_dir, dimension=DIMENSION)
    recovery.save_index(index)
    return recovery.index_path


def backup_index(data_dir: Path, backup_dir: Path) -> str:
    """Take a verified backup of the live index; return its folder."""
    from safla_diag import VectorIndexRecovery

    return VectorIndexRecovery(data_dir, backup_dir, dimension=DIMENSION).backup_index()


def corrupt(path: Path) -> None:
    """Flip a run of bytes in the middle of a file (its size stays the same)."""
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    for i in range(middle, middle + 16):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


async def dead_letter_queue(path: Path | str) -> None:
    """
    A real queue (a SQLite file or a PostgreSQL URL): two tasks dead-lettered after their retry
    failed, one still waiting.
    """
    from safla_diag import MCPTaskRecovery

    async def fail(task: dict[str, Any]) -> None:
        raise ConnectionError("MCP server at 127.0.0.1:3001 refused the call")

    queue = MCPTaskRecovery(path, execute=fail, max_retries=1, retry_delay=0, max_delay=0)
    async with queue:
        await queue.save_failed_task({"id": "search-1", "tool": "search"}, delay=0)
        await queue.save_failed_task({"id": "search-2", "tool": "search"}, delay=0)
        await queue.retry_once()
        await queue.save_failed_task({"id": "later", "tool": "search"}, delay=3600)


TOP_TEMPLATE = "safla.mcp: request <NUM> to <IP> failed: connection refused"


def write_log(path: Path) -> None:
    """Three recent ERROR records (one template), one old ERROR (outside the hour), some INFO."""
    now = datetime.now()
    old = (now - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")
    recent = now.strftime("%Y-%m-%d %H:%M:%S")
    path.write_text(
        f"{old} ERROR safla.vector: index save failed: disk full\n"
        f"{recent} INFO safla.core: serving on :8080\n"
        f"{recent} ERROR safla.mcp: request 17 to 10.0.0.5:3001 failed: connection refused\n"
        f"{recent} ERROR safla.mcp: request 18 to 10.0.0.5:3001 failed: connection refused\n"
        f"{recent} ERROR safla.mcp: request 19 to 10.0.0.6:3001 failed: connection refused\n"
        f"{recent} ERROR safla.core: handler crashed\n"
    )


def base_config(tmp: Path, *, redis_url: str, postgres_url: str, mcp_url: str) -> dict[str, Any]:
    """The required keys against the real services, and a data folder with a healthy index."""
    data, backups = tmp / "data", tmp / "backups"
    save_index(data, backups)
    return {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "vector_dimension": DIMENSION,
        "mcp_servers": [{"name": "main", "url": mcp_url}],
        "data_dir": str(data),
        "backup_dir": str(backups),
        "service_timeout": 3,
    }


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    """Write ``cfg`` as a JSON configuration file."""
    path.write_text(json.dumps(cfg))
    return path


async def run_doctor(*args: str) -> tuple[int, str, str]:
    """
    Run ``python -m safla_diag doctor ARGS`` as a real child process without blocking the loop.

    The loop stays free to serve the fixtures' servers (the MCP endpoint) while the child probes
    them.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safla_diag",
        "doctor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# Sections that measure the machine the tests run on, not the deployment: on a busy shared
# machine they may warn, which the tests must tell apart from the deployment's findings.
MACHINE = ("memory", "cpu", "disk")


def deployment_problems(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The warnings and errors of a doctor JSON report outside the machine's own sections."""
    return [f for f in doc["findings"] if f["severity"] != "info" and f["section"] not in MACHINE]


def machine_ok(doc: dict[str, Any]) -> bool:
    """True when the machine's own sections found nothing."""
    return all(f["severity"] == "info" for f in doc["findings"] if f["section"] in MACHINE)
