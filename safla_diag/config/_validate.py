"""validate_configuration: the single source of truth for what a valid configuration is."""

from __future__ import annotations

__all__ = ["validate_configuration"]


def validate_configuration(config: object) -> list[str]:
    """STUB: replaced by the foundation work."""
    raise NotImplementedError
