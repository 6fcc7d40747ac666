"""``GET /metrics`` and ``GET /ready`` of the web server (``velox serve``).

The web server runs no engine: its metrics are what the store says (stored alerts and their
deliveries, recorded runs by status, the orders of running runs; :class:`velox.monitoring.
StoreCollector`), and it is ready when the store answers. An engine's own feed and broker
readiness is on that engine's endpoint (``VELOX_METRICS_PORT``, see ``docs/monitoring.md``).
Both routes are open like ``/health``: a Prometheus scraper has no session, and nothing here
names a user or a secret.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tornado.web import RequestHandler

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from velox.web.server import WebApp

__all__ = ["MetricsHandler", "ReadyHandler", "registry"]

_registries: dict[int, CollectorRegistry] = {}


def registry(app: WebApp) -> CollectorRegistry:
    """Return the app's registry (built on first use): the store collector."""
    found = _registries.get(id(app))
    if found is None:
        from prometheus_client import CollectorRegistry

        from velox.monitoring import StoreCollector

        found = _registries[id(app)] = CollectorRegistry()
        found.register(StoreCollector(app.store))
    return found


class MetricsHandler(RequestHandler):
    """``GET /metrics``: the Prometheus text exposition of the store's figures."""

    def initialize(self, app: WebApp) -> None:
        self.app = app

    def get(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(registry(self.app)))


class ReadyHandler(RequestHandler):
    """``GET /ready``: 200 when the store answers, else 503 with a JSON body naming it."""

    def initialize(self, app: WebApp) -> None:
        self.app = app

    def get(self) -> None:
        from velox.monitoring import store_readiness

        why = store_readiness(self.app.store)
        problems = {} if why is None else {"store": why}
        self.set_status(503 if problems else 200)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "not ready" if problems else "ready",
                                "problems": problems}))  # fmt: skip
