"""The terminal layer: colour policy, aligned tables, progress, --version, JSON errors, help."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import pytest

from safla_diag._cli import _term, build_parser
from tests.conftest import cli_env, run_cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def _plain_state() -> object:
    yield
    _term.configure(color="never")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """Every command and option without help text, as ``command: what``."""
    missing: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{path} {name}: command without help")
                if not sub.description:
                    missing.append(f"{path} {name}: command without description")
                missing += _walk(sub, f"{path} {name}")
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            what = "/".join(action.option_strings) or action.dest
            missing.append(f"{path}: {what} without help")
    return missing


def test_every_command_and_option_has_help() -> None:
    """Walking the whole argparse tree finds no command, option or argument without help."""
    assert _walk(build_parser(), "safla-diag") == []


def test_walk_catches_a_missing_help() -> None:
    """The walker itself fails on an undocumented option and an undocumented command."""
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--bare")
    sub = p.add_subparsers()
    sub.add_parser("quiet")
    found = _walk(p, "x")
    assert "x: --bare without help" in found
    assert "x quiet: command without help" in found


def test_version() -> None:
    """--version prints the package version and exits 0."""
    import safla_diag

    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"safla-diag {safla_diag.__version__}"


def test_json_error_object_on_stdout() -> None:
    """With --json a failure still prints JSON on stdout: the error and the exit code."""
    out = run_cli("doctor", "--config", "/nonexistent/safla.toml", "--json")
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == 2 and "safla.toml" in doc["error"]
    assert "error" in out.stderr


def test_json_error_for_a_bad_argument() -> None:
    """An argument argparse refuses gives the JSON object too, and no traceback."""
    out = run_cli("logs", "scan", "--json", "--since", "not-a-time", "x.log")
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == 2 and doc["error"]
    assert "Traceback" not in out.stderr


def test_error_without_json_leaves_stdout_empty() -> None:
    """Without --json the error is one line on stderr only."""
    out = run_cli("doctor", "--config", "/nonexistent/safla.toml")
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1


def test_color_always_paints_status_words(tmp_path: object) -> None:
    """--color=always colours the status words of text output; never and pipes leave none."""
    coloured = run_cli("--color=always", "deps")
    assert "\x1b[32mok\x1b[0m" in coloured.stdout
    assert ANSI.sub("", coloured.stdout) == run_cli("--color=never", "deps").stdout
    assert "\x1b[" not in run_cli("deps").stdout  # auto on a pipe


def test_no_color_and_json_never_colour() -> None:
    """NO_COLOR turns auto off; --json output is never coloured, even with --color=always."""
    _term.configure(color="auto", stdout=_Tty(), environ={"NO_COLOR": "1"})
    assert not _term.color_enabled()
    _term.configure(color="auto", stdout=_Tty(), environ={"NO_COLOR": ""})
    assert _term.color_enabled()
    _term.configure(color="auto", stdout=_Tty(), environ={"TERM": "dumb"})
    assert not _term.color_enabled()
    _term.configure(color="always", environ={"NO_COLOR": "1"})
    assert _term.color_enabled()
    _term.configure(color="always", json=True)
    assert not _term.color_enabled()
    out = run_cli("--color=always", "deps", "--json", env=cli_env())
    if out.returncode in (0, 1) and out.stdout.strip().startswith("{"):
        assert "\x1b[" not in out.stdout
        json.loads(out.stdout)
    with pytest.raises(ValueError):
        _term.configure(color="sometimes")


def test_table_aligns_text_left_and_numbers_right() -> None:
    """Columns are as wide as their widest cell (wide characters count twice)."""
    _term.configure(color="never")
    text = _term.table(
        ("name", "latency", "detail"),
        [("redis", "6.7 ms", "PONG"), ("postgresql-main", "12.25 ms", "accepting"), ("猫", 3, "")],
    )
    lines = text.splitlines()
    assert lines[0] == "name              latency  detail"
    assert lines[1] == "redis              6.7 ms  PONG"
    assert lines[2] == "postgresql-main  12.25 ms  accepting"
    assert lines[3] == "猫                      3"
    assert all(line == line.rstrip() for line in lines)


def test_table_status_column_is_coloured_but_aligned() -> None:
    """A coloured status column keeps the next column aligned."""
    _term.configure(color="always")
    text = _term.table(None, [("ok", "a"), ("FAIL", "b")], status_column=0)
    plain = [ANSI.sub("", line) for line in text.splitlines()]
    assert plain == ["ok    a", "FAIL  b"]
    assert "\x1b[" in text


def test_progress_is_silent_on_a_pipe_and_with_json() -> None:
    """No terminal, or --json: the callback draws nothing."""
    pipe = io.StringIO()
    _term.configure(color="never")
    with _term.progress("copy", unit="bytes", stream=pipe) as update:
        for i in range(5):
            update(i * 1024, 4096)
    assert pipe.getvalue() == ""
    tty = _Tty()
    _term.configure(color="never", json=True)
    with _term.progress("copy", stream=tty) as update:
        update(1, 2)
    assert tty.getvalue() == ""


def test_progress_draws_on_a_terminal() -> None:
    """On a terminal the bar shows the description and the count, fed by (done, total)."""
    tty = _Tty()
    _term.configure(color="never")
    with _term.progress("rebuild", unit="items", stream=tty) as update:
        update(50, 100)
        update(100, None)
    assert "rebuild" in tty.getvalue()
    assert "100/100" in tty.getvalue()


def test_library_warnings_are_not_repeated_on_stderr(tmp_path: Path) -> None:
    """The report says it on stdout; the library's WARNING line shows only with -v."""
    import numpy as np

    from safla_diag import VectorIndexRecovery

    faiss = pytest.importorskip("faiss")
    rec = VectorIndexRecovery(tmp_path / "vec", tmp_path / "vec" / "backups")
    index = faiss.IndexFlatL2(4)
    index.add(np.zeros((3, 4), dtype="float32"))
    rec.save_index(index)
    with open(tmp_path / "vec" / "vector_index.faiss", "r+b") as f:
        f.write(b"garbage")
    quiet = run_cli("vector", "health-check", str(tmp_path / "vec"))
    assert quiet.returncode == 1 and "checksum" in quiet.stdout
    assert "WARNING" not in quiet.stderr
    loud = run_cli("-v", "vector", "health-check", str(tmp_path / "vec"))
    assert "WARNING safla_diag.vector" in loud.stderr


