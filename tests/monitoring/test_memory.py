"""MemoryMonitor and the cgroup reader, on fake cgroup trees in tmp_path."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import MemoryMonitor, MemoryPressureError
from safla_diag.monitoring._cgroup import read_cgroup_memory, refresh_usage
from safla_diag.monitoring._memory import effective_memory

GB = 1024**3


def fake_v2(root: Path, *, path: str = "/app", limit: str = "1073741824", current: int = 0,
            inactive_file: int = 0, parent_limit: str | None = None) -> Path:  # fmt: skip
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/cgroup").write_text(f"0::{path}\n")
    base = root / "sys/fs/cgroup"
    d = base / path.strip("/")
    d.mkdir(parents=True, exist_ok=True)
    (d / "memory.max").write_text(limit + "\n")
    (d / "memory.current").write_text(f"{current}\n")
    (d / "memory.stat").write_text(f"anon 1\ninactive_file {inactive_file}\nactive_file 5\n")
    if parent_limit is not None:
        (base / "memory.max").write_text(parent_limit + "\n")
    return root


def fake_v1(root: Path, *, path: str = "/docker/abc", limit: int = 512 * 1024**2,
            usage: int = 0, inactive: int = 0, visible: bool = True) -> Path:  # fmt: skip
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/cgroup").write_text(
        f"12:pids:/x\n4:memory:{path}\n2:cpu,cpuacct:/x\n1:name=systemd:/x\n"
    )
    base = root / "sys/fs/cgroup/memory"
    d = base / path.strip("/") if visible else base
    d.mkdir(parents=True, exist_ok=True)
    (d / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (d / "memory.stat").write_text(f"cache 3\ntotal_inactive_file {inactive}\n")
    return root


def test_v2_limit_and_working_set(tmp_path: Path) -> None:
    """v2: memory.max is the limit; usage is memory.current minus inactive file cache."""
    cg = read_cgroup_memory(fake_v2(tmp_path, current=600 * 1024**2, inactive_file=100 * 1024**2))
    assert cg is not None
    assert (cg.version, cg.path, cg.limit_bytes) == (2, "/app", GB)
    assert cg.usage_bytes == 500 * 1024**2


def test_v2_max_means_no_limit(tmp_path: Path) -> None:
    """'max' everywhere: no limit."""
    assert read_cgroup_memory(fake_v2(tmp_path, limit="max")) is None


def test_v2_parent_limit_applies(tmp_path: Path) -> None:
    """A tighter limit on an ancestor wins over the process's own 'max'."""
    cg = read_cgroup_memory(fake_v2(tmp_path, limit="max", parent_limit=str(256 * 1024**2)))
    assert cg is not None
    assert cg.limit_bytes == 256 * 1024**2
    assert cg.path == "/"


def test_v1_limit(tmp_path: Path) -> None:
    """v1: the memory controller's limit_in_bytes and usage minus total_inactive_file."""
    cg = read_cgroup_memory(fake_v1(tmp_path, usage=300 * 1024**2, inactive=50 * 1024**2))
    assert cg is not None
    assert (cg.version, cg.limit_bytes, cg.usage_bytes) == (1, 512 * 1024**2, 250 * 1024**2)
    assert cg.percent == pytest.approx(250 / 512 * 100)


def test_v1_unlimited_is_no_limit(tmp_path: Path) -> None:
    """v1 reports 'no limit' as a huge number."""
    assert read_cgroup_memory(fake_v1(tmp_path, limit=9223372036854771712)) is None


def test_v1_path_not_visible_in_container_uses_mount_root(tmp_path: Path) -> None:
    """Inside a container the host path is not mounted; the mount root is our cgroup."""
    cg = read_cgroup_memory(fake_v1(tmp_path, visible=False))
    assert cg is not None
    assert cg.limit_bytes == 512 * 1024**2


