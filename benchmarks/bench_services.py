"""Our concurrent native probes beside the guide's sequential subprocess checks, same targets."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import compare, save
from _targets import (
    POSTGRES,
    REDIS,
    guide_check,
    guide_commands,
    hanging_ports,
    http_server,
    tools_present,
)

from safla_diag import check_external_services


def median_time(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    if not tools_present():
        print("redis-cli, pg_isready or curl missing: nothing to compare against")
        return
    rows = []
    with http_server() as http:
        targets = {"redis": REDIS, "database": POSTGRES, "vector-store": http}
        report = check_external_services(targets, timeout=5)
        assert report, report.to_text()
        assert guide_check(guide_commands(http)) == [], "the guide's checks fail on these targets"
        ours = median_time(lambda: check_external_services(targets, timeout=5), 21)
        theirs = median_time(lambda: guide_check(guide_commands(http)), 21)
        rows.append(compare("3 services up (median of 21)", ours, theirs, "s", "guide"))

        timeout = 2.0
        with hanging_ports(2) as (h1, h2):
            hung = {
                **targets,
                "hung-redis": f"redis://127.0.0.1:{h1}",
                "hung-pg": f"postgresql://u@127.0.0.1:{h2}/x",
            }
            cmds = guide_commands(http) + guide_commands(http, redis_port=h1, pg_port=h2)[:2]
            t = time.perf_counter()
            report = check_external_services(hung, timeout=timeout)
            ours = time.perf_counter() - t
            statuses = sorted(r.status for r in report.results)
            t = time.perf_counter()
            failed = guide_check(cmds, timeout=timeout)
            theirs = time.perf_counter() - t
            rows.append(
                compare(f"3 up + 2 hanging, timeout {timeout:g} s each", ours, theirs, "s", "guide")
            )
            print(f"  ours: {statuses}; guide: failed {failed}")
    save("services", rows, note="guide = redis-cli ping, pg_isready, curl -f run one after another")


if __name__ == "__main__":
    main()
