"""load_configuration: files, mappings and SAFLA_* environment overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["load_configuration"]


def load_configuration(
    source: object = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """STUB: replaced by the foundation work."""
    raise NotImplementedError
