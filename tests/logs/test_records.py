"""Every record counted: late levels, garbage inside a log, continuation lines, links, the twin."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safla_diag import LogReport, aanalyze_logs, analyze_logs
from safla_diag._report import Report
from safla_diag.logs import _scan


def _line(i: int, level: str, msg: str, name: str = "app") -> str:
    return (
        f"2026-11-28 10:{i // 60 % 60:02d}:{i % 60:02d},{i % 1000:03d} - {name} - {level} - {msg}"
    )


def test_a_level_missing_from_the_sniffed_sample_is_counted(tmp_path: Path) -> None:
    """Hadoop's case: 500 INFO lines, then 100 WARN lines: both are counted, under canonical names."""
    path = tmp_path / "hadoop.log"
    lines = [
        f"2015-10-18 18:01:{i % 60:02d},978 INFO [main] org.apache.X: step {i}" for i in range(500)
    ]
    lines += [
        f"2015-10-18 18:02:{i % 60:02d},978 WARN [main] org.apache.Y: lost {i}" for i in range(100)
    ]
    path.write_text("\n".join(lines) + "\n")
    for chunk_size in (1024, 1 << 20):
        report = analyze_logs(path, chunk_size=chunk_size, levels=("WARN",))
        assert report.counts == {"INFO": 500, "WARNING": 100}
        assert report.records == 600
        assert [(t.level, t.count) for t in report.templates] == [("WARNING", 100)]


def test_records_without_a_level_are_records(tmp_path: Path) -> None:
    """Syslog lines have no level: each is a record all the same."""
    path = tmp_path / "auth.log"
    path.write_text(
        "".join(f"Jun 14 15:16:{i:02d} combo sshd[{100 + i}]: session closed\n" for i in range(30))
    )
    report = analyze_logs(path, levels=())
    assert report.records == 30
    assert report.counts == {}


def _grep_count(path: Path, word: str) -> int:
    grep = shutil.which("grep")
    assert grep is not None
    out = subprocess.run([grep, "-a", "-c", word, str(path)], capture_output=True, check=False)
    return int(out.stdout)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(1, 9000), min_size=1, max_size=4))
def test_nul_runs_inside_a_log_are_skipped_not_the_file(seed: int, runs: list[int]) -> None:
    """
    A run of NUL bytes between records (what ext4 leaves after a crash) is skipped and counted;
    every record around it counts, as ``grep -a -c`` sees them.
    """
    import tempfile

    rng = random.Random(seed)
    lines = [
        _line(i, rng.choice(["INFO", "INFO", "ERROR", "WARNING"]), f"job {i} x") for i in range(300)
    ]
    blob = bytearray()
    cuts = sorted(rng.sample(range(1, 300), len(runs)))
    for i, line in enumerate(lines):
        if cuts and i == cuts[0]:
            blob += b"\0" * runs[len(runs) - len(cuts)]
            cuts.pop(0)
            if rng.random() < 0.5:
                blob += b"\n"
        blob += line.encode() + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "crashed.log"
        path.write_bytes(bytes(blob))
        for chunk_size in (4096, 1 << 20):
            report = analyze_logs(path, chunk_size=chunk_size, levels=("ERROR",))
            assert report.counts.get("ERROR", 0) == _grep_count(path, "ERROR")
            assert report.counts.get("WARNING", 0) == _grep_count(path, "WARNING")
            assert report.records == 300
            assert report.nul_bytes == sum(runs)
            assert report.files == (str(path),)
            [note] = report.skipped
            assert note.partial and "NUL" in note.reason


