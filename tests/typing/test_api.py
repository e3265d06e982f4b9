"""mypy sees the public API as a user writes it: signatures, twins and reports keep their types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

pytest.importorskip("mypy")


def test_public_api_type_checks() -> None:
    """api.py passes mypy --strict: every assert_type holds and each wrong call is an error."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            str(Path(__file__).with_name("api.py")),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
