"""
Diagnostics: the facade behind ``safla-diag doctor``.

A diagnosis is a set of independent sections (platform, configuration, dependencies, memory, cpu,
disk, services, vector index, MCP queue, logs, monitors; see ``_sections``). Each is a small
coroutine that returns facts and findings; they run concurrently, each under a time budget, and a
section whose check raises (a missing optional package, an unreadable file, a bug) becomes a
finding of its own instead of breaking the report. The report types live in ``_report``, the
monitors ``async with`` runs in ``_monitors``, the settings read from the configuration in
``_settings``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .._aio import run_sync
from .._redact import redact, redact_value
from ..config import SaflaConfig, default, load_configuration
from ..heal import Healer, HealPolicy
from ._context import Context
from ._monitors import Monitors
from ._report import DiagnosisReport
from ._sections import SECTION_NAMES, SECTIONS, run_section
from ._settings import Settings

if TYPE_CHECKING:
    from ..monitoring import MemoryLeakDetector, MemoryMonitor

__all__ = ["Diagnostics"]

log = logging.getLogger("safla_diag.diagnosis")


def _load(config: object) -> tuple[dict[str, Any], bool, str | None]:
    if config is None:
        # SAFLA_* variables override the defaults; SAFLA_CONFIG names a file, which is then
        # a configuration like one given explicitly, and is validated.
        named = os.environ.get("SAFLA_CONFIG") or None
        return dict(load_configuration(None)), named is not None, redact(named) if named else None
    if isinstance(config, str | os.PathLike):
        return dict(load_configuration(config)), True, redact(os.fspath(config))
    if isinstance(config, SaflaConfig):
        return config.to_dict(redact=False), True, "SaflaConfig"
    if isinstance(config, Mapping):
        return dict(config), True, "mapping"
    raise TypeError(
        f"config must be None, a path, a mapping or a SaflaConfig, not {type(config).__name__}"
    )


class Diagnostics:
    """
    The whole diagnosis behind ``safla-diag doctor``, for scripts, services and notebooks.

    ``doctor()`` (or ``await adoctor()``) runs every section that applies: platform,
    configuration (validated when one is given), dependencies, memory, CPU, disk where the data
    folder lives, external services (when configured), vector index health (when ``data_dir`` is
    set), MCP queue state (when ``mcp_task_queue`` is a file), recent log errors (when
    ``log_paths`` is set), and, inside ``async with``, the memory monitor and the leak detector.

    ``async with Diagnostics(cfg) as diag:`` starts a MemoryMonitor (checked every few seconds,
    off the loop) and a MemoryLeakDetector (``start_monitoring()``) as tasks in the host's
    running loop, and stops them on exit, also when the block is cancelled. It can be entered
    only once.

    Args:
        config: None (embedded defaults and ``SAFLA_*`` variables), a ``.toml``/``.json`` path,
            a mapping, or a SaflaConfig.
        timeout: Seconds for service probes when the configuration has no ``service_timeout``.
        sections: Run only these sections (names as in the report).
        heal: False (the default) changes nothing; True or a HealPolicy also runs the healer
            inside ``async with``: known failures get their known remedy, and each action is
            kept in ``heal_history()`` (see the healing page).

    Raises:
        ConfigurationError: When a configuration file cannot be read or parsed.
        TypeError: When ``config`` (or ``heal``) is of an unsupported type.
        ValueError: When ``sections`` names an unknown section.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | SaflaConfig | None = None,
        *,
        timeout: float = default("service_timeout"),
        sections: Iterable[str] | None = None,
        heal: bool | HealPolicy = False,
    ) -> None:
        self._config, self._given, self._source = _load(config)
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._settings = Settings.read(self._config, timeout=self.timeout)  # read once, typed
        wanted = None if sections is None else list(sections)
        if wanted is not None:
            unknown = sorted(set(wanted) - set(SECTION_NAMES))
            if unknown:
                raise ValueError(f"unknown sections {unknown}; choose from {list(SECTION_NAMES)}")
        self._sections = wanted
        self._monitors: Monitors | None = None
        self._heal = HealPolicy.coerce(heal)
        self._healer: Healer | None = None
        self._state: Literal["new", "running", "closed"] = "new"
        self._last_report: DiagnosisReport | None = None

    def __repr__(self) -> str:
        return f"<Diagnostics source={self._source!r} state={self._state}>"

    def _repr_html_(self) -> str:
        from ._html import diagnostics_html

        return diagnostics_html(self)

    @property
    def last_report(self) -> DiagnosisReport | None:
        """The report of the last ``doctor()`` / ``adoctor()`` that finished; None before."""
        return self._last_report

    @property
    def config(self) -> dict[str, Any]:
        """The configuration in use, redacted."""
        out = redact_value(self._config)
        assert isinstance(out, dict)
        return out

    @property
    def memory_monitor(self) -> MemoryMonitor | None:
        """The MemoryMonitor running inside ``async with``; None outside it."""
        mon = self._monitors
        return mon.memory if mon is not None and self._state == "running" else None

    @property
    def leak_detector(self) -> MemoryLeakDetector | None:
        """The MemoryLeakDetector running inside ``async with``; None outside it."""
        mon = self._monitors
        return mon.leaks if mon is not None and self._state == "running" else None

    @property
    def healer(self) -> Healer | None:
        """The healer running inside ``async with`` when ``heal`` was given; None otherwise."""
        return self._healer if self._state == "running" else None

    def heal_history(self) -> list[dict[str, Any]]:
        """
        The healer's actions, oldest first (bounded), also after ``async with`` has ended.

        Returns:
            Dicts with ``time``, ``action``, ``outcome``, ``detail``, ``target`` and ``data``;
            ``[]`` when healing is off.
        """
        return self._healer.history() if self._healer is not None else []

    async def __aenter__(self) -> Diagnostics:
        if self._state != "new":
            raise RuntimeError("a Diagnostics can be entered only once; make a new one")
        self._state = "running"
        settings = self._settings
        self._monitors = Monitors(
            interval=settings.leak_check_interval,
            threshold=settings.memory_threshold_percent,
            critical=settings.memory_critical_percent,
        )
        self._monitors.start()
        if self._heal is not None:
            monitors = self._monitors
            self._healer = Healer(
                self._heal,
                data_dir=settings.data_dir,
                backup_dir=settings.backup_dir,
                index_file=settings.index_file,
                dimension=settings.vector_dimension,
                memory_critical_percent=settings.memory_critical_percent,
                leaks=lambda: monitors.leaks,
                memory=lambda: monitors.memory,
            )
            self._healer.start()
        try:
            # One tick: the detector's task takes its first sample, so the monitors are running
            # (``leak_detector.monitoring``) when the block's body starts.
            await asyncio.sleep(0)
        except BaseException:  # cancelled while entering: __aexit__ will not run
            self._state = "closed"
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._state = "closed"
        await self._stop()

    async def _stop(self) -> None:
        if self._healer is not None:
            await self._healer.stop()
        if self._monitors is not None:
            await self._monitors.stop()

    async def adoctor(self) -> DiagnosisReport:
        """
        Run the diagnosis in the caller's loop.

        Returns:
            The report; sections that fail become findings, nothing is raised for them.
        """
        import psutil

        start = time.perf_counter()
        psutil.cpu_percent(interval=None)  # the CPU section measures from here
        ctx = Context(
            config=dict(self._config),
            given=self._given,
            source=self._source,
            timeout=self.timeout,
            monitors=self._monitors if self._state == "running" else None,
            started=start,
            settings=self._settings,
        )
        chosen = [
            s
            for s in SECTIONS
            if (self._sections is None or s.name in self._sections) and s.applies(ctx)
        ]
        budget = max(10.0, ctx.settings.service_timeout + 2.0)
        results = await asyncio.gather(*(run_section(s, ctx, budget) for s in chosen))
        report = DiagnosisReport(
            sections=tuple(results),
            elapsed_s=time.perf_counter() - start,
            config_source=self._source,
        )
        log.info("doctor: %s in %.2f s", report.summary, report.elapsed_s)
        self._last_report = report
        return report

    def doctor(self) -> DiagnosisReport:
        """
        Run the diagnosis from synchronous code (a script, the command line).

        It runs its own event loop, so it must not be called where one is running (a
        service, Jupyter): there, ``await adoctor()``.

        Returns:
            The report.

        Raises:
            RuntimeError: When called from inside a running event loop.
        """
        return run_sync(self.adoctor, "Diagnostics.doctor", "Diagnostics.adoctor")
