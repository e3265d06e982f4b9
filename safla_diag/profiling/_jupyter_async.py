"""
Top-level ``await`` inside ``%%safla_profile``, run in the notebook's own event loop.

IPython awaits a cell that contains a top-level ``await`` in its running loop (the kernel's, in
Jupyter). A cell magic, though, is a plain function call: it cannot await. So a post-input
transformer rewrites exactly one shape, the call IPython makes for a ``%%safla_profile`` cell
whose body awaits::

    get_ipython().run_cell_magic('safla_profile', '--top 5', 'await fetch()\\n')

into an ``await`` of :func:`arun`, which IPython then runs like any async cell: in the
notebook's loop, with no thread and no second loop. :func:`arun` compiles the body with
``PyCF_ALLOW_TOP_LEVEL_AWAIT`` and profiles the coroutine step by step, as ``@profile`` does
for an ``async def`` (the profiler is on only while the cell's own code runs).
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["arun", "has_top_level_await", "install"]

_RESULT = "__safla_profile_result__"
_PREFIX = "get_ipython().run_cell_magic('safla_profile', "


def has_top_level_await(source: str) -> bool:
    """Whether ``source`` needs ``PyCF_ALLOW_TOP_LEVEL_AWAIT`` (an await outside any def)."""
    try:
        ast.parse(source)
    except SyntaxError:
        try:
            compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError:
            return False
        return True
    # It parses: look for await / async for / async with outside function bodies.
    tree = ast.parse(source)

    def walk(node: ast.AST) -> bool:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.ClassDef):
                continue
            if isinstance(child, ast.Await | ast.AsyncFor | ast.AsyncWith):
                return True
            if walk(child):
                return True
        return False

    return walk(tree)


def _rewrite(lines: list[str]) -> list[str]:
    """The post-input transformer: an awaiting ``%%safla_profile`` cell becomes an await."""
    source = "".join(lines)
    if not source.startswith(_PREFIX):
        return lines
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return lines
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return lines
    call = tree.body[0].value
    if not isinstance(call, ast.Call) or len(call.args) != 3:
        return lines
    try:
        _, line, cell = (ast.literal_eval(a) for a in call.args)
    except ValueError:
        return lines
    if not isinstance(line, str) or not isinstance(cell, str) or not has_top_level_await(cell):
        return lines
    return [
        "await __import__('safla_diag.profiling._jupyter_async', fromlist=['arun'])"
        f".arun(get_ipython(), {line!r}, {cell!r})\n"
    ]


def install(ipython: Any) -> None:
    """Add the transformer to ``ipython`` (once)."""
    post = ipython.input_transformers_post
    if _rewrite not in post:
        post.append(_rewrite)


def _compile(ipython: Any, cell: str) -> Any:
    source = ipython.transform_cell(cell)
    try:
        filename = ipython.compile.cache(source)
    except Exception:
        filename = "<safla_profile>"
    tree = ast.parse(source, filename=filename)  # the parser accepts top-level await
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        assign = ast.Assign(targets=[ast.Name(_RESULT, ast.Store())], value=last.value)
        tree.body[-1] = ast.copy_location(assign, last)
        ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


async def arun(ipython: Any, line: str, cell: str) -> Any:
    """
    Run and profile a ``%%safla_profile`` cell that awaits, in the running loop.

    The report is displayed (unless ``--quiet``) and stored as ``_safla_profile``, also when the
    cell raises; the value of the cell's last expression is returned, as IPython shows it.
    """
    from ._jupyter import CellRun

    run = CellRun(ipython, line)
    ns = ipython.user_ns
    code = _compile(ipython, cell)

    async def run_cell() -> None:
        pending = eval(code, ns)  # a coroutine: the code has top-level awaits
        if pending is not None:
            await pending

    profiled: Callable[[], Any] = run.profiler.profile_function(run_cell)
    try:
        await profiled()
    finally:
        run.show()
    result = ns.get(_RESULT)
    with contextlib.suppress(KeyError):
        del ns[_RESULT]
    return result
