"""
The native kernel gives the numpy path's answers: over generated variety, over public logs, at
every chunk boundary; and it refuses arguments it cannot honour.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safla_diag import LogReport, analyze_logs
from safla_diag.logs import _kernel

from .test_split import _figures

DEV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "loghub2k-dev"

needs_native = pytest.mark.skipif(
    _kernel.kernel() is None and not os.environ.get("SAFLA_DIAG_REQUIRE_NATIVE"),
    reason="the native kernel was not built here (no C compiler at install time)",
)

# Lines of many shapes: two logging layouts, loggers of several lengths (so several level
# offsets), level words in messages, lower case and title case levels, CRLF, blank and tab-led
# continuations, tracebacks, control bytes, NUL runs, hex and decimal ids, over-long lines,
# syslog and bracketed lines that only the parser reads.
LOGGERS = ["a", "app", "app.x", "db.pool", "safla.vector.index", "mcp.client.session"]
LEVELS = ["DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL", "Info", "error"]
MESSAGES = [
    "event {i} done",
    "ERROR in {i} - INFO - WARNING later",
    "task {i:x} failed: 'q' returned 503",
    "id=deadbeef{i} peer 10.0.{i}.1 path /var/lib/x_{i}.faiss",
    "abc def",
    "",
    "x" * 300,
]
EXTRA = [
    "}}",
    "Traceback (most recent call last):",
    '  File "/srv/a.py", line 3, in run',
    "\t{{",
    "ValueError: bad {i}",
    "",
    "Nov 28 10:00:{s:02d} host sshd[{i}]: error: auth failed for root",
    "[2026-11-28 10:00:{s:02d}] [error] [client 10.0.0.{i}] denied",
    "\x01\x02\x03\x04binary\x05\x06",
    "\x00" * 40,
    "2026-11-28 10:00:{s:02d},000 - late.logger.name - ERROR - late {i}",
    "2026-11-28 10:00:{s:02d},000 - app - NOTALEVEL - x",
]


def _build(rows: list[tuple[int, int, int, int, bool]], layout: int) -> bytes:
    out: list[str] = []
    for i, (name, level, msg, extra, crlf) in enumerate(rows):
        s = i % 60
        ts = f"2026-11-28 10:{i // 60 % 60:02d}:{s:02d},{i % 1000:03d}"
        text = MESSAGES[msg].format(i=i)
        if layout == 0:
            line = f"{ts} - {LOGGERS[name]} - {LEVELS[level]} - {text}"
        else:
            line = f"{ts} {LEVELS[level]} {LOGGERS[name]}: {text}"
        out.append(line + ("\r" if crlf else ""))
        if extra >= 0:
            out.append(EXTRA[extra].format(i=i, s=s))
    return ("\n".join(out) + "\n").encode()


def _both(path: Path, **kw: Any) -> tuple[LogReport, LogReport]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SAFLA_DIAG_PURE", raising=False)
        native = analyze_logs(path, **kw)
        mp.setenv("SAFLA_DIAG_PURE", "1")
        pure = analyze_logs(path, **kw)
    return native, pure


_ROWS = st.lists(
    st.tuples(
        st.integers(0, len(LOGGERS) - 1),
        st.integers(0, len(LEVELS) - 1),
        st.integers(0, len(MESSAGES) - 1),
        st.integers(-4, len(EXTRA) - 1),
        st.booleans(),
    ),
    min_size=1,
    max_size=120,
)
_CHUNKS = st.sampled_from([1024, 1500, 4096, 1 << 16])
_LEVEL_SETS = st.sampled_from([("ERROR", "CRITICAL"), ("WARNING", "ERROR", "INFO"), ()])
Rows = list[tuple[int, int, int, int, bool]]


def _agree(rows: Rows, layout: int, chunk_size: int, levels: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "svc.log"
        path.write_bytes(_build(rows, layout))
        native, pure = _both(path, chunk_size=chunk_size, top=1000, levels=levels, pattern="ERR")
    assert _figures(native) == _figures(pure)
    assert [t.example for t in native.templates] == [t.example for t in pure.templates]


@needs_native
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ROWS, st.integers(0, 1), _CHUNKS, _LEVEL_SETS)
def test_native_and_numpy_paths_agree(
    rows: Rows, layout: int, chunk_size: int, levels: tuple[str, ...]
) -> None:
    """Generated logs, every chunk size: the same counts, records, lines, garbage, templates."""
    _agree(rows, layout, chunk_size, levels)


@needs_native
@pytest.mark.parametrize("chunk_size", [1024, 4096, 1 << 16])
def test_a_learned_shape_never_reads_a_lowercase_word_as_a_level(chunk_size: int) -> None:
    """
    Found by the property test: an Apache-style ``[error]`` line makes lowercase a level
    spelling of the file, and a shape learned from ``- a - DEBUG -`` lines then read the
    ``error`` of ``- a - error -`` as a level, which the parser reads as prose (lowercase counts
    only as a line's first token). Such lines stay with the parser: both paths give 1 ERROR.
    """
    rows = [(0, 0, 0, 0, False)] * 17 + [(0, 0, 0, 7, False), (0, 0, 0, 0, False)]
    rows.append((0, 8, 0, 0, False))
    _agree(rows, 0, chunk_size, ("ERROR", "CRITICAL"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "svc.log"
        path.write_bytes(_build(rows, 0))
        native, _ = _both(path, chunk_size=chunk_size)
    assert native.counts == {"DEBUG": 19, "ERROR": 1}


@needs_native
@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ROWS, st.integers(0, 1), _CHUNKS, _LEVEL_SETS)
def test_native_and_numpy_paths_agree_soak(
    rows: Rows, layout: int, chunk_size: int, levels: tuple[str, ...]
) -> None:
    """The same with a soak's budget (``nox -s soak``)."""
    _agree(rows, layout, chunk_size, levels)


@needs_native
@pytest.mark.skipif(
    not DEV.is_dir(), reason="the Loghub development samples are not beside the repo"
)
@pytest.mark.parametrize("name", ["BGL", "HDFS", "HPC", "Hadoop", "Spark", "Thunderbird", "Windows", "Zookeeper"])  # fmt: skip
def test_native_and_numpy_paths_agree_on_loghub(name: str) -> None:
    """Public logs nobody here wrote: both paths read them alike, at two chunk sizes."""
    path = DEV / f"{name}_2k.log"
    for chunk_size in (4096, 1 << 21):
        native, pure = _both(path, chunk_size=chunk_size, top=1000, levels=("ERROR", "WARNING"))
        assert _figures(native) == _figures(pure)
        assert native.records >= 2000


@needs_native
def test_the_kernel_is_used_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _kernel.kernel() is not None
    monkeypatch.setenv("SAFLA_DIAG_PURE", "1")
    assert _kernel.kernel() is None
    monkeypatch.setenv("SAFLA_DIAG_PURE", "0")
    assert _kernel.kernel() is not None


@needs_native
def test_the_kernel_refuses_what_it_cannot_honour() -> None:
    mod = _kernel.kernel()
    assert mod is not None
    z = bytes(256)
    buf = bytearray(b"2026 - INFO - x\n" * 4)
    ok_left = bytes(1 if c in b' \t[<("' else 0 for c in range(256))
    ctrl = bytes(
        1 if c in {*range(9), 11, 12, *range(14, 27), *range(28, 32), 127} else 0
        for c in range(256)
    )

    def call(**kw: Any) -> Any:
        args: dict[str, Any] = {
            "buf": buf, "cut": len(buf), "prefix": b"", "offsets": [], "words": b"",
            "levels": b"", "left": ok_left, "right": z, "initial": z, "ctrl": ctrl,
            "tags": bytes(6), "fast": False, "has_levels": False, "bare": False, "known": b"",
        }  # fmt: skip
        args.update(kw)
        return mod.scan(*args.values())

    assert call()[0] == 4  # four lines
    with pytest.raises(ValueError, match="cut"):
        call(cut=len(buf) + 1)
    with pytest.raises(ValueError, match="cut"):
        call(cut=-1)
    with pytest.raises(ValueError, match="left"):
        call(left=z)  # the sixteen-byte tests hard-code the delimiters
    with pytest.raises(ValueError, match="ctrl"):
        call(ctrl=z)
    with pytest.raises(ValueError, match="prefix"):
        call(prefix=b"x" * 17)
    with pytest.raises(ValueError, match="sorted"):
        call(words=(2).to_bytes(8, "little") + (1).to_bytes(8, "little"), levels=b"\0\0")
    with pytest.raises(ValueError, match="match"):
        call(words=b"\0" * 8, levels=b"")
    with pytest.raises(TypeError):
        call(buf="text")
    # A buffer without a trailing newline: the partial line is not a line.
    assert call(buf=bytearray(b"a\nb"), cut=3)[0] == 1


@needs_native
def test_sixteen_and_thirty_two_byte_loads_agree(tmp_path: Path) -> None:
    """The SSE2 scan (forced in a child process) and the AVX2 one give the same figures."""
    import random
    import subprocess
    import sys

    rng = random.Random(5)
    rows = [
        (rng.randrange(len(LOGGERS)), rng.randrange(len(LEVELS)), rng.randrange(len(MESSAGES)),
         rng.randrange(-4, len(EXTRA)), rng.random() < 0.1)
        for _ in range(3000)
    ]  # fmt: skip
    path = tmp_path / "svc.log"
    path.write_bytes(_build(rows, 0))
    code = (
        "import sys; from safla_diag import analyze_logs; "
        "r = analyze_logs(sys.argv[1], chunk_size=4096, top=1000); "
        "print(repr((sorted(r.counts.items()), r.records, r.lines, r.garbage_lines, "
        "[(t.level, t.template, t.count) for t in r.templates])))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, str(path)],
            env={
                **os.environ,
                "SAFLA_DIAG_NO_AVX2": avx,
                "SAFLA_DIAG_NO_SIMD_LEVELS": simd,
                "SAFLA_DIAG_PURE": "0",
            },
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for avx, simd in (("1", ""), ("0", ""), ("0", "1"))
    ]
    assert runs[0] == runs[1] == runs[2]
    assert "ERROR" in runs[0]


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=600),
    st.binary(max_size=16),
    st.lists(st.integers(1, 80), max_size=16),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_the_kernel_survives_any_bytes(
    data: bytes,
    prefix: bytes,
    offsets: list[int],
    fast: bool,
    has_levels: bool,
    draw: st.DataObject,
) -> None:
    """Random bytes, prefixes, offsets and cuts (buffers without padding, offsets past their
    end): no crash, and the figures stay within what the buffer holds."""
    from safla_diag.logs._bytes import luts

    mod = _kernel.kernel()
    assert mod is not None
    lt = luts()
    buf = bytearray(data)
    cut = draw.draw(st.integers(0, len(buf)))
    words = sorted(
        {int.from_bytes(w.ljust(8, b"\0"), "little") for w in (b"INFO", b"ERROR", b"WARN")}
    )
    lines, garbage, records, counts, slow, stats, keys, stopped = mod.scan(
        buf, cut, prefix, offsets,
        b"".join(w.to_bytes(8, "little") for w in words), bytes([1, 4, 3]),
        lt.left.astype("u1").tobytes(), lt.right.astype("u1").tobytes(),
        bytes(1 if chr(c) in "IEWiew" else 0 for c in range(256)), lt.ctrl.astype("u1").tobytes(),
        bytes([0, 0, 0, 1, 2, 0]), fast, has_levels, False, b"Traceback\nx",
    )  # fmt: skip
    assert stopped == -1  # no stop_run: read to the cut
    assert lines == bytes(buf[:cut]).count(b"\n")
    assert records + garbage + len(slow) // 24 <= lines
    assert sum(counts) <= records
    spans = memoryview(slow).cast("q").tolist()
    assert all(0 <= spans[k + 1] <= spans[k + 2] < cut for k in range(0, len(spans), 3))
    figures = memoryview(stats).cast("q").tolist()
    assert len(figures) % 8 == 0
    assert sum(figures[0::8]) == counts[3] + counts[4]
    assert len(figures) // 8 == (keys.count(b"\n") + 1 if keys else 0)
    for k in range(0, len(figures), 8):  # the first record's end: its line's, or later, or -1
        end = figures[k + 7]
        assert end == -1 or figures[k + 3] <= end <= cut


_WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"]


@needs_native
@pytest.mark.parametrize("max_keys", [2, 7, 20_000])
def test_the_kernel_s_memo_agrees_when_keys_are_flushed_mid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_keys: int
) -> None:
    """
    Hundreds of templates over many small chunks, the file's key table folded in every few keys
    (the kernel's memo emptied with it): counts, first and last times, examples as on the numpy
    path, where every chunk's keys are counted in Python.
    """
    import random

    from safla_diag.logs import _scan

    monkeypatch.setattr(_scan, "_MAX_KEYS", max_keys)
    rng = random.Random(7)
    lines = []
    for i in range(3000):
        words = " ".join(rng.sample(_WORDS, rng.randint(1, 4)))
        level = rng.choice(["ERROR", "ERROR", "WARNING", "INFO"])
        lines.append(
            f"2026-11-28 10:{i // 60 % 60:02d}:{i % 60:02d},{i % 1000:03d} - app - {level} - {words} n={i}"
        )
        if rng.random() < 0.05:
            lines.append('Traceback (most recent call last):\n  File "a.py", line 1\nValueError: x')
    path = tmp_path / "many.log"
    path.write_text("\n".join(lines) + "\n")
    native, pure = _both(path, chunk_size=4096, top=10_000, levels=("ERROR", "WARNING"))
    assert _figures(native) == _figures(pure)
    assert [t.example for t in native.templates] == [t.example for t in pure.templates]
    assert (
        sum(t.count for t in native.templates) == native.counts["ERROR"] + native.counts["WARNING"]
    )
    assert len(native.templates) > 50


