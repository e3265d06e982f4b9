"""Type-checked (never run) by test_typing.py: our decorators keep signatures visible to mypy."""

from __future__ import annotations

from typing import assert_type

from safla_diag import CPUProfiler, ProfileReport, profile, timed


class Recorder:
    def record_request(self, response_time: float, success: bool = True) -> None:
        pass


@profile
def bare(x: int, *, name: str = "") -> int:
    return x


@profile(top=5, sort="tottime")
def configured(x: int) -> str:
    return str(x)


@timed(Recorder())
def timed_sync(x: int, y: float = 1.0) -> float:
    return x * y


@timed(Recorder())
async def timed_async(x: int) -> bytes:
    return bytes(x)


profiler = CPUProfiler()


@profiler.profile_function
async def profiled_async(x: int) -> list[int]:
    return [x]


assert_type(bare(1, name="a"), int)
assert_type(configured(2), str)
assert_type(timed_sync(1, 2.0), float)


async def awaited() -> None:
    assert_type(await timed_async(3), bytes)
    assert_type(await profiled_async(4), list[int])


assert_type(profiler.last_report, ProfileReport | None)

with profile(top=3) as session:
    pass
assert_type(session.report, ProfileReport | None)

bare("not an int")  # type: ignore[arg-type]
timed_sync(1, y="no")  # type: ignore[arg-type]
