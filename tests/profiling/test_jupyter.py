"""%load_ext safla_diag and the %%safla_profile cell magic, in a real IPython shell."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag.profiling._jupyter import parse_options
from safla_diag.profiling._report import SORT_KEYS

from ..conftest import cli_env

pytest.importorskip("IPython")

# Runs in a child process: an InteractiveShell changes process-wide state (__main__, hooks)
# that must not leak into the rest of the suite.
_SCRIPT = r"""
import json, sys, warnings
warnings.simplefilter("error")
from traitlets.config import Config
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

config = Config()
config.HistoryManager.enabled = False
shell = InteractiveShell.instance(config=config)
shell.run_line_magic("load_ext", "safla_diag")
out = {"before": "safla_profile" in shell.magics_manager.magics["cell"]}

def run(cell):
    with capture_output() as cap:
        res = shell.run_cell(cell)
    report = shell.user_ns.pop("_safla_profile", None)
    return {
        "success": res.success,
        "result": repr(res.result),
        "error": type(res.error_in_exec or res.error_before_exec).__name__,
        "outputs": [sorted(o.data) for o in cap.outputs],
        "html": [o.data.get("text/html", "") for o in cap.outputs],
        "stdout": cap.stdout,
        "stderr": cap.stderr,
        "report": None if report is None else {
            "label": report.label,
            "calls": {r.function: r.ncalls for r in report.rows},
        },
    }

cells = json.loads(sys.argv[1])
out["runs"] = [run(cell) for cell in cells]
out["getprofile"] = repr(sys.getprofile())
print(json.dumps(out))
"""


_CELLS = [
    textwrap.dedent(
        """\
        %%safla_profile --top 5 --sort ncalls
        def square(n):
            return n * n
        def total(k):
            return sum(square(i) for i in range(k))
        total(7)
        """
    ),
    "square(3)",  # the cell's definitions live in the user namespace
    "%%safla_profile --quiet\ndef bad():\n    raise KeyError('k')\nbad()\n",
    "%%safla_profile\ndef bad():\n    raise KeyError('k')\nbad()\n",
    "%%safla_profile --nope\nran = True\n",
    "'ran' in dir()",
]


def run_cells(cells: list[str], tmp_path: Path) -> dict[str, Any]:
    """Run ``cells`` in order in one real IPython shell in a child process; its JSON summary."""
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(cells)],
        capture_output=True,
        text=True,
        env=cli_env(IPYTHONDIR=str(tmp_path / "ipython")),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def shell_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every cell of _CELLS, run in order in one real IPython shell in a child process."""
    return run_cells(_CELLS, tmp_path_factory.mktemp("ipython"))


def test_cell_magic_profiles_the_cell_and_shows_the_html_report(
    shell_run: dict[str, Any],
) -> None:
    """%%safla_profile runs the cell, displays the sortable table and keeps the report."""
    assert shell_run["before"] is True
    first, second = shell_run["runs"][:2]
    assert first["success"] is True
    assert first["result"] == "91"
    assert first["report"]["label"] == "cell"
    assert first["report"]["calls"]["square"] == 7
    assert first["report"]["calls"]["total"] == 1
    assert first["outputs"] == [["text/html", "text/plain"]]
    assert "<table" in first["html"][0] and "square" in first["html"][0]
    assert second["result"] == "9" and second["report"] is None
    assert shell_run["getprofile"] == "None"


def test_cell_that_raises_still_shows_its_report(shell_run: dict[str, Any]) -> None:
    """The report is displayed, then the cell's exception is shown as usual."""
    quiet, shown = shell_run["runs"][2:4]
    for run in (quiet, shown):
        assert run["success"] is False and run["error"] == "KeyError"
        assert run["report"]["calls"]["bad"] == 1
    assert quiet["outputs"] == []
    assert shown["outputs"] == [["text/html", "text/plain"]]


def test_bad_options_are_a_usage_error(shell_run: dict[str, Any]) -> None:
    """An unknown option is reported as a UsageError; the cell does not run."""
    bad, check = shell_run["runs"][4:6]
    assert bad["success"] is False and bad["error"] == "UsageError"
    assert "unknown option" in bad["stderr"] + bad["stdout"]
    assert check["result"] == "False"


def test_importing_safla_diag_does_not_import_ipython() -> None:
    """IPython is imported only when the extension is loaded."""
    code = "import sys, safla_diag; print('IPython' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True
    )
    assert proc.stdout.strip() == "False"


def test_parse_options() -> None:
    """The magic's options parse into top, sort, save and quiet."""
    assert parse_options("") == {"top": 20, "sort": "cumulative", "save": None, "quiet": False}
    assert parse_options("--top 5 --sort tottime --save 'a b.prof' --quiet") == {
        "top": 5,
        "sort": "tottime",
        "save": "a b.prof",
        "quiet": True,
    }
    for bad in ("--top", "--top 0", "--top x", "--sort nope", "--what", "'unclosed"):
        with pytest.raises(ValueError, match="usage"):
            parse_options(bad)


@given(st.text(max_size=40))
def test_parse_options_never_raises_anything_but_value_error(line: str) -> None:
    """Whatever the line, the parser returns valid options or raises ValueError with usage."""
    try:
        opts = parse_options(line)
    except ValueError as err:
        message = str(err)
        opts = None
    if opts is None:
        assert "usage" in message
    else:
        assert opts["top"] >= 1 and opts["sort"] in SORT_KEYS
