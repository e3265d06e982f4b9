"""VectorMemoryOptimizer: weakly held caches, collection by generation, RSS report."""

from __future__ import annotations

import functools
import gc
import logging
from pathlib import Path

import pytest

from safla_diag import VectorMemoryOptimizer


class Cache(dict[str, bytes]):
    """A dict subclass: unlike dict itself, it can be weakly referenced."""


def test_registering_never_keeps_a_cache_alive(tmp_path: Path) -> None:
    """A registered cache that the host drops is collected and forgotten."""
    opt = VectorMemoryOptimizer(cgroup_root=tmp_path)
    cache = Cache(a=b"x")
    opt.register_cache(cache)
    assert opt.caches == [cache]
    del cache
    gc.collect()
    assert opt.caches == []


def test_forced_optimization_clears_caches_and_reports(tmp_path: Path) -> None:
    """force=True collects by generation, clears caches and reports RSS before and after."""
    opt = VectorMemoryOptimizer(cgroup_root=tmp_path)
    cache = Cache({str(i): bytes(1000) for i in range(100)})
    lru = functools.lru_cache(maxsize=None)(lambda x: x * 2)
    lru(3)
    opt.register_cache(cache)
    opt.register_cache(lru)
    report = opt.optimize_memory_usage(force=True)
    assert report["action"] == "gc+caches"
    assert report["caches_cleared"] == 2
    assert cache == {}
    assert lru.cache_info().currsize == 0
    assert set(report["gc_collected"]) == {"0", "1", "2"}
    assert report["rss_before_mb"] > 0 and report["rss_after_mb"] > 0
    assert report["freed_mb"] == pytest.approx(report["rss_before_mb"] - report["rss_after_mb"])


def test_below_the_limit_nothing_happens(tmp_path: Path) -> None:
    """Under max_memory_percent the optimizer does nothing and clears nothing."""
    opt = VectorMemoryOptimizer(100, cgroup_root=tmp_path)
    cache = Cache(a=b"x")
    opt.register_cache(cache)
    report = opt.optimize_memory_usage()
    assert report["action"] == "none"
    assert cache == {"a": b"x"}


def test_over_a_cgroup_limit_it_acts(tmp_path: Path) -> None:
    """The limit is the cgroup's when one is set: over it, the optimizer collects and clears."""
    import psutil

    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    limit = psutil.Process().memory_info().rss  # the process is at ~100% of it
    (tmp_path / "sys/fs/cgroup/memory.max").write_text(f"{limit}\n")
    opt = VectorMemoryOptimizer(50, cgroup_root=tmp_path, trim=False)
    cache = Cache(a=b"x")
    opt.register_cache(cache)
    report = opt.optimize_memory_usage()
    assert report["memory_percent_before"] > 50
    assert report["action"] == "gc+caches"
    assert cache == {}


def test_plain_dict_needs_weak_false(tmp_path: Path) -> None:
    """A plain dict cannot be weakly referenced: a clear TypeError, or weak=False holds it."""
    opt = VectorMemoryOptimizer(cgroup_root=tmp_path)
    d = {"a": 1}
    with pytest.raises(TypeError, match="weak=False"):
        opt.register_cache(d)
    opt.register_cache(d, weak=False)
    assert opt.clear_caches() == 1
    assert d == {}
    opt.unregister_cache(d)
    assert opt.caches == []


def test_object_without_clear_is_refused(tmp_path: Path) -> None:
    """Only things with clear() (or cache_clear()) are caches."""
    with pytest.raises(TypeError, match="clear"):
        VectorMemoryOptimizer(cgroup_root=tmp_path).register_cache(object())


def test_failing_clear_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache whose clear() fails does not stop the others; its error is logged redacted."""

    class Bad:
        def clear(self) -> None:
            raise RuntimeError("cannot reach redis://:hunter2@cache")

    bad, good = Bad(), Cache(a=b"1")
    opt = VectorMemoryOptimizer(cgroup_root=tmp_path)
    opt.register_cache(bad)
    opt.register_cache(good)
    with caplog.at_level(logging.WARNING, logger="safla_diag.monitoring"):
        assert opt.clear_caches() == 1
    assert good == {}
    [failed] = caplog.records
    assert failed.getMessage().endswith("RuntimeError: cannot reach redis://:***@cache")
    assert failed.exc_info is None
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("pct", [0, -5, 101])
def test_bad_limit(pct: float) -> None:
    """max_memory_percent is in (0, 100]."""
    with pytest.raises(ValueError):
        VectorMemoryOptimizer(pct)
