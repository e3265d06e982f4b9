"""HTML for the objects that had only a plain repr: MemoryProfiler, QueueStats, SaflaConfig."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from safla_diag import MemoryProfiler, SaflaConfig


def test_memory_profiler_html() -> None:
    """MemoryProfiler shows its state and its snapshots with readable times."""
    mp = MemoryProfiler()
    assert "start_tracing()" in mp._repr_html_()
    with mp:
        mp.take_snapshot("after-load")
    page = mp._repr_html_()
    assert "after-load" in page and "UTC" in page and "ago" in page


def test_queue_stats_html_shows_ages() -> None:
    """QueueStats shows ages and due times, not epoch numbers."""
    from safla_diag.mcp_retry._model import QueueStats

    now = time.time()
    stats = QueueStats(
        pending=3,
        in_flight=1,
        dead=2,
        oldest_created_at=now - 7200,
        next_due_at=now + 600,
        location="/var/lib/safla/mcp_tasks.db",
        measured_at=now,
    )
    page = stats._repr_html_()
    assert "2.0h ago" in page and "in 10.0min" in page
    assert str(int(now))[:6] not in page


def test_config_html_is_redacted() -> None:
    """SaflaConfig's HTML lists every key and never the password."""
    cfg = SaflaConfig.from_mapping(
        {
            "database_url": "postgresql://app:pw-in-url-77@db:5432/safla",
            "redis_url": "redis://127.0.0.1:6379/0",
            "vector_dimension": 384,
            "mcp_servers": ["http://127.0.0.1:8080/mcp"],
        }
    )
    page = cfg._repr_html_()
    assert "vector_dimension" in page and "384" in page
    assert "pw-in-url-77" not in page


def test_memory_monitor_html_has_a_gauge_with_thresholds() -> None:
    """MemoryMonitor shows its level, the memory it watches and a gauge with both thresholds."""
    from safla_diag import MemoryMonitor

    page = MemoryMonitor(threshold_percent=70, critical_percent=90)._repr_html_()
    assert 'class="safla-gauge"' in page and "warn 70%" in page and "critical 90%" in page
    assert "process RSS MB" in page


def test_optimizer_html_lists_its_caches() -> None:
    """VectorMemoryOptimizer shows its limit and the type of each registered cache."""
    from safla_diag import VectorMemoryOptimizer

    class EmbeddingCache(dict[str, int]):
        pass

    opt = VectorMemoryOptimizer(max_memory_percent=75)
    cache = EmbeddingCache()
    opt.register_cache(cache)
    page = opt._repr_html_()
    assert "max 75%" in page and "EmbeddingCache" in page


def test_every_monitor_and_report_class_has_html() -> None:
    """The monitors, reports and config a notebook user meets all render as HTML."""
    import safla_diag as sd

    for name in (
        "PerformanceMonitor",
        "MemoryMonitor",
        "MemoryLeakDetector",
        "LoopMonitor",
        "VectorMemoryOptimizer",
        "MemoryProfiler",
        "SaflaConfig",
        "ProfileReport",
        "LeakAnalysis",
        "MemoryGrowth",
        "DiagnosisReport",
        "ServiceReport",
        "DependencyReport",
        "LogReport",
        "IndexHealth",
        "BackupInfo",
    ):
        assert callable(getattr(getattr(sd, name), "_repr_html_", None)), name


def test_cpu_profiler_html_shows_its_last_report() -> None:
    """Before a run: a note; after one: the settings and the last report, top rows only."""
    from safla_diag import CPUProfiler

    profiler = CPUProfiler(top=30, label="batch")
    assert "no report yet" in profiler._repr_html_()

    @profiler.profile_function
    def work_for_the_picture(n: int) -> int:
        import difflib
        import textwrap

        a = " ".join(str(i) for i in range(n))
        diff = list(difflib.unified_diff(a.split()[:300], a.replace("1", "x").split()[:300]))
        return len(diff) + len(textwrap.fill(a[:3000]))

    work_for_the_picture(2000)
    assert profiler.last_report is not None and len(profiler.last_report) > 10
    page = profiler._repr_html_()
    assert "work_for_the_picture" in page and "batch" in page
    assert "no report yet" not in page
    assert "showing 10 of" in page  # short: the top ten, whatever the profiler's own top is


@pytest.mark.anyio
async def test_connection_recovery_html_shows_breakers_without_secrets() -> None:
    """A server whose connects fail: its breaker, failures and last error, the password masked."""
    from safla_diag import MCPConnectionRecovery, ServerUnavailable

    secret = "tok-html-55"

    async def connect(cfg: object) -> object:
        raise ConnectionRefusedError(f"refused by http://u:{secret}@127.0.0.1:1/mcp")

    async def nap(_: float) -> None:
        return None

    rec = MCPConnectionRecovery(max_retries=2, retry_delay=0, connect=connect, sleep=nap)
    assert "no server seen yet" in rec._repr_html_()
    with pytest.raises(ServerUnavailable):
        await rec.recover_connection("search", {})
    page = rec._repr_html_()
    assert "search" in page and "refused by" in page
    assert secret not in page
    assert rec.status()["search"]["consecutive_failures"] >= 1


@pytest.mark.anyio
async def test_task_recovery_html_shows_the_last_counts_without_querying(tmp_path: Path) -> None:
    """Counts are the last stats() awaited; rendering never reads the queue (it may be busy)."""
    from safla_diag import MCPTaskRecovery

    async def execute(task: dict[str, object]) -> None:
        return None

    rec = MCPTaskRecovery(tmp_path / "q.db", execute=execute)
    try:
        assert "no counts yet" in rec._repr_html_()
        await rec.save_failed_task({"id": "t1", "tool": "x"})
        stats = await rec.stats()
        assert stats.pending == 1
        await rec.save_failed_task({"id": "t2", "tool": "x"})
        page = rec._repr_html_()
        assert "q.db" in page and "no counts yet" not in page
        assert "<td" in page and ">1<" in page and ">2<" not in page  # the counts as last read
    finally:
        await rec.aclose()


@pytest.mark.anyio
async def test_diagnostics_html_shows_the_last_report_and_monitors() -> None:
    """Before doctor: a note; inside async with, the monitors' levels; after: the report."""
    from safla_diag import Diagnostics

    diag = Diagnostics(
        {"database_url": "postgresql://app:pw-diag-html-3@127.0.0.1:1/x"}, sections=["platform"]
    )
    assert diag.last_report is None
    assert "no report yet" in diag._repr_html_() and "not started" in diag._repr_html_()
    async with diag:
        running = diag._repr_html_()
        assert "memory monitor" in running and "not started" not in running
        report = await diag.adoctor()
    assert diag.last_report is report
    page = diag._repr_html_()
    assert "platform" in page and "no report yet" not in page
    assert "pw-diag-html-3" not in page + running