@needs_native
def test_many_keys_of_few_templates_do_not_each_hold_a_record_for_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Thousands of distinct keys (a user name in each error, never masked alike) that merge into a
    few templates, each record with a long traceback: the keys' first records, kept until the
    file ends, are folded into the table whenever they hold more than the bound (here 4 KiB),
    and the report is the one without the bound, on both paths.
    """
    from safla_diag.logs import _scan

    names = [a + b for a in _WORDS for b in _WORDS]  # "alphabeta": no hex run with a digit
    trace = "".join(f'\n  File "/srv/app/m{k}.py", line {k}, in run\n    step()' for k in range(8))
    lines = []
    for i in range(1500):
        lines.append(
            f"2026-11-28 10:{i // 60 % 60:02d}:{i % 60:02d},{i % 1000:03d} - app - ERROR - "
            f"login failed for {names[i % len(names)]} from {names[(i * 7) % len(names)]}" + trace
        )
    path = tmp_path / "users.log"
    path.write_text("\n".join(lines) + "\n")
    kw: dict[str, Any] = {"chunk_size": 1 << 16, "top": 10_000}
    unbounded = analyze_logs(path, **kw)
    flushes = 0
    flush = _scan.FileScan._flush

    def counted(self: Any) -> None:
        nonlocal flushes
        flushes += 1
        flush(self)

    monkeypatch.setattr(_scan, "_MAX_FIRST_BYTES", 4096)
    monkeypatch.setattr(_scan.FileScan, "_flush", counted)
    native, pure = _both(path, **kw)
    assert flushes > 20  # a few keys at a time, on both paths
    assert _figures(native) == _figures(pure) == _figures(unbounded)
    assert [t.example for t in native.templates] == [t.example for t in unbounded.templates]
    assert len(native.templates) < 10 and native.counts["ERROR"] == 1500


def _error_tables() -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The kernel's left and control tables, and the word ERROR with its initial and right."""
    left = bytes(1 if c in b' \t[<("' else 0 for c in range(256))
    ctrl = bytes(
        1 if c in {*range(9), 11, 12, *range(14, 27), *range(28, 32), 127} else 0
        for c in range(256)
    )
    word = int.from_bytes(b"ERROR".ljust(8, b"\0"), "little").to_bytes(8, "little")
    initial = bytes(1 if c == ord("E") else 0 for c in range(256))
    right = bytes(1 if c in b" :]" else 0 for c in range(256))
    return left, ctrl, word, initial, right


