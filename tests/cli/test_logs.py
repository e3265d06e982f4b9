"""`safla-diag logs scan` as a real subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

from ..logs._gen import make_log

Cli = Callable[..., CompletedProcess[str]]


def test_scan_prints_a_table_and_exits_1_on_errors(cli: Cli, tmp_path: Path) -> None:
    """Counts and templates as a table; records of the chosen levels make the exit code 1."""
    path = tmp_path / "app.log"
    truth = make_log(path, "logging", 400)
    res = cli("logs", "scan", str(path), "--grep", "slow", "--top", "3")
    assert res.returncode == 1, res.stderr
    assert f"ERROR      {truth.counts['ERROR']:>9,}" in res.stdout
    assert "Top templates (ERROR, CRITICAL)" in res.stdout
    assert f"Lines matching /slow/: {truth.grep['slow']:,}" in res.stdout


def test_scan_json_since_levels(cli: Cli, tmp_path: Path) -> None:
    """--json is the report's to_dict; --since and --levels shape it."""
    path = tmp_path / "app.jsonl"
    make_log(path, "json", 300)
    res = cli(
        "logs", "scan", str(path), "--json", "--levels", "warning", "--since", "2026-11-28T08:02"
    )
    data = json.loads(res.stdout)
    assert data["levels"] == ["WARNING"]
    assert data["since"].startswith("2026-11-28T08:02")
    assert {t["level"] for t in data["templates"]} == {"WARNING"}
    assert res.returncode == 1


def test_scan_stdin_and_clean_log(cli: Cli) -> None:
    """'-' reads standard input; a log without errors exits 0."""
    text = "2026-11-28 10:00:00,000 INFO app: fine\n2026-11-28 10:00:01,000 WARNING app: hm\n"
    res = cli("logs", "scan", "-", input=text)
    assert res.returncode == 0, res.stderr
    assert "INFO" in res.stdout
    assert "(none)" in res.stdout


def test_scan_reports_skipped_files(cli: Cli, tmp_path: Path) -> None:
    """Bad files are listed under Skipped while the good ones are analysed."""
    good = tmp_path / "a.log"
    make_log(good, "logging", 50)
    res = cli("logs", "scan", str(good), str(tmp_path / "missing.log"))
    assert "Skipped" in res.stdout
    assert "missing.log: not found" in res.stdout


def test_usage_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    """A missing file, a bad --since or a bad regex: one line on stderr, exit 2, no traceback."""
    path = tmp_path / "a.log"
    path.write_text("2026-11-28 10:00:00,000 INFO x\n")
    for args in (
        [str(tmp_path / "missing.log")],
        [str(path), "--since", "last tuesday"],
        [str(path), "--grep", "(oops"],
        [str(path), "--top", "-1"],
        [str(path), "--levels", ","],
    ):
        res = cli("logs", "scan", *args)
        assert res.returncode == 2, args
        assert res.stderr.count("\n") == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_help(cli: Cli) -> None:
    """--help documents the options."""
    res = cli("logs", "scan", "--help")
    assert res.returncode == 0
    for opt in ("--since", "--grep", "--levels", "--top", "--json"):
        assert opt in res.stdout


def test_scan_counts_late_warn_and_reads_past_nul_runs(cli: Cli, tmp_path: Path) -> None:
    """
    The CLI shows what the library finds: WARN first seen after 500 lines is WARNING, and a NUL
    run in the middle of the log is reported, not a reason to drop the file.
    """
    path = tmp_path / "hadoop.log"
    head = "".join(f"2015-10-18 18:01:47,978 INFO [main] x.Y: step {i}\n" for i in range(500))
    tail = "".join(f"2015-10-18 18:02:47,978 WARN [main] x.Z: lost {i}\n" for i in range(100))
    path.write_bytes(head.encode() + b"\0" * 4096 + tail.encode())
    res = cli("logs", "scan", str(path), "--json", "--levels", "warn")
    assert res.returncode == 1, res.stderr
    data = json.loads(res.stdout)
    assert data["counts"] == {"INFO": 500, "WARNING": 100}
    assert data["records"] == 600
    assert data["nul_bytes"] == 4096
    assert [t["count"] for t in data["templates"]] == [100]


def test_scan_loads_only_what_it_needs(tmp_path: Path) -> None:
    """
    `logs scan` loads the log layer alone: not the configuration's schema, the checks or the
    MCP layer (the other commands'), and, where the kernel reads the file, not numpy (a tenth of
    a second of a command's start, and BLAS threads spinning beside the scan).
    """
    import subprocess
    import sys

    from safla_diag.logs import _kernel

    path = tmp_path / "app.log"
    make_log(path, "logging", 300)
    code = (
        "import sys; from safla_diag._cli import main; rc = main(['logs', 'scan', sys.argv[1]]); "
        "print(sorted(m for m in ('numpy', 'safla_diag.config', 'safla_diag.checks', "
        "'safla_diag.mcp_retry') if m in sys.modules), rc, file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    loaded, rc = out.stderr.strip().splitlines()[-1].rsplit(" ", 1)
    assert rc in ("0", "1"), out.stderr
    want = [] if _kernel.kernel() is not None else ["numpy"]
    assert loaded == str(want), out.stderr
