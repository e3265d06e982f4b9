"""
CPUProfiler and the profile decorator / context manager.

How sessions work (the fix for the guide's profiler):

- A *session* is one ``cProfile.Profile`` enabled for the outermost profiled span of one thread.
  A profiled call made while its thread already has an active session - a nested or recursive
  call, whichever profiler decorated it - runs inside that session and is attributed to the
  outermost profile. So there is never a second profiler on a thread, and never "another
  profiling tool is already active" from us.
- ``cProfile`` only sees the thread that enabled it (on 3.11; from 3.12 it uses ``sys.monitoring``
  and the profiler slot is process-wide). Concurrent calls from other threads get their own
  session each on 3.11, and the profiler's ``last_report`` is the one that finished last
  (``accumulate=True`` also sums them all). From 3.12 only one session can be enabled in the
  process at a time: a call starting while another thread's session runs is executed
  unprofiled (its work shows in the running session, which sees every thread); no exception.
  cProfile keeps one call stack per profiler, so while other threads run, their calls and
  returns interleave with the profiled thread's: counts in such a report are approximate, and a
  call whose return was taken for another thread's may be missing.
- A coroutine function is profiled over its whole run, resumption by resumption: the session is
  enabled while the coroutine runs and paused while it waits, so other tasks on the loop are not
  charged to it, and ``wall_time`` covers the awaits.
- When something else already profiles the thread (``sys.setprofile`` on 3.11, another
  ``sys.monitoring`` profiler from 3.12), the call runs unprofiled rather than stealing the hook.
- A report is built only when someone wants it (a logger enabled for ``log_level``, a callback,
  a file, or ``last_report``), so a profiled call costs a profiler enable/disable, not a pstats
  run.
"""

from __future__ import annotations

import cProfile
import functools
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Coroutine, Generator
from cProfile import Profile
from time import monotonic, perf_counter
from typing import Any, ParamSpec, TypeVar, cast, overload

from .._redact import describe_error, redact
from . import _targets
from ._report import ProfileReport
from ._stats import FuncKey, StatsDict, check_sort, check_top, merge_stats
from ._stats import stats_from_profile as _stats_from_profile
from ._stats import without as _without

