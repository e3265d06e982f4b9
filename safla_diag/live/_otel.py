"""The OpenTelemetry exporter: observable instruments per meter over a hub of our objects."""

from __future__ import annotations

import math
import threading
import time
import weakref
from typing import Any

from .._lazy import import_optional
from ._metrics import FAMILIES, Family, Sample, le_label
from ._sources import Exportable, Hub

__all__ = ["register_opentelemetry"]

_HUBS: weakref.WeakKeyDictionary[Any, tuple[Hub, list[Any]]] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def register_opentelemetry(
    *objects: Exportable | tuple[str, Exportable],
    meter: Any = None,
    meter_provider: Any = None,
    namespace: str = "safla",
) -> list[Any]:
    """
    Expose the same figures as OpenTelemetry observable instruments, read at collection.

    Counters and gauges become observable counters and gauges (``safla.requests``, ...). OTel has
    no asynchronous histogram, so a latency histogram is exported as three observable counters:
    ``<name>.bucket`` (cumulative, with an ``le`` attribute), ``<name>.count`` and ``<name>.sum``.
    Idempotent and additive per meter, like :func:`register_prometheus`.

    Args:
        *objects: As for :func:`register_prometheus`; the name goes in the ``monitor`` attribute.
        meter: The Meter to create the instruments on; by default
            ``metrics.get_meter("safla_diag", meter_provider=meter_provider)``.
        meter_provider: Used when no meter is given (the global provider by default).
        namespace: Prefix of every instrument name.

    Returns:
        The instruments of this meter (created by its first registration).

    Raises:
        DependencyError: When opentelemetry-api is not installed (``safla-diag[otel]``).
        TypeError: For an object that is not one of ours.
    """
    otel = import_optional("opentelemetry.metrics")
    if meter is None:
        meter = otel.get_meter("safla_diag", meter_provider=meter_provider)
    with _HUBS_LOCK:
        found = _HUBS.get(meter)
        if found is not None:
            found[0].add(objects)
            return found[1]
        hub = Hub()
        hub.add(objects)
        instruments = _otel_instruments(otel, meter, hub, namespace)
        _HUBS[meter] = (hub, instruments)
        return instruments


def _otel_instruments(otel: Any, meter: Any, hub: Hub, namespace: str) -> list[Any]:
    prefix = f"{namespace}." if namespace else ""
    cache: dict[str, Any] = {"at": -math.inf, "data": None}
    lock = threading.Lock()

    def grouped() -> dict[str, list[Sample]]:
        # One reading of every object per collection, shared by all the callbacks.
        with lock:
            if time.monotonic() - cache["at"] > 0.5:
                cache["data"], cache["at"] = hub.samples(), time.monotonic()
            return cache["data"]  # type: ignore[no-any-return]

    instruments = []
    for f in FAMILIES:
        if f.type == "histogram":

            def buckets(_o: Any, f: Family = f) -> list[Any]:
                return [
                    otel.Observation(c, {**s.labels, "le": le_label(b)})
                    for s in grouped()[f.name]
                    for b, c in s.buckets
                ]

            def count(_o: Any, f: Family = f) -> list[Any]:
                return [otel.Observation(s.buckets[-1][1], s.labels) for s in grouped()[f.name]]

            def total(_o: Any, f: Family = f) -> list[Any]:
                return [otel.Observation(s.sum, s.labels) for s in grouped()[f.name]]

            name = prefix + f.stem
            instruments += [
                meter.create_observable_counter(name + ".bucket", callbacks=[buckets], unit="1",
                                                description=f.help + " (cumulative, by le)"),
                meter.create_observable_counter(name + ".count", callbacks=[count], unit="1",
                                                description=f.help + " (count)"),
                meter.create_observable_counter(name + ".sum", callbacks=[total], unit=f.unit,
                                                description=f.help + " (sum)"),
            ]  # fmt: skip
            continue

        def observe(_o: Any, f: Family = f) -> list[Any]:
            return [otel.Observation(s.value, s.labels) for s in grouped()[f.name]]

        create = (
            meter.create_observable_counter
            if f.type == "counter"
            else meter.create_observable_gauge
        )
        instruments.append(
            create(prefix + f.stem, callbacks=[observe], unit=f.unit, description=f.help)
        )
    return instruments
