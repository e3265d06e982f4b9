"""The fast paths agree with the slow one: line ends 8 bytes at a time, a file read as two halves."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from safla_diag import LogReport, analyze_logs
from safla_diag.logs import _read, _scan

LOGGERS = ["app", "app.x", "db.pool", "a", "mcp.client.session", "safla.vector.index"]
LEVELS = ["DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL"]
MESSAGES = [
    "event {i} done",
    "ERROR in {i} - INFO - WARNING later",  # level words inside the message
    "task {i:x} failed: 'q' returned 503",
    "x",
    "",
]
TAILS = ["", "}", '  File "/srv/a.py", line 3, in run', "Traceback (most recent call last):", "\t{"]


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 40))
def test_line_ends_match_a_plain_search(data: bytes, lead: int) -> None:
    """Newlines found 8 bytes at a time are exactly the newlines, short and blank lines included."""
    raw = np.frombuffer(b"x" * lead + data.replace(b"\r", b"\n"), dtype=np.uint8)
    assert _scan._line_ends(np, raw).tolist() == np.flatnonzero(raw == 10).tolist()


def _log(
    rows: list[tuple[int, int, int, int]], nul_at: int | None, times_back: bool = False
) -> bytes:
    # Every logger speaks first (so its level offset is sniffed): the vectorised path only
    # tries the offsets it knows, so a logger first heard late, whose message holds a level
    # word where another logger's level sits, is the case it cannot tell apart.
    out = [f"2026-11-28 09:59:59,000 - {name} - INFO - hello" for name in LOGGERS]
    for i, (name, level, msg, tail) in enumerate(rows):
        j = (i * 7919) % len(rows) if times_back else i  # times back and forth, or in order
        ts = f"2026-11-28 10:{j // 60 % 60:02d}:{j % 60:02d},{j % 1000:03d}"
        line = f"{ts} - {LOGGERS[name]} - {LEVELS[level]} - {MESSAGES[msg].format(i=i)}"
        out.append(line.rstrip())
        if tail:
            out.append(TAILS[tail])
    data = ("\n".join(out) + "\n").encode()
    if nul_at is not None:
        hello = sum(len(line) + 1 for line in out[: len(LOGGERS)])
        at = hello + nul_at % (len(data) - hello)
        data = data[:at] + b"\0" * 700 + data[at:]
    return data


def _slow(monkeypatch: pytest.MonkeyPatch) -> None:
    init = _scan.FileScan.__init__

    def no_fast(self: _scan.FileScan, *args: Any) -> None:
        init(self, *args)
        self.fast = False

    monkeypatch.setattr(_scan.FileScan, "__init__", no_fast)


def _figures(report: LogReport) -> tuple[Any, ...]:
    return (
        report.counts,
        report.records,
        report.lines,
        report.bytes,
        report.nul_bytes,
        report.garbage_lines,
        report.files,
        [(t.level, t.template, t.count, t.first_seen, t.last_seen) for t in report.templates],
        report.matches.count if report.matches else None,
        [(s.reason, s.partial) for s in report.skipped],
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(LOGGERS) - 1),
            st.integers(0, len(LEVELS) - 1),
            st.integers(0, len(MESSAGES) - 1),
            st.integers(0, len(TAILS) - 1),
        ),
        min_size=2,
        max_size=150,
    ),
    st.sampled_from([1024, 4096]),
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.booleans(),
)
# Templates of many records in both halves, times back and forth: two halves once timed records
# that one pass never times (the first half's last, the second half's first).
@example([(i % 6, 4 if i % 3 else 5, i % 3, 0) for i in range(150)], 1024, None, True)
def test_two_halves_and_the_slow_path_agree(
    rows: list[tuple[int, int, int, int]], chunk_size: int, nul_at: int | None, times_back: bool
) -> None:
    """
    One log read three ways gives the same report: the vectorised path in one pass, the
    vectorised path as two halves at once (split threshold lowered), and every line parsed;
    first and last seen included when the times go back and forth.
    """
    data = _log(rows, nul_at, times_back)
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        path = Path(tmp) / "svc.log"
        path.write_bytes(data)

        def run() -> LogReport:
            return analyze_logs(
                path, chunk_size=chunk_size, top=100, pattern="ERROR", levels=("ERROR", "WARNING")
            )

        one = run()
        mp.setattr(_read, "SPLIT_BYTES", 1)
        mp.setattr(_read, "_spare_core", lambda: True)
        halves = run()
        _slow(mp)
        slow = run()
    assert _figures(one) == _figures(halves) == _figures(slow)
    # The halves show the examples one pass shows (the second half makes none the first has).
    assert [t.example for t in one.templates] == [t.example for t in halves.templates]
    if nul_at is None:
        assert one.records == len(rows) + len(LOGGERS)


def test_a_large_file_is_read_as_two_halves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the threshold the second half runs on a thread of its own, and nothing is lost."""
    rows = [(i % 6, i % 7, i % 4, i % 5) for i in range(3000)]
    path = tmp_path / "big.log"
    path.write_bytes(_log(rows, None))
    seq = analyze_logs(path, chunk_size=4096, top=100)
    calls: list[int] = []
    part = _read._scan_part

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return part(*args, **kwargs)

    monkeypatch.setattr(_read, "_scan_part", counted)
    monkeypatch.setattr(_read, "SPLIT_BYTES", 1 << 16)
    monkeypatch.setattr(_read, "_spare_core", lambda: True)
    both = analyze_logs(path, chunk_size=4096, top=100)
    assert len(calls) == 2
    monkeypatch.setattr(_read, "_spare_core", lambda: False)  # a busy machine: one pass
    calls.clear()
    assert _figures(analyze_logs(path, chunk_size=4096, top=100)) == _figures(seq)
    assert len(calls) == 1
    assert _figures(both) == _figures(seq)
    assert [t.example for t in both.templates] == [t.example for t in seq.templates]
    assert both.records == 3000 + len(LOGGERS)
    assert both.files == (str(path),)


