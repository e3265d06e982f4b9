"""
The table of configuration keys: one line per key, shared by validation, loading and SaflaConfig.

Each checker takes ``(key, value)`` and returns the issues it found (an empty list when the value is
fine). Checkers never raise on odd input and never echo a URL or a secret: values are shown through
:func:`show`, which redacts and shortens them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._redact import redact

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from typing_extensions import TypeIs

__all__ = ["KEYS", "LOG_LEVELS", "Key", "default", "mcp_server_name", "show"]

# Issues reported per key at most; a list of a million bad entries gives 20 lines and a count.
MAX_ISSUES_PER_KEY = 20

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Check = Callable[[str, object], list[str]]
EnvParse = Callable[[str], object]
Convert = Callable[[Any], object]


def show(value: object) -> str:
    """Describe ``value`` for a message: short, redacted, and never a URL's text."""
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if -(10**18) < value < 10**18 else "a very large int"
    if isinstance(value, str):
        if not value:
            return "an empty string"
        if "://" in value or "@" in value:
            # A malformed URL may carry a password that redact() cannot recognise.
            return "a str that looks like a URL (not shown)"
        text = redact(repr(value[:100]))
        return text if len(text) <= 42 else text[:40] + "…'"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"  # never the contents of a container: it may hold secrets


# --- value checkers --------------------------------------------------------------------------


