"""
The exceptions safla_diag raises on purpose.

Every one of them derives from :class:`SaflaDiagError`; where a builtin fits, it is a base too, so
that ``except ValueError`` or ``except ConnectionError`` in a host keeps working::

    SaflaDiagError(Exception)
    ├── ConfigurationError(SaflaDiagError, ValueError)   .issues: every problem found
    ├── DependencyError(SaflaDiagError)
    ├── PerformanceError(SaflaDiagError)                 .kind (avg, p95, error_rate), .stats
    ├── MemoryPressureError(SaflaDiagError)              never shadows the builtin MemoryError
    ├── IndexCorruptionError(SaflaDiagError)             a damaged or mismatched index file
    └── RecoveryError(SaflaDiagError)
        ├── QueueStoreError(RecoveryError)               .location (file or redacted URL), .missing
        └── MCPRecoveryError(RecoveryError, ConnectionError)
            ├── ServerUnavailable(MCPRecoveryError)      .server_id, .attempts, .circuit_open, ...
            └── OutcomeUnknown(MCPRecoveryError)         .task, .outcome, .saved

Messages are passed through :func:`safla_diag.redact` so that no secret ends up in a traceback.
Every class here is exported as ``safla_diag.<Name>`` (its ``__module__`` says so). A new error
goes under the closest existing class, with its data as attributes set in ``__init__``; a
programmer's mistake (a bad argument) stays a plain ``TypeError`` or ``ValueError``. Public
functions list what a caller would catch under ``Raises:`` in their docstrings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._redact import redact

__all__ = [
    "ConfigurationError",
    "DependencyError",
    "IndexCorruptionError",
    "MCPRecoveryError",
    "MemoryPressureError",
    "OutcomeUnknown",
    "PerformanceError",
    "QueueStoreError",
    "RecoveryError",
    "SaflaDiagError",
    "ServerUnavailable",
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
    """
    A performance threshold was breached (raised by explicit checks, or with ``strict=True``).

    Attributes:
        kind: Which threshold: ``"avg"``, ``"p95"`` or ``"error_rate"`` (``None`` when not known).
        stats: The monitor's statistics at the breach (empty when not known).
    """

    kind: str | None
    stats: dict[str, Any]

    def __init__(
        self, message: str, *, kind: str | None = None, stats: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.stats = dict(stats or {})


class MemoryPressureError(SaflaDiagError):
    """Memory use is critical and garbage collection did not bring it below the threshold."""


class IndexCorruptionError(SaflaDiagError):
    """A vector index file is damaged, incomplete or does not match its manifest."""


class RecoveryError(SaflaDiagError):
    """A recovery (of a connection, a task or an index) failed for good."""


class MCPRecoveryError(RecoveryError, ConnectionError):
    """Every attempt to recover a connection to an MCP server failed."""


class QueueStoreError(RecoveryError):
    """
    The queue file (or database) cannot be used: corrupt, foreign, newer than this library.

    Attributes:
        location: The file (or redacted URL) of the queue.
        missing: True when there is no queue there at all (a read-only open of a database schema
            that no service has created a queue in yet): not broken, just not made yet.
    """

    location: str
    missing: bool

    def __init__(self, message: str, *, location: str, missing: bool = False) -> None:
        self.location = redact(location)
        self.missing = missing
        super().__init__(message)


class ServerUnavailable(MCPRecoveryError):
    """
    An MCP server could not be recovered, or its circuit breaker is open.

    Attributes:
        server_id: The server.
        attempts: Connect attempts made by this recovery (0 when the breaker refused at once).
        circuit_open: True when the call failed fast because the server is known down.
        retry_after: Seconds until the breaker allows a probe.
        last_error: The last attempt's error, redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        server_id: str,
        attempts: int,
        circuit_open: bool,
        retry_after: float,
        last_error: str | None,
    ) -> None:
        super().__init__(message)
        self.server_id = server_id
        self.attempts = attempts
        self.circuit_open = circuit_open
        self.retry_after = retry_after
        self.last_error = last_error


class OutcomeUnknown(MCPRecoveryError):
    """
    A tool call may or may not have run (timeout or drop mid-call), and the tool is neither
    read-only nor idempotent, so it was not retried automatically.

    Attributes:
        task: The call as a task mapping (``id``, ``server``, ``tool``, ``arguments``).
        outcome: Why the outcome is unknown (a ``CallOutcome``).
        saved: Whether it was handed to the queue as "needs decision" (a dead letter).
    """

    def __init__(self, message: str, *, task: dict[str, Any], outcome: Any, saved: bool) -> None:
        super().__init__(message)
        self.task = task
        self.outcome = outcome
        self.saved = saved


# Exported names show where users import them from (``safla_diag.ServerUnavailable``), as httpx does.
for _name in __all__:
    globals()[_name].__module__ = "safla_diag"
del _name