def test_usage_is_reread_while_the_limit_is_cached(tmp_path: Path) -> None:
    """Within cgroup_refresh_s the limit is cached but the usage is read afresh."""
    root = fake_v2(tmp_path, current=100 * 1024**2)
    now = [0.0]
    mon = MemoryMonitor(cgroup_root=root, clock=lambda: now[0])
    first = mon.cgroup()
    assert first is not None and first.usage_bytes == 100 * 1024**2
    (root / "sys/fs/cgroup/app/memory.current").write_text(f"{700 * 1024**2}\n")
    (root / "sys/fs/cgroup/app/memory.max").write_text(f"{2 * GB}\n")
    again = mon.cgroup()
    assert again is not None
    assert (again.limit_bytes, again.usage_bytes) == (GB, 700 * 1024**2)
    now[0] += 61
    later = mon.cgroup()
    assert later is not None and later.limit_bytes == 2 * GB


@pytest.mark.parametrize("version", [1, 2])
def test_refresh_usage_rereads_the_working_set(tmp_path: Path, version: int) -> None:
    """refresh_usage() rereads usage minus inactive file cache, keeping version, path and limit."""
    MB = 1024**2
    if version == 2:
        root = fake_v2(tmp_path, current=100 * MB)
        usage, stat = root / "sys/fs/cgroup/app/memory.current", "inactive_file"
        folder = root / "sys/fs/cgroup/app"
    else:
        root = fake_v1(tmp_path, usage=100 * MB)
        folder = root / "sys/fs/cgroup/memory/docker/abc"
        usage, stat = folder / "memory.usage_in_bytes", "total_inactive_file"
    cg = read_cgroup_memory(root)
    assert cg is not None and cg.usage_bytes == 100 * MB
    usage.write_text(f"{400 * MB}\n")
    (folder / "memory.stat").write_text(f"{stat} {150 * MB}\n")
    fresh = refresh_usage(cg, root)
    assert (fresh.version, fresh.path, fresh.limit_bytes) == (cg.version, cg.path, cg.limit_bytes)
    assert fresh.usage_bytes == 250 * MB
    usage.unlink()
    assert refresh_usage(cg, root).usage_bytes is None


def test_no_cgroup_files(tmp_path: Path) -> None:
    """Nothing readable: no limit, no error."""
    assert read_cgroup_memory(tmp_path) is None


