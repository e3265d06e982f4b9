"""validate_configuration: every problem at once, each naming its key; never raises."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given

from safla_diag import validate_configuration

from ..strategies import configs, near_valid_configs, valid_configs

VALID: dict[str, Any] = {
    "database_url": "postgresql://safla@db:5432/safla",
    "redis_url": "redis://localhost:6379/0",
    "vector_dimension": 384,
    "mcp_servers": ["http://mcp.local:8080", {"name": "tools", "url": "https://tools.local/sse"}],
}


def with_(**changes: object) -> dict[str, Any]:
    cfg = dict(VALID)
    cfg.update(changes)
    return cfg


def test_valid_configuration_has_no_issues() -> None:
    """A complete, correct configuration gives []."""
    assert validate_configuration(VALID) == []


def test_every_optional_key_valid() -> None:
    """All the optional keys, set to good values, are accepted."""
    cfg = with_(
        data_dir="/var/lib/safla",
        backup_dir="/var/backups/safla",
        index_file="vectors.faiss",
        mcp_task_queue="postgresql://q@db/queue",
        log_paths=["/var/log/safla/*.log"],
        services={"search": "http://search:9200/_health", "cache": "tcp://cache:11211"},
        service_timeout=2.5,
        memory_threshold_percent=80,
        memory_critical_percent=90.5,
        leak_check_interval=60,
        log_level="info",
        environment="production",
    )
    assert validate_configuration(cfg) == []


def test_all_problems_are_reported_at_once() -> None:
    """Several bad keys give one issue each, every one naming its key."""
    issues = validate_configuration(
        {
            "database_url": "http://db/x",
            "redis_url": 6379,
            "vector_dimension": True,
            "mcp_servers": [],
            "service_timeout": -1,
        }
    )
    keys = [i.split(":", 1)[0] for i in issues]
    assert keys == [
        "database_url",
        "redis_url",
        "vector_dimension",
        "mcp_servers",
        "service_timeout",
    ]
    assert "vector_dimension: expected a positive int, got True" in issues


def test_missing_required_keys_are_each_named() -> None:
    """An empty mapping lacks the four required keys, each reported."""
    assert validate_configuration({}) == [
        "database_url: missing (required)",
        "redis_url: missing (required)",
        "vector_dimension: missing (required)",
        "mcp_servers: missing (required)",
    ]


@pytest.mark.parametrize("value", [None, [], "config", 42, b"x", object()])
def test_non_mappings_are_reported(value: object) -> None:
    """Anything but a mapping is one issue, not an exception."""
    [issue] = validate_configuration(value)
    assert issue.startswith("configuration: expected a mapping")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db",
        "postgres://u:p@h:5432/db",
        "postgresql+psycopg://h/db",
        "postgresql+asyncpg://h/db",
        "mysql://h/db",
        "POSTGRESQL://H/DB",
    ],
)
def test_database_url_schemes_accepted(url: str) -> None:
    """postgresql, postgres, postgresql+driver and mysql with a host are accepted."""
    assert validate_configuration(with_(database_url=url)) == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("sqlite:///x.db", "expected scheme"),
        ("postgresql+://h/db", "expected scheme"),
        ("postgresql:///db", "without a host"),
        ("db:5432", "without a scheme"),
        ("postgresql://h:99999/db", "malformed URL"),
        ("postgresql://[::1/db", "malformed URL"),
        ("", "empty string"),
        (5432, "got 5432"),
    ],
)
def test_database_url_problems(url: object, why: str) -> None:
    """Bad database URLs are reported with the reason."""
    [issue] = validate_configuration(with_(database_url=url))
    assert issue.startswith("database_url: ")
    assert why in issue


@pytest.mark.parametrize("url", ["redis://h", "rediss://:pw@h:6380/2", "unix:///run/redis.sock"])
def test_redis_urls_accepted(url: str) -> None:
    """redis, rediss and unix URLs are accepted."""
    assert validate_configuration(with_(redis_url=url)) == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h", "expected scheme"),
        ("redis://", "without a host"),
        ("unix://", "socket path"),
        ("redis://h/abc", "must be a number"),
    ],
)
def test_redis_url_problems(url: str, why: str) -> None:
    """Bad Redis URLs are reported with the reason."""
    [issue] = validate_configuration(with_(redis_url=url))
    assert issue.startswith("redis_url: ") and why in issue


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1, True), (65536, True), (65537, False), (0, False), (-3, False), (True, False),
     (False, False), (384.0, False), ("384", False), (None, False)],
)  # fmt: skip
def test_vector_dimension(value: object, ok: bool) -> None:
    """A positive int (never a bool) up to 65536."""
    issues = validate_configuration(with_(vector_dimension=value))
    assert (issues == []) is ok
    if not ok:
        assert issues[0].startswith("vector_dimension: expected a positive int")


def test_mcp_servers_problems_name_the_entry() -> None:
    """Each bad entry is named by its index; duplicate names are caught."""
    issues = validate_configuration(
        with_(
            mcp_servers=[
                "http://a:1",
                "http://a:1",
                {"name": "a:1", "url": "http://other"},
                {"url": "http://x"},
                {"name": "", "url": "ftp://x"},
                {"name": "z", "url": "http://z", "tokn": "x"},
                7,
            ]
        )
    )
    assert issues == [
        "mcp_servers[1]: duplicate name 'a:1' (also mcp_servers[0])",
        "mcp_servers[2]: duplicate name 'a:1' (also mcp_servers[0])",
        "mcp_servers[3]: missing 'name'",
        "mcp_servers[4].name: expected a non-empty str, got an empty string",
        "mcp_servers[4].url: expected scheme http, https, ws, wss, tcp, got 'ftp'",
        "mcp_servers[5]: unknown key 'tokn' (expected only name and url)",
        "mcp_servers[6]: expected a URL or a {name, url} table, got 7",
    ]


@pytest.mark.parametrize("value", [[], "http://a", {"name": "a", "url": "http://a"}])
def test_mcp_servers_must_be_a_non_empty_list(value: object) -> None:
    """An empty list, a bare string or a single table is not a list of servers."""
    [issue] = validate_configuration(with_(mcp_servers=value))
    assert issue.startswith("mcp_servers: expected a non-empty list")


def test_unknown_keys_with_did_you_mean() -> None:
    """A misspelt key gets a suggestion; a wholly unknown one just the report."""
    issues = validate_configuration(with_(vector_dimenson=3, Redis_Url="x", zzz=1))
    assert "unknown key 'vector_dimenson' (did you mean 'vector_dimension'?)" in issues
    assert "unknown key 'Redis_Url' (did you mean 'redis_url'?)" in issues
    assert "unknown key 'zzz'" in issues


def test_optional_keys_checked() -> None:
    """Types and ranges of the optional keys are checked, each issue naming its key."""
    issues = validate_configuration(
        with_(
            data_dir=3,
            index_file="sub/dir.faiss",
            mcp_task_queue="http://q",
            log_paths="/var/log/x.log",
            services={"a": "gopher://x", "": "redis://h"},
            service_timeout=float("nan"),
            memory_threshold_percent=101,
            leak_check_interval=0,
            log_level="LOUD",
            environment="",
        )
    )
    keys = [i.split(":", 1)[0] for i in issues]
    assert keys == [
        "data_dir", "index_file", "mcp_task_queue", "log_paths", "services.a", "services",
        "service_timeout", "memory_threshold_percent", "leak_check_interval", "log_level",
        "environment",
    ]  # fmt: skip
    assert 'write a list: ["..."]' in issues[3]


def test_critical_must_not_be_below_threshold() -> None:
    """memory_critical_percent below the threshold (given or default) is reported."""
    [issue] = validate_configuration(with_(memory_critical_percent=80))
    assert issue.startswith("memory_critical_percent: expected a value >= memory_threshold_percent")
    assert (
        validate_configuration(with_(memory_threshold_percent=50, memory_critical_percent=60)) == []
    )


def test_optional_none_means_default() -> None:
    """An optional key set to None (JSON null) is accepted; a required one is not."""
    assert validate_configuration(with_(data_dir=None, log_level=None)) == []
    assert validate_configuration(with_(redis_url=None)) != []


def test_huge_lists_are_capped() -> None:
    """A million bad entries give a bounded report with a count of the rest."""
    issues = validate_configuration(with_(mcp_servers=[1] * 1000))
    assert len(issues) == 21
    assert issues[-1] == "mcp_servers: ... and 980 more issues"


class Exploding(Mapping[str, object]):
    """A mapping whose every access fails."""

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1

    def __contains__(self, key: object) -> bool:
        raise RuntimeError("boom")


def test_hostile_mapping_does_not_raise() -> None:
    """A mapping that raises on access is reported, not propagated."""
    assert validate_configuration(Exploding()) == [
        "configuration: could not be read (RuntimeError)"
    ]


@given(configs | near_valid_configs())
def test_never_raises(config: object) -> None:
    """Whatever it is given, validate_configuration returns a list of str."""
    issues = validate_configuration(config)
    assert isinstance(issues, list)
    assert all(isinstance(i, str) and i for i in issues)
    assert all(len(i) < 400 for i in issues)
    assert not any("could not be read" in i for i in issues)  # no checker blew up


@given(valid_configs())
def test_valid_configs_validate(config: dict[str, object]) -> None:
    """Generated valid configurations give no issues."""
    assert validate_configuration(config) == []


def test_every_key_is_documented() -> None:
    """docs/configuration.md has a table row, with its SAFLA_ variable, for every known key."""
    from pathlib import Path

    from safla_diag.config._keys import KEYS

    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name in KEYS:
        assert f"| `{name}` |" in page and f"`SAFLA_{name.upper()}`" in page, name
