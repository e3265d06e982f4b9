"""
The public API as a user writes it, type-checked (never run) by ``test_api.py``.

Each ``assert_type`` pins a promise: decorators keep the signature and the coroutine-ness of what
they wrap, twins return the same type (the ``a`` one awaited), reports render to the same types,
and wrong arguments are type errors (each ``# type: ignore[...]`` must be needed:
``--warn-unused-ignores``). Only ``from safla_diag import ...``, as the docs write it.
"""

from __future__ import annotations

from typing import Any, assert_type

from safla_diag import (
    BackupInfo,
    CgroupMemory,
    CPUProfiler,
    DependencyReport,
    DiagnosisReport,
    Diagnostics,
    Finding,
    GCCounts,
    GuideImport,
    IndexHealth,
    LeakAnalysis,
    LogReport,
    LogTemplate,
    LoopMonitor,
    LoopStats,
    MCPTaskRecovery,
    MemoryGrowth,
    MemoryInfo,
    MemoryLeakDetector,
    MemoryMonitor,
    MemoryOptimization,
    MemoryProfiler,
    PerformanceMonitor,
    PerformanceStats,
    ProfileReport,
    ProfileRow,
    QueueStats,
    SaflaDiagError,
    SectionResult,
    ServiceReport,
    SystemMemoryInfo,
    VectorIndexRecovery,
    VectorMemoryOptimizer,
    aanalyze_logs,
    acheck_external_services,
    analyze_logs,
    check_dependencies,
    check_external_services,
    mine_templates,
    profile,
    timed,
)


# -- decorators keep signatures ------------------------------------------------------------------
class Recorder:
    def record_request(self, response_time: float, success: bool = True) -> None:
        pass


@profile
def bare(x: int, *, name: str = "") -> int:
    return x


@profile(top=5, sort="tottime")
def configured(x: int) -> str:
    return str(x)


@profile
async def bare_async(x: int) -> dict[str, int]:
    return {"x": x}


@timed(Recorder())
def timed_sync(x: int, y: float = 1.0) -> float:
    return x * y


@timed(PerformanceMonitor())
async def timed_async(x: int) -> bytes:
    return bytes(x)


profiler = CPUProfiler()


@profiler.profile_function
async def profiled_async(x: int) -> list[int]:
    return [x]


@profiler.profile_function
def profiled_sync(x: int, *args: str) -> tuple[str, ...]:
    return args


assert_type(bare(1, name="a"), int)
assert_type(configured(2), str)
assert_type(timed_sync(1, 2.0), float)
assert_type(profiled_sync(1, "a", "b"), tuple[str, ...])


async def awaited() -> None:
    assert_type(await bare_async(1), dict[str, int])
    assert_type(await timed_async(3), bytes)
    assert_type(await profiled_async(4), list[int])


bare("not an int")  # type: ignore[arg-type]
timed_sync(1, y="no")  # type: ignore[arg-type]
configured(1, 2)  # type: ignore[call-arg]

# -- profilers and their reports -----------------------------------------------------------------
assert_type(profiler.last_report, ProfileReport | None)
assert_type(profiler.stop_profiling(), str | None)

with profile(top=3) as session:
    pass
assert_type(session.report, ProfileReport | None)

with MemoryProfiler() as memory:
    pass
growth = memory.analyze_memory_growth()
assert_type(growth, MemoryGrowth)
assert_type(growth["top_consumers"], Any)  # still a dict
system = memory.get_system_memory_info()
assert_type(system, SystemMemoryInfo)
assert_type(system["rss"], float)
assert_type(system["traced_peak"], float | None)
assert_type(system["gc_stats"], GCCounts)
assert_type(system["gc_stats"]["generation_2"], int)
system["rss_mb"]  # type: ignore[typeddict-item]

# -- the stats dicts are TypedDicts: each key typed, a misspelt key an error -----------------------
perf = PerformanceMonitor().get_performance_stats()
assert_type(perf, PerformanceStats)
assert_type(perf["p95_response_time"], float)
assert_type(perf["total_requests"], int)
perf["p99_response_time"]  # type: ignore[typeddict-item]
loop_stats = LoopMonitor().stats()
assert_type(loop_stats, LoopStats)
assert_type(loop_stats["lag_p99_s"], float)
assert_type(loop_stats["running"], bool)
monitor = MemoryMonitor()
info = monitor.get_memory_info()
assert_type(info, MemoryInfo)
assert_type(info["process_rss"], float)
assert_type(info["cgroup_limit"], float | None)
assert_type(monitor.cgroup(), CgroupMemory | None)

detector = MemoryLeakDetector()
assert_type(detector.add_sample(100.0), bool)
assert_type(detector.detect_memory_leak(), bool)
analysis = detector.analyze()
assert_type(analysis, LeakAnalysis)
assert_type(VectorMemoryOptimizer().optimize_memory_usage(), MemoryOptimization)

# -- twins: the a-prefixed one is the same call, awaited -------------------------------------------
assert_type(check_external_services({"db": "postgresql://127.0.0.1/x"}), ServiceReport)
assert_type(check_dependencies(["faiss-cpu"]), DependencyReport)
assert_type(analyze_logs(["/var/log/app.log"]), LogReport)
assert_type(mine_templates(["task 1 failed", "task 2 failed"]), list[str])

diagnostics = Diagnostics()
assert_type(diagnostics.doctor(), DiagnosisReport)
assert_type(diagnostics.doctor().findings, list[Finding])
assert_type(diagnostics.last_report, DiagnosisReport | None)
assert_type(diagnostics.doctor().section("host"), SectionResult)

recovery = VectorIndexRecovery("/data", "/backups")
assert_type(recovery.diagnose(), IndexHealth)
assert_type(recovery.list_backups(), list[BackupInfo])
assert_type(recovery.restore_from_backup(), bool)


# -- result records: importable from safla_diag, for annotations ----------------------------------
assert_type(ProfileReport.load("run.pstats").top(5), list[ProfileRow])
assert_type(analyze_logs(["/var/log/app.log"]).templates, tuple[LogTemplate, ...])


async def execute(task: dict[str, Any]) -> None:
    pass


tasks = MCPTaskRecovery(execute=execute)


async def queue_records() -> None:
    assert_type(await tasks.stats(), QueueStats)
    assert_type(await tasks.import_guide_file("mcp_tasks.json"), GuideImport)


async def twins() -> None:
    assert_type(await acheck_external_services({"db": "postgresql://127.0.0.1/x"}), ServiceReport)
    assert_type(await diagnostics.adoctor(), DiagnosisReport)
    assert_type(await aanalyze_logs(["/var/log/app.log"]), LogReport)
    assert_type(await recovery.adiagnose(), IndexHealth)
    assert_type(await recovery.alist_backups(), list[BackupInfo])
    assert_type(await recovery.arestore_from_backup(), bool)
    assert_type(await aanalyze_logs(["/var/log/app.log"], since="1h"), LogReport)


# -- every report renders the same way -------------------------------------------------------------
def render(
    report: ProfileReport | LeakAnalysis | MemoryGrowth | MemoryOptimization,
) -> tuple[dict[str, Any], str, str, str]:
    return (
        report.to_dict(),
        report.to_json(indent=None, sort_keys=True),
        report.to_text(),
        report._repr_html_(),
    )


# -- errors: one root to catch -----------------------------------------------------------------
try:
    diagnostics.doctor()
except SaflaDiagError as err:
    assert_type(err, SaflaDiagError)
