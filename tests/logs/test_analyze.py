"""analyze_logs on generated logs whose true counts, templates and windows are known."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safla_diag import LogReport, analyze_logs

from .._caps import run_without_file_privileges
from ._gen import START, TRACEBACK, make_log

KINDS = ["logging", "named", "named_many", "iso", "syslog", "json", "structlog"]
CHOSEN = ("ERROR", "CRITICAL")
NOW = START + timedelta(hours=3)


def _templates(report: LogReport) -> dict[tuple[str, str], int]:
    return {(t.level, t.template): t.count for t in report.templates}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk_size", [1024, 7777, 1 << 20])
def test_counts_and_templates_are_exact(kind: str, chunk_size: int, tmp_path: Path) -> None:
    """Per format and chunk size: every level's count and every template's count is the truth."""
    path = tmp_path / f"{kind}.log"
    truth = make_log(path, kind, 3000, traceback_every=4)
    report = analyze_logs(path, chunk_size=chunk_size, now=NOW)
    assert report.counts == dict(truth.counts)
    assert _templates(report) == dict(truth.templates)
    assert report.lines == truth.lines
    assert report.files == (str(path),)
    assert report.skipped == ()
    counts = [t.count for t in report.templates]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("kind", KINDS)
def test_first_and_last_seen(kind: str, tmp_path: Path) -> None:
    """first_seen/last_seen are the earliest and latest timestamps of each template's records."""
    path = tmp_path / "x.log"
    truth = make_log(path, kind, 1500, step_s=2.5)
    report = analyze_logs(path, chunk_size=2048, now=NOW)
    times_of = truth.template_times()
    for t in report.templates:
        times = times_of[(t.level, t.template)]
        if kind == "syslog":  # whole seconds only
            times = [ts.replace(microsecond=0) for ts in times]
        assert t.first_seen == min(times)
        assert t.last_seen == max(times)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("offset_s", [-3600, 0, 1, 777, 1234.5, 2999, 3000, 99999])
def test_since_window_is_exact(kind: str, offset_s: float, tmp_path: Path) -> None:
    """Records at or after `since` are counted, none before; chunks and boundaries don't matter."""
    path = tmp_path / "x.log"
    truth = make_log(path, kind, 3000, traceback_every=5)
    since = START + timedelta(seconds=offset_s)
    for chunk_size in (1500, 1 << 20):
        report = analyze_logs(path, since=since, chunk_size=chunk_size, now=NOW)
        assert report.counts == dict(+truth.counts_since(since))
        want = {k: v for k, v in truth.templates_since(since).items() if k[0] in CHOSEN}
        assert _templates(report) == want
        assert report.since == since


def test_relative_since(tmp_path: Path) -> None:
    """'30m' counts back from now; timedelta and numbers of seconds are the same window."""
    path = tmp_path / "x.log"
    truth = make_log(path, "logging", 3000)
    now = START + timedelta(seconds=3000)
    want = dict(+truth.counts_since(now - timedelta(minutes=30)))
    for since in ("30m", timedelta(minutes=30), 1800, "0.5h"):
        assert analyze_logs(path, since=since, now=now).counts == want


