"""What our decorators accept: the checks made once, at decoration time."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["is_async", "rewrap", "unwrap_target"]


def unwrap_target(fn: Any, decorator: str) -> tuple[Any, Callable[[Any], Any] | None]:
    """
    Check that ``fn`` can be decorated by ``@decorator`` and return ``(function, rewrap)``.

    ``staticmethod`` and ``classmethod`` objects are unwrapped, so the underlying function is
    decorated and ``rewrap`` (the descriptor type) puts the descriptor back around the wrapper.

    Raises:
        TypeError: For a class, something not callable, or a generator / async generator
            function (a wrapper would time only the creation of the generator).
    """
    rewrap_with: Callable[[Any], Any] | None = None
    if isinstance(fn, staticmethod | classmethod):
        rewrap_with = type(fn)
        fn = fn.__func__
    if inspect.isclass(fn):
        raise TypeError(
            f"@{decorator} cannot decorate a class ({fn.__qualname__}): it would measure only "
            "the construction of instances; decorate the methods to measure instead"
        )
    if not callable(fn):
        raise TypeError(f"@{decorator} needs a function, got {type(fn).__name__} {fn!r}")
    name = getattr(fn, "__qualname__", repr(fn))
    if inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"@{decorator} does not support async generator functions ({name}): a wrapper would "
            "measure only the creation of the generator; measure the code that iterates it, "
            "or a coroutine function that consumes it"
        )
    if inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"@{decorator} does not support generator functions ({name}): a wrapper would "
            "measure only the creation of the generator; measure the code that iterates it"
        )
    return fn, rewrap_with


def rewrap(wrapper: Any, rewrap_with: Callable[[Any], Any] | None) -> Any:
    """Put a staticmethod/classmethod back around ``wrapper`` when one was removed."""
    return wrapper if rewrap_with is None else rewrap_with(wrapper)


def is_async(fn: Any) -> bool:
    """
    True for coroutine functions, objects with an ``async def __call__``, and partials of either.

    The same test as ``_aio.is_async_callable``, kept here because ``_aio`` imports asyncio, which
    would double the import time of this layer (whose decorators go on sync code too).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return False
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the type's, not the instance's
    return call is not None and inspect.iscoroutinefunction(call)
