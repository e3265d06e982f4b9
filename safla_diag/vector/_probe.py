"""
Load suspect index files in an isolated child process, so that a file faiss chokes on cannot
crash, hang or balloon the host.

The parent (:func:`probe_files`) starts a Python child running :func:`_main`, sends it the jobs as
JSON on stdin, and reads one JSON line per event from its stdout. The child caps its own address
space (RLIMIT_AS) at a few times the file's size above its baseline before each file, and the parent
kills it when a file takes longer than the timeout. When the child dies (a signal, the memory cap),
the file it was on is reported and a fresh child carries on with the rest, so one spawn checks many
files.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import attrs

__all__ = ["ProbeJob", "ProbeResult", "bulk_probe", "probe_files"]

_MARK = "@@safla-probe "
_STARTUP_TIMEOUT = 60.0
_SLACK = 256 * 1024 * 1024
_TIMEOUT_CEILING = 600.0


@attrs.frozen(kw_only=True)
class ProbeJob:
    """One file to load in the child, with the canaries to run on it."""

    path: str
    canaries: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ProbeResult:
    """
    What the child found.

    ``status``: ``loaded`` (faiss loaded it; see ``problems``), ``rejected`` (faiss raised an
    error), ``memory`` (it hit the memory cap), ``crashed`` (the child died of a signal),
    ``timeout`` (it took too long and was killed), ``error`` (the probe itself failed).
    """

    path: str
    status: str
    detail: str = ""
    info: dict[str, Any] | None = None
    problems: tuple[str, ...] = ()
    canaries_passed: int | None = None
    canaries_total: int | None = None
    file_size: int | None = None
    roundtrip_size: int | None = None
    roundtrip_identical: bool | None = None
    file_digest: str | None = None
    duration: float = 0.0

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"


# The child imports only this layer's modules, not the facade (and so not every other layer): it
# starts faster, and nothing unrelated can break it. Packages are stubbed with their real paths.
_BOOT = """
import sys, types
root = sys.argv[1]
for name, sub in (("safla_diag", ""), ("safla_diag.vector", "/vector")):
    module = types.ModuleType(name)
    module.__path__ = [root + sub]
    sys.modules[name] = module
from safla_diag.vector._probe import _main
raise SystemExit(_main())
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # One thread: predictable memory, and the host's cores stay the host's.
    env["OMP_NUM_THREADS"] = "1"
    return env


