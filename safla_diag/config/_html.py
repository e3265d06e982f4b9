"""``SaflaConfig._repr_html_``: every key and its value, secrets redacted."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .._report import html_block, html_table

if TYPE_CHECKING:
    from ._schema import SaflaConfig

__all__ = ["config_html"]


def _shown(value: object) -> object:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def config_html(config: SaflaConfig) -> str:
    """The configuration as a key/value table (``to_dict(redact=True)``), for Jupyter."""
    data = config.to_dict(redact=True)
    rows = [(key, _shown(value)) for key, value in data.items()]
    return html_block("SaflaConfig (secrets redacted)", html_table(("key", "value"), rows))
