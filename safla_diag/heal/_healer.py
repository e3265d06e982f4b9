"""
The Healer: known failures get their known remedy, inside the host's loop, every action visible.

Two tasks run while ``async with Diagnostics(cfg, heal=...)`` is open: the index task (the cheap
check at start and every ``index_check_interval_s``) and the watch task (every ``tick_s``: memory
percent, the leak detector's verdict, breaker states, dead-letter counts). A leak window is a task
of its own while it traces. Every remedy passes the Gate (one at a time, rate-limited, backing off
after failures) and lands in the Ledger (one log line, a count, the bounded history).

Never automated: deleting data (a damaged index is moved aside, never removed; dead letters are
reported, never purged) and restarting the process.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._aio import call_host, maybe_await, off_loop
from .._redact import describe_error, redact
from ._ledger import Gate, Ledger
from ._policy import HealPolicy
from ._window import trace_growth

if TYPE_CHECKING:
    from ..monitoring import MemoryLeakDetector, MemoryMonitor, VectorMemoryOptimizer
    from ..vector import VectorIndexRecovery

__all__ = ["Healer"]

Outcome = tuple[str, str, dict[str, Any]]  # (outcome, detail, data)


class Healer:
    """
    The engine behind ``Diagnostics(heal=...)``; reach it as ``Diagnostics.healer``.

    Args:
        policy: What may be done, how often.
        data_dir: The configured index folder (used when the policy has no ``recovery``).
        backup_dir: The configured backup folder (default ``data_dir/backups``).
        index_file: The index's file name.
        dimension: The dimension the host expects, when configured.
        memory_critical_percent: The configured critical memory percent (when the policy has none).
        leaks: A callable returning the running MemoryLeakDetector, or None.
        memory: A callable returning the running MemoryMonitor, or None: its ``memory_percent()``
            (the figure the thresholds apply to) is the default reading.
    """

    def __init__(
        self,
        policy: HealPolicy,
        *,
        data_dir: str | None = None,
        backup_dir: str | None = None,
        index_file: str = "vector_index.faiss",
        dimension: int | None = None,
        memory_critical_percent: float = 95.0,
        leaks: Callable[[], MemoryLeakDetector | None] = lambda: None,
        memory: Callable[[], MemoryMonitor | None] = lambda: None,
    ) -> None:
        self.policy = policy
        self._clock = policy.clock or time.monotonic
        self.ledger = Ledger(policy.history_size)
        self.gate = Gate(
            min_interval_s=policy.min_interval_s,
            max_backoff_s=policy.max_backoff_s,
            clock=self._clock,
        )
        self._config_index = (data_dir, backup_dir, index_file, dimension)
        self.recovery: VectorIndexRecovery | None = policy.recovery
        self.critical = (
            policy.memory_critical_percent
            if policy.memory_critical_percent is not None
            else float(memory_critical_percent)
        )
        self._optimizer = policy.optimizer
        self._leaks = leaks
        self._index_lock = asyncio.Lock()
        self._memory = memory
        self._tasks: list[asyncio.Task[None]] = []
        self._side: set[asyncio.Task[Any]] = set()
        self._breakers: dict[tuple[int, str], str] = {}
        self._dead: dict[int, int] = {}
        self._registries: list[Any] = []
        #: Watch ticks completed (the cheap signals read once each).
        self.ticks = 0
        #: Index checks completed.
        self.index_checks = 0
        #: Why a remedy is off (no data_dir, a setting that cannot be used), by kind.
        self.disabled: dict[str, str] = {}

    def __repr__(self) -> str:
        mode = "dry-run" if self.policy.dry_run else "on"
        return f"<Healer {mode} actions={len(self.ledger.history())} running={self.running}>"

    # ------------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """Whether the healer's tasks are running."""
        return any(not t.done() for t in self._tasks)

    @property
    def optimizer(self) -> VectorMemoryOptimizer | None:
        """The VectorMemoryOptimizer whose caches are cleared under pressure (register yours)."""
        return self._optimizer

    def start(self) -> None:
        """Start the healer's tasks in the running loop (inside ``Diagnostics.__aenter__``)."""
        loop = asyncio.get_running_loop()
        self._setup()
        if "restore_index" not in self.disabled:
            self._tasks.append(loop.create_task(self._index_loop(), name="safla_diag.heal.index"))
        self._tasks.append(loop.create_task(self._watch_loop(), name="safla_diag.heal.watch"))

    def _setup(self) -> None:
        if self.recovery is None and self._config_index[0] is None:
            self.disabled["restore_index"] = "no data_dir configured"
        if self._optimizer is None:
            from ..monitoring import VectorMemoryOptimizer

            try:
                self._optimizer = VectorMemoryOptimizer(max_memory_percent=self.critical)
            except ValueError as err:
                self.disabled["clear_caches"] = describe_error(err)
        if self._optimizer is not None:
            for cache in self.policy.caches:
                try:
                    self._optimizer.register_cache(cache)
                except TypeError:  # a plain dict cannot be held weakly: the policy holds it
                    self._optimizer.register_cache(cache, weak=False)

    async def stop(self) -> None:
        """Stop every task of the healer (a leak window stops tracing) and wait for them."""
        tasks = [*self._tasks, *self._side]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._side.clear()

    async def _sleep(self, seconds: float) -> None:
        # A plain sleep: cancellation is the stop signal. (An Event raced by wait_for can swallow
        # a cancellation on Python 3.11 when the event is set at the same moment.)
        await asyncio.sleep(seconds)

    # ------------------------------------------------------------------------ reading

    def history(self) -> list[dict[str, Any]]:
        """Every kept action, oldest first: ``time``, ``action``, ``outcome``, ``detail``, ..."""
        return self.ledger.history()

    def counts(self) -> dict[tuple[str, str], int]:
        """
        Actions since start per (action, outcome): what ``safla_heal_actions_total`` exports.
        """
        return self.ledger.counts()

    def register_prometheus(self, registry: Any = None) -> None:
        """
        Export ``safla_heal_actions_total{action,outcome}`` to a prometheus_client registry.

        Args:
            registry: A ``CollectorRegistry``; the default registry when None.

        Raises:
            DependencyError: When prometheus_client is not installed.
        """
        from .._lazy import import_optional

        import_optional("prometheus_client")
        from ._prometheus import register

        register(self, registry, self._registries)

    # ------------------------------------------------------------------------ acting

    async def _act(
        self,
        action: str,
        target: str,
        remedy: Callable[[], Awaitable[Outcome]],
        *,
        would: str,
        report_only: bool = False,
    ) -> dict[str, Any] | None:
        """
        Run one remedy through the gate; record what happened. None when the gate said wait.

        ``report_only`` marks a "remedy" that changes nothing (reporting a failing check): it runs
        in a dry run too.
        """
        key = (action, target)
        if not self.gate.enter(key):
            return None
        failed = False
        data: dict[str, Any]
        try:
            if self.policy.dry_run and not report_only:
                outcome, detail, data = "skipped", f"dry run: would {would}", {}
            else:
                try:
                    outcome, detail, data = await remedy()
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    outcome, detail, data = "failed", describe_error(err), {}
            failed = outcome == "failed"
            if failed:
                n = self.gate.failures(key) + 1
                detail = f"{detail} (failure {n}; not retried for a while)"
            entry = self.ledger.record(action, outcome, detail, target=target, data=data)
        finally:
            self.gate.leave(key, failed=failed)
        record = entry.to_dict()
        await self._tell(record)
        return record

    async def _event(
        self,
        action: str,
        target: str,
        detail: str,
        data: dict[str, Any],
        *,
        level: int = logging.WARNING,
    ) -> None:
        entry = self.ledger.record(action, "event", detail, target=target, data=data, level=level)
        record = entry.to_dict()
        await self._tell(record)

    async def _tell(self, record: dict[str, Any]) -> None:
        hook = self.policy.on_action
        if hook is None:
            return
        try:
            await maybe_await(hook(record))
        except Exception as err:
            self.ledger.record(
                "on_action",
                "failed",
                f"the host's on_action callback failed: {describe_error(err)}",
            )

    # ------------------------------------------------------------------------ 1. the index

    async def _index_loop(self) -> None:
        while True:
            await self.check_index()
            self.index_checks += 1
            await self._sleep(self.policy.index_check_interval_s)

    async def check_index(self) -> dict[str, Any] | None:
        """
        Give the live index the cheap check now, and restore it if it is damaged or missing.

        Returns:
            The action recorded, or None when the index is healthy (or the gate said wait).
        """
        async with self._index_lock:  # a load waits for the periodic check in flight, and re-checks
            return await self._check_index()

    async def _ensure_recovery(self) -> VectorIndexRecovery | None:
        if self.recovery is not None or "restore_index" in self.disabled:
            return self.recovery
        data_dir, backup_dir, index_file, dimension = self._config_index
        assert data_dir is not None
        from ..vector import VectorIndexRecovery

        try:
            # Off the loop: making one settles an interrupted save and removes orphaned temp files.
            self.recovery = await off_loop(
                VectorIndexRecovery,
                data_dir,
                backup_dir or os.path.join(data_dir, "backups"),
                index_file=index_file,
                dimension=dimension,
            )
        except (ValueError, OSError) as err:
            self.disabled["restore_index"] = describe_error(err)
            self.ledger.record(
                "restore_index", "skipped", f"index healing is off: {describe_error(err)}"
            )
        return self.recovery

    async def _check_index(self) -> dict[str, Any] | None:
        recovery = await self._ensure_recovery()
        if recovery is None or not self.gate.ready(("restore_index", recovery.index_file)):
            return None  # held back: not even checked, so a known problem is not logged again
        try:
            health = await recovery.adiagnose()
        except Exception as err:  # an unreadable folder: report once per interval, not a crash
            why = f"cannot check the index: {describe_error(err)}"
            return await self._act(
                "restore_index",
                recovery.index_file,
                lambda: _fail(why),
                would="report that the index cannot be checked",
                report_only=True,
            )
        if health.ok:
            return None
        problem = health.problem or "unhealthy"
        return await self._act(
            "restore_index",
            recovery.index_file,
            lambda: self._restore(recovery, problem),
            would=f"restore the newest verified backup ({problem})",
        )

    async def aload_index(self) -> Any:
        """
        Load the live index for the host, healing it first when it is damaged or missing.

        The index gets the cheap check; a damaged one is restored (as the periodic check would,
        through the same gate, so ``on_index`` is called too), then the verified index is loaded.

        Returns:
            The faiss index.

        Raises:
            RecoveryError: When healing has no index to look after (no ``data_dir``).
            IndexCorruptionError: When the index is still unusable (no usable backup, a dry run,
                or a restore that is backing off).
        """
        from .._errors import RecoveryError

        await self.check_index()
        recovery = self.recovery
        if recovery is None:
            why = self.disabled.get("restore_index", "the healer has not started")
            raise RecoveryError(f"no vector index to load: {why}")
        return await recovery.aload_index()

    async def _restore(self, recovery: VectorIndexRecovery, problem: str) -> Outcome:
        data: dict[str, Any] = {"problem": problem}
        before = set(_aside(recovery))
        restored = await recovery.arestore_from_backup()
        skipped = [f"{b.name}: {b.problem}" for b in recovery.last_restore_skipped]
        if skipped:
            data["skipped_backups"] = skipped
        if restored:
            used = recovery.last_restored
            data["backup"] = used.name if used is not None else None
            how = f"restored from backup {data['backup']}"
        elif self.policy.rebuild_from is not None:
            await recovery.arebuild_index(self.policy.rebuild_from)
            how = "rebuilt from the configured vectors (no usable backup)"
            data["rebuilt_from"] = self.policy.rebuild_from
        elif not skipped:  # a service that never made a backup: nothing to do, and no alarm
            return "skipped", f"{problem}; there is no backup to restore from yet", data
        else:
            why = "; ".join(skipped)
            return "failed", f"{problem}; no usable backup to restore from ({why})", data
        kept = sorted(set(_aside(recovery)) - before)
        if kept:
            data["kept_aside"] = kept
        index = await recovery.aload_index()
        data["ntotal"] = int(getattr(index, "ntotal", 0))
        detail = f"{problem}; {how}" + (
            f"; damaged files kept as {', '.join(kept)}" if kept else ""
        )
        if self.policy.on_index is not None:
            try:
                await maybe_await(self.policy.on_index(index))
                data["host_notified"] = True
            except Exception as err:
                data["host_notified"] = False
                detail += f"; the host's on_index callback failed: {describe_error(err)}"
        return "done", detail, data

    # ------------------------------------------------------------------------ the watch

    async def _watch_loop(self) -> None:
        while True:
            checks = (
                self._check_memory,
                self._check_leak,
                self._check_breakers,
                self._check_queues,
            )
            for check in checks:
                try:
                    await check()
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # a bug or a broken seam: reported, rate-limited
                    why = describe_error(err)
                    await self._act(
                        "watch",
                        check.__name__.removeprefix("_check_"),
                        lambda why=why: _fail(why),  # type: ignore[misc]
                        would=f"report a failing check: {why}",
                        report_only=True,
                    )
            self.ticks += 1
            await self._sleep(self.policy.tick_s)

    # 2. memory pressure
    async def _check_memory(self) -> None:
        optimizer = self._optimizer
        if optimizer is None:
            return
        monitor = self._memory()
        reader = self.policy.memory_percent or (
            monitor.memory_percent if monitor is not None else optimizer.memory_percent
        )
        percent = float(await call_host(reader))
        if percent < self.critical:
            return

        async def clear() -> Outcome:
            report = await off_loop(optimizer.optimize_memory_usage, force=True)
            data = {
                k: report.get(k)
                for k in (
                    "freed_mb",
                    "caches_cleared",
                    "memory_percent_before",
                    "memory_percent_after",
                    "rss_before_mb",
                    "rss_after_mb",
                )
            }
            data["trigger_percent"] = percent
            return (
                "done",
                f"memory at {percent:.1f}% (critical {self.critical:g}%): cleared "
                f"{report['caches_cleared']} registered caches, freed {report['freed_mb']:.1f} MB",
                data,
            )

        await self._act(
            "clear_caches",
            "process",
            clear,
            would=(
                f"clear {len(optimizer.caches)} registered caches (memory at {percent:.1f}%, "
                f"critical {self.critical:g}%)"
            ),
        )

    # 3. leak suspected
    async def _check_leak(self) -> None:
        detector = self._leaks()
        if detector is None or not detector.detect_memory_leak():
            return
        key = ("leak_trace", "process")
        if self.gate.busy(key):
            return
        task = asyncio.get_running_loop().create_task(
            self._act(
                "leak_trace",
                "process",
                self._trace,
                would=(
                    f"trace allocations for {self.policy.leak_window_s:g} s "
                    f"({self.policy.leak_frames} frame) and report the sites that grew"
                ),
            ),
            name="safla_diag.heal.leak_trace",
        )
        self._side.add(task)
        task.add_done_callback(self._side.discard)
        await asyncio.sleep(0)  # let it pass the gate before the next tick looks

    async def _trace(self) -> Outcome:
        sites = await trace_growth(
            window_s=self.policy.leak_window_s,
            frames=self.policy.leak_frames,
            top=self.policy.leak_top,
            sleep=self._sleep,
        )
        if not sites:
            return "done", "no allocation site grew while tracing", {"sites": []}
        top = ", ".join(f"{s['site']} +{s['size_diff_kb']} KB" for s in sites[:3])
        return (
            "done",
            f"allocations that grew in {self.policy.leak_window_s:g} s: {top}",
            {"sites": sites, "window_s": self.policy.leak_window_s},
        )

    # 4. MCP breakers (events)
    async def _check_breakers(self) -> None:
        for n, conn in enumerate(self.policy.connections):
            for server, st in conn.status().items():
                state = str(st.get("state", "closed"))
                before = self._breakers.get((n, server), "closed")
                self._breakers[(n, server)] = state
                if state == before or state == "half_open":
                    continue
                if state == "open":
                    await self._event(
                        "breaker_open",
                        server,
                        f"MCP server {server} is down: calls fail fast for "
                        f"{float(st.get('retry_after_s') or 0):.0f} s; last error: "
                        f"{st.get('last_error') or 'unknown'}",
                        {k: st.get(k) for k in ("consecutive_failures", "retry_after_s")},
                    )
                elif state == "closed":
                    await self._event(
                        "breaker_closed",
                        server,
                        f"MCP server {server} is reachable again",
                        {},
                        level=logging.INFO,
                    )

    # 5. dead letters (events, rate-limited per queue)
    async def _check_queues(self) -> None:
        for n, queue in enumerate(self.policy.queues):
            stats = await queue.stats()
            dead = int(stats.dead)
            seen = self._dead.setdefault(n, dead)  # the count at start is the baseline
            if dead < seen:  # purged or requeued by someone: a new baseline
                self._dead[n] = dead
            if dead <= seen:
                continue
            key = ("dead_letters", stats.location)
            if not self.gate.enter(key):
                continue
            try:
                letters = await queue.adead_letters()
                errors = collections.Counter(
                    redact(str(d.get("last_error") or "unknown").strip().splitlines()[0][:200])
                    if str(d.get("last_error") or "").strip()
                    else "unknown"
                    for d in letters
                )
                top = errors.most_common(3)
                self._dead[n] = dead
                await self._event(
                    "dead_letters",
                    stats.location,
                    f"{dead} dead letters (+{dead - seen}); top errors: "
                    + "; ".join(f"{err} (x{count})" for err, count in top),
                    {"dead": dead, "new": dead - seen, "top_errors": [list(t) for t in top]},
                )
            finally:
                self.gate.leave(key, failed=False)


async def _fail(detail: str) -> Outcome:
    return "failed", detail, {}


def _aside(recovery: VectorIndexRecovery) -> list[str]:
    try:
        return sorted(
            p.name
            for p in Path(recovery.data_dir).glob("*.corrupt-*")  # the index and sidecars
        )
    except OSError:
        return []
