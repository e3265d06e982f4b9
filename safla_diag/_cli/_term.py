"""
What a person sees in a terminal: colour, aligned tables and progress, through ``rich``.

This is the only module that imports ``rich``, and only ``_cli`` imports it, so
``import safla_diag`` never loads it. The policy lives here, in one place:

- Colour is for text output only (never JSON), decided once per run by :func:`configure`:
  ``--color=always`` forces it, ``never`` turns it off, and ``auto`` (the default) colours when
  stdout is a terminal, ``NO_COLOR`` is unset or empty and ``TERM`` is not ``dumb``.
  Commands need not know: :func:`painting` wraps stdout so that the status words of their
  text (``ok``, ``WARN``, ``ERROR``, ``FAIL``, ...) come out green, yellow or red.
- :func:`table` lines columns up as the reports' own ``to_text()`` do
  (:func:`safla_diag._report.text_table`: display width, text left, numbers right) and colours a
  status column; a report's text is printed as it is, never re-aligned.
- :func:`progress` is a context manager that yields a ``progress(done, total)`` callback for the
  library's ``progress=`` parameters. It draws a bar on stderr only when stderr is a terminal,
  never with ``--json`` and never on a pipe; otherwise the callback does nothing.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, Literal

__all__ = [
    "COLOR_CHOICES",
    "Progress",
    "color_enabled",
    "configure",
    "paint",
    "paint_statuses",
    "painting",
    "progress",
    "progress_enabled",
    "table",
]

COLOR_CHOICES = ("auto", "always", "never")

Progress = Callable[[int, int | None], None]
"""``progress(done, total)``: what the library's ``progress=`` parameters call."""

# Status words as the reports print them, each standing alone (a column of the text).
_STYLES = {
    "ok": "green",
    "OK": "green",
    "healthy": "green",
    "WARN": "yellow",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "FAIL": "bold red",
    "FAILED": "bold red",
    "CRITICAL": "bold red",
    "MISSING": "bold red",
    "UNHEALTHY": "bold red",
    "missing": "red",
}
# A whole word: not inside another word or identifier ("[ FAILED]" and "ok:" count, "look" not).
_STATUS = re.compile(
    r"(?<![\w-])(" + "|".join(sorted(_STYLES, key=len, reverse=True)) + r")(?![\w-])"
)


class _State:
    color = False
    json = False
    allow_progress = True


_state = _State()


def _stream_is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def configure(
    *,
    color: str = "auto",
    json: bool = False,
    stdout: IO[str] | None = None,
    environ: dict[str, str] | None = None,
) -> None:
    """
    Decide, once per run, whether to colour and whether progress may be drawn.

    Args:
        color: ``auto``, ``always`` or ``never``.
        json: The command prints JSON: no colour, no progress.
        stdout: The stream whose terminal-ness ``auto`` checks (``sys.stdout`` by default).
        environ: The environment (``os.environ`` by default): ``NO_COLOR`` and ``TERM``.

    Raises:
        ValueError: For a ``color`` that is not one of :data:`COLOR_CHOICES`.
    """
    if color not in COLOR_CHOICES:
        raise ValueError(f"color must be one of {', '.join(COLOR_CHOICES)}, got {color!r}")
    env = os.environ if environ is None else environ
    if json or color == "never":
        on = False
    elif color == "always":
        on = True
    else:
        on = (
            not env.get("NO_COLOR")
            and env.get("TERM") != "dumb"
            and _stream_is_terminal(sys.stdout if stdout is None else stdout)
        )
    _state.color = bool(on)
    _state.json = bool(json)


def color_enabled() -> bool:
    """Whether text output is coloured in this run."""
    return _state.color


def progress_enabled(stream: IO[str] | None = None) -> bool:
    """Whether a progress bar may be drawn: stderr is a terminal and the output is not JSON."""
    return (
        _state.allow_progress
        and not _state.json
        and _stream_is_terminal(sys.stderr if stream is None else stream)
    )


