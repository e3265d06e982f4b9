"""
The exceptions safla_diag raises on purpose.

Every one of them derives from :class:`SaflaDiagError`; where a builtin fits, it is a base too, so
that ``except ValueError`` or ``except ConnectionError`` in a host keeps working::

    SaflaDiagError(Exception)
    ├── ConfigurationError(SaflaDiagError, ValueError)   .issues: every problem found
    ├── DependencyError(SaflaDiagError)
    ├── PerformanceError(SaflaDiagError)
    ├── MemoryPressureError(SaflaDiagError)              never shadows the builtin MemoryError
    ├── IndexCorruptionError(SaflaDiagError)
    └── RecoveryError(SaflaDiagError)
        └── MCPRecoveryError(RecoveryError, ConnectionError)

Messages are passed through :func:`safla_diag.redact` so that no secret ends up in a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._redact import redact

__all__ = [
    "ConfigurationError",
    "DependencyError",
    "IndexCorruptionError",
    "MCPRecoveryError",
    "MemoryPressureError",
    "PerformanceError",
    "RecoveryError",
    "SaflaDiagError",
]


class SaflaDiagError(Exception):
    """
    Root of every exception that safla_diag raises on purpose.

    The message is redacted on construction.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigurationError(SaflaDiagError, ValueError):
    """
    The configuration is invalid, or a configuration file cannot be read.

    Attributes:
        issues: Every problem found, not just the first, each naming the key and what was expected.
        source: The file the configuration came from, when there was one.
    """

    issues: tuple[str, ...]
    source: str | None

    def __init__(self, issues: str | Iterable[str], *, source: str | None = None) -> None:
        items = (issues,) if isinstance(issues, str) else tuple(issues)
        self.issues = tuple(redact(str(i)) for i in items)
        self.source = redact(source) if source is not None else None
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" in {self.source}" if self.source else ""
        if len(self.issues) == 1:
            return f"invalid configuration{where}: {self.issues[0]}"
        lines = "\n".join(f"  - {i}" for i in self.issues)
        return f"invalid configuration{where}: {len(self.issues)} issues:\n{lines}"


class DependencyError(SaflaDiagError):
    """A package that the requested feature needs is missing or cannot be imported."""


class PerformanceError(SaflaDiagError):
    """A performance threshold was breached (raised by explicit checks, or with ``strict=True``)."""


class MemoryPressureError(SaflaDiagError):
    """Memory use is critical and garbage collection did not bring it below the threshold."""


class IndexCorruptionError(SaflaDiagError):
    """A vector index file is damaged, incomplete or does not match its manifest."""


class RecoveryError(SaflaDiagError):
    """A recovery (of a connection, a task or an index) failed for good."""


class MCPRecoveryError(RecoveryError, ConnectionError):
    """Every attempt to recover a connection to an MCP server failed."""
