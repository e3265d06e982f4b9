"""The isolated loader: hangs are killed, crashes and memory blow-ups stay in the child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import psutil

from safla_diag.vector._probe import ProbeJob, probe_files

from ._damage import make_index, serialize


def _good(tmp_path: Path) -> str:
    path = tmp_path / "good.faiss"
    path.write_bytes(serialize(make_index("Flat")))
    return str(path)


def test_a_file_that_hangs_the_loader_is_killed_and_the_rest_still_checked(tmp_path: Path) -> None:
    """A FIFO with no writer blocks faiss forever: it is reported as a timeout, the next file is
    checked by a fresh child."""
    fifo = tmp_path / "hangs.faiss"
    os.mkfifo(fifo)
    results = probe_files([ProbeJob(path=str(fifo)), ProbeJob(path=_good(tmp_path))], timeout=2)
    assert [r.status for r in results] == ["timeout", "loaded"]
    assert "killed" in results[0].detail
    assert results[1].info is not None and results[1].info["ntotal"] == 300


def _stuck_on_fifo(pid: int) -> bool:
    """Whether a thread of ``pid`` waits in the kernel to open a FIFO (Linux)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                if f.read() in ("wait_for_partner", "fifo_open"):  # open() of a FIFO, no writer
                    return True
        except OSError:
            continue
    return False


def test_a_crashing_loader_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    """The child dies of SIGSEGV in the middle of a file: that file is reported as crashed (with
    the signal), the host lives on, and the remaining files are checked."""
    fifo = tmp_path / "stuck.faiss"
    os.mkfifo(fifo)
    me = psutil.Process()
    done = threading.Event()

    def segfault_the_child() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            for child in me.children():
                # Once it is stuck opening the FIFO (past the first file), crash it as faiss
                # would; a loaded machine may take seconds to get there.
                if "safla_diag.vector._probe" in " ".join(child.cmdline()) and (
                    _stuck_on_fifo(child.pid) or time.monotonic() > deadline - 30
                ):
                    os.kill(child.pid, signal.SIGSEGV)
                    return
            done.wait(0.05)

    killer = threading.Thread(target=segfault_the_child, daemon=True)
    killer.start()
    try:
        results = probe_files(
            [
                ProbeJob(path=_good(tmp_path)),
                ProbeJob(path=str(fifo)),
                ProbeJob(path=_good(tmp_path)),
            ],
            timeout=30,
        )
    finally:
        done.set()
        killer.join(10)
    assert [r.status for r in results] == ["loaded", "crashed", "loaded"]
    assert "SIGSEGV" in results[1].detail


def test_memory_cap_stops_a_file_that_needs_too_much(tmp_path: Path) -> None:
    """With the address space capped below what the file needs, the child reports it, not the host."""
    index = faiss.IndexFlatL2(64)
    index.add(np.random.default_rng(0).standard_normal((200_000, 64)).astype(np.float32))
    path = tmp_path / "big.faiss"
    faiss.write_index(index, str(path))
    [result] = probe_files([ProbeJob(path=str(path))], memory_factor=0.1, slack=0, timeout=60)
    assert result.status in ("memory", "rejected", "crashed"), result
    assert result.status != "loaded"
    [ok] = probe_files([ProbeJob(path=str(path))], timeout=60)
    assert ok.status == "loaded"


def test_a_missing_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """A file that vanished before the child got to it is reported as an error of the check."""
    [result] = probe_files([ProbeJob(path=str(tmp_path / "gone.faiss"))], timeout=30)
    assert result.status == "error" and "gone.faiss" in result.detail


def test_the_loader_dies_with_its_host(tmp_path: Path) -> None:
    """A host killed with SIGKILL while its loader is stuck on a file leaves no loader behind
    (the loader runs in its own session, so nothing else would ever stop it)."""
    fifo = tmp_path / "stuck.faiss"
    os.mkfifo(fifo)
    code = (
        "import sys\n"
        "from safla_diag.vector._probe import ProbeJob, probe_files\n"
        "probe_files([ProbeJob(path=sys.argv[1])], timeout=600)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    host = subprocess.Popen([sys.executable, "-c", code, str(fifo)], cwd=root)
    loader = None
    try:
        deadline = time.monotonic() + 60
        while loader is None and time.monotonic() < deadline:
            children = psutil.Process(host.pid).children()
            loader = next((c for c in children if "_probe" in " ".join(c.cmdline())), None)
            time.sleep(0.05)
        assert loader is not None, "the loader never started"
        # Let it reach the FIFO (opening it blocks), then kill the host.
        deadline = time.monotonic() + 30
        while not any(f.path == str(fifo) for f in loader.open_files()):
            if time.monotonic() > deadline or loader.status() == psutil.STATUS_SLEEPING:
                break
            time.sleep(0.05)
        host.kill()
        host.wait(10)
        loader.wait(10)  # raises psutil.TimeoutExpired while it lingers
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(10)
        if loader is not None and loader.is_running():
            loader.kill()
            loader.wait(10)
