"""SaflaConfig: frozen, validated, normalised, redacted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given

from safla_diag import ConfigurationError, MCPServer, SaflaConfig

from ..strategies import configs, near_valid_configs, valid_configs
from .test_validate import VALID


def test_from_mapping_fills_defaults_and_normalises() -> None:
    """Bare MCP URLs get a name; optional keys get their defaults; numbers become floats."""
    cfg = SaflaConfig.from_mapping(
        {**VALID, "log_level": "warning", "memory_threshold_percent": 70, "data_dir": Path("/d")}
    )
    assert cfg.mcp_servers == (
        MCPServer(name="mcp.local:8080", url="http://mcp.local:8080"),
        MCPServer(name="tools", url="https://tools.local/sse"),
    )
    assert cfg.index_file == "vector_index.faiss"
    assert cfg.service_timeout == 5.0
    assert cfg.memory_threshold_percent == 70.0
    assert isinstance(cfg.memory_threshold_percent, float)
    assert cfg.memory_critical_percent == 95.0
    assert cfg.leak_check_interval == 300.0
    assert cfg.log_level == "WARNING"
    assert cfg.data_dir == "/d"
    assert cfg.log_paths == ()
    assert dict(cfg.services) == {}


def test_from_mapping_raises_every_issue() -> None:
    """An invalid mapping raises one ConfigurationError listing every issue."""
    with pytest.raises(ConfigurationError) as info:
        SaflaConfig.from_mapping({"vector_dimension": 0, "colour": "blue"})
    assert info.value.issues == (
        "database_url: missing (required)",
        "redis_url: missing (required)",
        "mcp_servers: missing (required)",
        "vector_dimension: expected a positive int, got 0",
        "unknown key 'colour'",
    )


def test_frozen_and_evolve_validates() -> None:
    """Fields cannot be set; evolve builds a new, validated copy."""
    cfg = SaflaConfig.from_mapping(VALID)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.vector_dimension = 3  # type: ignore[misc]
    assert attrs.evolve(cfg, vector_dimension=768).vector_dimension == 768
    with pytest.raises(ConfigurationError, match="vector_dimension"):
        attrs.evolve(cfg, vector_dimension=-1)


def test_direct_construction_is_validated() -> None:
    """Keyword-only construction runs the same checks as from_mapping."""
    with pytest.raises(ConfigurationError, match="redis_url"):
        SaflaConfig(
            database_url="postgresql://h/db",
            redis_url="http://nope",
            vector_dimension=3,
            mcp_servers=(MCPServer(name="a", url="http://a"),),
        )


def test_services_are_read_only_and_config_is_hashable() -> None:
    """The services mapping cannot be changed through the config, and configs hash."""
    cfg = SaflaConfig.from_mapping({**VALID, "services": {"s": "tcp://h:1"}})
    with pytest.raises(TypeError):
        cfg.services["t"] = "tcp://h:2"  # type: ignore[index]
    assert hash(cfg) == hash(SaflaConfig.from_mapping({**VALID, "services": {"s": "tcp://h:1"}}))


def test_to_dict_round_trips() -> None:
    """to_dict(redact=False) is accepted back by from_mapping and gives an equal config."""
    cfg = SaflaConfig.from_mapping(
        {**VALID, "services": {"s": "redis://:pw@h"}, "log_paths": ["a"]}
    )
    assert SaflaConfig.from_mapping(cfg.to_dict(redact=False)) == cfg


def test_to_dict_redacts_by_default() -> None:
    """Passwords in URLs are masked in to_dict() and in the repr."""
    cfg = SaflaConfig.from_mapping({**VALID, "database_url": "postgresql://u:hunter2@db/x"})
    assert cfg.to_dict()["database_url"] == "postgresql://u:***@db/x"
    assert "hunter2" not in repr(cfg)
    assert "database_url='postgresql://u:***@db/x'" in repr(cfg)
    assert cfg.to_dict(redact=False)["database_url"] == "postgresql://u:hunter2@db/x"


def test_load_names_the_file(tmp_path: Path) -> None:
    """SaflaConfig.load reports an invalid file's issues with the file as source."""
    path = tmp_path / "c.toml"
    path.write_text("vector_dimension = true\n")
    with pytest.raises(ConfigurationError) as info:
        SaflaConfig.load(path, environ={})
    assert info.value.source == str(path)
    assert "vector_dimension: expected a positive int, got True" in info.value.issues


def test_load_with_environment() -> None:
    """SaflaConfig.load applies SAFLA_* overrides."""
    env = {
        "SAFLA_DATABASE_URL": "postgresql://db/x",
        "SAFLA_REDIS_URL": "redis://r",
        "SAFLA_VECTOR_DIMENSION": "12",
        "SAFLA_MCP_SERVERS": "http://m:1",
    }
    cfg = SaflaConfig.load(environ=env)
    assert cfg.vector_dimension == 12
    assert cfg.mcp_servers == (MCPServer(name="m:1", url="http://m:1"),)


@given(configs | near_valid_configs())
def test_from_mapping_raises_only_configuration_error(config: Any) -> None:
    """Whatever it is given, from_mapping returns a SaflaConfig or raises ConfigurationError."""
    try:
        cfg = SaflaConfig.from_mapping(config)
    except ConfigurationError as err:
        assert err.issues  # noqa: PT017
    else:
        assert isinstance(cfg, SaflaConfig)


@given(valid_configs())
def test_valid_configs_build(config: dict[str, Any]) -> None:
    """Every valid configuration builds, and round-trips through to_dict."""
    cfg = SaflaConfig.from_mapping(config)
    assert SaflaConfig.from_mapping(cfg.to_dict(redact=False)) == cfg


def test_fields_are_the_keys() -> None:
    """SaflaConfig has one field per key of the table, in order, with the table's defaults."""
    from safla_diag.config._keys import KEYS

    fields = attrs.fields(SaflaConfig)
    assert [f.name for f in fields] == list(KEYS)
    for f in fields:
        key = KEYS[f.name]
        if key.required:
            assert f.default is attrs.NOTHING, f.name
        elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            assert f.default.factory() == key.default, f.name
        else:
            assert f.default == key.default, f.name
