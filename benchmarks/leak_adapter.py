"""
Adapter of our MemoryLeakDetector to the leak simulation's detector protocol.

The simulation (``leak_sim.py``, shared with the acceptance case, not part of this repository)
calls ``make_detector()`` once per run and then ``observe(t_seconds, rss_bytes)`` once per sample
in time order; ``observe`` returns True while a leak is suspected. Run it from the repository root::

    PYTHONPATH=.:benchmarks python leak_sim.py --detector leak_adapter:make_detector --check
"""

from __future__ import annotations

from safla_diag import MemoryLeakDetector

MB = 1024 * 1024


class SimDetector:
    """``observe(t, rss_bytes) -> bool`` over one MemoryLeakDetector with default settings."""

    def __init__(self) -> None:
        self.detector = MemoryLeakDetector()

    def observe(self, t: float, rss_bytes: float) -> bool:
        return self.detector.add_sample(rss_bytes / MB, t)


def make_detector() -> SimDetector:
    """A fresh detector for one simulated run."""
    return SimDetector()
