"""``safla_heal_actions_total{action,outcome}`` for prometheus_client, read when scraped."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._healer import Healer

__all__ = ["register"]


class _Collector:
    """A custom collector: the counts are read from the healer at each scrape."""

    def __init__(self, healer: Healer) -> None:
        self._healer = weakref.ref(healer)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "safla_heal_actions",
            "Automated recovery actions by kind and outcome",
            labels=["action", "outcome"],
        )
        healer = self._healer()
        if healer is not None:
            for (action, outcome), n in sorted(healer.counts().items()):
                family.add_metric([action, outcome], float(n))
        yield family

    def describe(self) -> list[Any]:
        return []  # collected lazily: nothing to check at registration


def register(healer: Healer, registry: Any, done: list[Any]) -> None:
    """
    Register the healer's counter with ``registry`` (the default one when None), once.

    ``done`` is the healer's list of registries it is already registered with.
    """
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    if any(r is registry for r in done):
        return
    registry.register(_Collector(healer))
    done.append(registry)
