"""%%safla_profile with top-level await: the cell runs in the shell's own loop, profiled."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from safla_diag.profiling._jupyter_async import _rewrite, has_top_level_await

from .test_jupyter import run_cells

pytest.importorskip("IPython")

_CELLS = [
    textwrap.dedent(
        """\
        import asyncio
        LOOP_BEFORE = None
        async def outer_loop():
            return id(asyncio.get_running_loop())
        LOOP_BEFORE = await outer_loop()
        """
    ),
    textwrap.dedent(
        """\
        %%safla_profile --top 3
        import asyncio
        def crunch(n):
            return sum(i * i for i in range(n))
        async def fetch(n):
            await asyncio.sleep(0)
            return crunch(n)
        same_loop = id(asyncio.get_running_loop()) == LOOP_BEFORE
        values = [await fetch(2000) for _ in range(3)]
        len(values)
        """
    ),
    "same_loop, values[0]",
    "%%safla_profile --quiet\nimport asyncio\nawait asyncio.sleep(0)\nraise KeyError('k')\n",
]


@pytest.fixture(scope="module")
def shell_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The cells, in one real IPython shell (autoawait on) in a child process."""
    return run_cells(_CELLS, tmp_path_factory.mktemp("ipython-async"))


def test_await_in_the_magic_runs_in_the_shells_loop(shell_run: dict[str, Any]) -> None:
    """The awaiting cell is profiled, shows its value and HTML, and ran in the shell's loop."""
    first, cell, check, _ = shell_run["runs"]
    assert first["success"], first
    assert cell["success"], cell
    assert cell["result"] == "3"
    assert cell["report"] is not None and cell["report"]["calls"]["crunch"] == 3
    assert any("text/html" in kinds for kinds in cell["outputs"])
    assert "showing 3 of" in cell["html"][0]
    assert check["result"] == f"(True, {sum(i * i for i in range(2000))})"
    assert shell_run["getprofile"] == "None"


def test_an_awaiting_cell_that_raises_keeps_its_report(shell_run: dict[str, Any]) -> None:
    """The error reaches the user; the report is stored all the same."""
    run = shell_run["runs"][3]
    assert not run["success"] and run["error"] == "KeyError"
    assert run["report"] is not None and run["outputs"] == []


def test_top_level_await_detection() -> None:
    """Only awaits outside function bodies count."""
    assert has_top_level_await("await f()")
    assert has_top_level_await("async with x:\n    pass")
    assert has_top_level_await("y = [await g(i) for i in r]")
    assert not has_top_level_await("async def f():\n    await g()\n")
    assert not has_top_level_await("x = 1")
    assert not has_top_level_await("def (")


def test_rewrite_touches_only_awaiting_safla_profile_cells() -> None:
    """Other magics and cells without await pass through unchanged."""
    plain = ["get_ipython().run_cell_magic('safla_profile', '', 'x = 1\\n')\n"]
    assert _rewrite(plain) == plain
    other = ["get_ipython().run_cell_magic('timeit', '', 'await f()\\n')\n"]
    assert _rewrite(other) == other
    out = _rewrite(["get_ipython().run_cell_magic('safla_profile', '--top 2', 'await f()\\n')\n"])
    assert out[0].startswith("await __import__('safla_diag.profiling._jupyter_async'")
    assert "'--top 2'" in out[0] and "'await f()\\n'" in out[0]
