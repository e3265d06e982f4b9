"""Inside a running service: metrics exporters and the live diagnostics endpoint."""

from __future__ import annotations

from ._app import asgi_app
from ._otel import register_opentelemetry
from ._prometheus import register_prometheus
from ._server import serve

__all__ = ["asgi_app", "register_opentelemetry", "register_prometheus", "serve"]
