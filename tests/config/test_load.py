"""load_configuration: TOML and JSON files, mappings, SAFLA_* overrides, clear file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import ConfigurationError, load_configuration, validate_configuration

from .._caps import run_without_file_privileges

TOML = """\
database_url = "postgresql://safla@db:5432/safla"
redis_url = "redis://localhost:6379/0"
vector_dimension = 384
service_timeout = 2.5

[[mcp_servers]]
name = "tools"
url = "http://tools.local:8080"
"""


def test_toml_file(tmp_path: Path) -> None:
    """A TOML file loads into a dict that validates; arrays of tables become lists of dicts."""
    path = tmp_path / "safla.toml"
    path.write_text(TOML)
    cfg = load_configuration(path, environ={})
    assert cfg["vector_dimension"] == 384
    assert cfg["mcp_servers"] == [{"name": "tools", "url": "http://tools.local:8080"}]
    assert validate_configuration(cfg) == []


def test_json_file_and_str_path(tmp_path: Path) -> None:
    """A JSON file given as a str path loads the same way."""
    path = tmp_path / "safla.json"
    path.write_text(json.dumps({"vector_dimension": 8, "mcp_servers": ["http://a"]}))
    assert load_configuration(str(path), environ={}) == {
        "vector_dimension": 8,
        "mcp_servers": ["http://a"],
    }


def test_mapping_is_copied() -> None:
    """A mapping source is copied, never modified."""
    source = {"vector_dimension": 8}
    cfg = load_configuration(source, environ={"SAFLA_VECTOR_DIMENSION": "16"})
    assert cfg == {"vector_dimension": 16}
    assert source == {"vector_dimension": 8}


def test_environment_overrides() -> None:
    """SAFLA_<KEY> overrides, parsed for the key's type; lists are comma-separated."""
    env = {
        "SAFLA_DATABASE_URL": "postgresql://env-db/safla",
        "SAFLA_VECTOR_DIMENSION": "768",
        "SAFLA_MCP_SERVERS": "http://a:1, tools=https://t.local/sse?x=1 ,",
        "SAFLA_LOG_PATHS": "/var/log/a.log,/var/log/b/*.log",
        "SAFLA_SERVICES": "search=http://s:9200,cache=tcp://c:11211",
        "SAFLA_SERVICE_TIMEOUT": "0.5",
        "SAFLA_MEMORY_THRESHOLD_PERCENT": "70",
        "SAFLA_LOG_LEVEL": "debug",
        "SAFLA_REDIS_URL": "",  # empty: ignored
        "SAFLA_UNKNOWN_THING": "x",  # not a key: ignored
        "OTHER": "y",
    }
    cfg = load_configuration(
        {"database_url": "postgresql://file-db/x", "redis_url": "redis://r"}, environ=env
    )
    assert cfg == {
        "database_url": "postgresql://env-db/safla",
        "redis_url": "redis://r",
        "vector_dimension": 768,
        "mcp_servers": ["http://a:1", {"name": "tools", "url": "https://t.local/sse?x=1"}],
        "log_paths": ["/var/log/a.log", "/var/log/b/*.log"],
        "services": {"search": "http://s:9200", "cache": "tcp://c:11211"},
        "service_timeout": 0.5,
        "memory_threshold_percent": 70,
        "log_level": "debug",
    }
    assert validate_configuration(cfg) == []


def test_unparseable_environment_value_is_reported_by_validation() -> None:
    """A non-number in a number variable is kept, so validation names the key."""
    cfg = load_configuration(None, environ={"SAFLA_VECTOR_DIMENSION": "lots"})
    assert cfg == {"vector_dimension": "lots"}
    assert "vector_dimension: expected a positive int, got 'lots'" in validate_configuration(cfg)