__all__ = ["CPUProfiler", "ProfileSession", "profile"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("safla_diag.profiling")

_PY312 = sys.version_info >= (3, 12)

ReportCallback = Callable[[ProfileReport], object]


class _ThreadState(threading.local):
    # The profiler enabled on this thread right now, if any: the re-entrancy guard.
    active: cProfile.Profile | None

    def __init__(self) -> None:
        # Set per thread (threading.local runs __init__ in each): an instance attribute is
        # found faster than a class-level default, and this is read on every profiled call.
        self.active = None


_thread = _ThreadState()
_noted: set[str] = set()
_getprofile = sys.getprofile


def _note_unavailable(reason: str) -> None:
    # Once per reason: a busy profiler is normal in a process someone is already profiling.
    if reason not in _noted:
        _noted.add(reason)
        logger.debug("profiling skipped: %s", redact(reason))


_FOREIGN = "another profiler is active on this thread (sys.setprofile)"


class _Throttle:
    """
    Logs a repeated failure at WARNING once, then at most once per ``interval`` seconds.

    The failures in between go to DEBUG, and the next WARNING says how many there were: a
    callback that fails on every profiled call must not flood the host's logs.
    """

    __slots__ = ("_clock", "_interval", "_lock", "_next", "_since")

    def __init__(self, interval: float = 60.0, *, clock: Callable[[], float] = monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next: float | None = None
        self._since = 0

    def log(self, msg: str, *args: object) -> None:
        with self._lock:
            now = self._clock()
            warn = self._next is None or now >= self._next
            if warn:
                since, self._since, self._next = self._since, 0, now + self._interval
            else:
                self._since += 1
        if not warn:
            logger.debug(msg, *args)
        elif since:
            logger.warning(msg + " (and %d more times since the last warning)", *args, since)
        else:
            logger.warning(msg, *args)


def _try_enable(prof: cProfile.Profile) -> bool:
    """Enable ``prof`` on this thread unless a session (or a foreign profiler) is active."""
    if _thread.active is not None:
        return False
    if not _PY312 and _getprofile() is not None:
        _note_unavailable(_FOREIGN)
        return False
    try:
        prof.enable()
    except Exception as err:  # 3.12+: ValueError when the sys.monitoring slot is taken
        _note_unavailable(str(err))
        return False
    _thread.active = prof
    return True


# A finished span: its (disabled) profiler, label and wall time. A tuple, as one is made per call.
_Span = tuple[cProfile.Profile, str, float]


# Our own frames and the builtins we call while a session is enabled are not the user's code.
_OWN_FILES = frozenset(
    os.path.normcase(os.path.abspath(f))
    for f in (
        __file__,
        os.path.join(os.path.dirname(__file__), "_timed.py"),
        os.path.join(os.path.dirname(__file__), "_jupyter.py"),
    )
)
_PLUMBING = frozenset(
    {
        "<method 'disable' of '_lsprof.Profiler' objects>",
        "<method 'send' of 'coroutine' objects>",
        "<method 'throw' of 'coroutine' objects>",
    }
)


def _user_stats(profile: cProfile.Profile) -> StatsDict:
    stats = _stats_from_profile(profile)
    drop: set[FuncKey] = {
        k for k in stats if k[0] != "~" and os.path.normcase(os.path.abspath(k[0])) in _OWN_FILES
    }
    for key, (_, _, _, _, callers) in stats.items():
        if key[0] != "~" or not all(c in drop for c in callers):
            continue
        # A builtin called only by our frames (getattr, perf_counter in stop_profiling), or
        # one of the calls that switch profiling off or step a coroutine (called from frames
        # the profiler never saw, so with no callers at all).
        if callers or key[2] in _PLUMBING:
            drop.add(key)
    return _without(stats, drop)


_NESTED: Any = object()


class CPUProfiler:
    """
    A cProfile-based profiler that is safe to leave on functions in a running service.

    Use ``profile_function`` as a decorator (sync or async), ``start_profiling()`` /
    ``stop_profiling()`` around a block, or the profiler as a context manager. Nested and
    recursive profiled calls are attributed to the outermost profile; each outermost span gives a
    ``ProfileReport`` (``last_report``), which also goes to the ``safla_diag.profiling`` logger at
    ``log_level``, to ``on_report`` and to ``save_to``. Nothing is ever printed.

    Thread-safe: sessions are per thread (see the module notes for Python 3.12+).
    """

    def __init__(
        self,
        *,
        sort: str = "cumulative",
        top: int = 20,
        log_level: int | None = logging.INFO,
        on_report: ReportCallback | None = None,
        save_to: str | os.PathLike[str] | None = None,
        accumulate: bool = False,
        label: str | None = None,
    ) -> None:
        """
        Configure the profiler; nothing is profiled until it is used.

        Args:
            sort: Default sort key of reports (``cumulative``, ``tottime``, ``ncalls``, ...).
            top: How many rows the logged text shows.
            log_level: Level at which each report's text is logged to ``safla_diag.profiling``;
                None to never log. The text is only built when the logger is enabled for it.
            on_report: Called with each ``ProfileReport``; exceptions it raises are logged, never
                propagated into the profiled code (a WARNING the first time, then at most one a
                minute, the others at DEBUG).
            save_to: A path where each report is saved as a pstats file (the latest wins).
            accumulate: Also keep ``total_report``, every span's report merged. Costs a report
                build per span.
            label: Label of spans started with ``start_profiling()`` / ``with``; decorated
                functions are labelled with their qualified name.

        Raises:
            ValueError: For an unknown sort key or a non-positive top.
            TypeError: For an ``on_report`` that is not callable or a bad ``log_level``.
        """
        self.sort = check_sort(sort)
        self.top = check_top(top)
        if log_level is not None and (
            isinstance(log_level, bool) or not isinstance(log_level, int)
        ):
            raise TypeError(f"log_level must be a logging level (int) or None, got {log_level!r}")
        if on_report is not None and not callable(on_report):
            raise TypeError(f"on_report must be callable, got {on_report!r}")
        self.log_level = log_level
        self.on_report = on_report
        self.save_to = None if save_to is None else os.fspath(save_to)
        self.accumulate = bool(accumulate)
        self.label = label
        self._eager = self.accumulate or on_report is not None or save_to is not None
        self._lock = threading.Lock()
        # Replaced whole (one atomic store) by each finishing span: the hot path takes no lock.
        self._last: _Span | None = None
        self._cached: tuple[_Span, ProfileReport] | None = None
        self._total: StatsDict | None = None
        self._total_wall = 0.0
        self._total_sessions = 0
        self._manual = threading.local()
        self._report_failed = _Throttle()
        self._save_failed = _Throttle()

    # -- reports ------------------------------------------------------------------------------
    @property
    def last_report(self) -> ProfileReport | None:
        """The report of the most recently finished span (any thread); None before the first."""
        span = self._last
        if span is None:
            return None
        return self._report_for(span)

    @property
    def total_report(self) -> ProfileReport | None:
        """Every span since creation (or ``reset()``) merged; needs ``accumulate=True``."""
        with self._lock:
            if self._total is None:
                return None
            return ProfileReport(
                self._total,
                label=self.label or "total",
                wall_time=self._total_wall,
                sort=self.sort,
                top=self.top,
                sessions=self._total_sessions,
            )

    def reset(self) -> None:
        """Forget ``last_report`` and ``total_report``."""
        with self._lock:
            self._last = self._cached = self._total = None
            self._total_wall, self._total_sessions = 0.0, 0

    def _report_for(self, span: _Span) -> ProfileReport:
        # The span is finished (its profiler disabled and never enabled again), so its data no
        # longer changes; two threads racing here build equal reports and one is kept.
        cached = self._cached
        if cached is not None and cached[0] is span:
            return cached[1]
        prof, label, wall = span
        report = ProfileReport(
            _user_stats(prof), label=label, wall_time=wall, sort=self.sort, top=self.top
        )
        self._cached = (span, report)
        return report

    def _finish(self, span: _Span, *, want: bool = False) -> ProfileReport | None:
        """Record a finished span; build and send its report only when someone wants it."""
        label, wall = span[1], span[2]
        try:
            self._last = span
            level = self.log_level
            log = level is not None and logger.isEnabledFor(level)
            if not (want or log or self._eager):
                return None
            report = self._report_for(span)
            if self.accumulate:
                with self._lock:
                    if self._total is None:
                        self._total = {}
                    merge_stats(self._total, report.stats)
                    self._total_wall += wall
                    self._total_sessions += 1
            if log:
                logger.log(
                    cast("int", level),
                    "%s",
                    redact(report.to_text()),
                    extra={"safla_diag.profile": redact(report.label)},
                )
            if self.save_to is not None:
                try:
                    report.save(self.save_to)
                except OSError as err:
                    self._save_failed.log(
                        "could not save the profile of %s: %s",
                        redact(report.label),
                        redact(str(err)),
                    )
            if self.on_report is not None:
                try:
                    self.on_report(report)
                except Exception as err:
                    self._report_failed.log(
                        "on_report callback failed for the profile of %s: %s",
                        redact(report.label),
                        describe_error(err),
                    )
            return report
        except Exception as err:  # a profiler must never break the code it measures
            logger.warning(
                "could not finish the profile of %s: %s", redact(label), describe_error(err)
            )
            return None

    # -- manual spans -------------------------------------------------------------------------
    @property
    def is_profiling(self) -> bool:
        """True while a ``start_profiling()`` span of this profiler is open on this thread."""
        return getattr(self._manual, "session", None) is not None

    def start_profiling(self) -> None:
        """
        Start profiling this thread, until ``stop_profiling()`` on the same thread.

        A no-op when this profiler already profiles this thread. Inside another active span
        (a profiled function, another profiler's block) the work is attributed to that outer span
        and ``stop_profiling()`` returns None.
        """
        state = self._manual
        if getattr(state, "session", None) is not None:
            return
        prof = cProfile.Profile()
        state.start = perf_counter()
        state.session = prof if _try_enable(prof) else _NESTED

    def stop_profiling(self) -> str | None:
        """
        Stop the span that ``start_profiling()`` opened on this thread.

        Returns:
            The report as text (also kept as ``last_report`` and sent to the logger, callback
            and file), or None when this thread was not being profiled by this profiler, or its
            span was nested in another one.
        """
        state = self._manual
        prof: Any = getattr(state, "session", None)
        if prof is None:
            return None
        state.session = None
        state.depth = 0
        if prof is _NESTED:
            return None
        active = _thread.active
        if active is not None and active is prof:
            active.disable()
            _thread.active = None
        wall = perf_counter() - state.start
        report = self._finish((prof, self.label or "profile", wall), want=True)
        return None if report is None else report.to_text()

    def __enter__(self) -> CPUProfiler:
        if self.is_profiling:
            self._manual.depth = getattr(self._manual, "depth", 0) + 1
        else:
            self.start_profiling()
        return self

    def __exit__(self, *exc_info: object) -> None:
        depth = getattr(self._manual, "depth", 0)
        if depth:
            self._manual.depth = depth - 1
        else:
            self.stop_profiling()

    # -- decorating ---------------------------------------------------------------------------
    def profile_function(self, func: Callable[P, T], /) -> Callable[P, T]:
        """
        Decorate ``func`` (sync or ``async def``) so each outermost call is profiled.

        A coroutine function is profiled over its whole run, not just up to its first await. A
        call that raises still produces its report, and the exception propagates unchanged.
        ``staticmethod`` and ``classmethod`` objects are supported.

        Args:
            func: The function to profile.

        Returns:
            A wrapper with ``func``'s name, docstring, signature and coroutine-ness.

        Raises:
            TypeError: At decoration time, for a class, a non-callable, or a generator or async
                generator function.
        """
        target, rewrap_with = _targets.unwrap_target(func, "profile")
        label = getattr(target, "__qualname__", None) or repr(target)
        profiler = self

        if _targets.is_async(target):

            @functools.wraps(target)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                if _thread.active is not None:  # nested: the outer span has it
                    return await target(*args, **kwargs)
                return await _drive(profiler, target(*args, **kwargs), label)

            return cast("Callable[P, T]", _targets.rewrap(async_inner, rewrap_with))

        @functools.wraps(target)
        def sync_inner(*args: Any, **kwargs: Any) -> Any:
            # The hot path, kept flat (no helper calls while the profiler is on): a new
            # Profile, enable, call, disable, one store.
            state = _thread
            if state.active is not None:  # nested or recursive: the outer span has it
                return target(*args, **kwargs)
            if not _PY312 and _getprofile() is not None:
                _note_unavailable(_FOREIGN)
                return target(*args, **kwargs)
            prof = Profile()
            start = perf_counter()
            try:
                prof.enable()
            except Exception as err:  # 3.12+: ValueError when the sys.monitoring slot is taken
                _note_unavailable(str(err))
                return target(*args, **kwargs)
            state.active = prof
            try:
                return target(*args, **kwargs)
            finally:
                prof.disable()
                state.active = None
                span = (prof, label, perf_counter() - start)
                # The common case, inline: nobody consumes reports, so store the span and go.
                level = profiler.log_level
                if profiler._eager or (level is not None and logger.isEnabledFor(level)):
                    profiler._finish(span)
                else:
                    profiler._last = span

        return cast("Callable[P, T]", _targets.rewrap(sync_inner, rewrap_with))

    def __repr__(self) -> str:
        return f"<CPUProfiler sort={self.sort!r} top={self.top} profiling={self.is_profiling}>"

    def _repr_html_(self) -> str:
        from ._html import cpu_profiler_html

        return cpu_profiler_html(self)


@types.coroutine
def _drive(
    profiler: CPUProfiler, coro: Coroutine[Any, Any, Any], label: str
) -> Generator[Any, Any, Any]:
    """Run ``coro`` to the end, profiling each of its steps; the wall time spans the awaits."""
    prof = Profile()
    ran = False
    start = perf_counter()
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            enabled = _try_enable(prof)
            ran = ran or enabled
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                if enabled:
                    prof.disable()
                    _thread.active = None
            value, error = None, None
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as err:  # cancellation included: hand it to the coroutine
                error = err
    finally:
        if ran:
            profiler._finish((prof, label, perf_counter() - start))


class ProfileSession:
    """
    What ``profile(...)`` returns: a decorator and a context manager sharing one profiler.

    ``@profile(top=5)`` decorates; ``with profile(top=5) as p: ...`` profiles the block on this
    thread (in async code the block's awaits let other tasks run, and they are profiled too; use
    the decorator to profile one coroutine alone); ``p.report`` is the last report.
    """

    def __init__(self, profiler: CPUProfiler) -> None:
        self.profiler = profiler

    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]:
        """Decorate ``fn``; see ``CPUProfiler.profile_function``."""
        return self.profiler.profile_function(fn)

    def __enter__(self) -> ProfileSession:
        self.profiler.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.profiler.__exit__(*exc_info)

    @property
    def report(self) -> ProfileReport | None:
        """The last finished report of this session's profiler."""
        return self.profiler.last_report

    def __repr__(self) -> str:
        return f"<ProfileSession sort={self.profiler.sort!r} top={self.profiler.top}>"


@overload
def profile(fn: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def profile(
    fn: None = None,
    /,
    *,
    top: int = 20,
    sort: str = "cumulative",
    label: str | None = None,
    log_level: int | None = logging.INFO,
    on_report: ReportCallback | None = None,
    save_to: str | os.PathLike[str] | None = None,
    accumulate: bool = False,
) -> ProfileSession: ...


def profile(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    top: int = 20,
    sort: str = "cumulative",
    label: str | None = None,
    log_level: int | None = logging.INFO,
    on_report: ReportCallback | None = None,
    save_to: str | os.PathLike[str] | None = None,
    accumulate: bool = False,
) -> Any:
    """
    Profile a function (``@profile``, ``@profile(top=10)``) or a block (``with profile():``).

    Each outermost call or block gives a ``ProfileReport``, sent to the ``safla_diag.profiling``
    logger at ``log_level``, to ``on_report`` and to ``save_to``; nothing is printed.

    Args:
        fn: The function, when used bare as ``@profile``.
        top: Rows in the logged text.
        sort: Sort key (``cumulative``, ``tottime``, ``ncalls``, ``name``, ...).
        label: Label of ``with`` blocks (functions use their qualified name).
        log_level: Logging level of the report text; None to not log.
        on_report: Called with each report (errors are logged, not raised).
        save_to: Path of a pstats file rewritten with each report.
        accumulate: Keep every report merged in ``session.profiler.total_report``.

    Returns:
        The wrapped function when ``fn`` is given, else a ``ProfileSession`` to decorate with or
        to use in ``with``.

    Raises:
        TypeError: For a class, a non-callable, a generator or async generator function, or a
            bad option type.
        ValueError: For an unknown sort key or a non-positive top.
    """
    session = ProfileSession(
        CPUProfiler(
            sort=sort,
            top=top,
            log_level=log_level,
            on_report=on_report,
            save_to=save_to,
            accumulate=accumulate,
            label=label,
        )
    )
    return session if fn is None else session(fn)
