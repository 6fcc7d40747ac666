"""Alerts beyond the store: delivery by Telegram, email and webhook (docs/alerts.md) and users'
price/indicator alert rules (``velox.alerts.rules``, docs/alert-rules.md).

Engines and pipelines store alerts (:meth:`velox.store.Store.raise_alert`); the worker here
(``velox alerts deliver``) delivers them with retries, de-duplication, storm control, quiet
hours and per-user subscriptions. Names are imported lazily so ``import velox`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Channel": "channels", "DeliveryError": "channels", "EmailChannel": "channels",
    "Message": "channels", "TelegramChannel": "channels", "WebhookChannel": "channels",
    "configured_channels": "channels", "default_targets": "channels",
    "Policy": "policy",
    "BackgroundWorker": "worker", "Deliverer": "worker", "Report": "worker",
    "deliveries": "worker", "delivery_attempts": "worker",
    "subscribe": "subscriptions", "subscriptions": "subscriptions",
    "unsubscribe": "subscriptions",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'velox.alerts' has no attribute {name!r}")
    return getattr(importlib.import_module(f"velox.alerts.{module}"), name)


__all__ = sorted(_NAMES)
