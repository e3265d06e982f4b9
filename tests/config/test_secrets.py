"""No secret from a configuration ever shows: not in issues, reprs, dicts, logs, CLI output or tracebacks."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

import pytest

from safla_diag import (
    ConfigurationError,
    SaflaConfig,
    load_configuration,
    redact,
    validate_configuration,
)

from ..conftest import cli_env, run_cli

PASSWORD = "Hunter2Pw9"
TOKEN = "tok9f8e7d6c"
SECRETS = (PASSWORD, TOKEN)


def valid_with_secrets() -> dict[str, Any]:
    """A valid configuration with a password and a token in every URL."""
    return {
        "database_url": f"postgresql://safla:{PASSWORD}@db:5432/safla?sslpassword={TOKEN}",
        "redis_url": f"rediss://default:{PASSWORD}@cache:6380/0?token={TOKEN}",
        "vector_dimension": 384,
        "mcp_servers": [
            f"https://bot:{PASSWORD}@mcp.local/sse?access_token={TOKEN}",
            {"name": "tools", "url": f"wss://:{TOKEN}@tools.local/ws?api_key={PASSWORD}"},
        ],
        "mcp_task_queue": f"postgresql://q:{PASSWORD}@db/queue?auth_token={TOKEN}",
        "services": {"search": f"http://elastic:{PASSWORD}@search:9200/?token={TOKEN}"},
    }


def invalid_with_secrets() -> dict[str, Any]:
    """
    An invalid configuration: secret-looking keys, and secrets inside bad URLs too.

    A secret typed into a key that does not look secret (vector_dimension = "hunter2") cannot be
    told from a typo, and is shown like any other wrong value; that case is not tested here.
    """
    cfg = valid_with_secrets()
    cfg.update(
        {
            "password": PASSWORD,
            "api_token": TOKEN,
            "db_password": {"nested": PASSWORD},
            "redis_url": f"http://user:{PASSWORD}@cache?token={TOKEN}",  # wrong scheme
            "database_url": f"postgresql://u:{PASSWORD}@db:99999/x",  # bad port
            "services": {"a": f"redis:/u:{PASSWORD}@h", "b": f"u:{TOKEN}@h"},  # not even URLs
            "log_paths": f"password={PASSWORD}",
            "environment": {"token": TOKEN},
        }
    )
    cfg["mcp_servers"] = [
        {"name": "x", "url": f"ftp://u:{PASSWORD}@h", "token": TOKEN},
        f"gopher://:{TOKEN}@h",
        f"http://[::1:{PASSWORD}",
    ]
    return cfg


def assert_clean(text: str) -> None:
    """Neither the password nor the token appears in ``text``."""
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in: {text[:2000]}"


def test_issues_never_show_secrets() -> None:
    """Every issue of a configuration full of secrets is free of them."""
    issues = validate_configuration(invalid_with_secrets())
    assert len(issues) >= 10
    assert_clean("\n".join(issues))


def test_repr_and_to_dict_are_redacted() -> None:
    """repr(), str() and to_dict() of a config hide every secret; to_dict(redact=False) keeps them."""
    cfg = SaflaConfig.from_mapping(valid_with_secrets())
    assert_clean(repr(cfg))
    assert_clean(str(cfg))
    assert_clean(json.dumps(cfg.to_dict()))
    assert_clean(repr(cfg.mcp_servers))
    assert PASSWORD in json.dumps(cfg.to_dict(redact=False))


def test_error_message_and_traceback_are_clean() -> None:
    """ConfigurationError's message, issues and full formatted traceback hide every secret."""
    with pytest.raises(ConfigurationError) as info:
        SaflaConfig.from_mapping(invalid_with_secrets())
    err = info.value
    assert_clean(str(err))
    assert_clean(repr(err))
    assert_clean("\n".join(err.issues))
    assert_clean("".join(traceback.format_exception(err)))


def test_malformed_file_error_is_clean(tmp_path: Path) -> None:
    """A parse error in a file full of secrets names the line, not the content."""
    for name, text in (
        ("bad.toml", f'database_url = "postgresql://u:{PASSWORD}@db"\ntoken = {TOKEN}\n'),
        ("bad.json", f'{{"password": "{PASSWORD}", "token": {TOKEN}}}'),
    ):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigurationError) as info:
            load_configuration(path, environ={})
        assert "line " in str(info.value)
        assert_clean("".join(traceback.format_exception(info.value)))


