"""docs/logging.md lists every logger name and every stable ``extra`` key the package uses."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "safla_diag"
PAGE = (ROOT / "docs" / "logging.md").read_text(encoding="utf-8")


def _sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_every_logger_name_is_documented() -> None:
    """Each getLogger("safla_diag.<layer>") in the package has a row on the logging page."""
    names = {
        name
        for text in _sources().values()
        for name in re.findall(r"getLogger\(\s*\"(safla_diag(?:\.[a-z_]+)*)\"\s*\)", text)
    }
    assert "safla_diag.monitoring" in names
    missing = sorted(n for n in names if n != "safla_diag" and f"| `{n}` |" not in PAGE)
    assert missing == []


def test_loggers_are_public_layer_names() -> None:
    """No module logs under a private path (safla_diag.vector._recovery) or __name__."""
    for path, text in _sources().items():
        for name in re.findall(r"getLogger\(([^)]*)\)", text):
            assert re.fullmatch(r"\"safla_diag(\.[a-z_]+)?\"", name.strip()), (path, name)


def test_every_extra_key_is_documented() -> None:
    """Each key a log call passes in extra= starts with 'safla_diag.' and is on the page."""
    keys: set[str] = set()
    for text in _sources().values():
        for node in ast.walk(ast.parse(text)):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("log", "logger")
            ):
                continue
            for kw in node.keywords:
                if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                    keys.update(k.value for k in kw.value.keys if isinstance(k, ast.Constant))
    assert keys, "the profiler's extra key should be found"
    for key in keys:
        assert key.startswith("safla_diag."), key
        assert f"| `{key}` |" in PAGE, key
