"""SaflaConfig: the validated, typed configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Self

import attrs

from .._errors import ConfigurationError
from .._redact import redact as _redact
from .._redact import redact_value
from ._keys import KEYS, default
from ._load import load_configuration
from ._validate import validate_configuration

__all__ = ["MCPServer", "SaflaConfig"]


def _redacted(value: object) -> str:
    return "None" if value is None else repr(_redact(value))


def _redact_services(services: Mapping[str, str]) -> str:
    return repr(redact_value(dict(services)))


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class MCPServer:
    """
    One MCP server of the configuration.

    Attributes:
        name: Its unique name (for a bare URL in the configuration: its host and port).
        url: Its URL; shown redacted.
    """

    name: str
    url: str = attrs.field(repr=_redacted)

    def to_dict(self, *, redact: bool = True) -> dict[str, str]:
        """
        The server as ``{"name": ..., "url": ...}``.

        Args:
            redact: Mask the password or token in the URL (the default).

        Returns:
            A new dict.
        """
        return {"name": self.name, "url": _redact(self.url) if redact else self.url}


def _to_servers(value: Any) -> tuple[MCPServer, ...]:
    """MCPServer objects, or ``{name, url}`` mappings, as a tuple of MCPServer."""
    return tuple(
        v if isinstance(v, MCPServer) else MCPServer(name=v["name"], url=v["url"]) for v in value
    )


@attrs.frozen(kw_only=True)
class SaflaConfig:
    """
    A valid SAFLA configuration, typed, with defaults filled in.

    Build one with :meth:`from_mapping` or :meth:`load`; direct construction is validated the same
    way. Frozen: change a copy with ``attrs.evolve(cfg, vector_dimension=768)``. URLs are redacted
    in the repr and, by default, in :meth:`to_dict`.

    Attributes:
        database_url: PostgreSQL (or MySQL) URL.
        redis_url: Redis URL (redis://, rediss:// or unix://).
        vector_dimension: Dimension of the vectors, 1 to 65536.
        mcp_servers: The MCP servers, each with a unique name.
        data_dir: Folder of the FAISS index, if configured.
        backup_dir: Folder of the index backups, if configured.
        index_file: File name of the index inside ``data_dir``.
        mcp_task_queue: MCP retry queue: a SQLite file path or a postgresql:// URL.
        log_paths: Log files (globs allowed) to scan.
        services: Extra service-check targets, name -> URL.
        service_timeout: Seconds a service check may take.
        memory_threshold_percent: Memory use (0-100) that logs a warning.
        memory_critical_percent: Memory use (0-100) that is critical; at least the threshold.
        leak_check_interval: Seconds between memory-leak samples.
        log_level: A logging level name, or None to leave logging to the host.
        environment: Free-form name of the deployment.
    """

    database_url: str = attrs.field(repr=_redacted)
    redis_url: str = attrs.field(repr=_redacted)
    vector_dimension: int
    mcp_servers: tuple[MCPServer, ...] = attrs.field(converter=_to_servers)
    data_dir: str | None = None
    backup_dir: str | None = None
    index_file: str = default("index_file")
    mcp_task_queue: str | None = attrs.field(default=None, repr=_redacted)
    log_paths: tuple[str, ...] = attrs.field(default=default("log_paths"), converter=tuple)
    services: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_mapping, repr=_redact_services, hash=False
    )
    service_timeout: float = default("service_timeout")
    memory_threshold_percent: float = default("memory_threshold_percent")
    memory_critical_percent: float = default("memory_critical_percent")
    leak_check_interval: float = default("leak_check_interval")
    log_level: str | None = None
    environment: str | None = None

    def __attrs_post_init__(self) -> None:
        # Direct construction and attrs.evolve get the same checks as from_mapping.
        if issues := validate_configuration(self.to_dict(redact=False)):
            raise ConfigurationError(issues)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Self:
        """
        Build a config from a mapping, after validating all of it.

        Args:
            m: The configuration, e.g. from :func:`load_configuration`.

        Returns:
            The config, with defaults for the optional keys that are absent or None.

        Raises:
            ConfigurationError: With every issue in ``.issues``.
        """
        if issues := validate_configuration(m):
            raise ConfigurationError(issues)
        return cls(**_normalise(m))

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> Self:
        """
        :func:`load_configuration`, then :meth:`from_mapping`.

        Args:
            source: A ``.toml`` or ``.json`` file, a mapping, or None.
            environ: The environment for ``SAFLA_<KEY>`` overrides; ``os.environ`` when None.

        Returns:
            The config.

        Raises:
            ConfigurationError: The file cannot be read or parsed, or the configuration is invalid
                (``.source`` names the file when there is one).
        """
        loaded = load_configuration(source, environ=environ)
        if issues := validate_configuration(loaded):
            where = os.fspath(source) if isinstance(source, str | os.PathLike) else None
            raise ConfigurationError(issues, source=where)
        return cls(**_normalise(loaded))

    def _repr_html_(self) -> str:
        from ._html import config_html

        return config_html(self)

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """
        The configuration as plain data (lists and dicts), ready for JSON or TOML.

        Args:
            redact: Mask passwords and tokens in URLs and secret-looking values (the default).
                ``redact=False`` gives values that :meth:`from_mapping` accepts back.

        Returns:
            A new dict with every key, defaults included.
        """
        out = {f.name: _plain(getattr(self, f.name)) for f in attrs.fields(type(self))}
        return redact_value(out) if redact else out


def _normalise(m: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a valid mapping into SaflaConfig's keyword arguments."""
    return {name: key.convert(m[name]) for name, key in KEYS.items() if m.get(name) is not None}


def _plain(value: Any) -> Any:
    """A field value as plain data: tuples become lists, mappings dicts, servers ``{name, url}``."""
    if isinstance(value, MCPServer):
        return value.to_dict(redact=False)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