@needs_native
def test_the_memo_holds_each_key_once_and_refuses_what_is_not_one() -> None:
    mod = _kernel.kernel()
    assert mod is not None
    with pytest.raises(ValueError, match="head_bytes"):
        mod.memo(0)
    memo = mod.memo(8)
    assert mod.memo_items(memo, False) == []
    ok_left, ctrl, word, initial, right = _error_tables()
    # "xx what" is for the parser to judge: where a's first record ends is Python's to find; b's
    # first record ends after its continuation line, and the memo keeps it.
    text = b"11 ERROR a 1\nxx what\n22 ERROR a 22\n33 ERROR b\n  more\n"
    buf = bytearray(text + bytes(64))  # a reader's chunk: padding after the cut

    def scan(memo_arg: object, order: int) -> Any:
        return mod.scan(
            buf, len(text), b"\0\0 ", [3], word, b"\4", ok_left, right, initial, ctrl,
            b"\0\0\0\0\1\0", True, True, False, b"", memo_arg, order,
        )  # fmt: skip

    first = scan(memo, 1 << 32)
    assert first[6] == b"\1 a 0"  # two keys new, one handed back: its record's end is unknown
    assert memoryview(first[5]).cast("q").tolist()[7] == -1
    assert mod.memo_size(memo) == (2, len(b"33 ERROR b\n  more"))
    second = scan(memo, 2 << 32)
    assert second[6] == b"" and second[5] == b""  # nothing new the second time
    items = mod.memo_items(memo, True)
    assert items == [
        # counted in both chunks; the latest's head; the first record's order, and its bytes
        # (with the length of its first line) or None where Python keeps them
        (b"\1 a 0", 4, (2 << 32) + 2, b"22 ERROR", 1 << 32, None, -1),
        (b"\1 b", 2, (2 << 32) + 3, b"33 ERROR", (1 << 32) + 3, b"33 ERROR b\n  more", 10),
    ]
    assert mod.memo_items(memo, False) == []  # cleared
    assert mod.memo_size(memo) == (0, 0)
    with pytest.raises(ValueError):
        scan(object(), 0)  # not a memo
    with pytest.raises(ValueError):
        mod.memo_size(object())