def test_log_records_are_clean(caplog: pytest.LogCaptureFixture) -> None:
    """Whatever the library logs while loading and validating, at any level, is clean."""
    caplog.set_level(logging.DEBUG, logger="safla_diag")
    env = {
        "SAFLA_DATABASE_URL": f"postgresql://u:{PASSWORD}@envdb/x",
        "SAFLA_SERVICES": f"s=redis://:{TOKEN}@h",
    }
    cfg = load_configuration(invalid_with_secrets(), environ=env)
    validate_configuration(cfg)
    with pytest.raises(ConfigurationError):
        SaflaConfig.from_mapping(cfg)
    SaflaConfig.load(valid_with_secrets(), environ=env)
    assert caplog.records, "expected the loader to log at DEBUG"
    for record in caplog.records:
        assert_clean(record.getMessage())


def test_cli_output_is_clean(tmp_path: Path) -> None:
    """config validate and config show, valid or not, text or JSON, never print a secret."""
    valid = tmp_path / "valid.json"
    valid.write_text(json.dumps(valid_with_secrets()))
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps(invalid_with_secrets()))
    malformed = tmp_path / "malformed.toml"
    malformed.write_text(f'password = "{PASSWORD}"\ntoken = {TOKEN}\n')
    env = cli_env(SAFLA_REDIS_URL=f"redis://:{PASSWORD}@envcache:6379/0")
    for path in (valid, invalid, malformed):
        for action in ("validate", "show"):
            for extra in ([], ["--json"], ["--env", "-vv"]):
                out = run_cli("-vv", "config", action, str(path), *extra, env=env)
                assert out.returncode in (0, 1, 2)
                assert "Traceback" not in out.stderr
                assert_clean(out.stdout + out.stderr)


def test_redact_masks_what_the_config_holds() -> None:
    """redact() itself masks every URL and key=value form used above."""
    for value in (
        f"postgresql://safla:{PASSWORD}@db:5432/safla?sslpassword={TOKEN}",
        f"https://bot:{PASSWORD}@mcp.local/sse?access_token={TOKEN}",
        f"password={PASSWORD} token: {TOKEN}",
        f'{{"api_key": "{PASSWORD}", "Authorization": "Bearer {TOKEN}"}}',
    ):
        assert_clean(redact(value))


SPACED = ("s3 cret", "correct horse battery", "correct horse battery staple")
# Words that appear nowhere else in the configuration or the outputs.
SPACED_WORDS = ("cret", "horse", "battery", "staple")


def spaced_config() -> dict[str, Any]:
    """A valid configuration whose passwords hold spaces (issue 12, item 4)."""
    return {
        "database_url": "postgresql://app:correct horse battery@127.0.0.1:1/x",
        "redis_url": "redis://:s3 cret@127.0.0.1:1/0",
        "vector_dimension": 8,
        "mcp_servers": [
            {"name": "tools", "url": "http://bot:correct horse battery@127.0.0.1:1/mcp"}
        ],
        "services": {"search": "http://elastic:s3 cret@127.0.0.1:1/"},
        "service_timeout": 1,
    }


def assert_no_spaced_secret(text: str) -> None:
    """No word of a spaced password appears in ``text``."""
    for word in SPACED_WORDS:
        assert word not in text, f"{word!r} leaked in: {text[:2000]}"


def test_spaced_passwords_are_masked_in_the_config_object() -> None:
    """SaflaConfig's repr, str and to_dict mask a whole password with spaces."""
    cfg = SaflaConfig.from_mapping(spaced_config())
    for shown in (repr(cfg), str(cfg), json.dumps(cfg.to_dict()), repr(cfg.mcp_servers)):
        assert_no_spaced_secret(shown)
    assert "correct horse battery" in json.dumps(cfg.to_dict(redact=False))


def test_spaced_passwords_never_reach_any_cli_output(tmp_path: Path) -> None:
    """config show/validate, services and doctor, text and JSON: no word of a spaced password."""
    path = tmp_path / "spaced.json"
    cfg = spaced_config()
    cfg["environment"] = '"password": "correct horse battery staple"'
    path.write_text(json.dumps(cfg))
    runs = [
        ("config", "show", str(path)),
        ("config", "show", str(path), "--json"),
        ("config", "validate", str(path)),
        ("services", "--config", str(path), "--timeout", "1"),
        ("services", "--config", str(path), "--timeout", "1", "--json"),
        ("doctor", "--config", str(path), "--timeout", "1"),
        ("doctor", "--config", str(path), "--timeout", "1", "--json"),
    ]
    for args in runs:
        out = run_cli("-vv", *args, timeout=120)
        assert "Traceback" not in out.stderr, out.stderr
        assert out.stdout, (args, out.stderr)
        assert_no_spaced_secret(out.stdout + out.stderr)
