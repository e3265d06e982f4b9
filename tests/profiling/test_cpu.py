"""CPUProfiler and profile: real profiling of real code, asserting on functions and call counts."""

from __future__ import annotations

import asyncio
import cProfile
import inspect
import logging
import pstats
import sys
import threading
from pathlib import Path

import pytest

from safla_diag import CPUProfiler, ProfileReport, profile
from safla_diag.profiling import _cpu
from safla_diag.profiling._cpu import ProfileSession

from ._threads import run_in_threads
from .workload import Boom, async_leaf, branch, leaf, recurse, work_a, work_b

pytestmark = pytest.mark.anyio


def _collect() -> tuple[list[ProfileReport], CPUProfiler]:
    reports: list[ProfileReport] = []
    return reports, CPUProfiler(on_report=reports.append)


def test_profile_function_reports_functions_and_call_counts() -> None:
    """A decorated call gives a report with the functions it ran and how often."""
    prof = CPUProfiler()
    wrapped = prof.profile_function(branch)
    assert wrapped(30, 4) == [leaf(30)] * 4
    report = prof.last_report
    assert report is not None
    assert report.label == "branch"
    assert report["branch"].ncalls == 1
    assert report["leaf"].ncalls == 4
    assert report["leaf"].file.endswith("workload.py")
    assert report["branch"].cumtime >= report["leaf"].cumtime
    assert report.wall_time is not None and report.wall_time > 0


def test_our_wrappers_are_not_in_the_report() -> None:
    """The report shows the user's functions, not our wrapper or the profiler's disable()."""
    prof = CPUProfiler()
    prof.profile_function(branch)(5, 1)
    report = prof.last_report
    assert report is not None
    names = {r.function for r in report.rows}
    assert "sync_inner" not in names
    assert not any("disable" in n for n in names)
    assert not any(r.file == _cpu.__file__ for r in report.rows)


def test_manual_spans_show_only_the_users_calls() -> None:
    """A `with` block or start/stop span: no rows for our own bookkeeping calls."""
    with profile() as p:
        leaf(3)
    assert p.report is not None
    assert {r.function for r in p.report.rows} == {
        "leaf",
        "<genexpr>",
        "<built-in method builtins.sum>",
    }
    prof = CPUProfiler()
    prof.start_profiling()
    work_a()
    prof.stop_profiling()
    assert prof.last_report is not None
    assert {r.function for r in prof.last_report.rows} == {
        "work_a",
        "leaf",
        "<genexpr>",
        "<built-in method builtins.sum>",
    }


def test_nested_profiled_calls_go_to_the_outermost_profile() -> None:
    """A profiled function calling another profiled function: one report, the outer one."""
    outer_prof, inner_prof = CPUProfiler(), CPUProfiler()
    inner = inner_prof.profile_function(branch)

    @outer_prof.profile_function
    def outer() -> int:
        inner(10, 2)
        inner(10, 3)
        return 1

    assert outer() == 1
    report = outer_prof.last_report
    assert report is not None
    assert report["outer"].ncalls == 1
    assert report["branch"].ncalls == 2
    assert report["leaf"].ncalls == 5
    assert inner_prof.last_report is None  # attributed to the outer span, no second profiler


def test_recursive_profiled_function_is_one_session() -> None:
    """Recursion through a profiled function counts calls as pstats does (total/primitive)."""
    prof = CPUProfiler()
    rec = prof.profile_function(recurse)
    # Route recursion through the wrapper, as a decorated recursive function does.
    original = recurse.__globals__["recurse"]
    recurse.__globals__["recurse"] = rec
    try:
        assert rec(5) == 5
    finally:
        recurse.__globals__["recurse"] = original
    report = prof.last_report
    assert report is not None
    row = report["recurse"]
    assert (row.ncalls, row.primitive_calls) == (6, 1)