def test_a_binary_blob_inside_a_log_is_skipped_line_by_line(tmp_path: Path) -> None:
    """Binary lines in the middle are garbage, counted; the text around them is read."""
    rng = random.Random(3)
    blob = bytes(rng.randrange(1, 32) for _ in range(3000)).replace(b"\n", b"\x01")
    text = [_line(i, "ERROR", f"boom {i}") for i in range(2000)]
    path = tmp_path / "x.log"
    path.write_bytes(
        ("\n".join(text[:25]) + "\n").encode()
        + blob
        + b"\n"
        + ("\n".join(text[25:]) + "\n").encode()
    )
    report = analyze_logs(path)
    assert report.counts == {"ERROR": 2000}
    assert report.garbage_lines == 1
    assert report.skipped[0].partial


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 40, "ELF"),
        (b"\0" * 70_000, "binary data"),
        (random.Random(1).randbytes(70_000), "binary data"),
    ],
)
def test_a_binary_file_is_skipped_whole(tmp_path: Path, content: bytes, reason: str) -> None:
    """A known magic, or nothing but binary data: the file is skipped, with the reason."""
    path = tmp_path / "core"
    path.write_bytes(content)
    report = analyze_logs(path)
    assert report.files == ()
    assert report.records == 0
    assert reason in report.skipped[0].reason


def test_magic_with_nul_bytes_is_seen_before_nul_bytes_end_lines(tmp_path: Path) -> None:
    """
    A real SQLite database full of log lines (its magic ends in a NUL byte, and NUL bytes end
    lines for the scanner) is skipped as one, at any size; so is WebAssembly (magic ``\\0asm``).
    """
    import sqlite3

    db = tmp_path / "logs.db"
    conn = sqlite3.connect(db)
    with conn:  # commits; the connection is closed below (3.13 warns of an unclosed one)
        conn.execute("CREATE TABLE log (line TEXT)")
        conn.executemany(
            "INSERT INTO log VALUES (?)",
            [(f"\n2026-11-28 10:00:{i % 60:02d},000 - app - ERROR - failed {i}\n",) for i in range(20000)],
        )  # fmt: skip
    conn.close()
    assert db.stat().st_size > 1 << 20
    wasm = tmp_path / "mod.wasm"
    wasm.write_bytes(b"\0asm\x01\0\0\0" + b"\n2026-11-28 10:00:00,000 - app - ERROR - x\n" * 40_000)
    for path, what in ((db, "SQLite"), (wasm, "WebAssembly")):
        for chunk_size in (4096, 1 << 21):
            report = analyze_logs(path, chunk_size=chunk_size)
            assert (report.records, report.files) == (0, ()), path
            assert what in report.skipped[0].reason


def test_two_loggers_and_short_continuation_lines(tmp_path: Path) -> None:
    """
    ``%(asctime)s - %(name)s - %(levelname)s - %(message)s`` with loggers ``app`` and ``app.x``
    and multi-line messages ending in a short ``}`` line: 100 ERROR records, no more, and no
    empty template.
    """
    rng = random.Random(7)
    lines: list[str] = []
    for i in range(400):
        name = rng.choice(["app", "app.x"])
        level = "ERROR" if i % 4 == 0 else "INFO"
        lines.append(_line(i, level, f"payload {i} {{", name))
        lines.extend(['  "k": 1,', "}"])
    path = tmp_path / "two.log"
    path.write_text("\n".join(lines) + "\n")
    for chunk_size in (1000, 4096, 1 << 20):
        report = analyze_logs(path, chunk_size=chunk_size, top=50)
        assert report.counts == {"ERROR": 100, "INFO": 300}
        assert report.records == 400
        assert [(t.template, t.count) for t in report.templates] == [("payload <NUM> {", 100)]
        assert report.templates[0].example.endswith("}")


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["app", "app.x", "db.pool", "a", "mcp.client.session"]),
            st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=120,
    ),
    st.sampled_from([512, 2048, 1 << 20]),
)
def test_fast_path_agrees_with_parsing_every_line(
    records: list[tuple[str, str, int]], chunk_size: int
) -> None:
    """The vectorised path counts exactly what parsing every line one by one counts."""
    text = []
    for i, (name, level, extra) in enumerate(records):
        text.append(_line(i, level, f"event {i % 7} done", name))
        text.extend(["}"] * extra)
    data = ("\n".join(text) + "\n").encode()
    import io

    fast = analyze_logs(io.BytesIO(data), chunk_size=chunk_size, levels=("ERROR", "WARNING"))
    slow_fast = _scan.FileScan.__init__

    def no_fast(self: _scan.FileScan, *args: object) -> None:
        slow_fast(self, *args)  # type: ignore[arg-type]
        self.fast = False

    _scan.FileScan.__init__ = no_fast  # type: ignore[method-assign]
    try:
        slow = analyze_logs(io.BytesIO(data), chunk_size=chunk_size, levels=("ERROR", "WARNING"))
    finally:
        _scan.FileScan.__init__ = slow_fast  # type: ignore[method-assign]
    assert fast.counts == slow.counts
    assert fast.records == slow.records == len(records)
    assert [(t.template, t.count) for t in fast.templates] == [
        (t.template, t.count) for t in slow.templates
    ]


