"""Small functions with stable names, profiled by the tests."""

from __future__ import annotations

import asyncio


def leaf(n: int) -> int:
    """Pure-Python work."""
    return sum(i * i for i in range(n))


def branch(n: int, times: int) -> list[int]:
    """Calls leaf `times` times."""
    return [leaf(n) for _ in range(times)]


def recurse(depth: int) -> int:
    """Recursion to `depth`."""
    return 0 if depth <= 0 else 1 + recurse(depth - 1)


def work_a() -> int:
    """Only thread/task A calls this."""
    return leaf(50)


def work_b() -> int:
    """Only thread/task B calls this."""
    return leaf(60)


async def async_leaf(n: int) -> int:
    """Yields to the loop once, then works."""
    await asyncio.sleep(0)
    return leaf(n)


class Boom(Exception):
    """Raised on purpose."""