def test_bare_and_configured_profile_decorators() -> None:
    """@profile works bare and with options; both keep the function working."""

    @profile
    def bare(n: int) -> int:
        return leaf(n)

    session = profile(top=3, sort="ncalls", label="unused for functions")

    @session
    def configured() -> list[int]:
        return branch(5, 7)

    assert bare(10) == leaf(10)
    assert configured() == [leaf(5)] * 7
    report = session.report
    assert report is not None
    assert report.sort == "ncalls"
    assert report.top_n == 3
    assert report.label.endswith("<locals>.configured")
    assert report.top(1)[0].function in {"leaf", "<genexpr>"}
    assert report["leaf"].ncalls == 7


def test_profile_context_manager() -> None:
    """`with profile() as p` profiles the block; p.report has its functions."""
    with profile(label="block", top=5) as p:
        branch(8, 3)
        work_a()
    report = p.report
    assert report is not None
    assert report.label == "block"
    assert report["branch"].ncalls == 1
    assert report["work_a"].ncalls == 1
    assert report["leaf"].ncalls == 4


def test_raising_function_still_reports_and_reraises_unchanged() -> None:
    """The exception propagates as the same object; the report is still produced."""
    reports, prof = _collect()
    err = Boom("x")

    @prof.profile_function
    def fails() -> None:
        leaf(10)
        raise err

    with pytest.raises(Boom) as info:
        fails()
    assert info.value is err
    assert len(reports) == 1
    assert reports[0]["fails"].ncalls == 1
    assert reports[0]["leaf"].ncalls == 1


def test_raising_block_still_reports() -> None:
    """A `with profile()` block that raises still yields a report."""

    def block() -> ProfileSession:
        with profile() as p:
            holder.append(p)
            work_b()
            raise Boom

    holder: list[ProfileSession] = []
    with pytest.raises(Boom):
        block()
    p = holder[0]
    assert p.report is not None
    assert p.report["work_b"].ncalls == 1