def test_glob_does_not_follow_symlink_loops(tmp_path: Path) -> None:
    """A ``self -> .`` link and two links into each other: each file is read once."""
    root = tmp_path / "logs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.log").write_text(_line(1, "ERROR", "once") + "\n")
    (root / "b" / "y.log").write_text(_line(2, "ERROR", "twice") + "\n")
    os.symlink(".", root / "self")
    os.symlink("../b", root / "a" / "to_b")
    os.symlink("../a", root / "b" / "to_a")
    os.symlink("x.log", root / "a" / "same.log")
    report = analyze_logs(str(root / "**" / "*.log"))
    assert report.counts == {"ERROR": 2}
    assert len(report.files) == 2


def test_the_coroutine_twin_reads_off_the_loop(tmp_path: Path) -> None:
    """aanalyze_logs gives analyze_logs' report, and its reads happen on another thread."""
    path = tmp_path / "x.log"
    path.write_text("".join(_line(i, "ERROR", f"boom {i}") + "\n" for i in range(20)))
    readers: set[int] = set()

    class Spy:
        def __init__(self) -> None:
            self.f = path.open("rb")
            self.name = str(path)

        def readinto(self, buf: memoryview) -> int:
            readers.add(threading.get_ident())
            return self.f.readinto(buf)

        def read(self, n: int = -1) -> bytes:
            return self.f.read(n)

        def seekable(self) -> bool:
            return True

        def seek(self, pos: int, whence: int = 0) -> int:
            return self.f.seek(pos, whence)

    async def main() -> tuple[LogReport, int]:
        spy = Spy()
        try:
            return await aanalyze_logs([spy]), threading.get_ident()
        finally:
            spy.f.close()

    report, loop_thread = asyncio.run(main())
    assert report.counts == analyze_logs(path).counts == {"ERROR": 20}
    assert readers and loop_thread not in readers


def test_the_coroutine_twin_checks_arguments_at_once() -> None:
    """A bad since raises before anything is read."""
    with pytest.raises(ValueError):
        asyncio.run(aanalyze_logs("nothing.log", since="yesterday"))


def test_log_report_follows_the_report_contract(tmp_path: Path) -> None:
    """to_dict is the truth; to_json round-trips it; text and HTML show the records."""
    path = tmp_path / "x.log"
    path.write_text("".join(_line(i, "ERROR", f"<b>{i}</b> failed") + "\n" for i in range(5)))
    report = analyze_logs(path)
    assert isinstance(report, Report)
    assert json.loads(report.to_json(sort_keys=True)) == json.loads(json.dumps(report.to_dict()))
    assert report.to_dict()["records"] == 5
    assert "5 records" in report.to_text()
    html = report._repr_html_()
    assert "&lt;b&gt;" in html and "<b>" not in html.replace("<b>Log", "")


def test_folding_keys_in_mid_file_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many distinct keys are folded into the table mid-file: same rows, counts and times."""
    path = tmp_path / "x.log"
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa"]
    path.write_text(
        "".join(
            _line(i, "ERROR", f"{words[i % 7]} {words[i // 7 % 7]} {words[i // 49 % 7]} {i}") + "\n"
            for i in range(700)
        )
    )
    want = analyze_logs(path, chunk_size=2048, top=1000)
    monkeypatch.setattr(_scan, "_MAX_KEYS", 10)
    got = analyze_logs(path, chunk_size=2048, top=1000)
    assert [(t.template, t.count, t.first_seen, t.last_seen) for t in got.templates] == [
        (t.template, t.count, t.first_seen, t.last_seen) for t in want.templates
    ]
    assert sum(t.count for t in got.templates) == 700
