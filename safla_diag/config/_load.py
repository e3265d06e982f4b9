"""load_configuration: files, mappings and SAFLA_* environment overrides."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from .._redact import redact
from ._keys import KEYS

if TYPE_CHECKING:
    import tomllib
    from pathlib import Path

__all__ = ["ENV_PREFIX", "env_overrides", "load_configuration", "read_file"]

ENV_PREFIX = "SAFLA_"
# When no source is given, this variable may name the file to load.
ENV_FILE = "SAFLA_CONFIG"

logger = logging.getLogger("safla_diag.config")

_TOML_WHERE = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_configuration(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """
    Load a configuration from a file or a mapping, with ``SAFLA_<KEY>`` environment overrides.

    The result is not validated: pass it to :func:`validate_configuration` or
    :meth:`SaflaConfig.from_mapping`.

    Args:
        source: A ``.toml`` or ``.json`` file, a mapping, or None for the environment alone
            (then ``SAFLA_CONFIG``, when set, names the file to load).
        environ: The environment to read overrides from; ``os.environ`` when None. Each known key
            can be overridden by ``SAFLA_<KEY>`` (``SAFLA_VECTOR_DIMENSION=768``). Numbers are
            parsed for number keys; ``SAFLA_MCP_SERVERS`` and ``SAFLA_LOG_PATHS`` are
            comma-separated (an MCP entry may be ``name=url``), ``SAFLA_SERVICES`` is
            ``name=url,name=url``. Empty variables are ignored.

    Returns:
        A new dict: the source's keys, overridden by the environment.

    Raises:
        ConfigurationError: The file is missing, unreadable, of an unknown type or malformed; the
            error names the file and, where the parser gives it, the line.
        TypeError: ``source`` is not a path, a mapping or None.
    """
    env = os.environ if environ is None else environ
    if source is None and env.get(ENV_FILE):
        source = env[ENV_FILE]
    if source is None:
        config: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        config = dict(source)
    elif isinstance(source, str | os.PathLike):
        config = read_file(source)
    else:
        raise TypeError(f"source must be a path, a mapping or None, not {type(source).__name__}")
    overrides = env_overrides(env)
    config.update(overrides)
    logger.debug(
        "configuration loaded from %s; environment overrides: %s",
        redact(source) if isinstance(source, str | os.PathLike) else type(source).__name__,
        ", ".join(sorted(overrides)) or "none",
    )
    return config


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """
    The values that ``SAFLA_<KEY>`` variables set, parsed for their keys.

    Args:
        environ: The environment.

    Returns:
        Key -> parsed value, for each known key whose variable is set and not empty.
    """
    found: dict[str, Any] = {}
    for key in KEYS.values():
        raw = environ.get(ENV_PREFIX + key.name.upper())
        if raw is not None and raw.strip():
            found[key.name] = key.env(raw)
    return found


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """
    Read a ``.toml`` or ``.json`` configuration file.

    Args:
        path: The file.

    Returns:
        Its top-level table.

    Raises:
        ConfigurationError: Missing, unreadable, unknown type, not UTF-8, malformed, or its top
            level is not a table; names the file and the line where known.
    """
    import json  # parsers load on first use: keeps `import safla_diag` light
    import tomllib
    from pathlib import Path

    p = Path(path)
    name = str(p)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigurationError(
            f"unsupported file type {suffix or '(none)'!r}: expected .toml or .json", source=name
        )
    data = _read_capped(p, name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigurationError(f"line {line}: not valid UTF-8", source=name) from err
    if suffix == ".toml":
        try:
            loaded: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigurationError(_toml_issue(err, text), source=name) from err
        except RecursionError as err:
            raise ConfigurationError("malformed TOML: nested too deeply", source=name) from err
        except ValueError as err:  # the only other ValueError: int() refuses so many digits
            raise ConfigurationError(_TOO_MANY_DIGITS.format("TOML"), source=name) from err
    else:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigurationError(
                f"line {err.lineno}, column {err.colno}: malformed JSON: {err.msg}", source=name
            ) from err
        except RecursionError as err:
            raise ConfigurationError("malformed JSON: nested too deeply", source=name) from err
        except ValueError as err:  # the only other ValueError: int() refuses so many digits
            raise ConfigurationError(_TOO_MANY_DIGITS.format("JSON"), source=name) from err
    if not isinstance(loaded, dict):
        raise ConfigurationError(
            f"expected a table (an object) at the top level, got a {type(loaded).__name__}",
            source=name,
        )
    return loaded


_TOO_MANY_DIGITS = "malformed {}: a number with more digits than Python reads (4300)"

MAX_FILE_BYTES = 16 * 1024 * 1024
"""A configuration file larger than this is refused: configurations are a few kilobytes."""


def _read_capped(p: Path, name: str) -> bytes:
    """
    The bytes of a regular file of at most MAX_FILE_BYTES, or a one-line ConfigurationError.

    Opened non-blocking, so that a FIFO nobody writes cannot hang the caller, then checked with
    ``fstat``: a FIFO, a device (``/dev/zero``) or a socket is refused, and at most one byte more
    than the cap is ever read.
    """
    import stat

    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ConfigurationError(
            f"cannot read the file: {err.strerror or type(err).__name__}", source=name
        ) from err
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigurationError("cannot read the file: Is a directory", source=name)
        if not stat.S_ISREG(mode):
            raise ConfigurationError(
                "not a regular file (a pipe, a device or a socket): give a .toml or .json file",
                source=name,
            )
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, 1024 * 1024)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise ConfigurationError(
            f"cannot read the file: {err.strerror or type(err).__name__}", source=name
        ) from err
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigurationError(
            f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not a configuration",
            source=name,
        )
    return data


def _toml_issue(err: tomllib.TOMLDecodeError, text: str) -> str:
    message = str(err)
    lineno = getattr(err, "lineno", None)  # Python 3.14+
    colno = getattr(err, "colno", None)
    if lineno is None and (m := _TOML_WHERE.search(message)):
        lineno, colno = int(m.group(1)), int(m.group(2))
    if lineno is None and "(at end of document)" in message:
        lines = text.splitlines() or [""]
        lineno, colno = len(lines), len(lines[-1]) + 1
        message = message.replace("(at end of document)", "").strip() + " (at end of document)"
    reason = _TOML_WHERE.sub("", getattr(err, "msg", None) or message).strip()
    if lineno is None:
        return f"malformed TOML: {reason}"
    return f"line {lineno}, column {colno}: malformed TOML: {reason}"