def _is_number(value: object) -> TypeIs[int | float]:
    """A finite int or float; never a bool (True is not 1 second)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _split(value: str) -> SplitResult | None:
    from urllib.parse import urlsplit  # on first use: keeps `import safla_diag` light

    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
        _ = parts.hostname
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    if "]" in host and host.rpartition("]")[2][:1] not in ("", ":"):
        return None  # "http://[::1]x/": urlsplit accepts it, nothing can connect to it
    return parts


def url_issue(
    key: str, value: object, schemes: Sequence[str], *, example: str, prefixes: Sequence[str] = ()
) -> str | None:
    """
    Check one URL; return an issue, or None when it is fine.

    Args:
        key: The key, for the message.
        value: The value to check.
        schemes: Allowed schemes (lower case). ``unix`` needs a path instead of a host.
        example: An example URL for the message.
        prefixes: Scheme prefixes also allowed with a ``+driver`` suffix (``postgresql+psycopg``).
    """
    expected = f"expected a URL like {example}"
    if not isinstance(value, str):
        return f"{key}: {expected}, got {show(value)}"
    if not value.strip():
        return f"{key}: {expected}, got an empty string"
    if "://" not in value:
        return f"{key}: {expected}, got a str without a scheme (no '://')"
    parts = _split(value)
    if parts is None:
        return f"{key}: {expected}, got a malformed URL (bad host or port)"
    scheme = parts.scheme.lower()
    ok = scheme in schemes or any(
        scheme.startswith(p + "+") and len(scheme) > len(p) + 1 for p in prefixes
    )
    if not ok:
        shown = scheme if len(scheme) <= 20 else scheme[:20] + "…"
        allowed = ", ".join(list(schemes) + [f"{p}+driver" for p in prefixes])
        return f"{key}: expected scheme {allowed}, got {shown!r}"
    if scheme == "unix":
        if not parts.path:
            return f"{key}: a unix:// URL needs a socket path, like unix:///run/redis.sock"
        return None
    if not parts.hostname:
        return f"{key}: {expected}, got a URL without a host"
    return None


def _url(schemes: Sequence[str], example: str, prefixes: Sequence[str] = ()) -> Check:
    def check(key: str, value: object) -> list[str]:
        issue = url_issue(key, value, schemes, example=example, prefixes=prefixes)
        return [issue] if issue else []

    return check


DATABASE_SCHEMES = ("postgresql", "postgres", "mysql")
REDIS_SCHEMES = ("redis", "rediss", "unix")
MCP_SCHEMES = ("http", "https", "ws", "wss", "tcp")
SERVICE_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "postgresql",
    "postgres",
    "http",
    "https",
    "tcp",
    "mcp",
)


def _redis(key: str, value: object) -> list[str]:
    issue = url_issue(key, value, REDIS_SCHEMES, example="redis://localhost:6379/0")
    if issue:
        return [issue]
    assert isinstance(value, str)
    parts = _split(value)
    assert parts is not None
    db = parts.path.strip("/")
    if parts.scheme.lower() != "unix" and db and not db.isdigit():
        return [f"{key}: the database after the host must be a number, like /0"]
    return []


def _positive_int(maximum: int) -> Check:
    def check(key: str, value: object) -> list[str]:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return [f"{key}: expected a positive int, got {show(value)}"]
        if value > maximum:
            return [f"{key}: expected a positive int no larger than {maximum}, got {show(value)}"]
        return []

    return check


MAX_SECONDS = 10**9  # about 31 years: anything above is a typo, and floats stay exact enough


def _positive_number(key: str, value: object) -> list[str]:
    if not _is_number(value) or not 0 < value <= MAX_SECONDS:
        return [f"{key}: expected a positive number of seconds (at most 1e9), got {show(value)}"]
    return []


def _percent(key: str, value: object) -> list[str]:
    if not _is_number(value) or not 0 <= value <= 100:
        return [f"{key}: expected a number from 0 to 100, got {show(value)}"]
    return []


def _text(key: str, value: object) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return [f"{key}: expected a non-empty str, got {show(value)}"]
    return []


def _path(key: str, value: object) -> list[str]:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        return [f"{key}: expected a path (a non-empty str), got {show(value)}"]
    if "\x00" in value:
        return [f"{key}: expected a path, got a str containing a NUL character"]
    return []


def _file_name(key: str, value: object) -> list[str]:
    issues = _path(key, value)
    if not issues and isinstance(value, str) and ("/" in value or "\\" in value):
        issues.append(f"{key}: expected a file name inside data_dir, got a path with a separator")
    return issues


def _task_queue(key: str, value: object) -> list[str]:
    if isinstance(value, str) and "://" in value:
        issue = url_issue(
            key,
            value,
            ("postgresql", "postgres"),
            example="postgresql://host/db",
            prefixes=("postgresql",),
        )
        return [issue] if issue else []
    return _path(key, value)


def _log_paths(key: str, value: object) -> list[str]:
    if not isinstance(value, list | tuple):
        hint = ' (write a list: ["..."])' if isinstance(value, str) else ""
        return [f"{key}: expected a list of str (paths or globs), got {show(value)}{hint}"]
    issues: list[str] = []
    for i, item in enumerate(value):
        issues += _path(f"{key}[{i}]", item)
    return issues


def _services(key: str, value: object) -> list[str]:
    if not isinstance(value, Mapping):
        return [f"{key}: expected a mapping of name -> URL, got {show(value)}"]
    issues: list[str] = []
    for name, url in value.items():
        if not isinstance(name, str) or not name.strip():
            issues.append(f"{key}: expected service names to be non-empty str, got {show(name)}")
            continue
        label = f"{key}.{name}" if len(name) <= 40 else f"{key}.{name[:40]}…"
        issue = url_issue(
            redact(label),
            url,
            SERVICE_SCHEMES,
            example="redis://host:6379",
            prefixes=("postgresql",),
        )
        if issue:
            issues.append(issue)
    return issues


def _log_level(key: str, value: object) -> list[str]:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        return [f"{key}: expected one of {', '.join(LOG_LEVELS)}, got {show(value)}"]
    return []


def mcp_server_name(url: str) -> str:
    """The name an MCP server given as a bare URL gets: its host, and port when there is one."""
    parts = _split(url)
    if parts is None:
        return url
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port is not None else host


def _mcp_servers(key: str, value: object) -> list[str]:
    if not isinstance(value, list | tuple):
        return [
            f"{key}: expected a non-empty list of URLs or {{name, url}} tables, got {show(value)}"
        ]
    if not value:
        return [
            f"{key}: expected a non-empty list of URLs or {{name, url}} tables, got an empty list"
        ]
    issues: list[str] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(value):
        where = f"{key}[{i}]"
        name: object
        if isinstance(entry, str):
            issue = url_issue(where, entry, MCP_SCHEMES, example="http://localhost:8080")
            if issue:
                issues.append(issue)
                continue
            name = mcp_server_name(entry)
        elif isinstance(entry, Mapping):
            extra = [k for k in entry if k not in ("name", "url")]
            for k in extra:
                issues.append(f"{where}: unknown key {show(k)} (expected only name and url)")
            name = entry.get("name")
            if "name" not in entry:
                issues.append(f"{where}: missing 'name'")
            elif not isinstance(name, str) or not name.strip():
                issues.append(f"{where}.name: expected a non-empty str, got {show(name)}")
            if "url" not in entry:
                issues.append(f"{where}: missing 'url'")
            else:
                issue = url_issue(
                    f"{where}.url", entry["url"], MCP_SCHEMES, example="http://localhost:8080"
                )
                if issue:
                    issues.append(issue)
        else:
            issues.append(f"{where}: expected a URL or a {{name, url}} table, got {show(entry)}")
            continue
        if isinstance(name, str) and name.strip():
            if name in seen:
                issues.append(f"{where}: duplicate name {show(name)} (also {key}[{seen[name]}])")
            else:
                seen[name] = i
    return issues


# --- environment parsers ---------------------------------------------------------------------


def _env_str(raw: str) -> object:
    return raw


def _env_int(raw: str) -> object:
    try:
        return int(raw.strip())
    except ValueError:
        return raw  # validation reports it, naming the key


def _env_number(raw: str) -> object:
    try:
        number = float(raw.strip())
    except ValueError:
        return raw
    return (
        int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    )


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _env_list(raw: str) -> object:
    return _items(raw)


def _named(item: str) -> tuple[str, str] | None:
    """Split ``name=url``; None when the ``=`` is part of the URL (or absent)."""
    eq, scheme = item.find("="), item.find("://")
    if eq <= 0 or (scheme != -1 and scheme < eq):
        return None
    return item[:eq].strip(), item[eq + 1 :].strip()


def _env_servers(raw: str) -> object:
    servers: list[object] = []
    for item in _items(raw):
        named = _named(item)
        servers.append({"name": named[0], "url": named[1]} if named else item)
    return servers


def _env_mapping(raw: str) -> object:
    mapping: dict[str, str] = {}
    for item in _items(raw):
        named = _named(item)
        if named is None:
            return raw  # validation reports that a mapping was expected
        mapping[named[0]] = named[1]
    return mapping


# --- converters to SaflaConfig's field values --------------------------------------------------


def _same(value: Any) -> object:
    return value


def _fspath(value: Any) -> object:
    return os.fspath(value)  # a str stays as it is; a Path becomes one


def _fspaths(value: Any) -> object:
    return tuple(os.fspath(v) for v in value)


def _upper(value: Any) -> object:
    return str(value).upper()


def _servers(value: Any) -> object:
    """Bare URLs become ``{name, url}`` with the host (and port) as the name."""
    return tuple(
        {"name": mcp_server_name(v), "url": v} if isinstance(v, str) else dict(v) for v in value
    )


def _dict(value: Any) -> object:
    return dict(value)


# --- the table -------------------------------------------------------------------------------


@attrs.frozen
class Key:
    """
    One configuration key.

    Attributes:
        name: The key, also the SaflaConfig field and (upper-cased, after ``SAFLA_``) the variable.
        check: ``(key, value) -> issues``.
        doc: One line for humans.
        required: Whether the key must be present.
        default: SaflaConfig's default (None: not set).
        env: Parses the ``SAFLA_<KEY>`` variable's text.
        convert: Turns a valid value into SaflaConfig's field value.
    """

    name: str
    check: Check
    doc: str
    required: bool = False
    default: object = None
    env: EnvParse = _env_str
    convert: Convert = _same


# One line per key. The order is the order of SaflaConfig's fields and of the docs' table.
# fmt: off
_TABLE = (
    Key("database_url", _url(DATABASE_SCHEMES, "postgresql://host:5432/db", ("postgresql", "mysql")),
        "PostgreSQL (or MySQL) URL: postgresql://, postgres://, postgresql+driver://, mysql://", required=True),
    Key("redis_url", _redis, "Redis URL: redis://, rediss:// or unix://", required=True),
    Key("vector_dimension", _positive_int(65536), "dimension of the vectors, 1 to 65536",
        required=True, env=_env_int),
    Key("mcp_servers", _mcp_servers, "non-empty list of URLs or {name, url} tables, unique names",
        required=True, env=_env_servers, convert=_servers),
    Key("data_dir", _path, "folder of the FAISS index", convert=_fspath),
    Key("backup_dir", _path, "folder of the index backups", convert=_fspath),
    Key("index_file", _file_name, "file name of the index inside data_dir", default="vector_index.faiss",
        convert=_fspath),
    Key("mcp_task_queue", _task_queue, "MCP retry queue: a SQLite file path or a postgresql:// URL",
        convert=_fspath),
    Key("log_paths", _log_paths, "log files to scan; globs allowed", default=(), env=_env_list,
        convert=_fspaths),
    Key("services", _services, "extra service-check targets: name -> URL", default={}, env=_env_mapping,
        convert=_dict),
    Key("service_timeout", _positive_number, "seconds a service check may take", default=5.0,
        env=_env_number, convert=float),
    Key("memory_threshold_percent", _percent, "memory use that logs a warning, 0-100",
        default=85.0, env=_env_number, convert=float),
    Key("memory_critical_percent", _percent, "memory use that is critical, 0-100, >= the threshold",
        default=95.0, env=_env_number, convert=float),
    Key("leak_check_interval", _positive_number, "seconds between leak checks; a continuing leak is re-reported this often",
        default=300.0, env=_env_number, convert=float),
    Key("log_level", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL", convert=_upper),
    Key("environment", _text, "free-form name of the deployment (production, staging, ...)"),
)
# fmt: on

KEYS: dict[str, Key] = {k.name: k for k in _TABLE}
"""Every known key, by name, in order."""


def default(name: str) -> Any:
    """
    The default of key ``name``, from the table: the one place defaults are written.

    Args:
        name: A key of :data:`KEYS`.

    Returns:
        The default (None for a key without one).

    Raises:
        KeyError: When ``name`` is not a configuration key.
    """
    return KEYS[name].default