@given(st.integers(0, 3000), st.integers(600, 6000))
@settings(max_examples=25)
def test_since_property(offset: int, chunk_size: int) -> None:
    """Whatever the boundary and the chunk size, the window holds exactly the later records."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.log"
        truth = make_log(path, "logging", 400, step_s=7, traceback_every=3)
        since = START + timedelta(seconds=offset * 1.0)
        report = analyze_logs(path, since=since, chunk_size=chunk_size, now=NOW)
        assert report.counts == dict(+truth.counts_since(since))


def test_tracebacks_are_kept_with_their_record(tmp_path: Path) -> None:
    """Traceback lines count for nothing on their own, and the example carries the traceback."""
    path = tmp_path / "x.log"
    lines = [
        "2026-11-28 10:00:00,000 INFO app: start",
        "2026-11-28 10:00:01,000 ERROR app: job 17 failed",
        *TRACEBACK,
        "2026-11-28 10:00:02,000 ERROR app: job 18 failed",
        *TRACEBACK,
        "  ERROR: this indented line is part of the traceback too",
        "2026-11-28 10:00:03,000 INFO app: done",
    ]
    path.write_text("\n".join(lines) + "\n")
    for chunk_size in (64, 128, 1 << 20):
        report = analyze_logs(path, chunk_size=chunk_size)
        assert report.counts == {"ERROR": 2, "INFO": 2}
        [t] = report.templates
        assert (t.template, t.count) == ("app: job <NUM> failed", 2)
    report = analyze_logs(path)
    assert report.templates[0].example.startswith(
        "2026-11-28 10:00:01,000 ERROR app: job 17 failed\n"
    )
    assert report.templates[0].example.endswith("ConnectionError: boom")


def test_level_words_inside_messages_do_not_count(tmp_path: Path) -> None:
    """'ERROR' quoted in an INFO message is not an error, on the fast and on the needle path."""
    fast = tmp_path / "fast.log"
    fast.write_text(
        "2026-11-28 10:00:00,000 INFO app: retrying after ERROR from upstream\n"
        "2026-11-28 10:00:01,000 ERROR app: boom\n"
        "2026-11-28 10:00:02,000 INFO app: no ERROR here\n"
    )
    named = tmp_path / "named.log"
    named.write_text(
        "2026-11-28 10:00:00,000 - a - INFO - retrying after ERROR - upstream\n"
        "2026-11-28 10:00:01,000 - abc.def - ERROR - boom\n"
        "2026-11-28 10:00:02,000 - ab - INFO - the ERROR again\n"
    )
    many = tmp_path / "many.log"
    many.write_text(
        "".join(
            f"2026-11-28 10:00:00,000 - {'n' * i} - INFO - say ERROR - {i}\n" for i in range(12)
        )
        + "2026-11-28 10:00:01,000 - abc.def - ERROR - boom\n"
    )
    assert analyze_logs(many).counts == {"INFO": 12, "ERROR": 1}
    for path in (fast, named):
        report = analyze_logs(path)
        assert report.counts["ERROR"] == 1
        assert [t.template for t in report.templates] == ["app: boom" if path is fast else "boom"]


def test_format_drift_falls_back(tmp_path: Path) -> None:
    """When later lines move the level, the file leaves the fast path and stays exact."""
    path = tmp_path / "drift.log"
    first = [f"2026-11-28 10:00:{i % 60:02d},000 INFO app: ok {i}" for i in range(500)]
    later = [
        f"2026-11-28 10:01:{i % 60:02d},000 - worker{'x' * (i % 5)} - {lv} - msg {i}"
        for i, lv in enumerate(["INFO", "ERROR", "WARNING"] * 200)
    ]
    path.write_text("\n".join(first + later) + "\n")
    report = analyze_logs(path, chunk_size=4096)
    assert report.counts == {"INFO": 700, "ERROR": 200, "WARNING": 200}
    assert _templates(report) == {("ERROR", "msg <NUM>"): 200}


def test_aliases_and_json_lower_case(tmp_path: Path) -> None:
    """WARN, FATAL and lower-case JSON levels count under WARNING, CRITICAL and ERROR."""
    path = tmp_path / "x.jsonl"
    recs = [
        {"@timestamp": "2026-11-28T10:00:00Z", "level": "warn", "message": "a"},
        {"@timestamp": "2026-11-28T10:00:01Z", "level": "fatal", "message": "b 1"},
        {"@timestamp": "2026-11-28T10:00:02Z", "level": "error", "message": "c 2"},
        {"@timestamp": "2026-11-28T10:00:03Z", "level": "ERROR", "message": "c 3"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    report = analyze_logs(path)
    assert report.counts == {"WARNING": 1, "CRITICAL": 1, "ERROR": 2}
    assert _templates(report) == {("ERROR", "c <NUM>"): 2, ("CRITICAL", "b <NUM>"): 1}
    assert analyze_logs(path, levels=["warn"]).templates[0].template == "a"


def test_pattern_counts_lines_like_grep(tmp_path: Path) -> None:
    """Lines matching the pattern are counted once each, with a bounded list of examples."""
    path = tmp_path / "x.log"
    truth = make_log(path, "logging", 2000, traceback_every=3)
    report = analyze_logs(path, pattern="slow|Traceback", max_examples=3, chunk_size=4096)
    assert report.matches is not None
    assert report.matches.count == truth.grep["slow"] + truth.grep["Traceback"]
    assert len(report.matches.examples) == 3
    assert all("slow" in e or "Traceback" in e for e in report.matches.examples)
    assert analyze_logs(path, pattern="redis").matches.count == truth.grep["redis"]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="invalid pattern"):
        analyze_logs(path, pattern="(unclosed")


def test_gzip_glob_and_streams(tmp_path: Path) -> None:
    """gzip files (by magic, any name), globs and binary streams give the same counts."""
    truth = make_log(tmp_path / "a.log", "logging", 1000)
    raw = (tmp_path / "a.log").read_bytes()
    (tmp_path / "b.log.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "c.data").write_bytes(gzip.compress(raw))
    double = {k: 2 * v for k, v in truth.counts.items()}
    assert analyze_logs(tmp_path / "b.log.gz").counts == dict(truth.counts)
    assert analyze_logs(str(tmp_path / "*.log*")).counts == double
    assert analyze_logs([tmp_path / "a.log", tmp_path / "c.data"]).counts == double
    assert analyze_logs(io.BytesIO(raw)).counts == dict(truth.counts)
    assert analyze_logs(io.BytesIO(gzip.compress(raw))).counts == dict(truth.counts)


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    """A cut gzip is reported, and the records before the cut are still counted."""
    truth = make_log(tmp_path / "a.log", "logging", 20000)
    blob = gzip.compress((tmp_path / "a.log").read_bytes())
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    report = analyze_logs(cut)
    [skip] = report.skipped
    assert skip.partial
    assert "truncated" in skip.reason
    total = sum(report.counts.values())
    assert 0.3 * sum(truth.counts.values()) < total < sum(truth.counts.values())


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    """Binary garbage, missing files, directories and empty globs are reported; the rest counts."""
    good = tmp_path / "good.log"
    truth = make_log(good, "logging", 300)
    (tmp_path / "core.bin").write_bytes(os.urandom(1 << 16))
    (tmp_path / "zeros.log").write_bytes(b"\0" * 5000)
    (tmp_path / "empty.log").write_bytes(b"")
    (tmp_path / "notgzip.gz").write_bytes(b"\x1f\x8bnot really gzip")
    report = analyze_logs(
        [
            good,
            tmp_path / "core.bin",
            tmp_path / "zeros.log",
            tmp_path / "missing.log",
            tmp_path,
            str(tmp_path / "nothing-*.log"),
            tmp_path / "empty.log",
            tmp_path / "notgzip.gz",
            good / "child.log",
        ]
    )
    assert report.counts == dict(truth.counts)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons["core.bin"].startswith("binary data")
    assert reasons["zeros.log"].startswith("binary data")
    assert reasons["missing.log"] == "not found"
    assert reasons[tmp_path.name] == "is a directory"
    assert reasons["nothing-*.log"] == "no files match"
    assert "compressed" in reasons["notgzip.gz"]
    assert "empty.log" not in reasons
    assert reasons["child.log"] == "cannot open: Not a directory"


def test_unreadable_file(tmp_path: Path) -> None:
    """
    A file without read permission is skipped with the reason, and the rest is analysed.

    Root reads every file, so the scan runs in a child process that first gives up the
    capabilities that bypass file permissions; the check is the kernel's, not a mock.
    """
    secret = tmp_path / "secret.log"
    secret.write_text("2026-11-28 10:00:00,000 ERROR x\n")
    secret.chmod(0)
    good = tmp_path / "good.log"
    good.write_text("2026-11-28 10:00:00,000 ERROR y\n")
    code = (
        "import json, sys\n"
        "from safla_diag import analyze_logs\n"
        "r = analyze_logs(sys.argv[1:])\n"
        "print(json.dumps([r.counts, [s.reason for s in r.skipped]]))\n"
    )
    proc = run_without_file_privileges(code, str(secret), str(good))
    assert proc.returncode == 0, proc.stderr
    counts, reasons = json.loads(proc.stdout)
    assert counts == {"ERROR": 1}
    assert reasons == ["permission denied"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("compressed", [False, True])
def test_fifo_and_process_substitution(tmp_path: Path, compressed: bool) -> None:
    """
    A named pipe (and so bash's <(command), a /dev/fd pipe) is read like a file, gzip too:
    a pipe cannot seek, so the gzip magic is peeked, not read and rewound.
    """
    import threading

    data = b"".join(
        f"2026-11-28 10:00:0{i},000 {lv} app: request {i} failed\n".encode()
        for i, lv in enumerate(["ERROR", "INFO", "ERROR", "WARNING"])
    )
    if compressed:
        data = gzip.compress(data)
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        report = analyze_logs(fifo)
    finally:
        writer.join(10)
    assert report.skipped == ()
    assert report.counts == {"ERROR": 2, "INFO": 1, "WARNING": 1}
    assert [(t.template, t.count) for t in report.templates] == [("app: request <NUM> failed", 2)]


def test_socket_file_is_skipped(tmp_path: Path) -> None:
    """A path that open() refuses for another reason (a Unix socket) is skipped, never hangs."""
    import socket

    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        report = analyze_logs(path)
    assert report.counts == {}
    assert report.skipped[0].reason.startswith("cannot open")


def test_invalid_utf8_and_long_lines(tmp_path: Path) -> None:
    """Bad UTF-8 is replaced, a line longer than the buffer is skipped and reported."""
    path = tmp_path / "x.log"
    path.write_bytes(
        b"2026-11-28 10:00:00,000 ERROR app: bad \xff\xfe bytes 1\n"
        b"2026-11-28 10:00:01,000 INFO app: " + b"x" * 50_000 + b"\n"
        b"2026-11-28 10:00:02,000 ERROR app: bad \xff\xfe bytes 2\n"
    )
    report = analyze_logs(path, chunk_size=8192)
    assert report.counts == {"ERROR": 2}
    [t] = report.templates
    assert t.template == "app: bad \ufffd\ufffd bytes <NUM>"
    assert t.count == 2
    [skip] = report.skipped
    assert skip.partial
    assert "longer than" in skip.reason
    # With a big enough buffer the long line is read like any other.
    assert analyze_logs(path).counts == {"ERROR": 2, "INFO": 1}


def test_no_timestamps_and_since(tmp_path: Path) -> None:
    """A log without timestamps cannot honour since: it is skipped, with the reason."""
    path = tmp_path / "x.log"
    path.write_text("ERROR:root:boom 1\nINFO:root:fine\nERROR:root:boom 2\n")
    assert analyze_logs(path).counts == {"ERROR": 2, "INFO": 1}
    report = analyze_logs(path, since="1h")
    assert report.counts == {}
    assert "since" in report.skipped[0].reason


def test_secrets_are_redacted_in_examples(tmp_path: Path) -> None:
    """A password inside a logged URL never reaches the report."""
    path = tmp_path / "x.log"
    path.write_text(
        "2026-11-28 10:00:00,000 ERROR db: cannot connect postgresql://app:hunter2@db:5432/x\n"
    )
    report = analyze_logs(path, pattern="connect")
    text = report.to_json() + report.to_text() + report._repr_html_() + repr(report)
    assert "hunter2" not in text
    assert report.templates[0].template == "db: cannot connect <URL>"


@pytest.mark.parametrize("kind", ["plain", "json"])
def test_secrets_never_reach_templates(tmp_path: Path, kind: str) -> None:
    """
    Secrets outside URLs (password=..., Bearer ...) are masked in templates too, and records
    that differ only in the secret share one row.
    """
    messages = [
        "users: login failed password=letmein user=bob",
        "users: login failed password=opensesame user=bob",
        "api: rejected header Bearer abcdefXYZ",
        "api: rejected header Bearer ghijklUVW",
    ]
    path = tmp_path / "x.log"
    if kind == "plain":
        lines = [f"2026-11-28 10:00:0{i},000 ERROR {m}" for i, m in enumerate(messages)]
    else:
        lines = [
            json.dumps({"time": f"2026-11-28T10:00:0{i}", "level": "error", "message": m})
            for i, m in enumerate(messages)
        ]
    path.write_text("\n".join(lines) + "\n")
    report = analyze_logs(path)
    text = report.to_json() + report.to_text() + report._repr_html_() + repr(report)
    for secret in ("letmein", "opensesame", "abcdefXYZ", "ghijklUVW"):
        assert secret not in text
    assert sorted((t.template, t.count) for t in report.templates) == [
        ("api: rejected header Bearer ***", 2),
        ("users: login failed password=*** user=bob", 2),
    ]


def test_report_outputs(tmp_path: Path) -> None:
    """to_dict has counts and templates; JSON, text, HTML and repr agree with it."""
    path = tmp_path / "x.log"
    truth = make_log(path, "logging", 500)
    report = analyze_logs(path, pattern="slow", top=2)
    data = report.to_dict()
    assert data["counts"] == dict(truth.counts)
    assert len(data["templates"]) == 2
    assert set(data["templates"][0]) == {
        "template", "level", "count", "first_seen", "last_seen", "example"
    }  # fmt: skip
    assert json.loads(report.to_json()) == data
    text = report.to_text()
    assert "Level" in text
    assert f"{truth.counts['INFO']:,}" in text
    assert data["templates"][0]["template"][:30] in text
    assert "<table>" in report._repr_html_()
    assert repr(report).startswith("<LogReport files=1")
    datetime.fromisoformat(data["templates"][0]["first_seen"])


def test_html_escapes(tmp_path: Path) -> None:
    """Templates are HTML-escaped in the notebook view."""
    path = tmp_path / "x.log"
    path.write_text("2026-11-28 10:00:00,000 ERROR app: <script>alert(1)</script>\n")
    html = analyze_logs(path)._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_bad_arguments(tmp_path: Path) -> None:
    """Bad since, levels and top are ValueErrors, raised before any file is read."""
    with pytest.raises(ValueError, match="since"):
        analyze_logs(tmp_path, since="yesterday-ish")
    with pytest.raises(ValueError, match="levels"):
        analyze_logs(tmp_path, levels=["ERROR!"])
    with pytest.raises(ValueError):
        analyze_logs(tmp_path, top=-1)


def test_constant_memory(tmp_path: Path) -> None:
    """A file many times the buffer is scanned with memory bounded by the buffer, not the file."""
    block = tmp_path / "block.log"
    make_log(block, "logging", 20000, traceback_every=7)
    data = block.read_bytes()
    big = tmp_path / "big.log"
    with big.open("wb") as f:
        for _ in range(14):
            f.write(data)
    size = big.stat().st_size
    tracemalloc.start()
    try:
        analyze_logs(big, chunk_size=1 << 20, pattern="slow")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 20 << 20
    assert peak < 12 << 20


def test_now_defaults_to_the_clock(tmp_path: Path) -> None:
    """Without now=, relative since counts back from the current time."""
    path = tmp_path / "x.log"
    recent = datetime.now(UTC) - timedelta(minutes=10)
    old = datetime.now(UTC) - timedelta(hours=5)
    path.write_text(
        f"{old:%Y-%m-%dT%H:%M:%S}Z ERROR old\n{recent:%Y-%m-%dT%H:%M:%S}Z ERROR recent\n"
    )
    report = analyze_logs(path, since="1h")
    assert report.counts == {"ERROR": 1}
    assert report.templates[0].template == "recent"


def test_crlf_lines(tmp_path: Path) -> None:
    """Windows line endings change nothing: same counts, templates, clean examples."""
    path = tmp_path / "x.log"
    path.write_bytes(
        b"2026-11-28 10:00:00,000 INFO a: x\r\n"
        b"2026-11-28 10:00:01,000 ERROR a: failed 12\r\n"
        b"Traceback (most recent call last):\r\n"
        b"ValueError: x\r\n"
        b"2026-11-28 10:00:02,000 ERROR a: failed 13\r\n"
    )
    report = analyze_logs(path)
    assert report.counts == {"ERROR": 2, "INFO": 1}
    [t] = report.templates
    assert (t.template, t.count) == ("a: failed <NUM>", 2)
    assert "\r" not in t.example
    assert t.example.endswith("ValueError: x")


def test_too_many_templates_is_flagged(tmp_path: Path) -> None:
    """Distinct templates beyond the table's bound are flagged, not stored without limit."""
    from safla_diag.logs import _read, _scan

    path = tmp_path / "x.log"
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    path.write_text(
        "".join(
            f"2026-11-28 10:00:00,000 ERROR app: {a} {b} {c}\n"
            for a in words
            for b in words
            for c in words
        )
    )
    opts = _scan.ScanOptions(max_templates=50)
    acc = _scan.Accumulator()
    with path.open("rb") as f:
        _read.scan_stream("x", f, opts, acc)
    assert len(acc.templates) == 50
    assert acc.templates_truncated
    assert analyze_logs(path, top=500).counts == {"ERROR": 216}
    merged = analyze_logs(path, top=500).templates
    assert sum(t.count for t in merged) == 216
    assert analyze_logs(path, levels="error").levels == ("ERROR",)


_line = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda ts, lv, msg: f"2026-11-28 10:00:{ts:02d},000 {lv} {msg}".encode(),
        st.integers(0, 59),
        st.sampled_from(["INFO", "ERROR", "warn", "Critical", "BOGUS", ""]),
        st.text(max_size=30),
    ),
    st.builds(
        lambda lv, msg: json.dumps({"level": lv, "message": msg}).encode(),
        st.sampled_from(["error", "INFO", 3]),
        st.text(max_size=20),
    ),
)


