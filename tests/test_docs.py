"""Every ```python block in docs/ runs, page by page, in a fresh temporary folder.

Blocks fenced as ```py (or ```python with `title=`/`no-run` in the info string) are shown, not run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```", re.M | re.S)


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if _FENCE.search(p.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_docs_examples_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The page's examples run top to bottom without error."""
    text = page.read_text(encoding="utf-8")
    if "<!-- needs: services -->" in text:
        request.getfixturevalue("redis_url")
        request.getfixturevalue("postgres_url")
    monkeypatch.chdir(tmp_path)
    for key in [
        k for k in os.environ if k.startswith("SAFLA_") and k != "SAFLA_DIAG_REQUIRE_SERVICES"
    ]:
        monkeypatch.delenv(key)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(_FENCE.findall(text)):
        code = compile(block, f"{page.name}[block {i}]", "exec")
        exec(code, namespace)