@needs_native
def test_two_memos_merge_as_one_pass_would_fill_one() -> None:
    """A later part's memo merged into an earlier part's: records summed, the latest record
    from the later part, the first record from the earlier one (or the later one's where the
    earlier never met the key); the merged memo is emptied; a memo cannot merge into itself."""
    mod = _kernel.kernel()
    assert mod is not None
    ok_left, ctrl, word, initial, right = _error_tables()

    def scan(text: bytes, memo: object, order: int) -> Any:
        buf = bytearray(text + bytes(64))
        return mod.scan(
            buf, len(text), b"\0\0 ", [3], word, b"\4", ok_left, right, initial, ctrl,
            b"\0\0\0\0\1\0", True, True, False, b"", memo, order,
        )  # fmt: skip

    early, late = mod.memo(8), mod.memo(8)
    scan(b"11 ERROR a 1\n12 ERROR b\n", early, 1 << 32)
    scan(b"21 ERROR a 2\n22 ERROR c\n23 ERROR a 3\n", late, 9 << 32)
    assert mod.memo_merge(early, late) is None
    assert mod.memo_items(late, False) == [] and mod.memo_size(late) == (0, 0)
    assert mod.memo_items(early, True) == [
        (b"\1 a 0", 3, (9 << 32) + 2, b"23 ERROR", 1 << 32, b"11 ERROR a 1", 12),
        (b"\1 b", 1, (1 << 32) + 1, b"12 ERROR", (1 << 32) + 1, b"12 ERROR b", 10),
        (b"\1 c", 1, (9 << 32) + 1, b"22 ERROR", (9 << 32) + 1, b"22 ERROR c", 10),
    ]
    with pytest.raises(ValueError, match="same size"):
        mod.memo_merge(early, early)
    with pytest.raises(ValueError, match="same size"):
        mod.memo_merge(early, mod.memo(16))
    with pytest.raises(ValueError):
        mod.memo_merge(early, object())


def test_a_field_wider_than_the_sample_s_keeps_lines_on_the_fast_path(tmp_path: Path) -> None:
    """
    HDFS's thread id varies in width (``35``, ``148``, ``10033``): the sniff widens a run of level
    offsets, so the 5-digit ids the first 400 lines never show are read by the kernel too, and a
    narrower id still finds its level first, not a level word later in the message.
    """
    from safla_diag.logs._formats import sniff

    levels = ["INFO", "WARN", "ERROR"]
    lines, want = [], {"INFO": 0, "WARNING": 0, "ERROR": 0}
    for i in range(3000):
        pid = (35, 148, 2210)[i % 3] if i < 1000 else (10033, 5, 148)[i % 3]
        level = levels[i % 7 % 3]
        want["WARNING" if level == "WARN" else level] += 1
        lines.append(f"081109 2036{i % 60:02d} {pid} {level} dfs.DataNode: block {i} ERROR WARN")
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "hdfs.log"
    path.write_bytes(data)
    offsets = sniff(data[:65536]).offsets
    assert {17, 18, 19} <= set(offsets) and 20 in offsets  # the 5-digit id's, never sampled
    native, pure = _both(path, levels=("ERROR",), top=100)
    assert native.records == pure.records == 3000
    assert dict(native.counts) == dict(pure.counts) == want
    assert _figures(native) == _figures(pure)


