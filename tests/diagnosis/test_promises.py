"""What the doctor promises the host: no thread parked on a pipe, no use of the host's executor."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from safla_diag import Diagnostics, check_dependencies
from safla_diag._aio import off_loop
from safla_diag.diagnosis._sections._logs import regular_files


class _RefusingExecutor(ThreadPoolExecutor):
    """A host default executor that records every submission (the library must make none)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[object] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(fn)
        return super().submit(fn, *args, **kwargs)


def _nobody_reads(fifo: Path) -> bool:
    """True when no thread has the FIFO open for reading (a non-blocking writer gets ENXIO)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as err:
        return err.errno == errno.ENXIO
    os.close(fd)
    return False


def test_eight_doctors_on_a_fifo_park_no_thread(tmp_path: Path) -> None:
    """Eight doctors whose log is a FIFO nobody writes: refused with a reason, nothing waits on it."""
    fifo = tmp_path / "app.log"
    os.mkfifo(fifo)
    host = _RefusingExecutor()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(host)
        diag = [Diagnostics({"log_paths": [str(fifo)]}, sections=["logs"]) for _ in range(8)]
        async with asyncio.timeout(60):
            reports = await asyncio.gather(*(d.adoctor() for d in diag))
            # Afterwards the library's own pool and the host's executor both still answer.
            deps = await off_loop(check_dependencies, ["attrs"])
            assert deps.ok
            assert await loop.run_in_executor(None, threading.get_ident)
        return reports

    try:
        reports = asyncio.run(main())
    finally:
        host.shutdown(wait=True)
    for report in reports:
        logs = report.section("logs")
        assert any("named pipe" in f.message and f.severity == "warning" for f in logs.findings)
        assert logs.facts["refused"][0]["path"] == str(fifo)
    assert _nobody_reads(fifo)
    # Only the one call the test made itself went to the host's executor.
    assert [getattr(fn, "func", fn) for fn in host.submitted] == [threading.get_ident]


def test_regular_files_refuses_devices_and_reads_each_file_once(tmp_path: Path) -> None:
    """A device is refused, a symlink loop under ** reads the one file once, a missing path is kept."""
    (tmp_path / "a.log").write_text("ERROR x\n")
    (tmp_path / "self").symlink_to(".")
    chosen = regular_files(["/dev/zero", str(tmp_path / "**" / "*.log"), str(tmp_path / "nope")])
    assert [p for p, _ in chosen.refused] == ["/dev/zero"]
    assert "character device" in chosen.refused[0][1]
    assert chosen.paths == [str(tmp_path / "a.log"), str(tmp_path / "nope")]


def test_off_loop_never_uses_the_default_executor() -> None:
    """A library call that blocks does so on the library's pool; the host's thread stays free."""
    host = _RefusingExecutor()
    release = threading.Event()

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(host)
        stuck = asyncio.ensure_future(off_loop(release.wait, 30))
        try:
            async with asyncio.timeout(30):
                await asyncio.sleep(0)
                assert await asyncio.get_running_loop().run_in_executor(None, int, "7") == 7
        finally:
            release.set()
            await stuck

    asyncio.run(main())
    host.shutdown(wait=True)
    assert len(host.submitted) == 1


def test_cli_doctor_exits_with_a_fifo_log(tmp_path: Path, cli: Any) -> None:
    """`safla-diag doctor` with a FIFO in log_paths prints its report and exits."""
    fifo = tmp_path / "app.log"
    os.mkfifo(fifo)
    cfg = tmp_path / "safla.json"
    cfg.write_text(json.dumps({"log_paths": [str(fifo)]}))
    proc = cli("doctor", "--config", str(cfg), "--json", timeout=120)
    doc = json.loads(proc.stdout)
    logs = next(s for s in doc["sections"] if s["name"] == "logs")
    assert any("named pipe" in f["message"] for f in logs["findings"])
    assert _nobody_reads(fifo)