class _Child:
    def __init__(self, jobs: list[dict[str, Any]], memory_factor: float, slack: int) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(Path(__file__).resolve().parent.parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=_child_env(),
            start_new_session=True,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        payload = json.dumps(
            {"jobs": jobs, "memory_factor": memory_factor, "slack": slack, "parent": os.getpid()}
        )
        payload_bytes = payload.encode()
        try:
            self.proc.stdin.write(payload_bytes)
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.fd = self.proc.stdout.fileno()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.buf = b""

    def next_event(self, deadline: float) -> dict[str, Any] | None:
        """The next event; None at EOF (the child exited or died). Raises TimeoutError."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1 :]
                text = line.decode("utf-8", "replace")
                if text.startswith(_MARK):
                    try:
                        event: dict[str, Any] = json.loads(text[len(_MARK) :])
                    except ValueError:
                        continue
                    return event
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not self.sel.select(remaining):
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk

    def death(self) -> str:
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.wait()
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - 400))
        tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        last = tail[-1] if tail else ""
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return f"the loader process was killed by {name}"
        return f"the loader process exited with status {rc}" + (f" ({last})" if last else "")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        self.sel.close()
        for stream in (self.proc.stdout, self.stderr):
            if stream is not None:
                stream.close()


def probe_files(
    jobs: Sequence[ProbeJob],
    *,
    timeout: float | None = None,
    memory_factor: float = 4.0,
    slack: int = _SLACK,
) -> list[ProbeResult]:
    """
    Load each file in an isolated child and report what faiss and our checks make of it.

    Args:
        jobs: The files (and their canaries).
        timeout: Seconds allowed per file; None picks 30 s plus 1 s per 20 MB on disk (at most
            10 minutes).
        memory_factor: The child's address space may grow by this many times the bytes the file
            holds on disk (a sparse file's announced size does not count), within half the
            machine's memory.
        slack: ...plus this many bytes (the interpreter's and faiss's own needs).

    Returns:
        One result per job, in order. Never raises for what a file does to the child.
    """
    run = _Run(jobs, timeout)
    todo = list(range(len(jobs)))
    while todo:  # each pass is one child; it hands back what a fresh child must carry on with
        todo = run.one_child(todo, memory_factor, slack)
    return [run.results[i] for i in range(len(jobs))]


def disk_bytes(path: str) -> int:
    """
    The bytes a file really holds on disk: its size, but no more than its allocated blocks.

    A sparse file announces any size it likes (``truncate -s 100G``) while holding a few KiB;
    limits that scale with what a file holds must not scale with what it announces.
    """
    try:
        st = os.stat(path)
    except OSError:
        return 0
    blocks = getattr(st, "st_blocks", None)
    return st.st_size if blocks is None else min(st.st_size, blocks * 512)


def timeout_for(on_disk: int) -> float:
    """Seconds allowed to load a file holding ``on_disk`` bytes: 30 s + 1 s per 20 MB, capped."""
    return min(_TIMEOUT_CEILING, 30.0 + on_disk / (20 * 1024 * 1024))


def memory_ceiling() -> int:
    """The most the loader may ever grow by, whatever the file: half the machine's memory."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not on Linux
        return 8 * 1024**3


def bulk_probe(paths: Sequence[str], **kwargs: Any) -> list[ProbeResult]:
    """Probe many files (no canaries) in one child: the corruption battery's way."""
    return probe_files([ProbeJob(path=p) for p in paths], **kwargs)


class _Phase(enum.Enum):
    """Where one child's run over its jobs stands."""

    STARTING = enum.auto()  # no file begun yet: the start-up deadline runs
    LOADING = enum.auto()  # the child announced a file: that file's deadline runs
    RESPAWN = enum.auto()  # the child died or was killed on a file: a fresh one takes the rest
    FINISHED = enum.auto()  # every job of the batch has a result


class _Run:
    """The results of one :func:`probe_files` call, filled in by one child after another."""

    def __init__(self, jobs: Sequence[ProbeJob], timeout: float | None) -> None:
        self.jobs = jobs
        self.timeout = timeout
        self.payloads = [attrs.asdict(j) for j in jobs]
        self.results: dict[int, ProbeResult] = {}

    def limit_for(self, i: int) -> float:
        if self.timeout is not None:
            return self.timeout
        return timeout_for(disk_bytes(self.jobs[i].path))

    def one_child(self, batch: list[int], memory_factor: float, slack: int) -> list[int]:
        """Run one child over ``batch``; returns the jobs a fresh child must still do."""
        child = _Child([dict(self.payloads[i], index=i) for i in batch], memory_factor, slack)
        phase, current, started = _Phase.STARTING, -1, time.monotonic()
        deadline = started + _STARTUP_TIMEOUT
        try:
            while phase in (_Phase.STARTING, _Phase.LOADING):
                try:
                    event = child.next_event(deadline)
                except TimeoutError:
                    child.kill()
                    phase = self._timed_out(batch, phase, current, started)
                    continue
                if event is None:
                    phase = self._died(batch, phase, current, child.death(), started)
                    continue
                kind = event.get("event")
                if kind == "start":
                    phase, current, started = _Phase.LOADING, int(event["index"]), time.monotonic()
                    deadline = started + self.limit_for(current)
                elif kind == "result":
                    self._record(event)
                elif kind == "done":
                    self._fill(batch, "error", "the loader skipped it")
                    phase = _Phase.FINISHED
        finally:
            child.close()
        return [i for i in batch if i not in self.results] if phase is _Phase.RESPAWN else []

    def _timed_out(self, batch: list[int], phase: _Phase, current: int, started: float) -> _Phase:
        if phase is _Phase.STARTING:  # the child never got going: report the rest and stop
            self._fill(batch, "error", "the loader process did not start in time")
            return _Phase.FINISHED
        self.results[current] = ProbeResult(
            path=self.jobs[current].path,
            status="timeout",
            detail=f"loading took longer than {self.limit_for(current):.0f} s; killed",
            duration=time.monotonic() - started,
        )
        return _Phase.RESPAWN

    def _died(
        self, batch: list[int], phase: _Phase, current: int, reason: str, started: float
    ) -> _Phase:
        if phase is _Phase.STARTING or current in self.results:  # not on a file: the probe broke
            self._fill(batch, "error", reason)
            return _Phase.FINISHED
        self.results[current] = ProbeResult(
            path=self.jobs[current].path,
            status="crashed",
            detail=reason,
            duration=time.monotonic() - started,
        )
        return _Phase.RESPAWN

    def _fill(self, batch: list[int], status: str, detail: str) -> None:
        for i in batch:
            self.results.setdefault(
                i, ProbeResult(path=self.jobs[i].path, status=status, detail=detail)
            )

    def _record(self, event: dict[str, Any]) -> None:
        i = int(event["index"])
        self.results[i] = ProbeResult(
            path=self.jobs[i].path,
            status=str(event["status"]),
            detail=str(event.get("detail", "")),
            info=event.get("info"),
            problems=tuple(event.get("problems", ())),
            canaries_passed=event.get("canaries_passed"),
            canaries_total=event.get("canaries_total"),
            file_size=event.get("file_size"),
            roundtrip_size=event.get("roundtrip_size"),
            roundtrip_identical=event.get("roundtrip_identical"),
            file_digest=event.get("file_digest"),
            duration=float(event.get("duration", 0.0)),
        )


# --------------------------------------------------------------------------------------- child


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(_MARK + json.dumps(event) + "\n")
    sys.stdout.flush()


def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cap_memory(size: int, factor: float, slack: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    vm = _vm_bytes()
    if vm is None:
        return
    soft = int(vm + min(factor * size + slack, memory_ceiling()))
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _hash_and_size(path: str) -> tuple[int, str]:
    from ._fs import hash_file

    return hash_file(path, "xxh3_128")


def _check_one(job: dict[str, Any], memory_factor: float, slack: int) -> dict[str, Any]:
    from . import _faiss, _plausible
    from ._fs import new_hasher

    path = job["path"]
    out: dict[str, Any] = {"index": job["index"]}
    size = os.path.getsize(path)
    out["file_size"] = size
    _cap_memory(disk_bytes(path), memory_factor, slack)
    _faiss.faiss()  # a missing or too old faiss is an error before the file is touched
    try:
        with _faiss.vector_byte_limit(size + 1024 * 1024):
            index = _faiss.read_index_file(path)
    except MemoryError:
        return {**out, "status": "memory", "detail": "loading exceeded the memory cap"}
    except Exception as err:
        text = str(err).strip().splitlines()
        detail = next(
            (ln for ln in text if "Error" in ln or "error" in ln), text[0] if text else ""
        )
        status = "memory" if "bad_alloc" in str(err) else "rejected"
        return {**out, "status": status, "detail": f"faiss refused it: {detail.strip()[:300]}"}
    problems: list[str] = []
    try:
        out["info"] = _faiss.describe(index)
        problems += _plausible.structural_problems(index)
        if not problems:
            problems += _plausible.finite_problems(index)
        if not problems:
            _faiss.smoke_search(index)
            canaries = job.get("canaries")
            if canaries:
                passed, bad = _faiss.check_canaries(index, canaries)
                out["canaries_passed"] = passed
                out["canaries_total"] = len(canaries.get("expected_ids", []))
                problems += bad
        # Write it back through a hasher: faiss ignores trailing bytes, this finds them.
        h = new_hasher("xxh3_128")
        count = [0]

        def sink(b: bytes) -> int:
            h.update(b)
            count[0] += len(b)
            return len(b)

        _faiss.write_index_stream(index, sink)
        out["roundtrip_size"] = count[0]
        _, file_digest = _hash_and_size(path)
        out["file_digest"] = file_digest
        identical = count[0] == size and h.hexdigest() == file_digest
        # Hash-table indexes write their buckets in no fixed order: only the size can compare.
        canonical = out["info"]["class"] not in _faiss.NONCANONICAL
        out["roundtrip_identical"] = identical if canonical or count[0] != size else None
    except MemoryError:
        return {**out, "status": "memory", "detail": "checking it exceeded the memory cap"}
    except Exception as err:
        first = str(err).strip().splitlines()
        problems.append(f"faiss failed on it: {(first[0] if first else type(err).__name__)[:300]}")
    finally:
        del index
        gc.collect()
    return {**out, "status": "loaded", "problems": problems}


def _die_with_parent(parent: int | None) -> None:
    """
    Ask the kernel to kill this child when the host dies (Linux), and exit if it already has.

    The child runs in its own session, so that a signal to the host's process group does not
    reach it; without this, a host killed while the child is stuck on a file would leave it
    behind for good.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the host died before the request took effect


def _main() -> int:
    with contextlib.suppress(IndexError, ValueError):
        sys.path.remove("")
    doc = json.loads(sys.stdin.buffer.read())
    _die_with_parent(doc.get("parent"))
    factor = float(doc.get("memory_factor", 4.0))
    slack = int(doc.get("slack", _SLACK))
    from . import _faiss

    _faiss.set_threads(1)
    for job in doc["jobs"]:
        _emit({"event": "start", "index": job["index"]})
        t = time.monotonic()
        try:
            result = _check_one(job, factor, slack)
        except Exception as err:  # the probe itself must report, not die
            result = {
                "index": job["index"],
                "status": "error",
                "detail": f"{type(err).__name__}: {err}"[:300],
            }
        result["event"] = "result"
        result["duration"] = time.monotonic() - t
        _emit(result)
    _emit({"event": "done"})
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
