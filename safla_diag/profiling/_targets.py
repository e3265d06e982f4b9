"""What our decorators accept: the checks made once, at decoration time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._aio import is_async_callable

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


is_async = is_async_callable  # one test for the whole package (see _aio)
