"""Our concurrent native probes beside the guide's sequential subprocess checks, same targets."""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def wide_http_server() -> Iterator[str]:
    """A threaded HTTP server with a listen backlog of 512 (http.server's is 5), in this process."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Wide(ThreadingHTTPServer):
        request_queue_size = 512
        daemon_threads = True

    server = Wide(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


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
    # Many targets: the probes are capped by the file descriptors left and queued (a thousand
    # targets under ulimit -n 256 must not fail); the cap must not cost throughput.
    with wide_http_server() as wide:
        many = {f"web-{i}": wide for i in range(200)}
        t = time.perf_counter()
        report = check_external_services(many, timeout=10)
        ours = time.perf_counter() - t
        assert report, report.to_text()[:2000]
        curls = [(n, ["curl", "-f", "-s", "-o", "/dev/null", u]) for n, u in many.items()]
        t = time.perf_counter()
        failed = guide_check(curls)
        theirs = time.perf_counter() - t
        assert failed == [], failed
        rows.append(compare("200 HTTP targets, capped and queued", ours, theirs, "s", "guide"))
    save("services", rows, note="guide = redis-cli ping, pg_isready, curl -f run one after another")


if __name__ == "__main__":
    main()