def paint(text: str, style: str) -> str:
    """``text`` in a rich ``style`` (``"green"``, ``"bold red"``) when colour is on, else as is."""
    if not _state.color or not text:
        return text
    from rich.console import Console
    from rich.text import Text

    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=True,
        color_system="standard",
        width=max(80, len(text) + 1),
        highlight=False,
        markup=False,
        emoji=False,
        no_color=False,
        soft_wrap=True,
    )
    console.print(Text(text, style=style), end="")
    return buf.getvalue()


def paint_statuses(text: str) -> str:
    """Colour each standalone status word of ``text`` (ok, WARN, ERROR, FAIL, ...)."""
    if not _state.color:
        return text
    return _STATUS.sub(lambda m: paint(m.group(1), _STYLES[m.group(1)]), text)


class _Painter(io.TextIOBase):
    """A text stream that colours status words on their way to the wrapped stream."""

    def __init__(self, inner: IO[str]) -> None:
        super().__init__()
        self._inner = inner

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._inner.write(paint_statuses(s))
        return len(s)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return _stream_is_terminal(self._inner)

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")

    @property
    def buffer(self) -> Any:
        # Bytes written to the buffer are passed through as they are (never coloured).
        return self._inner.buffer  # type: ignore[attr-defined]


@contextmanager
def painting() -> Iterator[None]:
    """While inside, what the command writes to ``sys.stdout`` has its status words coloured."""
    if not _state.color:
        yield
        return
    inner = sys.stdout
    sys.stdout = _Painter(inner)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = inner


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[object]],
    *,
    indent: str = "",
    gap: str = "  ",
    status_column: int | None = None,
) -> str:
    """
    Rows as aligned text, as the reports align them (:func:`safla_diag._report.text_table`).

    Args:
        headers: Column titles, or None for no header line.
        rows: One sequence of cells per row; ``str(cell)`` is shown.
        indent: Put before every line.
        gap: Between two columns.
        status_column: Index of a column of status words to colour (when colour is on).

    Returns:
        The lines joined with newlines, without a trailing one; trailing blanks stripped.
    """
    from .._report import text_table

    def style(line: int, column: int, cell: str) -> str:
        if headers is not None and line == 0:
            return paint(cell, "bold")
        if column == status_column:
            return paint(cell, _STYLES.get(cell, ""))
        return cell

    return text_table(headers, rows, indent=indent, gap=gap, style=style)


@contextmanager
def progress(
    description: str,
    *,
    total: int | None = None,
    unit: Literal["bytes", "items"] = "items",
    stream: IO[str] | None = None,
) -> Iterator[Progress]:
    """
    A progress bar on stderr, fed by the callback this yields.

    The callback takes ``(done, total)`` as the library's ``progress=`` parameters call it
    (``total`` may be None when unknown). When stderr is not a terminal, or the command prints
    JSON, nothing is drawn and the callback costs a function call.

    Args:
        description: What is going on ("backup", "scanning app.log").
        total: The total, when known before the first call.
        unit: ``bytes`` (sizes and a transfer rate) or ``items`` (``done/total``).
        stream: Where to draw (stderr by default); a test seam.

    Yields:
        The ``progress(done, total)`` callback.
    """
    target = sys.stderr if stream is None else stream
    if not progress_enabled(target):

        def quiet(done: int, total: int | None = None) -> None:
            return None

        yield quiet
        return

    from rich import progress as rp
    from rich.console import Console

    columns: list[Any] = [
        rp.TextColumn("{task.description}"),
        rp.BarColumn(),
        rp.TaskProgressColumn(),
    ]
    if unit == "bytes":
        columns += [rp.DownloadColumn(), rp.TransferSpeedColumn()]
    else:
        columns += [rp.MofNCompleteColumn()]
    columns.append(rp.TimeRemainingColumn())
    console = Console(file=target, no_color=not _state.color, highlight=False)
    with rp.Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, completed=done, total=total)
            else:
                bar.update(task, completed=done)

        yield update
