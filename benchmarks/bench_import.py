"""How long `import safla_diag` takes, beside `import psutil`, each in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import compare, save

ROOT = Path(__file__).resolve().parent.parent


def import_ms(module: str, runs: int = 15) -> float:
    code = (
        "import time; t = time.perf_counter(); "
        f"import {module}; print((time.perf_counter() - t) * 1000)"
    )
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        times.append(float(out.stdout))
    return sorted(times)[len(times) // 2]


def main() -> None:
    ours = import_ms("safla_diag")
    psutil = import_ms("psutil")
    faiss = import_ms("faiss", runs=3)
    rows = [
        compare("import (median of fresh interpreters)", ours, psutil, "ms", "psutil"),
        compare("import, faiss for scale", ours, faiss, "ms", "faiss"),
    ]
    save("import", rows, target_ms=150)


if __name__ == "__main__":
    main()
