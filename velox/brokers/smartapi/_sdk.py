"""The one door to Angel One's official SDK (``smartapi-python``), with its side effects shut.

Why this module exists: importing ``SmartApi`` runs, at class-definition time,
``requests.get('https://api.ipify.org')`` with no timeout (an offline machine hangs or waits
for DNS; a trading tool must not phone out on import), then throws the answer away for fixed
addresses. Constructing ``SmartConnect``, ``SmartWebSocketV2`` or
``SmartWebSocketOrderUpdate`` creates ``./logs/<date>/app.log`` in whatever folder the process
runs in and points the ``logzero`` logger at it, and the SDK's error logging prints request
parameters (the login's PIN and TOTP among them). So:

* the import runs with ``requests.get`` replaced by a function that refuses at once (the SDK
  catches it and uses its fixed addresses, as it does after any lookup);
* the SDK modules' ``logzero.logfile`` is a no-op (no folder, no file) and the ``logzero``
  logger is silenced: Velox reports every failure itself, without the parameters;
* ``SmartWebSocketV2.input_request_dict`` is a class attribute shared by every instance (one
  feed's subscriptions would leak into the next): :func:`new_feed` gives each instance its own.

Nothing in the installed SDK is edited; everything here is done to the imported modules.
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any

#: ``SmartConnect``, ``SmartWebSocketV2`` and ``SmartWebSocketOrderUpdate`` are here too, lazily.
__all__ = ["new_feed", "sdk"]

_lock = threading.Lock()
_modules: SimpleNamespace | None = None


class _NoLookup(OSError):
    """Raised instead of the SDK's import-time public-IP lookup."""


def _refuse(*args: object, **kwargs: object) -> None:
    raise _NoLookup("Velox does not let smartapi-python look up a public IP")


def sdk() -> SimpleNamespace:
    """Return the SDK's modules (``connect``, ``feed``, ``orders``), imported once, safely."""
    global _modules
    with _lock:
        if _modules is None:
            import logzero
            import requests

            quiet = logzero.logger
            quiet.disabled = True  # the SDK logs request parameters (PIN, TOTP) on failures
            real_get = requests.get
            requests.get = _refuse  # type: ignore[assignment]
            try:
                from SmartApi import smartConnect, smartWebSocketOrderUpdate, smartWebSocketV2
            finally:
                requests.get = real_get  # type: ignore[assignment]
            no_files = SimpleNamespace(logfile=lambda *a, **k: None, logger=quiet)
            for module in (smartConnect, smartWebSocketV2, smartWebSocketOrderUpdate):
                module.logzero = no_files  # type: ignore[attr-defined]
                module.os = SimpleNamespace(  # type: ignore[attr-defined]
                    path=__import__("os").path, makedirs=lambda *a, **k: None
                )
            logging.getLogger("SmartApi").setLevel(logging.WARNING)
            _modules = SimpleNamespace(
                connect=smartConnect, feed=smartWebSocketV2, orders=smartWebSocketOrderUpdate
            )
        return _modules


def new_feed(*args: Any, **kwargs: Any) -> Any:
    """Return a ``SmartWebSocketV2`` whose subscription list is its own, not the class's."""
    ws = sdk().feed.SmartWebSocketV2(*args, **kwargs)
    ws.input_request_dict = {}
    ws.RESUBSCRIBE_FLAG = False
    return ws


def __getattr__(name: str) -> Any:
    if name == "SmartConnect":
        return sdk().connect.SmartConnect
    if name == "SmartWebSocketV2":
        return sdk().feed.SmartWebSocketV2
    if name == "SmartWebSocketOrderUpdate":
        return sdk().orders.SmartWebSocketOrderUpdate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
