"""Shared helpers for benchmarks: timing, side-by-side printing, JSON results."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn: Callable[[], object], *, repeat: int = 5, number: int = 1) -> float:
    """Best wall time in seconds of ``number`` calls of ``fn``, over ``repeat`` rounds, per call."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return min(times)


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def compare(
    label: str, ours: float, theirs: float, unit: str = "s", theirs_name: str = "naive"
) -> dict[str, Any]:
    """Print ours beside theirs with their ratio, and return the row."""
    ratio = theirs / ours if ours else float("inf")
    print(
        f"{label:<48} ours {ours:>12.6g} {unit}   {theirs_name} {theirs:>12.6g} {unit}   {theirs_name}/ours {ratio:8.2f}x"
    )
    return {"label": label, "ours": ours, theirs_name: theirs, "unit": unit, "ratio": ratio}


def save(name: str, rows: list[dict[str, Any]] | dict[str, Any], **meta: Any) -> Path:
    """Write ``benchmarks/results/<name>.json`` with machine information, and return its path."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": rows,
        **meta,
    }
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"-> {out.relative_to(RESULTS.parent.parent)}")
    return out
