"""Inside a running service: metrics exporters and the live diagnostics endpoint."""

from __future__ import annotations

from ._metrics import register_opentelemetry, register_prometheus

__all__ = ["register_opentelemetry", "register_prometheus"]
