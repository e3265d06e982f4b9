"""
The leak simulation: our detector (through ``leak_adapter.py``) against the acceptance targets.

The simulation script is shared with the acceptance case and is not part of this repository;
it is found in the shared tools folder beside the repository, or given with ``--sim PATH`` or the
``LEAK_SIM`` environment variable. Without it, this
benchmark says so and exits 0.

Run: python benchmarks/bench_monitoring_leaks.py --sim path/to/leak_sim.py [--all]
    default: the 30 default seeds with the built-in baselines, then 100 held-out seeds;
    --all: also 15 s and 1 s sampling, on both seed sets (about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import save

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run(sim: str, *args: str) -> list[dict[str, object]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(HERE), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "res.json"
        proc = subprocess.run(
            [sys.executable, sim, *args, "--json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        print(proc.stdout.strip(), file=sys.stdout)
        if proc.returncode:
            print(proc.stderr.strip(), file=sys.stderr)
        rows: list[dict[str, object]] = json.loads(out.read_text()) if out.exists() else []
    for r in rows:
        r["args"] = " ".join(args)
        r["check"] = "--check" not in args or proc.returncode == 0
    print()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    # The shared tools folder sits beside the repository; LEAK_SIM or --sim point elsewhere.
    beside = Path(__file__).resolve().parents[2] / "shared" / "tools" / "leak_sim.py"
    default = os.environ.get("LEAK_SIM") or (str(beside) if beside.is_file() else None)
    ap.add_argument("--sim", default=default)
    ap.add_argument("--all", action="store_true", help="also 15 s and 1 s sampling")
    a = ap.parse_args()
    if not a.sim or not Path(a.sim).is_file():
        print("leak simulation not found: pass --sim PATH or set LEAK_SIM; skipped")
        return 0
    ours = ["--detector", "leak_adapter:make_detector", "--check"]
    held = ["--seeds", "100", "--seed-offset", "1000"]
    rows = run(a.sim)  # the built-in baselines: the guide's rule and Prometheus'
    rows += run(a.sim, *ours)
    rows += run(a.sim, *ours, *held)
    if a.all:
        for dt in ("15", "1"):
            rows += run(a.sim, *ours, "--dt", dt)
            rows += run(a.sim, *ours, *held, "--dt", dt)
    save("monitoring_leaks", rows)
    return 0 if all(r["check"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
