"""Fixtures of the queue's tests: the Python commit path on demand."""

from __future__ import annotations

import pytest


@pytest.fixture
def python_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores opened in the test commit on the store's Python thread, not the compiled committer
    (tests that watch the Python path's own calls, and the twins of the committer's tests)."""
    monkeypatch.setenv("SAFLA_DIAG_PURE", "1")