@given(st.text(max_size=300))
def test_garbage_proc_cgroup_never_raises(text: str) -> None:
    """Whatever /proc/self/cgroup and memory.max hold, the reader returns a result or None."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "proc/self").mkdir(parents=True)
        (root / "proc/self/cgroup").write_text(text)
        (root / "sys/fs/cgroup").mkdir(parents=True)
        (root / "sys/fs/cgroup/memory.max").write_text(text)
        cg = read_cgroup_memory(root)
        assert cg is None or cg.limit_bytes > 0


def test_effective_memory_prefers_a_smaller_cgroup_limit(tmp_path: Path) -> None:
    """A cgroup limit below the host's memory is the total."""
    cg = read_cgroup_memory(fake_v2(tmp_path, current=GB * 95 // 100))
    total, available, percent = effective_memory(cg, 64 * GB, 60 * GB)
    assert total == GB
    assert percent == pytest.approx(95.0)
    assert available == GB - GB * 95 // 100


def test_container_at_95_percent_is_critical_with_host_to_spare(tmp_path: Path) -> None:
    """A container at 97% of its limit is critical though the host has memory to spare."""
    root = fake_v2(tmp_path, limit=str(GB), current=GB * 97 // 100)
    mon = MemoryMonitor(cgroup_root=root)
    info = mon.get_memory_info()
    assert info["system_total"] == 1024.0
    assert info["cgroup_limit"] == 1024.0
    assert info["memory_percent"] == pytest.approx(97.0)
    with pytest.raises(MemoryPressureError):
        mon.check_memory_usage()
    assert mon.level == "critical"


def test_guide_keys_in_mb(tmp_path: Path) -> None:
    """get_memory_info has the guide's keys, sizes in MB."""
    info = MemoryMonitor(cgroup_root=tmp_path).get_memory_info()
    rss = psutil.Process().memory_info().rss / 1024**2
    for key in ("process_rss", "process_vms", "process_percent", "system_total",
                "system_available", "system_percent"):  # fmt: skip
        assert isinstance(info[key], float)
    assert info["process_rss"] == pytest.approx(rss, rel=0.2)
    assert info["cgroup_limit"] is None


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """Counts full (generation 2) collections while the test runs."""
    seen: list[int] = []

    def cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(cb)
    yield seen
    gc.callbacks.remove(cb)


def _limit_for(percent: float) -> str:
    """A cgroup limit that puts this process's RSS at about ``percent``."""
    rss = psutil.Process().memory_info().rss
    return str(int(rss * 100 / percent))


def test_warning_level_logs_and_never_collects(
    tmp_path: Path, full_collections: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """Between threshold and critical: a warning, and no gc.collect."""
    root = fake_v2(tmp_path, limit=_limit_for(90), current=0)
    mon = MemoryMonitor(cgroup_root=root)
    with caplog.at_level(logging.WARNING, logger="safla_diag.monitoring"):
        percent = mon.check_memory_usage()
    assert 85 < percent < 95
    assert mon.level == "warning"
    assert full_collections == []
    assert any("high memory usage" in r.getMessage() for r in caplog.records)


def test_critical_collects_at_most_once_per_interval(
    tmp_path: Path, full_collections: list[int]
) -> None:
    """Critical: one gc.collect, then none until gc_interval_s passed on the clock."""
    root = fake_v2(tmp_path, limit=_limit_for(99), current=0)
    now = [1000.0]
    mon = MemoryMonitor(cgroup_root=root, clock=lambda: now[0], gc_interval_s=60)
    for _ in range(3):
        with pytest.raises(MemoryPressureError, match="critical memory usage"):
            mon.check_memory_usage()
    assert len(full_collections) == 1
    now[0] += 59
    with pytest.raises(MemoryPressureError):
        mon.check_memory_usage()
    assert len(full_collections) == 1
    now[0] += 1
    with pytest.raises(MemoryPressureError):
        mon.check_memory_usage()
    assert len(full_collections) == 2
    assert mon.gc_runs == 2


def test_ok_level(tmp_path: Path) -> None:
    """Far below the threshold: ok, no warning."""
    mon = MemoryMonitor(cgroup_root=tmp_path)
    assert mon.check_memory_usage() < 85
    assert mon.level == "ok"


def test_repr_is_short(tmp_path: Path) -> None:
    """The repr shows the last percent rounded, not a float's seventeen digits."""
    mon = MemoryMonitor(cgroup_root=tmp_path)
    assert "last=None" in repr(mon)
    pct = mon.check_memory_usage()
    assert f"last={pct:.1f}% level=ok>" in repr(mon)
    assert len(repr(mon)) < 80


@pytest.mark.parametrize(("warn", "crit"), [(0, 95), (90, 80), (85, 101), (-1, 50)])
def test_bad_thresholds(warn: float, crit: float) -> None:
    """Thresholds must satisfy 0 < threshold <= critical <= 100."""
    with pytest.raises(ValueError):
        MemoryMonitor(warn, crit)


def test_tick_has_rss_cpu_and_gc_counts(tmp_path: Path) -> None:
    """sample() is the cheap tick: RSS, CPU percent, GC counts."""
    tick = MemoryMonitor(cgroup_root=tmp_path).sample()
    assert tick["rss"] > 0
    assert tick["cpu_percent"] >= 0
    assert len(tick["gc_counts"]) == 3


def test_monitor_of_a_child_process(tmp_path: Path) -> None:
    """The monitor watches any psutil.Process, e.g. a child's."""
    import subprocess
    import sys

    code = "import sys, time; print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        mon = MemoryMonitor(process=psutil.Process(child.pid), cgroup_root=tmp_path)
        assert mon.get_memory_info()["process_rss"] > 1
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
