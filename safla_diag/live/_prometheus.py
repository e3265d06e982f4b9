"""The Prometheus exporter: one collector per registry over a hub of our objects."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

from .._lazy import import_optional
from ._metrics import FAMILIES, Family, le_label
from ._sources import Exportable, Hub

__all__ = ["hub_for", "register_prometheus"]

_HUBS: weakref.WeakKeyDictionary[Any, tuple[Hub, Any]] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def _prom_collector(hub: Hub, namespace: str) -> Any:
    core = import_optional("prometheus_client.core")
    prefix = f"{namespace}_" if namespace else ""

    def family(f: Family) -> Any:
        labels = ["monitor", *f.labels]
        name = prefix + f.name
        if f.type == "counter":
            return core.CounterMetricFamily(name, f.help, labels=labels)
        if f.type == "histogram":
            return core.HistogramMetricFamily(name, f.help, labels=labels)
        return core.GaugeMetricFamily(name, f.help, labels=labels)

    class SaflaCollector:
        """A prometheus_client collector over safla_diag objects (``.hub`` lists them)."""

        def __init__(self) -> None:
            self.hub = hub

        def describe(self) -> list[Any]:
            # Every family, whatever is registered yet: later objects join without clashes.
            return [family(f) for f in FAMILIES]

        def collect(self) -> Iterator[Any]:
            grouped = hub.samples()
            for f in FAMILIES:
                rows = grouped[f.name]
                if not rows:
                    continue
                fam = family(f)
                for s in rows:
                    values = [s.labels.get(k, "") for k in ("monitor", *f.labels)]
                    if f.type == "histogram":
                        fam.add_metric(values, [(le_label(b), c) for b, c in s.buckets], s.sum)
                    else:
                        fam.add_metric(values, s.value)
                yield fam

    return SaflaCollector()


def hub_for(registry: Any) -> Hub | None:
    """The hub registered with a Prometheus registry, if any (the live endpoint uses it)."""
    with _HUBS_LOCK:
        found = _HUBS.get(registry)
    return None if found is None else found[0]


def register_prometheus(
    *objects: Exportable | tuple[str, Exportable],
    registry: Any = None,
    namespace: str = "safla",
) -> Any:
    """
    Expose the objects' figures to a Prometheus registry, read at each scrape.

    Idempotent per object and registry, and additive: a second call with the same registry adds
    its new objects to the same collector; an object already registered there is skipped.

    Args:
        *objects: PerformanceMonitor, MemoryMonitor, MemoryLeakDetector, MCPTaskRecovery,
            VectorIndexRecovery, MCPConnectionRecovery and LoopMonitor instances, each bare
            (labelled ``monitor="default"``, then ``default_2``, ...) or as a ``(name, object)``
            pair (``monitor="name"``).
        registry: A ``prometheus_client.CollectorRegistry``; the global ``REGISTRY`` by default.
        namespace: Prefix of every metric name (``safla_requests_total``, ...); fixed by the
            first registration with a registry.

    Returns:
        The registry's collector (``registry.unregister(collector)`` removes every object).

    Raises:
        DependencyError: When prometheus_client is not installed (``safla-diag[prometheus]``).
        TypeError: For an object that is not one of those (nothing is registered then).
    """
    prom = import_optional("prometheus_client")
    target = registry if registry is not None else prom.REGISTRY
    with _HUBS_LOCK:
        found = _HUBS.get(target)
        if found is None:
            hub = Hub()
            hub.add(objects)
            collector = _prom_collector(hub, namespace)
            target.register(collector)
            _HUBS[target] = (hub, collector)
            return collector
    hub, collector = found
    hub.add(objects)
    return collector
