"""Run a function on several threads at once and collect what they raised."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_in_threads(
    target: Callable[..., object], args: Iterable[tuple[Any, ...]], *, timeout: float = 30.0
) -> list[BaseException]:
    """
    Start one thread per tuple in ``args`` running ``target(*tuple)``, wait for all of them.

    Returns:
        What the threads raised (empty when all returned); a thread still running after
        ``timeout`` fails the test.
    """
    errors: list[BaseException] = []

    def run(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
    return errors
