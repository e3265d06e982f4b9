"""Every ```python block in docs/ runs, page by page, in a fresh interpreter in a temporary folder.

Blocks fenced as ```py (or ```python with `title=`/`no-run` in the info string) are shown, not run.
A page declares what its examples need beyond the runtime dependencies in one comment,
``<!-- needs: services, postgres, opentelemetry-sdk -->``: ``services`` (Redis and PostgreSQL on
127.0.0.1), an extra of pyproject.toml, or a distribution. A page is skipped, with the reason,
when what it declares is missing; an example that imports an optional package its page does not
declare fails, so a reader is never left to guess.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import safla_diag

from .conftest import cli_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```", re.M | re.S)
_NEEDS = re.compile(r"<!--\s*needs:\s*([^>]*?)\s*-->")

# What each declarable need imports: the extras of pyproject.toml and a few distributions.
NEEDS: dict[str, str] = {
    "postgres": "psycopg",
    "prometheus": "prometheus_client",
    "otel": "opentelemetry.metrics",
    "opentelemetry-sdk": "opentelemetry.sdk",
    "jupyter": "IPython",
    "mcp": "mcp",
}
# An import of one of these in an example means its page must declare the need.
_OPTIONAL_IMPORTS = {
    r"^\s*(?:import|from)\s+psycopg\b": "postgres",
    r"^\s*(?:import|from)\s+prometheus_client\b": "prometheus",
    r"^\s*(?:import|from)\s+opentelemetry\.sdk\b": "opentelemetry-sdk",
    r"^\s*(?:import|from)\s+IPython\b": "jupyter",
    r"^\s*(?:import|from)\s+mcp\b": "mcp",
}


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if _FENCE.search(p.read_text(encoding="utf-8")))


def needs(text: str) -> set[str]:
    """The needs a page declares."""
    out: set[str] = set()
    for m in _NEEDS.finditer(text):
        out |= {n.strip() for n in m.group(1).split(",") if n.strip()}
    return out


def _missing(need: str) -> bool:
    module = NEEDS[need]
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_docs_examples_run(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The page's examples run top to bottom, in a fresh interpreter, without error."""
    text = page.read_text(encoding="utf-8")
    declared = needs(text)
    unknown = declared - set(NEEDS) - {"services"}
    assert not unknown, f"{page.name} declares unknown needs {sorted(unknown)}"
    if "services" in declared:
        request.getfixturevalue("redis_url")
        request.getfixturevalue("postgres_url")
    missing = sorted(n for n in declared - {"services"} if _missing(n))
    if missing:
        pytest.skip(f"{page.name} needs {', '.join(missing)}: pip install 'safla-diag[...]'")
    blocks = _FENCE.findall(text)
    script = tmp_path / f"docs_{page.stem}.py"
    # One file, the blocks in order, each compiled under its own name for readable tracebacks.
    runner = "\n".join(
        f"exec(compile({block!r}, {f'{page.name}[block {i}]'!r}, 'exec'), globals())"
        for i, block in enumerate(blocks)
    )
    script.write_text(runner + "\n", encoding="utf-8")
    env = {k: v for k, v in cli_env().items() if not k.startswith("SAFLA_")}
    if os.environ.get("SAFLA_DIAG_REQUIRE_SERVICES"):
        env["SAFLA_DIAG_REQUIRE_SERVICES"] = os.environ["SAFLA_DIAG_REQUIRE_SERVICES"]
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{page.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_pages_declare_the_optional_packages_their_examples_import(page: Path) -> None:
    """An example importing an optional package sits on a page that says it needs it."""
    text = page.read_text(encoding="utf-8")
    code = "\n".join(_FENCE.findall(text))
    required = {
        need for pattern, need in _OPTIONAL_IMPORTS.items() if re.search(pattern, code, re.M)
    }
    assert required <= needs(text), (
        f"{page.name}: add <!-- needs: {', '.join(sorted(required))} -->"
    )


def test_api_reference_lists_every_public_name() -> None:
    """docs/api.md documents every name of safla_diag.__all__ (a ::: entry or a mention)."""
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = [
        name
        for name in safla_diag.__all__
        if not re.search(rf"(?<![\w.])safla_diag\.{re.escape(name)}\b|`{re.escape(name)}`", text)
    ]
    assert missing == []


def test_every_docs_page_is_in_the_nav() -> None:
    """mkdocs.yml lists every page of docs/ (a page outside the nav is never found)."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert [p for p in pages if p not in nav] == []