def test_safla_config_names_the_file(tmp_path: Path) -> None:
    """With no source, SAFLA_CONFIG names the file to load."""
    path = tmp_path / "c.toml"
    path.write_text("vector_dimension = 3\n")
    assert load_configuration(environ={"SAFLA_CONFIG": str(path)}) == {"vector_dimension": 3}


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environ=, the process environment is read."""
    monkeypatch.setenv("SAFLA_ENVIRONMENT", "staging")
    assert load_configuration({})["environment"] == "staging"


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("bad.toml", 'database_url = "x"\nvector_dimension = = 3\n', 2),
        ("bad.toml", "a = 1\nb = 2\n[t\n", 3),
        ("bad.toml", "a = 1\na = 2\n", 2),
        ("bad.json", '{\n  "a": 1,\n  "b": \n}\n', 4),
        ("bad.json", '{"a": 1}\n\n{"b": 2}', 3),
    ],
)
def test_malformed_file_names_file_and_line(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    """A parse error raises ConfigurationError naming the file and the line."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_configuration(path, environ={})
    err = info.value
    assert err.source == str(path)
    assert str(path) in str(err)
    assert f"line {line}," in str(err)
    assert isinstance(err.__cause__, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigurationError naming it."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigurationError, match="cannot read the file: No such file") as info:
        load_configuration(path, environ={})
    assert info.value.source == str(path)


def test_file_without_read_permission(tmp_path: Path) -> None:
    """
    A file the process may not read is a ConfigurationError naming the file, and the CLI says
    so on one line with exit 2 (checked in a child that file permissions apply to, even as root).
    """
    path = tmp_path / "safla.toml"
    path.write_text('database_url = "postgresql://app:hunter2@db/x"\n')
    path.chmod(0)
    code = (
        "import sys\n"
        "from safla_diag import ConfigurationError, load_configuration\n"
        "try:\n"
        "    load_configuration(sys.argv[1], environ={})\n"
        "except ConfigurationError as err:\n"
        "    print(err.source, '|', '; '.join(err.issues))\n"
        "from safla_diag._cli import main\n"
        "sys.exit(main(['config', 'validate', sys.argv[1]]))\n"
    )
    proc = run_without_file_privileges(code, str(path))
    assert proc.stdout == f"{path} | cannot read the file: Permission denied\n"
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert str(path) in line and "Permission denied" in line
    assert "hunter2" not in proc.stdout + proc.stderr


def test_directory_is_unreadable(tmp_path: Path) -> None:
    """A folder where a file was expected is a ConfigurationError, not an OSError."""
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(ConfigurationError, match="cannot read the file"):
        load_configuration(folder, environ={})


def test_unsupported_suffix(tmp_path: Path) -> None:
    """Only .toml and .json are read."""
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")
    with pytest.raises(ConfigurationError, match=r"unsupported file type '\.yaml'"):
        load_configuration(path, environ={})


def test_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with their line."""
    path = tmp_path / "c.toml"
    path.write_bytes(b"a = 1\nb = '\xff\xfe'\n")
    with pytest.raises(ConfigurationError, match="line 2: not valid UTF-8"):
        load_configuration(path, environ={})


@pytest.mark.parametrize("text", ["[1, 2]", '"x"', "null"])
def test_json_top_level_must_be_an_object(tmp_path: Path, text: str) -> None:
    """A JSON file whose top level is not an object is rejected."""
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match="expected a table"):
        load_configuration(path, environ={})


def test_bad_source_type_is_a_type_error() -> None:
    """A source that is neither a path, a mapping nor None is a programmer error."""
    with pytest.raises(TypeError):
        load_configuration(42, environ={})  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_any_bytes_load_or_raise_configuration_error(data: bytes) -> None:
    """Whatever a .toml or .json file holds, the result is a dict or a ConfigurationError."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for suffix in (".toml", ".json"):
            path = Path(d) / f"c{suffix}"
            path.write_bytes(data)
            try:
                assert isinstance(load_configuration(path, environ={}), dict)
            except ConfigurationError as err:
                assert err.source == str(path)  # noqa: PT017


def test_deeply_nested_json(tmp_path: Path) -> None:
    """Absurd nesting is a ConfigurationError, not a RecursionError."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigurationError):
        load_configuration(path, environ={})


@given(
    st.dictionaries(
        st.sampled_from(
            ["SAFLA_VECTOR_DIMENSION", "SAFLA_MCP_SERVERS", "SAFLA_SERVICES", "SAFLA_LOG_PATHS",
             "SAFLA_SERVICE_TIMEOUT", "SAFLA_MEMORY_CRITICAL_PERCENT", "SAFLA_REDIS_URL", "SAFLA_X"]
        ),
        st.text(max_size=60) | st.just("9" * 5000) | st.just("1e400") | st.just("a=b=c,=d,e="),
    )
)  # fmt: skip
def test_any_environment_loads(environ: dict[str, str]) -> None:
    """Whatever the SAFLA_* variables hold, loading gives a dict that validation can judge."""
    cfg = load_configuration({}, environ=environ)
    assert isinstance(cfg, dict)
    assert isinstance(validate_configuration(cfg), list)