def test_bracketed_status_words_are_coloured() -> None:
    """`[ FAILED]` and `[     ok]` columns are coloured; words containing them are not."""
    _term.configure(color="always")
    text = _term.paint_statuses("[ FAILED] x\n[     ok] y\nlook, okay, ERROR_CODE")
    assert "\x1b[1;31mFAILED\x1b[0m" in text and "\x1b[32mok\x1b[0m" in text
    assert text.splitlines()[2] == "look, okay, ERROR_CODE"


def test_services_columns_line_up() -> None:
    """Targets of different lengths: the latency and result columns still start together."""
    import socket

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        out = run_cli("services", f"tcp://127.0.0.1:{port}", "http://127.0.0.1:1/a/long/path/x")
    rows = [line for line in out.stdout.splitlines() if line.startswith(("  FAIL", "  ok"))]
    assert len(rows) == 2
    assert len({line.index(" ms ") for line in rows}) == 1
    assert len({line.index("refused") for line in rows}) == 1


def test_color_after_the_command_name() -> None:
    """--color works after the command too, and the global one still applies without it."""
    after = run_cli("deps", "--color=always")
    assert "\x1b[32mok\x1b[0m" in after.stdout
    assert "\x1b[" not in run_cli("--color=never", "deps").stdout
    assert "\x1b[" in run_cli("--color=always", "deps").stdout
