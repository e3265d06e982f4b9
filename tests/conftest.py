"""Shared fixtures: real services on loopback, the CLI as a subprocess, leak guards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.register_profile("soak", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REQUIRE_SERVICES = os.environ.get("SAFLA_DIAG_REQUIRE_SERVICES", "") not in ("", "0", "false")

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio: that is the loop our hosts use."""
    return "asyncio"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _need(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{msg} and SAFLA_DIAG_REQUIRE_SERVICES=1")
    pytest.skip(msg)


@pytest.fixture
def redis_url() -> str:
    """URL of the real Redis on loopback; skips (or fails in CI) when it is down."""
    _need("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def postgres_url() -> str:
    """URL of the real PostgreSQL on loopback (trust auth, database test)."""
    _need("PostgreSQL", PG_HOST, PG_PORT)
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for running the CLI from this source tree in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFLA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m safla_diag ARGS`` as a real subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "safla_diag", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else cli_env(),
        input=input,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli() -> object:
    """The ``run_cli`` helper, as a fixture."""
    return run_cli


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """No test may leave a profiler, a thread or a handler on our loggers behind."""
    import logging

    import safla_diag  # noqa: F401  (its own NullHandler, added on first import, is no leak)

    assert sys.getprofile() is None
    threads = set(threading.enumerate())
    ours = logging.getLogger("safla_diag")
    handlers = list(ours.handlers)
    yield
    assert sys.getprofile() is None, "a profiler was left active"
    assert list(ours.handlers) == handlers, "a handler was left on the safla_diag logger"
    leaked = [
        t
        for t in set(threading.enumerate()) - threads
        if t.is_alive()
        and not t.daemon
        and not t.name.startswith(("asyncio_", "ThreadPoolExecutor"))
    ]
    assert not leaked, f"threads left running: {leaked}"
