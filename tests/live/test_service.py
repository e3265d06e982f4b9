"""The live endpoint of a real service in a child process, read by real HTTP clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from ..conftest import cli_env

SERVICE = Path(__file__).resolve().parent / "_service.py"
BLOCK_LINE = next(
    i
    for i, line in enumerate(SERVICE.read_text(encoding="utf-8").splitlines(), 1)
    if "BLOCKING LINE" in line
)


class Service:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def get(self, path: str, **headers: str) -> tuple[int, Message, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().split()[:2] == ["done", line.split()[0]]


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """The service, started once for this module (it takes a second to start)."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVICE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield Service(proc, port)
    finally:
        if proc.stdin is not None:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_metrics_parse_with_prometheus_client(service: Service) -> None:
    """/metrics is valid exposition text: the parser reads the request histogram and loop lag."""
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, body = service.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    req = families["safla_request_duration_seconds"]
    assert req.type == "histogram"
    count = next(s for s in req.samples if s.name.endswith("_count"))
    assert count.labels == {"monitor": "api"}
    assert count.value >= 50
    assert families["safla_event_loop_lag_seconds"].type == "histogram"
    assert families["safla_requests"].type == "counter"


def test_probes_and_doctor(service: Service) -> None:
    """/healthz answers; /readyz gives a verdict; /debug/doctor is JSON, or HTML for a browser."""
    status, _, body = service.get("/healthz")
    assert (status, body) == (200, b"ok\n")
    status, _, body = service.get("/readyz")
    assert status in (200, 503)
    assert json.loads(body)["ready"] == (status == 200)
    status, _, body = service.get("/debug/doctor")
    report = json.loads(body)
    assert {"platform", "memory"} <= {s["name"] for s in report["sections"]}
    status, headers, body = service.get("/debug/doctor", Accept="text/html,*/*")
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert body.startswith(b"<!doctype html>")


def test_a_blocking_call_shows_in_debug_loop(service: Service) -> None:
    """A time.sleep run on the service's loop appears in /debug/loop with its file and line."""
    service.command("block")
    here = f"{SERVICE}:{BLOCK_LINE} blocking_handler"
    # On a loaded machine other work may also hold the loop past the threshold: look for ours
    # among them (the stall is recorded when the loop's ticker next runs, so poll for it).
    deadline = time.monotonic() + 30
    ours: list[dict[str, Any]] = []
    while not ours and time.monotonic() < deadline:
        stalls = json.loads(service.get("/debug/loop")[2])["stalls"]
        ours = [s for s in stalls if s["stack"][-1] == here]
        if not ours:
            time.sleep(0.05)
    assert ours, f"no stall at {here} among {[s['stack'][-1] for s in stalls]}"
    [stall] = ours  # one entry per distinct stack, and the block ran once
    assert stall["duration_s"] >= 0.3


def test_a_profile_under_load_shows_the_hot_function(service: Service) -> None:
    """/debug/profile while the service works names the function that burns the CPU."""
    service.command("load 6")
    status, _, body = service.get("/debug/profile?seconds=1.5&format=text")
    assert status == 200
    text = body.decode()
    assert "hot_function" in text
    status, _, body = service.get("/debug/profile?seconds=0.5")
    speedscope = json.loads(body)
    assert speedscope["$schema"].endswith("file-format-schema.json")
    assert any(f["name"] == "hot_function" for f in speedscope["shared"]["frames"])


def test_tasks_lists_the_services_tasks(service: Service) -> None:
    """/debug/tasks shows every task of the loop with its stack."""
    data = json.loads(service.get("/debug/tasks")[2])
    assert data["count"] >= 2
    by_coro = {t["coro"]: t for t in data["tasks"]}
    assert "LoopMonitor._tick" in by_coro
    # The main task waits in main(), the stack naming the coroutine it awaits.
    assert any(frame.endswith(" main") for frame in by_coro["main"]["stack"])


CHROMIUM = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
@pytest.mark.parametrize(
    ("path", "title"),
    [
        ("/debug/doctor?format=html", "Doctor"),
        ("/debug/loop?format=html", "Event loop"),
        ("/debug/profile?seconds=0.3&format=html", "CPU profile"),  # the page with a script
    ],
)
def test_html_pages_in_headless_chromium(service: Service, path: str, title: str) -> None:
    """Each HTML page renders in headless Chromium with nothing on its console (CSP included)."""
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--dump-dom", f"http://127.0.0.1:{service.port}{path}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"<title>{title}" in out.stdout or title in out.stdout
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