def test_a_minority_of_other_first_bytes_keeps_the_rest_on_the_fast_path(tmp_path: Path) -> None:
    """
    BGL's records start with ``-`` but for alerts (``KERNDTLB ...``): the prefix of the nine in
    ten that share their first byte drives the kernel, the alerts go to the parser, and every
    record is counted at its level either way.
    """
    from safla_diag.logs._formats import sniff

    lines, want = [], {"INFO": 0, "FATAL": 0}
    for i in range(2000):
        tag = "KERNDTLB" if i % 17 == 5 else "-"
        level = "FATAL" if tag != "-" or i % 11 == 0 else "INFO"
        want[level] += 1
        lines.append(
            f"{tag} {1117838570 + i} 2005.06.03 R02-M1-N0-C:J12-U11 "
            f"2005-06-03-15.42.{i % 60:02d}.675872 R02-M1-N0-C:J12-U11 RAS KERNEL {level} "
            f"instruction cache parity error corrected {i}"
        )
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "bgl.log"
    path.write_bytes(data)
    sn = sniff(data[:65536])
    assert sn.format == "bgl" and len(sn.prefix) >= 16 and sn.prefix[0] == (0, ord("-"))
    native, pure = _both(path, levels=("CRITICAL",), top=100)
    assert native.records == pure.records == 2000
    expected = {"INFO": want["INFO"], "CRITICAL": want["FATAL"]}
    assert dict(native.counts) == dict(pure.counts) == expected
    assert _figures(native) == _figures(pure)


