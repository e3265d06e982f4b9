"""Shared by the service and doctor benchmarks: real targets on loopback, and the guide's checks."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

REDIS = "redis://127.0.0.1:6379/0"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """A real HTTP server (python -m http.server) on loopback, yielding a health URL."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.025)
        yield f"http://127.0.0.1:{port}/"
    finally:
        child.kill()
        child.wait()


@contextlib.contextmanager
def hanging_ports(n: int) -> Iterator[list[int]]:
    """Sockets that listen and never accept: connect succeeds, nothing ever answers."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        socks.append(s)
    try:
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def guide_commands(
    http_url: str, redis_port: int = 6379, pg_port: int = 5432
) -> list[tuple[str, list[str]]]:
    """The guide's check_external_services commands, pointed at the same targets."""
    return [
        ("Redis", ["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port), "ping"]),
        ("PostgreSQL", ["pg_isready", "-h", "127.0.0.1", "-p", str(pg_port)]),
        ("Vector Store", ["curl", "-f", "-s", "-o", "/dev/null", http_url]),
    ]


def tools_present() -> bool:
    return all(shutil.which(t) for t in ("redis-cli", "pg_isready", "curl"))


def guide_check(commands: list[tuple[str, list[str]]], timeout: float = 10) -> list[str]:
    """The guide's version: one subprocess after another, each with its own timeout."""
    failed = []
    for name, cmd in commands:
        try:
            result = subprocess.run(cmd, capture_output=True, timeout=timeout)
            if result.returncode != 0:
                failed.append(name)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            failed.append(name)
    return failed
