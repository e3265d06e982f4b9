"""The README's short tour runs against the real API."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import cli_env

README = Path(__file__).resolve().parent.parent / "README.md"


def test_short_tour_runs() -> None:
    """Every python block of the README runs; its service coroutine reports and records."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) >= 2
    ns: dict[str, Any] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    assert any("did you mean 'vector_dimension'" in p for p in ns["problems"])
    asyncio.run(ns["main"]({"memory_threshold_percent": 85}))
    assert ns["monitor"].get_performance_stats()["total_requests"] == 1
    asyncio.run(ns["handle"](None))
    assert ns["monitor"].get_performance_stats()["total_requests"] == 2


def test_asyncio_snippet_runs_main_as_a_script(tmp_path: Path) -> None:
    """Saved as a file and run, the asyncio snippet runs main(): the doctor's report is printed."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    service = next(b for b in blocks if "async def main" in b)
    script = tmp_path / "service.py"
    script.write_text(service, encoding="utf-8")
    env = {k: v for k, v in cli_env().items() if not k.startswith("SAFLA_")}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "doctor:" in out.stdout and "memory" in out.stdout