@needs_native
def test_the_kernel_stops_before_a_run_of_unknown_lines_and_reads_learned_shapes() -> None:
    """
    stop_run: the scan ends before that many lines in a row that no shape reads, and reports
    where, with nothing of them counted; shapes: further (prefix, offsets, has_levels) read them.
    """
    mod = _kernel.kernel()
    assert mod is not None
    left, ctrl, word, initial, right = _error_tables()
    first = b"".join(b"2026-11-28 10:00:%02d ERROR a\n" % i for i in range(5))
    other = b"".join(b"17/06/09 20:10:%02d ERROR b\n" % i for i in range(6))
    text = first + b"  continued\n" + other + first
    buf = bytearray(text + bytes(64))
    sniffed = b"\0\0\0\0-\0\0-\0\0 \0\0:\0\0"  # 2026-11-28 10:00:
    learned = b"\0\0/\0\0/\0\0 \0\0:\0\0:"  # 17/06/09 20:10:

    def scan(cut: int, **kw: Any) -> Any:
        return mod.scan(
            buf, cut, sniffed, [20], word, b"\4", left, right, initial, ctrl,
            b"\0\0\0\0\0\0", True, True, False, b"", None, 0,
            kw.get("shapes", ()), kw.get("stop_run", 0),
        )  # fmt: skip

    lines, _, records, counts, slow, *_, stopped = scan(len(text), stop_run=4)
    assert stopped == len(first) + len(b"  continued\n")  # before the other format's first line
    assert (lines, records, counts[4]) == (6, 5, 5)  # five records and the continuation
    assert slow == b""  # the run's lines are left for the caller, not returned as spans
    lines, _, records, counts, slow, *_, stopped = scan(len(text), stop_run=7)
    assert stopped == -1 and (lines, records, len(slow) // 24) == (17, 10, 6)  # run too short
    shape = (learned, (18,), True)
    lines, _, records, counts, slow, *_, stopped = scan(len(text), shapes=[shape], stop_run=4)
    assert stopped == -1 and (lines, records, counts[4], slow) == (17, 16, 16, b"")


@needs_native
@pytest.mark.skipif(
    not DEV.is_dir(), reason="the Loghub development samples are not beside the repo"
)
@pytest.mark.parametrize("order", ["sorted", "reversed", "interleaved", "shuffled"])
def test_concatenated_formats_are_read_alike_on_both_paths(tmp_path: Path, order: str) -> None:
    """
    Eight formats in one file (the kernel learns each as it meets it, or from a sample of the
    lines it left to the parser): the same report as the numpy path, which reads every line it
    cannot place with the parser, at several chunk sizes.
    """
    parts = [(DEV / f"{n}_2k.log").read_bytes().rstrip(b"\n").split(b"\n") for n in
             ["BGL", "HDFS", "HPC", "Hadoop", "Spark", "Thunderbird", "Windows", "Zookeeper"]]  # fmt: skip
    if order == "reversed":
        parts.reverse()
    if order == "interleaved":  # blocks of 250 lines of each in turn
        lines = [ln for k in range(0, 2000, 250) for p in parts for ln in p[k : k + 250]]
    else:
        lines = [ln for p in parts for ln in p]
    if order == "shuffled":  # every line next to lines of other formats
        random.Random(7).shuffle(lines)
    path = tmp_path / "all.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for chunk_size in (1 << 16, 1 << 21):
        native, pure = _both(path, chunk_size=chunk_size, top=1000, levels=("ERROR", "WARNING"))
        assert native.records == 16000
        assert _figures(native) == _figures(pure)
        assert [t.example for t in native.templates] == [t.example for t in pure.templates]


_FORMAT_LINES = [
    "2026-11-28 10:00:{s:02d},123 - app.{n} - {lvl} - task {i} done",
    "17/06/09 20:10:{s:02d} {lvl} executor.Executor: block {i} stored",
    "081109 2036{s:02d} {pid} {lvl} dfs.DataNode: Receiving block blk_{i}",
    "- 11178385{s:02d} 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.{s:02d}.675872 "
    "R02-M1-N0-C:J12-U11 RAS KERNEL {lvl} cache parity error {i}",
    "{pid}{i} node-{s} unix.hw state_change.unavailable 10778047{s:02d} 1 Component {i}",
    "Traceback (most recent call last):",
    '  File "x.py", line {i}, in f',
]


@needs_native
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(_FORMAT_LINES) - 1), st.integers(1, 60)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([1024, 4096, 1 << 16]),
)
def test_runs_of_formats_are_read_alike_on_both_paths(
    runs: list[tuple[int, int]], chunk_size: int
) -> None:
    """Runs of lines of several formats (and traceback lines) in any order: both paths agree."""
    levels = ["INFO", "WARN", "ERROR", "FATAL", "DEBUG"]
    out: list[str] = []
    for fmt, n in runs:
        for k in range(n):
            i = len(out)
            out.append(
                _FORMAT_LINES[fmt].format(
                    s=i % 60, i=i, n=k % 3, pid=(7, 148, 10033)[i % 3], lvl=levels[i % 5]
                )
            )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.log"
        path.write_text("\n".join(out) + "\n")
        native, pure = _both(path, chunk_size=chunk_size, top=1000, levels=("ERROR", "WARNING"))
    assert _figures(native) == _figures(pure)
    assert [t.example for t in native.templates] == [t.example for t in pure.templates]


# Loggers whose level offsets lie within 16 bytes of each other: the kernel looks for the level
# at all of them at once (SSE2). Some lines have no level where theirs would be, so the words of
# their message (after each delimiter the kernel knows) fall on other loggers' offsets.
_NEAR_LOGGERS = ["db", "app", "core", "app.x", "worker", "pool.io", "sched.q", "api.http1"]
_NEAR_LEVELS = [*LEVELS, "-", "x", "NOTALEVEL", "", "12"]
_NEAR_MESSAGES = ["ok {i}", "INFO ERROR {i}", '"ERROR" y', "(WARN)", "[error]", "<Info>",
                  "\tFATAL", "E {i}", "é ERROR", "ERRORS {i}", "aERROR", "W", "'ERROR'",
                  "|ERROR", ":ERROR"]  # fmt: skip


