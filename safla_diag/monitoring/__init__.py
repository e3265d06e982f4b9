"""Monitors that run inside a host for weeks: memory, request performance, leaks."""

from __future__ import annotations

from ._leaks import LeakAnalysis, MemoryLeakDetector
from ._loop import LoopMonitor
from ._memory import MemoryMonitor
from ._optimizer import MemoryOptimization, VectorMemoryOptimizer
from ._performance import PerformanceMonitor

__all__ = [
    "LeakAnalysis",
    "LoopMonitor",
    "MemoryLeakDetector",
    "MemoryMonitor",
    "MemoryOptimization",
    "PerformanceMonitor",
    "VectorMemoryOptimizer",
]
