"""Configuration: validation, loading and the typed config object."""

from __future__ import annotations

from ._keys import default as default
from ._load import load_configuration
from ._schema import MCPServer, SaflaConfig
from ._validate import validate_configuration

# ``default`` is this layer's interface to the layers above it (the one home of defaults).
__all__ = ["MCPServer", "SaflaConfig", "load_configuration", "validate_configuration"]
