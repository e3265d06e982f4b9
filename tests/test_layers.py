"""The layer rules of CONTRIBUTING.md, read off the source: no layer reaches into another's privates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "safla_diag"

# Who may import whom (downward only). Top-level private modules (_errors, _aio, ...) are shared.
RANK = {
    "config": 0,
    "checks": 1,
    "profiling": 2,
    "monitoring": 2,
    "vector": 2,
    "mcp_retry": 2,
    "logs": 2,
    "heal": 3,
    "diagnosis": 4,
    "live": 5,  # the live endpoint and the exporters: they read every layer below
    "_cli": 6,
}


def _imports(path: Path, text: str) -> list[tuple[int, str]]:
    """(line, absolute dotted module) for every import of ``text``, the source of ``path``."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
    return [(line, t) for line, t in found if t == "safla_diag" or t.startswith("safla_diag.")]


def _layer(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


# The facade (safla_diag/__init__.py) is the one module that may name any layer's module.
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def _violations(path: Path, text: str) -> list[str]:
    own = _layer(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    bad = []
    for line, target in _imports(path, text):
        other = _layer(target)
        if other is None or other == own:
            continue
        parts = target.split(".")
        if len(parts) > 2 and parts[2].startswith("_"):
            bad.append(f"line {line}: {target} is private to {other}")
        if own is not None and RANK[other] >= RANK[own]:
            bad.append(f"line {line}: {own} imports {other}, which is not below it")
    return bad


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_cross_layer_private_import(path: Path) -> None:
    """A layer imports another layer only through its __init__, and only downward."""
    bad = _violations(path, path.read_text(encoding="utf-8"))
    assert not bad, "\n".join(bad)


def test_the_rule_sees_a_violation() -> None:
    """The checker itself catches a private and an upward import (a test that cannot fail proves nothing)."""
    where = PACKAGE / "checks" / "_probe.py"  # checks may use config, nothing above it
    assert _violations(where, "from ..mcp_retry._store import QueueStats\n") == [
        "line 1: safla_diag.mcp_retry._store is private to mcp_retry",
        "line 1: checks imports mcp_retry, which is not below it",
    ]
    assert (
        _violations(where, "from ..config import SaflaConfig\nfrom .._aio import off_loop\n") == []
    )
