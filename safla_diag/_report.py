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
left-aligned and numbers right-aligned, escaped; :func:`html_block` wraps a title, a table and notes;
:func:`text_table` lines up the columns of a ``to_text()`` the same way (the CLI colours it, never
re-aligns it).
Nothing here imports IPython: Jupyter calls ``_repr_html_`` by name.
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "JsonMixin",
    "Num",
    "Report",
    "cell_width",
    "html_block",
    "html_table",
    "json_default",
    "text_table",
    "to_json",
]


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


# A number as a text cell shows it, with an optional short unit: "12", "6.7 ms", "85%", "3/4".
_NUMBER_TEXT = re.compile(r"[-+]?[\d.,/]*\d\s*[a-zA-Z%/]{0,3}")


def _looks_numeric(cell: object) -> bool:
    if _numeric(cell):
        return True
    return isinstance(cell, str) and bool(_NUMBER_TEXT.fullmatch(cell))


def cell_width(text: str) -> int:
    """
    The columns ``text`` takes in a terminal: wide (CJK) characters count 2, combining marks 0.

    Args:
        text: One line of text.
    """
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def text_table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[object]],
    *,
    indent: str = "",
    gap: str = "  ",
    style: Callable[[int, int, str], str] | None = None,
) -> str:
    """
    Rows as aligned text: each column as wide as its widest cell, numbers right-aligned.

    A column is numeric when every non-empty cell (``""`` and ``"-"`` do not count) is an
    ``int``, ``float``, :class:`Num` or a string that reads as a number with a short unit
    (``"6.7 ms"``, ``"85%"``).

    Args:
        headers: Column titles, or None for no header line.
        rows: One sequence of cells per row; ``str(cell)`` is shown.
        indent: Put before every line.
        gap: Between two columns.
        style: ``style(line, column, cell) -> shown``, called after the padding is measured
            (line 0 is the header when there is one): a terminal colours cells with it and
            keeps the alignment.

    Returns:
        The lines joined with newlines, without a trailing one; trailing blanks stripped.
    """
    raw = [tuple(row) for row in rows]
    ncols = max((len(r) for r in raw), default=0)
    numeric = [
        bool(column) and all(_looks_numeric(c) for c in column)
        for column in (
            [r[i] for r in raw if i < len(r) and str(r[i]) not in ("", "-")] for i in range(ncols)
        )
    ]
    every = ([[str(h) for h in headers]] if headers is not None else []) + [
        [str(c) for c in r] for r in raw
    ]
    ncols = max((len(r) for r in every), default=0)
    widths = [max((cell_width(r[i]) for r in every if i < len(r)), default=0) for i in range(ncols)]
    lines = []
    for n, row in enumerate(every):
        out = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - cell_width(cell))
            shown = style(n, i, cell) if style is not None else cell
            out.append(pad + shown if i < len(numeric) and numeric[i] else shown + pad)
        lines.append((indent + gap.join(out)).rstrip())
    return "\n".join(lines)


def html_block(title: str, *parts: str, notes: Iterable[str] = (), ok: bool | None = None) -> str:
    """
    A report's HTML: a bold title (green when ``ok``, red when not), pre-rendered parts, notes.

    ``parts`` are trusted HTML (from :func:`html_table`); ``title`` and ``notes`` are escaped.
    """
    colour = "" if ok is None else (' style="color:#1a7f37"' if ok else ' style="color:#cf222e"')
    note_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    return f"<div><p><b{colour}>{html.escape(title)}</b></p>{''.join(parts)}{note_html}</div>"
