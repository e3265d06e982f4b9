"""HTML for the objects that had only a plain repr: MemoryProfiler, QueueStats, SaflaConfig."""

from __future__ import annotations

import time

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