@given(st.lists(_line, max_size=40), st.sampled_from([1024, 4096, 1 << 20]), st.booleans())
@settings(max_examples=60)
def test_arbitrary_input_never_raises(lines: list[bytes], chunk_size: int, gz: bool) -> None:
    """Whatever the bytes, the scan finishes with a report: counts, or a reason for skipping."""
    blob = b"\n".join(lines)
    stream = io.BytesIO(gzip.compress(blob) if gz else blob)
    report = analyze_logs(stream, chunk_size=chunk_size, pattern="ERROR|x", since=None)
    assert all(v > 0 for v in report.counts.values())
    assert sum(t.count for t in report.templates) <= sum(report.counts.values())
    assert report.matches is not None
    assert report.matches.count <= blob.count(b"\n") + 1
    assert report.files or report.skipped
    report.to_json()
    report.to_text()


class _FailingDisk(io.RawIOBase):
    """A stream that reads like a file until the disk fails (EIO), as a log read after an
    incident may."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self.data, self.pos, self.fail_at = data, 0, fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.pos >= self.fail_at:
            raise OSError(errno.EIO, "Input/output error")
        n = min(len(b), self.fail_at - self.pos, 4096)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_a_read_error_keeps_what_was_read_templates_included() -> None:
    """The records read before the error are counted, and so are their templates."""
    data = b"".join(
        b"2026-11-28 10:00:%02d,000 - app - ERROR - job %d failed on host-%d\n" % (i % 60, i, i % 3)
        for i in range(2000)
    )
    report = analyze_logs(_FailingDisk(data, len(data) // 2), chunk_size=8192)
    assert report.skipped[0].reason == "read error: Input/output error"
    assert report.skipped[0].partial
    assert 900 < report.counts["ERROR"] < 1100
    assert sum(t.count for t in report.templates) == report.counts["ERROR"]
