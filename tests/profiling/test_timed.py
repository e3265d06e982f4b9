"""timed(monitor): wall time and success of each call, recorded; the call itself untouched."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time

import pytest

from safla_diag import profile, timed
from safla_diag._types import RequestRecorder

from ._threads import run_in_threads
from .workload import Boom, async_leaf, leaf

pytestmark = pytest.mark.anyio


class Recorder:
    """A minimal RequestRecorder: keeps what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, bool]] = []
        self._lock = threading.Lock()

    def record_request(self, response_time: float, success: bool = True) -> None:
        with self._lock:
            self.calls.append((response_time, success))


class BrokenRecorder:
    """A recorder that always raises."""

    def __init__(self) -> None:
        self.attempts = 0

    def record_request(self, response_time: float, success: bool = True) -> None:
        self.attempts += 1
        raise RuntimeError("monitor is broken")


def test_recorder_satisfies_the_protocol() -> None:
    """The test recorder is what timed accepts: a RequestRecorder."""
    assert isinstance(Recorder(), RequestRecorder)


def test_sync_success_is_recorded_with_its_wall_time() -> None:
    """Each call records (seconds, True); the time covers the call."""
    rec = Recorder()

    @timed(rec)
    def work(n: int) -> int:
        t0 = time.perf_counter()
        result = leaf(n)
        inner.append(time.perf_counter() - t0)
        return result

    inner: list[float] = []
    assert work(2000) == leaf(2000)
    assert work(n=3) == leaf(3)
    assert [s for _, s in rec.calls] == [True, True]
    assert all(elapsed >= measured for (elapsed, _), measured in zip(rec.calls, inner, strict=True))


def test_sync_exception_recorded_as_failure_and_reraised_untouched() -> None:
    """The same exception object propagates, with its traceback and context; success=False."""
    rec = Recorder()
    err = Boom("bad request")

    @timed(rec)
    def fails() -> None:
        raise err

    with pytest.raises(Boom) as info:
        fails()
    assert info.value is err
    assert err.__context__ is None and err.__cause__ is None
    assert len(rec.calls) == 1 and rec.calls[0][1] is False and rec.calls[0][0] >= 0


def test_base_exceptions_are_not_recorded() -> None:
    """KeyboardInterrupt-like exits say nothing about the function: propagated, not recorded."""
    rec = Recorder()

    @timed(rec)
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert rec.calls == []


def test_broken_recorder_never_breaks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """A recorder that raises: the result (or the original exception) still comes through."""
    rec = BrokenRecorder()
    err = Boom("original")

    @timed(rec)
    def ok() -> int:
        return 7

    @timed(rec)
    def fails() -> None:
        raise err

    with caplog.at_level(logging.DEBUG, logger="safla_diag.profiling"):
        assert ok() == 7
        assert ok() == 7
        with pytest.raises(Boom) as info:
            fails()
    assert info.value is err
    assert rec.attempts == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # one warning per decorated function, then quieter
    assert len(warnings) == 2
    assert "BrokenRecorder.record_request failed" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # one redacted line: no host traceback
    assert "RuntimeError: monitor is broken" in warnings[0].getMessage()
    assert any(r.levelno == logging.DEBUG and "2 times" in r.getMessage() for r in caplog.records)


async def test_async_time_covers_the_whole_await() -> None:
    """An async function's recorded time includes its awaits (not just coroutine creation)."""
    rec = Recorder()
    inner: list[float] = []

    @timed(rec)
    async def waits() -> str:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(0.01)
        inner.append(loop.time() - t0)
        return "done"

    assert await waits() == "done"
    assert rec.calls[0][1] is True
    assert rec.calls[0][0] >= inner[0] > 0.005