@needs_native
@pytest.mark.parametrize("chunk_size", [1500, 1 << 16])
def test_levels_looked_for_sixteen_offsets_at_once_are_the_levels_one_at_a_time(
    chunk_size: int,
) -> None:
    """Every logger, level field, padding and message together (13 440 lines): the level found
    at offsets close together, 16 bytes at once, is the level found offset by offset
    (SAFLA_DIAG_NO_SIMD_LEVELS) and the numpy path's. (A level missed in the kernel goes to the
    parser, which gives the same answer; a level found where none is would not.)"""
    import itertools

    # The offsets known from the start: every logger's.
    lines = [f"2026-11-28 09:00:00,000 - {name} - INFO - start" for name in _NEAR_LOGGERS]
    for i, (name, level, pad, msg) in enumerate(
        itertools.product(_NEAR_LOGGERS, _NEAR_LEVELS, range(8), _NEAR_MESSAGES)
    ):
        lines.append(
            f"2026-11-28 10:00:{i % 60:02d},000 - {name} - {level} - " + " " * pad + msg.format(i=i)
        )
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        path = Path(tmp) / "svc.log"
        path.write_bytes(("\n".join(lines) + "\n").encode())
        kw: dict[str, Any] = {"chunk_size": chunk_size, "top": 1000, "levels": ("ERROR", "INFO")}
        simd, pure = _both(path, **kw)
        mp.setenv("SAFLA_DIAG_NO_SIMD_LEVELS", "1")
        one_by_one = analyze_logs(path, **kw)
    assert _figures(simd) == _figures(one_by_one) == _figures(pure)


_HEXY = st.text(alphabet=st.sampled_from(list("0123456789abcdefABCDEFxyzg -_:./")), max_size=90)


@needs_native
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_HEXY, st.integers(0, 3)), min_size=1, max_size=40))
def test_template_keys_of_hex_runs_match_the_numpy_path(rows: list[tuple[str, int]]) -> None:
    """
    The kernel finds a key's runs of hex digits 16 bytes at a time: runs of any length, at a
    message's start and end, across 16-byte boundaries, and long ones (a 40-digit id, a message
    cut at 4 096 bytes) key as the numpy path keys them, record for record.
    """
    lines = []
    for k, (text, kind) in enumerate(rows):
        msg = [text, "deadbeef" * 5 + text, text + "0123abcd" * 3, ("ab12" * 1100)[:4090] + text]
        lines.append(f"2026-11-28 10:00:{k % 60:02d},000 - app - ERROR - {msg[kind]}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hex.log"
        path.write_text("\n".join(lines) + "\n")
        native, pure = _both(path, top=1000)
    assert native.counts == pure.counts == {"ERROR": len(rows)}
    assert _figures(native) == _figures(pure)


def _continuations(n: int) -> bytes:
    """ERROR records followed by what may continue them: tracebacks (blank-led lines and a last
    line the parser reads as no record), garbage, blank lines, a 600-line message, another
    format's line, and records of other levels."""
    out: list[str] = []
    for k in range(n):
        ts = f"2026-11-28 10:{k // 60 % 60:02d}:{k % 60:02d},{k % 1000:03d}"
        step = chr(97 + k % 40 % 26) + chr(97 + k % 40 // 26)  # 40 templates, met in turn
        out.append(f"{ts} - app.x - ERROR - {step}worker: job {k} failed")
        kind = k % 8
        if kind == 0:
            out += ["Traceback (most recent call last):", '  File "a.py", line 3, in f']
            out.append(f"ValueError: bad value {k % 3}")
        elif kind == 1:
            out.append("\x01\x02\x03\x04 binary \x05\x06")
        elif kind == 2:
            out += ["", "   indented tail"]
        elif kind == 3 and k < 8:
            out += [f"  part {j}" for j in range(600)]
        elif kind == 4:
            out.append(f"Nov 28 10:00:{k % 60:02d} host app[1]: syslog between records")
        elif kind == 5:
            out.append(f"{ts} - app - INFO - fine {k}")
    return ("\n".join(out) + "\n").encode()


@needs_native
@pytest.mark.parametrize("chunk_size", [1024, 4096, 1 << 16])
def test_the_kernel_s_record_ends_give_the_parser_s_examples(chunk_size: int) -> None:
    """
    The kernel tells where a new template's first record ends (its continuation lines
    included) when the lines after it are blank-led, garbage, known tracebacks or the next
    record; for any other line the parser walks them. Either way the example is the numpy
    path's, at every chunk size.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cont.log"
        path.write_bytes(_continuations(400))
        native, pure = _both(path, chunk_size=chunk_size, top=1000)
    assert _figures(native) == _figures(pure)
    assert [t.example for t in native.templates] == [t.example for t in pure.templates]
    assert len(native.templates) == 40
    assert any("ValueError" in t.example for t in native.templates)
    if chunk_size > 4096:  # the 600-line record fits the read: its example is cut at 4 000 chars
        assert any("part 10" in t.example and t.example.endswith("…") for t in native.templates)