def test_reports_go_to_the_logger_and_nothing_is_printed(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each report is logged at INFO on safla_diag.profiling; stdout and stderr stay empty."""
    prof = CPUProfiler(top=3)
    with caplog.at_level(logging.INFO, logger="safla_diag.profiling"):
        prof.profile_function(branch)(5, 2)
    records = [r for r in caplog.records if r.name == "safla_diag.profiling"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert "Profile of branch" in text
    assert "leaf" in text
    assert getattr(records[0], "safla_diag.profile") == "branch"
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_log_level_none_and_disabled_logger_build_no_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no consumer the report is built lazily, on first access to last_report."""
    prof = CPUProfiler(log_level=None)
    with caplog.at_level(logging.DEBUG, logger="safla_diag.profiling"):
        prof.profile_function(leaf)(5)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert prof._last is not None and prof._cached is None  # not built yet
    report = prof.last_report
    assert report is not None and report["leaf"].ncalls == 1
    assert prof.last_report is report  # built once, cached


def test_labels_are_redacted_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A label holding a URL with a password is logged without the password."""
    prof = CPUProfiler(label="load postgresql://app:hunter2@db/x")
    with caplog.at_level(logging.INFO, logger="safla_diag.profiling"):
        prof.start_profiling()
        leaf(3)
        prof.stop_profiling()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "load postgresql://" in logged
    assert "hunter2" not in logged


def test_on_report_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A failing on_report callback never breaks the profiled call."""

    def broken(report: ProfileReport) -> None:
        raise RuntimeError("callback bug")

    wrapped = profile(on_report=broken)(leaf)
    with caplog.at_level(logging.WARNING, logger="safla_diag.profiling"):
        assert wrapped(4) == leaf(4)
    assert any("on_report callback failed" in r.getMessage() for r in caplog.records)


def test_a_callback_failing_every_call_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """A callback that fails on each call logs one WARNING, the repeats at DEBUG, not a flood."""

    def broken(report: ProfileReport) -> None:
        raise RuntimeError("callback bug")

    wrapped = profile(on_report=broken, save_to="/nonexistent-dir/x.prof")(leaf)
    with caplog.at_level(logging.DEBUG, logger="safla_diag.profiling"):
        for _ in range(20):
            wrapped(2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum("on_report callback failed" in m for m in warnings) == 1
    assert sum("could not save the profile" in m for m in warnings) == 1
    assert sum("on_report callback failed" in m for m in debug) == 19


def test_throttle_warns_again_after_its_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the interval the next failure is a WARNING again, saying how many were quieted."""
    now = [0.0]
    throttle = _cpu._Throttle(60.0, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="safla_diag.profiling"):
        for t in (0.0, 1.0, 2.0, 59.0, 60.0, 61.0):
            now[0] = t
            throttle.log("failed: %s", "x")
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == [logging.WARNING] + [logging.DEBUG] * 3 + [
        logging.WARNING,
        logging.DEBUG,
    ]
    assert levels[4][1] == "failed: x (and 3 more times since the last warning)"


def test_save_to_writes_a_pstats_file(tmp_path: Path) -> None:
    """save_to rewrites a pstats file with each report; pstats opens it."""
    path = tmp_path / "out.prof"
    wrapped = profile(save_to=path)(branch)
    wrapped(4, 2)
    stats = pstats.Stats(str(path))
    by_name = {key[2]: value for key, value in stats.stats.items()}  # type: ignore[attr-defined]
    assert by_name["leaf"][1] == 2
    wrapped(4, 5)
    stats = pstats.Stats(str(path))
    by_name = {key[2]: value for key, value in stats.stats.items()}  # type: ignore[attr-defined]
    assert by_name["leaf"][1] == 5  # the latest report, not a sum


def test_save_to_unwritable_path_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that cannot be written is a warning, not an exception in the host's code."""
    wrapped = profile(save_to=tmp_path / "token=hunter2" / "out.prof")(leaf)
    with caplog.at_level(logging.WARNING, logger="safla_diag.profiling"):
        assert wrapped(3) == leaf(3)
    assert any("could not save" in r.getMessage() for r in caplog.records)
    assert "hunter2" not in caplog.text  # the error names the path: redacted


def test_accumulate_merges_every_span() -> None:
    """accumulate=True keeps total_report: calls summed over spans."""
    prof = CPUProfiler(accumulate=True)
    wrapped = prof.profile_function(branch)
    for times in (1, 2, 3):
        wrapped(5, times)
    total = prof.total_report
    assert total is not None
    assert total.sessions == 3
    assert total["branch"].ncalls == 3
    assert total["leaf"].ncalls == 6
    last = prof.last_report
    assert last is not None and last["leaf"].ncalls == 3
    prof.reset()
    assert prof.total_report is None and prof.last_report is None


def test_total_report_needs_accumulate() -> None:
    """Without accumulate there is no total."""
    prof = CPUProfiler()
    prof.profile_function(leaf)(3)
    assert prof.total_report is None


def test_start_stop_profiling() -> None:
    """start/stop return the text; stop without start returns None; start twice is a no-op."""
    prof = CPUProfiler(label="manual")
    assert prof.stop_profiling() is None
    prof.start_profiling()
    prof.start_profiling()
    assert prof.is_profiling
    branch(5, 2)
    text = prof.stop_profiling()
    assert not prof.is_profiling
    assert text is not None and "Profile of manual" in text and "leaf" in text
    assert prof.last_report is not None and prof.last_report["leaf"].ncalls == 2
    assert prof.stop_profiling() is None


def test_stop_from_another_thread_does_not_touch_this_threads_session() -> None:
    """
    Sessions belong to their thread: stop_profiling elsewhere returns None.

    From 3.12 cProfile (sys.monitoring) also sees the other thread: its start, run and join are
    ~45 functions of this span, and which 20 make the text's top rows depends on timing, so the
    check is on the whole report, not on the top rows of its text.
    """
    prof = CPUProfiler()
    prof.start_profiling()
    try:
        result: list[str | None] = []
        t = threading.Thread(target=lambda: result.append(prof.stop_profiling()))
        t.start()
        t.join(10)
        assert result == [None]
        assert prof.is_profiling
        leaf(3)
    finally:
        text = prof.stop_profiling()
    assert text is not None
    assert prof.last_report is not None and "leaf" in prof.last_report


def test_manual_span_inside_a_profiled_call_is_attributed_outside() -> None:
    """start_profiling inside another span: stop returns None, the outer span has the work."""
    inner_prof = CPUProfiler()

    @profile
    def outer() -> str | None:
        inner_prof.start_profiling()
        work_a()
        return inner_prof.stop_profiling()

    session = profile()
    wrapped = session(outer)
    assert wrapped() is None
    assert inner_prof.last_report is None
    assert session.report is not None and session.report["work_a"].ncalls == 1


def test_context_manager_is_reentrant() -> None:
    """Nesting `with prof:` on one thread gives one span and one report."""
    reports, prof = _collect()
    with prof:
        work_a()
        with prof:
            work_b()
        work_a()
    assert len(reports) == 1
    assert reports[0]["work_a"].ncalls == 2
    assert reports[0]["work_b"].ncalls == 1


def test_threads_get_separate_sessions_without_mixing() -> None:
    """Concurrent calls on two threads: two reports, each with only its own thread's work."""
    if sys.version_info >= (3, 12):
        pytest.skip("from 3.12 one cProfile session is active per process (documented)")
    reports, prof = _collect()  # list.append is atomic: threads may share it
    both_inside = threading.Barrier(2, timeout=10)

    @prof.profile_function
    def job(which: str) -> int:
        both_inside.wait()  # both sessions are enabled at the same time
        return work_a() if which == "a" else work_b()

    def run(which: str) -> None:
        job(which)
        assert sys.getprofile() is None

    assert run_in_threads(run, [("a",), ("b",)]) == []
    assert len(reports) == 2
    by_work = {("work_a" in r): r for r in reports}
    assert set(by_work) == {True, False}
    assert "work_b" not in by_work[True] and by_work[True]["work_a"].ncalls == 1
    assert "work_a" not in by_work[False] and by_work[False]["work_b"].ncalls == 1
    assert prof.last_report in reports


def test_call_while_another_threads_session_runs() -> None:
    """A profiled call while another thread is being profiled never raises, on any version."""
    reports, prof = _collect()  # list.append is atomic: threads may share it
    inside, release = threading.Event(), threading.Event()

    @prof.profile_function
    def holder() -> None:
        inside.set()
        release.wait(10)
        work_a()

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(10)
        assert prof.profile_function(work_b)() == work_b()  # no "already active" error
    finally:
        release.set()
        t.join(10)
    labels = sorted(r.label for r in reports)
    if sys.version_info >= (3, 12):  # one session per process: ours ran unprofiled
        assert labels == [holder.__qualname__]
    else:  # one session per thread
        assert labels == sorted([holder.__qualname__, "work_b"])
    held = next(r for r in reports if r.label == holder.__qualname__)
    assert held["work_a"].ncalls == 1


def test_many_threads_hammering_one_profiler() -> None:
    """Many threads, many calls: no exception, every report well-formed."""
    reports, prof = _collect()
    wrapped = prof.profile_function(branch)

    def run() -> None:
        for _ in range(50):
            wrapped(3, 2)

    assert run_in_threads(run, [()] * 4) == []
    assert reports  # on 3.12+ some calls run unprofiled while another thread's session runs
    for r in reports:
        assert all(row.ncalls >= 1 and row.tottime >= 0 for row in r.rows)
        assert r.to_text() and r.to_dict()["rows"]
        if sys.version_info < (3, 12):
            assert r["branch"].ncalls == 1
            assert r["leaf"].ncalls == 2
    if sys.version_info >= (3, 12):
        # The one active session also sees the other threads' calls, on one call stack: their
        # events interleave, and a call whose return was taken for another's is not counted. So
        # a single report may lack branch; across 200 calls, some report has it.
        assert any("branch" in r and "leaf" in r for r in reports)


def test_foreign_setprofile_is_left_alone() -> None:
    """A profiler the host installed stays installed; our call just runs unprofiled."""
    if sys.version_info >= (3, 12):
        pytest.skip("3.12+ cProfile uses sys.monitoring, which coexists with sys.setprofile")
    events: list[str] = []

    def hook(frame: object, event: str, arg: object) -> None:
        events.append(event)

    prof = CPUProfiler()
    wrapped = prof.profile_function(leaf)
    sys.setprofile(hook)
    try:
        assert wrapped(5) == leaf(5)
        assert sys.getprofile() is hook
    finally:
        sys.setprofile(None)
    assert events
    assert prof.last_report is None


def test_inside_a_hosts_cprofile_we_step_aside() -> None:
    """Inside the host's own cProfile run, our wrapper does not steal or end it."""
    host = cProfile.Profile()
    wrapped = CPUProfiler().profile_function(branch)
    host.enable()
    try:
        wrapped(5, 3)
    finally:
        host.disable()
    stats = pstats.Stats(host)
    by_name = {key[2]: value for key, value in stats.stats.items()}  # type: ignore[attr-defined]
    assert by_name["leaf"][1] == 3


def test_wrapper_preserves_identity_of_the_function() -> None:
    """Name, docstring, signature, __wrapped__ and coroutine-ness survive."""
    sync_w = profile(branch)
    async_w = profile(async_leaf)
    assert sync_w.__name__ == "branch" and sync_w.__doc__ == branch.__doc__
    assert inspect.signature(sync_w) == inspect.signature(branch)
    assert sync_w.__wrapped__ is branch  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(sync_w)
    assert inspect.iscoroutinefunction(async_w)
    assert inspect.signature(async_w) == inspect.signature(async_leaf)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (type("Klass", (), {}), "cannot decorate a class"),
        (42, "needs a function"),
        (property(lambda self: 1), "needs a function"),
    ],
)
def test_bad_targets_raise_type_error_at_decoration(target: object, match: str) -> None:
    """Classes and non-callables are refused when decorating, not when called."""
    with pytest.raises(TypeError, match=match):
        profile(target)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=match):
        CPUProfiler().profile_function(target)  # type: ignore[arg-type]


