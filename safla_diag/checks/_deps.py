"""check_dependencies: what is installed, at which version, and why not."""

from __future__ import annotations

__all__ = ["DependencyReport", "check_dependencies"]


class DependencyReport:
    """STUB: replaced by the foundation work."""


def check_dependencies(packages: object = None) -> DependencyReport:
    """STUB: replaced by the foundation work."""
    raise NotImplementedError
