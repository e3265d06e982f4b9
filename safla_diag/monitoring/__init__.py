"""Monitors that run inside a host for weeks: memory, request performance, leaks."""

from __future__ import annotations

from ._cgroup import CgroupMemory
from ._leaks import LeakAnalysis, MemoryLeakDetector
from ._loop import LoopMonitor, LoopStats
from ._memory import MemoryInfo, MemoryMonitor
from ._optimizer import MemoryOptimization, VectorMemoryOptimizer
from ._performance import PerformanceMonitor, PerformanceStats

__all__ = [
    "CgroupMemory",
    "LeakAnalysis",
    "LoopMonitor",
    "LoopStats",
    "MemoryInfo",
    "MemoryLeakDetector",
    "MemoryMonitor",
    "MemoryOptimization",
    "PerformanceMonitor",
    "PerformanceStats",
    "VectorMemoryOptimizer",
]