def test_generators_are_refused_at_decoration() -> None:
    """Generator and async generator functions: a clear TypeError, never wrong timings."""

    def gen() -> object:
        yield 1

    async def agen() -> object:
        yield 1

    with pytest.raises(TypeError, match="generator functions"):
        profile(gen)
    with pytest.raises(TypeError, match="async generator functions"):
        profile(agen)


def test_staticmethod_and_classmethod_are_supported() -> None:
    """@profile over @staticmethod / @classmethod wraps the function and keeps the descriptor."""
    reports: list[ProfileReport] = []
    session = profile(on_report=reports.append)

    class Service:
        @session
        @staticmethod
        def static(n: int) -> int:
            return leaf(n)

        @session
        @classmethod
        def klass(cls, n: int) -> str:
            leaf(n)
            return cls.__name__

    assert Service.static(4) == leaf(4)
    assert Service().static(4) == leaf(4)
    assert Service.klass(3) == "Service"
    assert [r.label for r in reports] == [
        "test_staticmethod_and_classmethod_are_supported.<locals>.Service.static",
        "test_staticmethod_and_classmethod_are_supported.<locals>.Service.static",
        "test_staticmethod_and_classmethod_are_supported.<locals>.Service.klass",
    ]
    assert all(r["leaf"].ncalls == 1 for r in reports)


