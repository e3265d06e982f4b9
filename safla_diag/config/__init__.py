"""Configuration: validation, loading and the typed config object."""

from __future__ import annotations

from ._load import load_configuration
from ._schema import MCPServer, SaflaConfig
from ._validate import validate_configuration

__all__ = ["MCPServer", "SaflaConfig", "load_configuration", "validate_configuration"]
