"""Optional and heavy imports, loaded on first use with a clear error when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import DependencyError

__all__ = ["import_optional"]

# import name -> (distribution to install, extra of ours that brings it)
_WHERE: dict[str, tuple[str, str | None]] = {
    "faiss": ("faiss-cpu>=1.15", None),
    "numpy": ("numpy", None),
    "psycopg": ("psycopg[binary]", "postgres"),
    "prometheus_client": ("prometheus-client", "prometheus"),
    "opentelemetry": ("opentelemetry-api", "otel"),
    "IPython": ("ipython", "jupyter"),
    "mcp": ("mcp", "mcp"),
}


def install_hint(name: str) -> str:
    """Return the pip command that installs what provides the import ``name``."""
    top = name.partition(".")[0]
    dist, extra = _WHERE.get(top, (top, None))
    if extra is not None:
        return f"pip install 'safla-diag[{extra}]'"
    return f"pip install '{dist}'"


def import_optional(name: str) -> ModuleType:
    """
    Import ``name`` on first use.

    Args:
        name: The module to import, e.g. ``"faiss"`` or ``"prometheus_client"``.

    Returns:
        The module.

    Raises:
        DependencyError: When it is missing or fails to import; the message has the pip command.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise DependencyError(
            f"{name!r} is needed for this feature but cannot be imported ({err}); "
            f"install it with: {install_hint(name)}"
        ) from err