def test_callable_objects_are_supported() -> None:
    """Instances with __call__ (sync or async) are profiled according to their __call__."""

    class Sync:
        def __call__(self, n: int) -> int:
            return leaf(n)

    class Async:
        async def __call__(self, n: int) -> int:
            return await async_leaf(n)

    reports: list[ProfileReport] = []
    session = profile(on_report=reports.append)
    sync_w = session(Sync())
    async_w = session(Async())
    assert sync_w(3) == leaf(3)
    assert inspect.iscoroutinefunction(async_w)
    assert asyncio.run(async_w(4)) == leaf(4)
    assert [r["leaf"].ncalls for r in reports] == [1, 1]
    assert reports[1]["async_leaf"].primitive_calls >= 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sort": "bogus"}, ValueError),
        ({"sort": 3}, TypeError),
        ({"top": 0}, ValueError),
        ({"top": True}, TypeError),
        ({"top": 2.5}, TypeError),
        ({"on_report": "not callable"}, TypeError),
        ({"log_level": "INFO"}, TypeError),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Options are checked when the decorator is built."""
    with pytest.raises(error):
        profile(**kwargs)  # type: ignore[call-overload]
    with pytest.raises(error):
        CPUProfiler(**kwargs)  # type: ignore[arg-type]


# -- async -------------------------------------------------------------------------------------


async def test_async_function_is_profiled_over_its_whole_run() -> None:
    """Work after the first await is in the report; wall_time covers the await."""
    prof = CPUProfiler()
    started = asyncio.Event()

    @prof.profile_function
    async def handler() -> int:
        work_a()
        await asyncio.wait_for(started.wait(), 10)
        work_b()
        await asyncio.sleep(0)
        return branch(4, 3)[0]

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task = asyncio.create_task(handler())
    await asyncio.sleep(0)
    started.set()
    assert await task == leaf(4)
    elapsed = loop.time() - t0
    report = prof.last_report
    assert report is not None
    assert report["work_a"].ncalls == 1
    assert report["work_b"].ncalls == 1  # after the first await: the guide's bug loses this
    assert report["leaf"].ncalls == 5
    assert report.wall_time is not None and 0 < report.wall_time <= elapsed + 0.05


async def test_async_wall_time_includes_the_awaits() -> None:
    """A coroutine that waits is charged its waiting time in wall_time, not in CPU rows."""
    prof = CPUProfiler()
    measured: list[float] = []

    @prof.profile_function
    async def waits() -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(0.01)
        measured.append(loop.time() - t0)

    await waits()
    report = prof.last_report
    assert report is not None
    assert report.wall_time is not None and report.wall_time >= measured[0]


async def test_concurrent_tasks_are_profiled_separately() -> None:
    """Two profiled coroutines interleaving on one loop: each report has only its own work."""
    reports: list[ProfileReport] = []
    prof = CPUProfiler(on_report=reports.append)
    a_ran, b_ran = asyncio.Event(), asyncio.Event()

    @prof.profile_function
    async def task_a() -> None:
        work_a()
        a_ran.set()
        await asyncio.wait_for(b_ran.wait(), 10)
        work_a()

    @prof.profile_function
    async def task_b() -> None:
        await asyncio.wait_for(a_ran.wait(), 10)
        work_b()
        b_ran.set()
        await asyncio.sleep(0)
        work_b()

    await asyncio.gather(task_a(), task_b())
    by_label = {r.label.rsplit(".", 1)[-1]: r for r in reports}
    assert set(by_label) == {"task_a", "task_b"}
    assert by_label["task_a"]["work_a"].ncalls == 2 and "work_b" not in by_label["task_a"]
    assert by_label["task_b"]["work_b"].ncalls == 2 and "work_a" not in by_label["task_b"]


async def test_nested_async_profiles_go_to_the_outermost() -> None:
    """A profiled coroutine awaiting another profiled coroutine: one report, the outer one."""
    outer_prof, inner_prof = CPUProfiler(), CPUProfiler()
    inner = inner_prof.profile_function(async_leaf)

    @outer_prof.profile_function
    async def outer() -> int:
        return await inner(5) + await inner(6) + branch(3, 1)[0]

    assert await outer() == leaf(5) + leaf(6) + leaf(3)
    report = outer_prof.last_report
    assert report is not None
    assert report["leaf"].ncalls == 3
    assert report["async_leaf"].primitive_calls >= 2
    assert inner_prof.last_report is None


async def test_async_exception_still_reports() -> None:
    """A coroutine that raises after an await: same exception object, and a report."""
    reports, prof = _collect()
    err = Boom("late")

    @prof.profile_function
    async def fails() -> None:
        await asyncio.sleep(0)
        work_b()
        raise err

    with pytest.raises(Boom) as info:
        await fails()
    assert info.value is err
    assert len(reports) == 1 and reports[0]["work_b"].ncalls == 1


async def test_cancelled_profiled_task_reports_and_cleans_up() -> None:
    """Cancellation propagates into the coroutine and out; the session is closed."""
    reports, prof = _collect()
    entered = asyncio.Event()
    cleaned = []

    @prof.profile_function
    async def forever() -> None:
        work_a()
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(work_b())

    task = asyncio.create_task(forever())
    await asyncio.wait_for(entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned
    assert len(reports) == 1
    assert reports[0]["work_a"].ncalls == 1 and reports[0]["work_b"].ncalls == 1
    assert _cpu._thread.active is None


def test_hook_released_after_keyboard_interrupt_and_an_abandoned_coroutine() -> None:
    """A KeyboardInterrupt out of a profiled call, and a profiled coroutine closed half-way (never
    resumed), both end their session: no profiler hook stays, and each still gives its report."""
    reports, prof = _collect()

    @prof.profile_function
    def interrupted() -> None:
        work_a()
        raise KeyboardInterrupt

    @prof.profile_function
    async def abandoned() -> None:
        work_b()
        await asyncio.sleep(0)  # yields without needing a loop
        work_a()  # never reached

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert sys.getprofile() is None and _cpu._thread.active is None
    coro = abandoned()
    coro.send(None)
    assert sys.getprofile() is None  # paused while it waits
    coro.close()
    assert sys.getprofile() is None and _cpu._thread.active is None
    assert len(reports) == 2
    assert reports[0]["work_a"].ncalls == 1
    assert "work_a" not in reports[1] and reports[1]["work_b"].ncalls == 1


async def test_async_value_sent_and_exception_thrown_through() -> None:
    """Values and exceptions from awaited futures reach the coroutine unchanged."""
    prof = CPUProfiler()
    loop = asyncio.get_running_loop()

    @prof.profile_function
    async def uses_futures() -> tuple[int, str]:
        ok: asyncio.Future[int] = loop.create_future()
        bad: asyncio.Future[int] = loop.create_future()
        loop.call_soon(ok.set_result, 41)
        loop.call_soon(bad.set_exception, Boom("from future"))
        value = await ok
        try:
            await bad
        except Boom as err:
            return value + 1, str(err)
        return value, "no error"

    assert await uses_futures() == (42, "from future")


async def test_profile_session_as_context_manager_in_async_code() -> None:
    """`with profile()` inside a coroutine covers the block, awaits included."""
    with profile(label="async block") as p:
        await async_leaf(7)
        work_b()
    report = p.report
    assert report is not None
    assert report["async_leaf"].primitive_calls >= 1
    assert report["work_b"].ncalls == 1


def test_profiled_coroutine_run_inside_a_profiled_sync_call() -> None:
    """asyncio.run inside a profiled function: the coroutine is attributed to the outer span."""
    reports: list[ProfileReport] = []
    inner_prof = CPUProfiler()
    inner = inner_prof.profile_function(async_leaf)

    @profile(on_report=reports.append)
    def sync_outer() -> int:
        return asyncio.run(inner(9))

    assert sync_outer() == leaf(9)
    assert len(reports) == 1 and reports[0]["leaf"].ncalls == 1
    assert inner_prof.last_report is None


def test_repr_is_short() -> None:
    """The profiler and session reprs are one short line."""
    assert repr(CPUProfiler(top=5)) == "<CPUProfiler sort='cumulative' top=5 profiling=False>"
    assert repr(profile(top=5)) == "<ProfileSession sort='cumulative' top=5>"
