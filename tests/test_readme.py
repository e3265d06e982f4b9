"""The README's short tour runs against the real API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

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
    asyncio.run(ns["handle"](None))
    assert ns["monitor"].get_performance_stats()["total_requests"] == 1
