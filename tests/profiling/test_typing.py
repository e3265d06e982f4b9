"""mypy sees through profile, timed and profile_function: signatures and return types survive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

pytest.importorskip("mypy")


def test_decorated_signatures_type_check() -> None:
    """typing_api.py passes mypy --strict: assert_type holds and wrong arguments are errors."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            str(Path(__file__).with_name("typing_api.py")),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
