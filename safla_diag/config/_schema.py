"""SaflaConfig: the validated, typed configuration."""

from __future__ import annotations

import attrs

__all__ = ["SaflaConfig"]


@attrs.frozen(kw_only=True)
class SaflaConfig:
    """STUB: replaced by the foundation work."""
