"""Hostile configuration files and values: one-line ConfigurationErrors, never a hang or a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from safla_diag import ConfigurationError, Diagnostics, load_configuration, validate_configuration

from ..conftest import run_cli

BASE = {
    "database_url": "postgresql://h/db",
    "redis_url": "redis://h:6379/0",
    "vector_dimension": 8,
    "mcp_servers": ["http://h:1"],
}
NUMBER_KEYS = (
    "vector_dimension",
    "service_timeout",
    "memory_threshold_percent",
    "memory_critical_percent",
    "leak_check_interval",
)


def _hostile_files(tmp_path: Path) -> dict[str, Path]:
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    big_json = tmp_path / "digits.json"
    big_json.write_text('{"vector_dimension": ' + "7" * 5000 + "}")
    big_toml = tmp_path / "digits.toml"
    big_toml.write_text("vector_dimension = " + "7" * 5000 + "\n")
    return {"zero": zero, "fifo": fifo, "big_json": big_json, "big_toml": big_toml}


@pytest.mark.parametrize(
    ("which", "words"),
    [
        ("zero", "not a regular file"),
        ("big_json", "more digits"),
        ("big_toml", "more digits"),
    ],
)
def test_hostile_files_raise_configuration_error(tmp_path: Path, which: str, words: str) -> None:
    """/dev/zero behind a symlink and a 5000-digit integer are ConfigurationErrors naming the file."""
    path = _hostile_files(tmp_path)[which]
    with pytest.raises(ConfigurationError) as info:
        load_configuration(path)
    assert words in str(info.value) and info.value.source == str(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "command", [("config", "show"), ("doctor", "--config"), ("services", "--config")]
)
def test_hostile_files_exit_2_in_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Each command given a FIFO nobody writes, /dev/zero or a 5000-digit number: exit 2, one line."""
    for name, path in _hostile_files(tmp_path).items():
        out = run_cli(*command, str(path), timeout=60)
        assert out.returncode == 2, (name, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, (name, out.stderr)


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("value", [10**400, -(10**400), 1e308 * 10])
def test_huge_numbers_are_validation_issues(key: str, value: Any) -> None:
    """10**400 (and inf) give one clean issue naming the key, in validation and in the doctor."""
    cfg = {**BASE, key: value}
    issues = validate_configuration(cfg)
    assert len(issues) == 1 and issues[0].startswith(f"{key}:")
    report = Diagnostics(cfg, sections=["configuration", "memory"]).doctor()
    assert report.exit_code == 2
    assert [f.message for f in report.section("configuration").findings] == issues


def test_huge_numbers_in_the_monitors_fall_back_to_defaults() -> None:
    """Inside `async with`, thresholds of 10**400 do not crash the monitors: defaults apply."""
    import asyncio

    cfg = {**BASE, **dict.fromkeys(NUMBER_KEYS, 10**400)}

    async def main() -> Any:
        async with Diagnostics(cfg, sections=["monitors"]) as diag:
            return await diag.adoctor()

    report = asyncio.run(main())
    text = " ".join(f.message for f in report.section("monitors").findings)
    assert "warning above 85%" in text and "could not check" not in text


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://[::1]x/", "http://u:p@[::1/x", "http://[::1]:99999/"]
)
def test_malformed_ipv6_urls(url: str, tmp_path: Path) -> None:
    """A malformed IPv6 URL is a validation issue and an 'invalid' probe result, never a traceback."""
    cfg = {**BASE, "mcp_servers": [url], "services": {"a": url}}
    issues = validate_configuration(cfg)
    assert any(i.startswith("mcp_servers[0]") for i in issues)
    assert any(i.startswith("services.a") for i in issues)
    path = tmp_path / "v6.json"
    path.write_text(json.dumps(cfg))
    out = run_cli("services", "--config", str(path), "--json", "--timeout", "1")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    results = {r["name"]: r for r in json.loads(out.stdout)["results"]}
    assert results["a"]["status"] == results["mcp:1"]["status"] == "invalid"
