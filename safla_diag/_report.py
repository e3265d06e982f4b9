"""
The one contract every report follows, and the helpers that render it.

A report is data first: ``to_dict()`` is the truth (JSON-safe, redacted), and the other renderings
derive from it or from the same fields::

    class Report(Protocol):
        def to_dict(self) -> dict[str, Any]: ...
        def to_json(self, *, indent: int | None = 2, **json_kwargs: Any) -> str: ...
        def to_text(self) -> str: ...
        def _repr_html_(self) -> str: ...

:class:`JsonMixin` supplies ``to_json`` from ``to_dict``; :func:`html_table` renders rows with text
left-aligned and numbers right-aligned, escaped; :func:`html_block` wraps a title, a table and notes.
Nothing here imports IPython: Jupyter calls ``_repr_html_`` by name.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["JsonMixin", "Num", "Report", "html_block", "html_table", "json_default", "to_json"]


@runtime_checkable
class Report(Protocol):
    """What every report type offers: data, JSON, text and HTML for Jupyter."""

    def to_dict(self) -> dict[str, Any]: ...

    def to_json(self, *, indent: int | None = 2, **json_kwargs: Any) -> str: ...

    def to_text(self) -> str: ...

    def _repr_html_(self) -> str: ...


def json_default(value: object) -> object:
    """``json.dumps(default=...)`` for the values reports hold: sets, tuples-likes, paths, floats."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _finite(value: Any) -> Any:
    """JSON has no inf or NaN: they become None (``null``), everywhere in a structure."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(data: Mapping[str, Any], *, indent: int | None = 2, **json_kwargs: Any) -> str:
    """Serialise a report's ``to_dict()``: strict JSON (no NaN/inf), unknown values as strings."""
    json_kwargs.setdefault("default", json_default)
    json_kwargs.setdefault("allow_nan", False)
    return json.dumps(_finite(data), indent=indent, **json_kwargs)


class JsonMixin:
    """``to_json`` derived from ``to_dict``, the same way for every report."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every report defines it
        raise NotImplementedError

    def to_json(self, *, indent: int | None = 2, **json_kwargs: Any) -> str:
        """
        The report as JSON text.

        Args:
            indent: Passed to :func:`json.dumps`; ``None`` for one line.
            **json_kwargs: Any other :func:`json.dumps` argument (``sort_keys=True``, ...).
        """
        return to_json(self.to_dict(), indent=indent, **json_kwargs)


class Num(str):
    """
    A number already formatted for display (``Num(f"{ms:.3f}")``, ``Num("5/4")``).

    :func:`html_table` right-aligns it like an ``int`` or ``float`` cell.
    """

    __slots__ = ()


def _numeric(value: object) -> bool:
    return isinstance(value, Num) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    )


def _align(numeric: bool) -> str:
    return ' style="text-align:right"' if numeric else ' style="text-align:left"'


def _cell(value: object) -> str:
    return f"<td{_align(_numeric(value))}>{html.escape(str(value))}</td>"


def html_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    caption: str | None = None,
    table_id: str | None = None,
) -> str:
    """
    An escaped HTML table: text cells left-aligned, numeric cells right-aligned.

    A header is aligned like its column's first cell, so a number column's title sits over its
    numbers.

    Args:
        headers: Column titles.
        rows: One sequence of cell values per row; ``str(value)`` is shown. ``int``, ``float``
            and :class:`Num` cells are numbers.
        caption: An optional caption above the table.
        table_id: An ``id`` attribute for the table (a script that sorts it finds it by id).
    """
    rows = [tuple(row) for row in rows]
    first = rows[0] if rows else ()
    head = "".join(
        f"<th{_align(i < len(first) and _numeric(first[i]))}>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{ident}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_block(title: str, *parts: str, notes: Iterable[str] = (), ok: bool | None = None) -> str:
    """
    A report's HTML: a bold title (green when ``ok``, red when not), pre-rendered parts, notes.

    ``parts`` are trusted HTML (from :func:`html_table`); ``title`` and ``notes`` are escaped.
    """
    colour = "" if ok is None else (' style="color:#1a7f37"' if ok else ' style="color:#cf222e"')
    note_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    return f"<div><p><b{colour}>{html.escape(title)}</b></p>{''.join(parts)}{note_html}</div>"
