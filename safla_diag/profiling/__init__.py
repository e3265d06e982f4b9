"""Profiling: CPU and memory profilers, the profile and timed decorators, reports."""

from __future__ import annotations

from ._cpu import CPUProfiler, profile
from ._memory import MemoryGrowth, MemoryProfiler
from ._report import ProfileReport
from ._timed import timed

__all__ = ["CPUProfiler", "MemoryGrowth", "MemoryProfiler", "ProfileReport", "profile", "timed"]
