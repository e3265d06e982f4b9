"""`safla-diag deps`, run as a real subprocess."""

from __future__ import annotations

import json
import re

from ..conftest import run_cli


def test_deps_all_present() -> None:
    """Our runtime dependencies are installed here: exit 0, each listed with a version."""
    out = run_cli("deps")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.match(r"Dependencies: (\d+) of \1 usable\n", out.stdout)
    assert "faiss-cpu" in out.stdout and "(import faiss)" in out.stdout


def test_deps_missing_json() -> None:
    """A missing package: exit 1, JSON with the pip hint."""
    out = run_cli("deps", "safla-diag-no-such-package", "attrs", "--json")
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["missing"] == ["safla-diag-no-such-package"]
    assert data["install_hint"] == "pip install safla-diag-no-such-package"


def test_deps_text_has_the_hint() -> None:
    """The text report ends with the command that fixes it."""
    out = run_cli("deps", "safla-diag-no-such-package", "--no-import")
    assert out.returncode == 1
    assert out.stdout.splitlines()[-1] == "Fix with: pip install safla-diag-no-such-package"


def test_deps_bad_flag() -> None:
    """An unknown flag: one line, exit 2."""
    out = run_cli("deps", "--frobnicate")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
