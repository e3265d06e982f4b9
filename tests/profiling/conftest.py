"""Profiling tests leave no session, tracing or profiler hook behind."""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Iterator

import pytest

from safla_diag.profiling import _cpu, _memory


@pytest.fixture(autouse=True)
def _profiling_state_restored() -> Iterator[None]:
    """Each test ends with no active session, no profiler hook and tracemalloc as it was."""
    tracing = tracemalloc.is_tracing()
    yield
    assert _cpu._thread.active is None, "a profiling session was left active"
    assert sys.getprofile() is None
    assert tracemalloc.is_tracing() == tracing, "tracemalloc was left in another state"
    assert _memory._tracing_users == 0, "a MemoryProfiler was left tracing"
