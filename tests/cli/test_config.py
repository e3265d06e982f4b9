"""`safla-diag config validate|show FILE`, run as a real subprocess."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from ..conftest import cli_env, run_cli

GOOD = """\
database_url = "postgresql://safla@db:5432/safla"
redis_url = "redis://localhost:6379/0"
vector_dimension = 384
mcp_servers = ["http://mcp.local:8080"]
"""


def write(tmp_path: Path, text: str, name: str = "safla.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_valid_file(tmp_path: Path) -> None:
    """A valid file: exit 0, says so."""
    path = write(tmp_path, GOOD)
    out = run_cli("config", "validate", str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{path}: valid"


def test_validate_lists_every_issue(tmp_path: Path) -> None:
    """An invalid file: exit 1, every issue listed."""
    path = write(
        tmp_path, GOOD.replace("384", "true") + 'vector_dimenson = 3\nlog_level = "LOUD"\n'
    )
    out = run_cli("config", "validate", str(path))
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        f"{path}: 3 issues",
        "  - vector_dimension: expected a positive int, got True",
        "  - log_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        "  - unknown key 'vector_dimenson' (did you mean 'vector_dimension'?)",
    ]


def test_validate_json(tmp_path: Path) -> None:
    """--json gives a machine-readable verdict."""
    path = write(tmp_path, '{"vector_dimension": 0}', "c.json")
    out = run_cli("config", "validate", str(path), "--json")
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["valid"] is False
    assert "vector_dimension: expected a positive int, got 0" in data["issues"]


def test_malformed_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A malformed file: one line on stderr naming the file and line, exit 2, no traceback."""
    path = write(tmp_path, "a = 1\nb = [\n")
    for action in ("validate", "show"):
        out = run_cli("config", action, str(path))
        assert out.returncode == 2
        assert out.stdout == ""
        [line] = out.stderr.splitlines()
        assert str(path) in line and "line 2" in line  # the unclosed array, at the end
        assert "Traceback" not in out.stderr


def test_missing_file_exit_2(tmp_path: Path) -> None:
    """A missing file: one line, exit 2."""
    out = run_cli("config", "validate", str(tmp_path / "nope.json"))
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and "nope.json" in out.stderr


def test_bad_arguments_exit_2() -> None:
    """No action, no file or an unknown flag: one line, exit 2."""
    for args in (["config"], ["config", "validate"], ["config", "show", "x.toml", "--bogus"]):
        out = run_cli(*args)
        assert out.returncode == 2, args
        assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


def test_show_fills_defaults_and_is_toml(tmp_path: Path) -> None:
    """show prints the validated config with defaults, as TOML that loads back."""
    services = '[services]\n"odd name é" = "tcp://h:1"\n'
    path = write(tmp_path, GOOD.replace("safla@db", "safla:pw@db") + services)
    out = run_cli("config", "show", str(path))
    assert out.returncode == 0, out.stderr
    shown = tomllib.loads(out.stdout)
    assert shown["database_url"] == "postgresql://safla:***@db:5432/safla"
    assert shown["index_file"] == "vector_index.faiss"
    assert shown["mcp_servers"] == [{"name": "mcp.local:8080", "url": "http://mcp.local:8080"}]
    assert shown["service_timeout"] == 5.0
    assert shown["services"] == {"odd name é": "tcp://h:1"}


def test_show_json(tmp_path: Path) -> None:
    """show --json prints the same as JSON."""
    path = write(tmp_path, GOOD)
    out = run_cli("config", "show", str(path), "--json")
    assert json.loads(out.stdout)["vector_dimension"] == 384


def test_show_invalid_exits_1_with_issues_on_stderr(tmp_path: Path) -> None:
    """An invalid file is not shown (a bad URL could hide a secret): its issues go to stderr, exit 1."""
    path = write(tmp_path, GOOD + "colour = 'blue'\n")
    out = run_cli("config", "show", str(path))
    assert out.returncode == 1
    assert out.stdout == ""
    assert "unknown key 'colour'" in out.stderr


def test_env_overrides_only_with_flag(tmp_path: Path) -> None:
    """The caller's SAFLA_* variables apply only with --env."""
    path = write(tmp_path, GOOD)
    env = cli_env(SAFLA_VECTOR_DIMENSION="0")
    assert run_cli("config", "validate", str(path), env=env).returncode == 0
    out = run_cli("config", "validate", str(path), "--env", env=env)
    assert out.returncode == 1 and "vector_dimension" in out.stdout


def test_help() -> None:
    """--help works for the group and each action."""
    for args in (["config", "--help"], ["config", "validate", "--help"], ["config", "show", "-h"]):
        out = run_cli(*args)
        assert out.returncode == 0 and "usage:" in out.stdout
