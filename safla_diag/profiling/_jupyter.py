"""
The ``%%safla_profile`` cell magic, registered by ``%load_ext safla_diag``.

IPython is imported only in here, and only when the extension is loaded.
"""

from __future__ import annotations

import ast
import shlex
from types import CodeType
from typing import Any

from ._cpu import CPUProfiler
from ._report import SORT_KEYS, ProfileReport

__all__ = ["CellRun", "load", "parse_options"]

USAGE = (
    "usage: %%safla_profile [--top N] [--sort KEY] [--save PATH] [--quiet]\n"
    f"  KEY is one of {', '.join(SORT_KEYS)}; the report is also stored as _safla_profile"
)


def parse_options(line: str) -> dict[str, Any]:
    """
    Parse the magic's line: ``--top N``, ``--sort KEY``, ``--save PATH``, ``--quiet``.

    Raises:
        ValueError: For an unknown option or a bad value (the message includes the usage).
    """
    opts: dict[str, Any] = {"top": 20, "sort": "cumulative", "save": None, "quiet": False}
    try:
        words = shlex.split(line)
    except ValueError as err:
        raise ValueError(f"{err}\n{USAGE}") from err
    it = iter(words)
    for word in it:
        if word == "--quiet":
            opts["quiet"] = True
            continue
        if word not in ("--top", "--sort", "--save"):
            raise ValueError(f"unknown option {word!r}\n{USAGE}")
        value = next(it, None)
        if value is None:
            raise ValueError(f"{word} needs a value\n{USAGE}")
        if word == "--top":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"--top needs a positive integer, got {value!r}\n{USAGE}")
            opts["top"] = int(value)
        elif word == "--sort":
            if value not in SORT_KEYS:
                raise ValueError(f"unknown sort key {value!r}\n{USAGE}")
            opts["sort"] = value
        else:
            opts["save"] = value
    return opts


class CellRun:
    """
    One ``%%safla_profile`` run, sync or async: its options, its profiler, where its report goes.

    Raises:
        UsageError: For a bad magic line (IPython shows the message, not a traceback).
    """

    def __init__(self, ipython: Any, line: str) -> None:
        from IPython.core.error import UsageError

        try:
            self.opts = parse_options(line)
        except ValueError as err:
            raise UsageError(str(err)) from None
        self.ipython = ipython
        self.reports: list[ProfileReport] = []
        self.profiler = CPUProfiler(
            sort=self.opts["sort"],
            top=self.opts["top"],
            label="cell",
            save_to=self.opts["save"],
            on_report=self.reports.append,
        )

    def show(self) -> None:
        """Store the report as ``_safla_profile`` and display it (unless ``--quiet``), if any."""
        from IPython.display import display

        if self.reports:
            self.ipython.user_ns["_safla_profile"] = self.reports[-1]
            if not self.opts["quiet"]:
                display(self.reports[-1])  # type: ignore[no-untyped-call]


def _compile_cell(shell: Any, cell: str) -> tuple[CodeType, CodeType | None]:
    """Compile ``cell`` as IPython would; the final expression (if any) is compiled apart."""
    source = shell.transform_cell(cell)
    try:  # IPython's compiler caches the source, so tracebacks show the cell's lines
        filename = shell.compile.cache(source)
    except Exception:
        filename = "<safla_profile>"
    tree = ast.parse(source, filename=filename)
    last: CodeType | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        expr = ast.Expression(tree.body.pop().value)
        last = compile(expr, filename, "eval")
    return compile(tree, filename, "exec"), last


def load(ipython: Any) -> None:
    """
    Register the ``%%safla_profile`` cell magic on ``ipython`` (an InteractiveShell).

    The magic runs the cell under a ``CPUProfiler``, displays the report (the sortable HTML
    table in Jupyter, text in a terminal) and stores it as ``_safla_profile`` in the user
    namespace. A cell that raises still shows its report before the traceback. A cell with
    top-level ``await`` runs in the notebook's own loop (see ``_jupyter_async``).
    """

    def safla_profile(line: str, cell: str) -> Any:
        run = CellRun(ipython, line)
        result: Any = None
        try:
            body, last = _compile_cell(ipython, cell)
            ns = ipython.user_ns
            with run.profiler:
                exec(body, ns)
                result = None if last is None else eval(last, ns)
        finally:
            run.show()
        return result

    ipython.register_magic_function(safla_profile, magic_kind="cell", magic_name="safla_profile")
    from ._jupyter_async import install

    install(ipython)