async def test_partials_of_async_callables_are_timed_over_their_await() -> None:
    """A functools.partial of an object with an async __call__ (or of a partial of one) is a
    coroutine function: the wrapper awaits it, so the time covers the await, not its creation."""
    rec = Recorder()
    inner: list[float] = []

    class Handler:
        async def __call__(self, x: int) -> int:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.sleep(0.01)
            inner.append(loop.time() - t0)
            return x

    for fn in (functools.partial(Handler(), 1), functools.partial(functools.partial(Handler()), 1)):
        wrapped = timed(rec)(fn)
        assert inspect.iscoroutinefunction(wrapped)
        assert await wrapped() == 1
        assert rec.calls[-1][0] >= inner[-1] > 0.005
    profiled = profile(log_level=None)(functools.partial(Handler(), 2))
    assert inspect.iscoroutinefunction(profiled) and await profiled() == 2


async def test_async_exception_recorded_as_failure() -> None:
    """An async failure after an await is recorded as such and re-raised unchanged."""
    rec = Recorder()
    err = Boom("async")

    @timed(rec)
    async def fails() -> None:
        await asyncio.sleep(0)
        raise err

    with pytest.raises(Boom) as info:
        await fails()
    assert info.value is err
    assert [s for _, s in rec.calls] == [False]


async def test_async_cancellation_is_not_recorded() -> None:
    """A cancelled call is not a failure of the function: CancelledError propagates."""
    rec = Recorder()
    entered = asyncio.Event()

    @timed(rec)
    async def forever() -> None:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await asyncio.wait_for(entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.calls == []


async def test_async_broken_recorder(caplog: pytest.LogCaptureFixture) -> None:
    """A broken recorder under an async function: result returned, warning logged."""

    @timed(BrokenRecorder())
    async def ok() -> int:
        return await async_leaf(3)

    with caplog.at_level(logging.WARNING, logger="safla_diag.profiling"):
        assert await ok() == leaf(3)
    assert len(caplog.records) == 1


def test_wrapper_preserves_the_function() -> None:
    """Name, qualname, docstring, signature, __wrapped__ and coroutine-ness survive."""
    rec = Recorder()
    sync_w = timed(rec)(leaf)
    async_w = timed(rec)(async_leaf)
    for wrapper, fn in ((sync_w, leaf), (async_w, async_leaf)):
        assert wrapper.__name__ == fn.__name__
        assert wrapper.__qualname__ == fn.__qualname__
        assert wrapper.__doc__ == fn.__doc__
        assert inspect.signature(wrapper) == inspect.signature(fn)
        assert wrapper.__wrapped__ is fn  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(sync_w)
    assert inspect.iscoroutinefunction(async_w)


def test_methods_staticmethods_classmethods() -> None:
    """Methods, staticmethods and classmethods are timed and still bind correctly."""
    rec = Recorder()

    class Service:
        factor = 3

        @timed(rec)
        def method(self, n: int) -> int:
            return n * self.factor

        @timed(rec)
        @staticmethod
        def static(n: int) -> int:
            return n + 1

        @timed(rec)
        @classmethod
        def klass(cls, n: int) -> int:
            return n * cls.factor

    s = Service()
    assert (s.method(2), Service.static(2), s.static(2), Service.klass(2)) == (6, 3, 3, 6)
    assert len(rec.calls) == 4 and all(ok for _, ok in rec.calls)


def test_decorating_bad_targets_is_a_type_error() -> None:
    """Classes, non-callables, generators and async generators: TypeError when decorating."""
    rec = Recorder()

    def gen() -> object:
        yield 1

    async def agen() -> object:
        yield 1

    for target, match in (
        (Recorder, "cannot decorate a class"),
        (3, "needs a function"),
        (gen, "generator functions"),
        (agen, "async generator functions"),
    ):
        with pytest.raises(TypeError, match=match):
            timed(rec)(target)  # type: ignore[arg-type]


def test_monitor_without_record_request_is_a_type_error() -> None:
    """timed needs a monitor; bare @timed is caught with a hint."""
    with pytest.raises(TypeError, match="record_request"):
        timed(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not bare @timed"):
        timed(leaf)  # type: ignore[arg-type]


def test_threads_record_every_call() -> None:
    """Concurrent calls from threads are all recorded."""
    rec = Recorder()
    wrapped = timed(rec)(leaf)

    def run() -> None:
        for _ in range(200):
            wrapped(2)

    assert run_in_threads(run, [()] * 4) == []
    assert len(rec.calls) == 800