_WORDS = ["alpha", "beta", "gamma", "delta", "kappa", "sigma", "omega", "north", "south", "upper"]


@pytest.mark.parametrize("pure", [False, True])
@pytest.mark.parametrize("max_keys", [None, 7])
def test_two_halves_give_the_rows_of_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pure: bool, max_keys: int | None
) -> None:
    """
    Hundreds of templates, read as two halves: counts, first and last seen, and examples are
    those of one pass. With times out of order (processes sharing a file) too: the second
    half's keys join the first's and are folded in once, as one pass folds them, so no record
    in the middle of the file is timed that one pass would not time. With a few keys held at a
    time (``max_keys``; times in order), the second half folds keys of its own before the end.
    """
    import random

    rng = random.Random(5)
    lines = [f"2026-11-28 09:59:59,000 - {name} - INFO - hello" for name in LOGGERS]
    for i in range(6000):
        if max_keys is None:  # out of order
            ts = f"10:{rng.randrange(60):02d}:{rng.randrange(60):02d},{rng.randrange(1000):03d}"
        else:
            ts = f"{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},{i % 1000:03d}"
        level = rng.choice(["ERROR", "WARNING", "INFO"])
        words = " ".join(rng.sample(_WORDS, rng.randint(1, 3)))
        lines.append(f"2026-11-28 {ts} - {LOGGERS[i % len(LOGGERS)]} - {level} - {words} n={i}")
        if rng.random() < 0.03:
            lines.append('Traceback (most recent call last):\n  File "a.py", line 1\nValueError: x')
    path = tmp_path / "shared.log"
    path.write_text("\n".join(lines) + "\n")
    if pure:
        monkeypatch.setenv("SAFLA_DIAG_PURE", "1")
    if max_keys is not None:
        monkeypatch.setattr(_scan, "_MAX_KEYS", max_keys)

    def run() -> LogReport:
        return analyze_logs(path, chunk_size=8192, top=10_000, levels=("ERROR", "WARNING"))

    one = run()
    folds: list[int] = []
    part = _read._scan_part

    def counted(*args: Any, **kwargs: Any) -> Any:
        got = part(*args, **kwargs)
        folds.append(got.scan.flushes if got.scan is not None else -1)
        return got

    monkeypatch.setattr(_read, "_scan_part", counted)
    monkeypatch.setattr(_read, "SPLIT_BYTES", 1 << 16)
    monkeypatch.setattr(_read, "_spare_core", lambda: True)
    halves = run()
    assert len(folds) == 2  # two halves, the second having folded keys of its own or not
    assert (folds[1] > 0) == (max_keys is not None)
    assert _figures(halves) == _figures(one)
    assert [t.example for t in halves.templates] == [t.example for t in one.templates]
    assert len(one.templates) > 30


@pytest.mark.parametrize(
    ("loadavg", "cores", "spare"),
    [
        (b"0.50 0.40 0.30 1/300 123\n", 2, True),  # only us: the other core is idle
        (b"1.90 1.40 0.30 1/300 123\n", 2, True),  # a busy minute ago, idle now
        (b"0.10 0.40 0.30 2/300 123\n", 2, True),  # one other thread: a share of its core
        (b"0.10 0.40 0.30 3/300 123\n", 2, False),  # two others: every core is busy
        (b"3.00 3.00 3.00 4/300 123\n", 4, True),
        (b"3.00 3.00 3.00 5/300 123\n", 4, False),
        (b"0.00 0.00 0.00 1/1 1\n", 1, False),  # one core: never
    ],
)
def test_a_spare_core_is_one_idle_now(loadavg: bytes, cores: int, spare: bool) -> None:
    """The split is decided by the threads ready to run now, not by the last minute's average
    (which holds this process's own earlier scans), and only every core busy stops it."""
    assert _read._idle_besides_us(loadavg, cores) is spare


@pytest.mark.skipif(not Path("/proc/loadavg").exists(), reason="no /proc/loadavg here")
def test_no_split_while_every_core_is_busy() -> None:
    """With a busy process per core (real ones, killed after), no core is spared."""
    import signal
    import subprocess
    import sys
    import time

    cores = _read._cores()
    if cores > 16:
        pytest.skip(f"{cores} cores: too many busy processes to start for a unit test")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)  # all of them started and spinning
        assert not _read._spare_core()
    finally:
        for h in hogs:
            h.send_signal(signal.SIGKILL)
            h.wait()
