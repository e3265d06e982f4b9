"""Profiling: CPU and memory profilers, the profile and timed decorators, reports."""

from __future__ import annotations

from ._cpu import CPUProfiler, profile
from ._memory import GCCounts, MemoryGrowth, MemoryProfiler, SystemMemoryInfo
from ._report import ProfileReport
from ._stats import ProfileRow
from ._timed import timed

__all__ = [
    "CPUProfiler",
    "GCCounts",
    "MemoryGrowth",
    "MemoryProfiler",
    "ProfileReport",
    "ProfileRow",
    "SystemMemoryInfo",
    "profile",
    "timed",
]
