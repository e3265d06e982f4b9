"""The monitors ``async with Diagnostics(...)`` runs in the host's loop: memory and leaks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import attrs

from .._aio import off_loop
from .._redact import redact

if TYPE_CHECKING:
    from ..monitoring import MemoryLeakDetector, MemoryMonitor

__all__ = ["Monitors"]


@attrs.define
class Monitors:
    """
    A MemoryMonitor checked every few seconds (off the loop) and a MemoryLeakDetector, as tasks.

    A monitor that cannot start or fails is recorded in ``errors``; it never takes the host down.
    """

    interval: float
    threshold: float
    critical: float
    leaks: MemoryLeakDetector | None = None
    memory: MemoryMonitor | None = None
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    pressure: str | None = None
    running: bool = False
    checks: int = 0
    checked: asyncio.Event = attrs.field(factory=asyncio.Event)

    def start(self) -> None:
        """Start both monitors as tasks of the running loop."""
        from ..monitoring import MemoryLeakDetector, MemoryMonitor

        try:
            # check_interval: while a leak lasts, how often the detector warns again.
            self.leaks = MemoryLeakDetector(check_interval=self.interval)
            self.tasks.append(self.leaks.start_monitoring())
        except ValueError as err:  # a setting the configuration section reports too
            self.leaks = None
            self.errors.append(f"leak detector: {redact(str(err))[:160]}")
        try:
            self.memory = MemoryMonitor(
                threshold_percent=self.threshold, critical_percent=self.critical
            )
        except ValueError as err:
            self.errors.append(f"memory monitor: {redact(str(err))[:160]}")
        else:
            task = asyncio.get_running_loop().create_task(
                self._watch_memory(self.memory), name="safla_diag.Diagnostics.memory"
            )
            self.tasks.append(task)
        self.running = True

    async def _watch_memory(self, memory: MemoryMonitor) -> None:
        from .._errors import MemoryPressureError

        try:
            while True:
                try:
                    # Off the loop: at the critical level the check runs a full gc.collect().
                    await off_loop(memory.check_memory_usage)
                    self.pressure = None
                except MemoryPressureError as err:
                    self.pressure = str(err)
                except Exception as err:  # psutil trouble: report it, do not take the host down
                    self.errors.append(
                        f"memory monitor: {err.__class__.__name__}: {redact(str(err))[:120]}"
                    )
                    return
                self.checks += 1
                self.checked.set()
                # Cheap: more often than the leak detector reports, never busily.
                await asyncio.sleep(max(1.0, min(self.interval, 30.0)))
        finally:
            self.checked.set()

    async def stop(self) -> None:
        """Stop the monitors and wait for their tasks."""
        self.running = False
        if self.leaks is not None:
            self.leaks.stop_monitoring()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
