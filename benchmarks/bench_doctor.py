"""`safla-diag doctor` wall time: defaults, all services up, two hanging; beside the guide's checks.

Each run is a fresh interpreter on both sides. The guide's side is its check_dependencies() (an
import loop) followed by its check_external_services() (redis-cli, pg_isready and curl, one
after another), pointed at the same targets.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from _common import compare, save  # noqa: E402
from _targets import (  # noqa: E402
    POSTGRES,
    REDIS,
    free_port,
    guide_commands,
    hanging_ports,
    http_server,
    tools_present,
)

GUIDE = r"""
import importlib, json, subprocess, sys
missing = []
for package in ['numpy', 'faiss-cpu', 'redis', 'psycopg2', 'asyncio', 'aiohttp']:
    try:
        importlib.import_module(package)
    except ImportError:
        missing.append(package)
failed = []
for name, cmd in json.loads(sys.argv[1]):
    try:
        if subprocess.run(cmd, capture_output=True, timeout=float(sys.argv[2])).returncode != 0:
            failed.append(name)
    except (subprocess.TimeoutExpired, FileNotFoundError):
        failed.append(name)
print(missing, failed)
"""


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("SAFLA_")}
    out["PYTHONPATH"] = str(ROOT)
    return out


def run(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, check=False)
    return time.perf_counter() - t, proc


def median_run(cmd: list[str], runs: int) -> tuple[float, subprocess.CompletedProcess[str]]:
    samples, last = [], None
    for _ in range(runs):
        took, last = run(cmd)
        samples.append(took)
    assert last is not None
    return statistics.median(samples), last


def doctor_cmd(config: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "safla_diag", "doctor", "--json"]
    return cmd + (["--config", str(config)] if config else [])


def deployment(tmp: Path) -> dict[str, object]:
    """A data folder with a saved 20 000 x 384 index, a queue with dead letters, a busy log."""
    import asyncio
    from datetime import datetime

    import faiss
    import numpy as np

    from safla_diag import MCPTaskRecovery, VectorIndexRecovery

    data = tmp / "data"
    index = faiss.IndexFlatL2(384)
    index.add(np.random.default_rng(0).random((20_000, 384), dtype=np.float32))
    VectorIndexRecovery(data, data / "backups", dimension=384).save_index(index)

    async def fail(task: dict[str, object]) -> None:
        raise ConnectionError("MCP server down")

    async def fill() -> None:
        queue = MCPTaskRecovery(data / "mcp_tasks.db", execute=fail, max_retries=1, retry_delay=0)
        async with queue:
            await queue.save_failed_tasks({"id": f"t{i}", "tool": "search"} for i in range(200))
            await queue.retry_once()
            await queue.save_failed_tasks({"id": f"w{i}", "tool": "search"} for i in range(1000))

    asyncio.run(fill())
    now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    log = tmp / "safla.log"
    with log.open("w") as f:
        for i in range(100_000):
            level = "ERROR" if i % 50 == 0 else "INFO"
            f.write(f"{now} {level} safla.mcp: request {i} to 10.0.0.{i % 7}:3001 done\n")
    return {
        "data_dir": str(data),
        "vector_dimension": 384,
        "mcp_task_queue": str(data / "mcp_tasks.db"),
        "log_paths": [str(log)],
    }


def main() -> None:
    rows = []
    took, proc = median_run(doctor_cmd(None), 7)
    doc = json.loads(proc.stdout)
    print(
        f"doctor on defaults: exit {proc.returncode}, {doc['summary']}, in-process {doc['elapsed_s']:.3f} s"
    )
    rows.append(
        {
            "label": "doctor on defaults, fresh interpreter (median of 7)",
            "ours": took,
            "unit": "s",
            "in_process_s": doc["elapsed_s"],
        }
    )
    print(f"{rows[-1]['label']:<48} ours {took:12.6g} s")
    if not tools_present():
        print("skipping the configured runs: redis-cli, pg_isready or curl is missing")
        save("doctor", rows)
        return
    mcp_port = free_port()
    mcp = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/checks/_mcp_server.py"), str(mcp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with http_server() as http, tempfile.TemporaryDirectory() as tmp:
            time.sleep(3)  # the MCP child's startup; it has no readiness signal we can wait on
            cfg = {
                "database_url": POSTGRES,
                "redis_url": REDIS,
                "vector_dimension": 384,
                "mcp_servers": [{"name": "main", "url": f"http://127.0.0.1:{mcp_port}/mcp"}],
                "services": {"vector-store": http},
                "service_timeout": 2,
            }
            path = Path(tmp) / "up.json"
            path.write_text(json.dumps(cfg))
            ours, proc = median_run(doctor_cmd(path), 5)
            doc = json.loads(proc.stdout)
            print(
                f"all up: exit {proc.returncode}, {doc['summary']}, in-process {doc['elapsed_s']:.3f} s"
            )
            parts = ", ".join(f"{x['name']} {x['elapsed_s']:.3f}" for x in doc["sections"])
            print(f"  sections (s, concurrent): {parts}")
            cmds = guide_commands(http)
            theirs, gproc = median_run([sys.executable, "-c", GUIDE, json.dumps(cmds), "10"], 5)
            print(f"  guide printed: {gproc.stdout.strip()}")
            rows.append(
                compare("doctor, all services up (median of 5)", ours, theirs, "s", "guide")
            )

            full = {**cfg, **deployment(Path(tmp))}
            path = Path(tmp) / "full.json"
            path.write_text(json.dumps(full))
            took, proc = median_run(doctor_cmd(path), 5)
            doc = json.loads(proc.stdout)
            print(
                f"full deployment (20k x 384 index, queue of 1200 with 200 dead, 100k-line log): "
                f"exit {proc.returncode}, {doc['summary']}, in-process {doc['elapsed_s']:.3f} s"
            )
            parts = ", ".join(f"{x['name']} {x['elapsed_s']:.3f}" for x in doc["sections"])
            print(f"  sections (s, concurrent): {parts}")
            label = "doctor, full deployment (median of 5)"
            print(f"{label:<48} ours {took:12.6g} s")
            rows.append(
                {"label": label, "ours": took, "unit": "s", "in_process_s": doc["elapsed_s"]}
            )

            with hanging_ports(2) as (h1, h2):
                hung = {
                    **cfg,
                    "services": {
                        "vector-store": http,
                        "hung-redis": f"redis://127.0.0.1:{h1}",
                        "hung-http": f"http://127.0.0.1:{h2}/health",
                    },
                }
                path = Path(tmp) / "hung.json"
                path.write_text(json.dumps(hung))
                ours, proc = run(doctor_cmd(path))
                doc = json.loads(proc.stdout)
                print(
                    f"two hanging: exit {proc.returncode}, {doc['summary']}, in-process {doc['elapsed_s']:.3f} s"
                )
                cmds = [
                    *guide_commands(http),
                    ("hung-redis", ["redis-cli", "-h", "127.0.0.1", "-p", str(h1), "ping"]),
                    (
                        "hung-http",
                        ["curl", "-f", "-s", "-o", "/dev/null", f"http://127.0.0.1:{h2}/health"],
                    ),
                ]
                theirs, gproc = run([sys.executable, "-c", GUIDE, json.dumps(cmds), "2"])
                print(f"  guide printed: {gproc.stdout.strip()}")
                rows.append(
                    compare("doctor, two hanging, timeout 2 s each", ours, theirs, "s", "guide")
                )
    finally:
        mcp.send_signal(signal.SIGKILL)
        mcp.wait()
    save("doctor", rows, note="fresh interpreter per run on both sides")


if __name__ == "__main__":
    main()
