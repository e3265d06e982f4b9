"""
The settings a diagnosis uses, read once from the configuration.

The configuration a diagnosis gets need not be valid (the configuration section reports what is
wrong with it), so each setting falls back to its default when the value is absent or unusable.
The defaults come from the key table (``config.default``), the one place they are written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import attrs

from ..config import default

__all__ = ["TARGET_KEYS", "Settings"]

# The keys service targets come from. Only these go to the probes: a configuration of other keys
# alone ({"data_dir": ...}) is not a {name: url} mapping of services.
TARGET_KEYS = ("database_url", "redis_url", "mcp_servers", "services", "mcp_task_queue")


def _number(cfg: Mapping[str, Any], key: str, fallback: float) -> float:
    value = cfg.get(key, fallback)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return fallback
    try:
        number = float(value)  # an int of 400 digits does not fit a float
    except OverflowError:
        return fallback
    return number if math.isfinite(number) else fallback


def _text(cfg: Mapping[str, Any], key: str) -> str | None:
    """A configured path or URL as a str (a PathLike becomes one); None when absent or odd."""
    value = cfg.get(key)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return value if isinstance(value, str) and value.strip() else None


def _paths(raw: object) -> tuple[str, ...]:
    listed = [raw] if isinstance(raw, str | os.PathLike) else raw
    if not isinstance(listed, list | tuple):
        return ()
    return tuple(os.fspath(p) for p in listed if isinstance(p, str | os.PathLike))


@attrs.frozen(kw_only=True)
class Settings:
    """
    Typed settings of one diagnosis.

    Attributes:
        data_dir: The index folder, or None.
        backup_dir: The backup folder as configured, or None (the vector section then uses
            ``data_dir/backups``).
        index_file: The index's file name in ``data_dir``.
        vector_dimension: The configured dimension when it is a positive int, else None.
        mcp_task_queue: The queue file or URL, or None.
        log_paths: The log files and globs to scan.
        service_timeout: Seconds per service probe (the Diagnostics timeout when unset or unusable).
        memory_threshold_percent: Memory use that is a warning.
        memory_critical_percent: Memory use that is an error.
        leak_check_interval: Seconds between leak reports while a leak lasts.
        targets: The configuration's service targets, for ``acheck_external_services``.
    """

    data_dir: str | None = None
    backup_dir: str | None = None
    index_file: str = default("index_file")
    vector_dimension: int | None = None
    mcp_task_queue: str | None = None
    log_paths: tuple[str, ...] = ()
    service_timeout: float = default("service_timeout")
    memory_threshold_percent: float = default("memory_threshold_percent")
    memory_critical_percent: float = default("memory_critical_percent")
    leak_check_interval: float = default("leak_check_interval")
    targets: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def read(cls, cfg: Mapping[str, Any], *, timeout: float) -> Settings:
        """
        Read the settings from a configuration that may be invalid.

        Args:
            cfg: The configuration mapping.
            timeout: The Diagnostics timeout: the service timeout when the configuration has none.
        """
        dim = cfg.get("vector_dimension")
        service_timeout = _number(cfg, "service_timeout", timeout)
        return cls(
            data_dir=_text(cfg, "data_dir"),
            backup_dir=_text(cfg, "backup_dir"),
            index_file=_text(cfg, "index_file") or default("index_file"),
            vector_dimension=(
                dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None
            ),
            mcp_task_queue=_text(cfg, "mcp_task_queue"),
            log_paths=_paths(cfg.get("log_paths")),
            service_timeout=service_timeout if service_timeout > 0 else timeout,
            memory_threshold_percent=_number(
                cfg, "memory_threshold_percent", default("memory_threshold_percent")
            ),
            memory_critical_percent=_number(
                cfg, "memory_critical_percent", default("memory_critical_percent")
            ),
            leak_check_interval=_number(cfg, "leak_check_interval", default("leak_check_interval")),
            targets={k: cfg[k] for k in TARGET_KEYS if cfg.get(k) is not None},
        )
