"""Zerodha Kite Connect: the adapter, its pure mapping, ticker, auth and a loopback simulator.

Kite's vocabulary (``tradingsymbol``, ``transaction_type``, instrument tokens) and the official
``kiteconnect`` SDK never leave this folder; everything outside sees the contracts of
:mod:`velox.brokers.base`. The names below load their module on first use, so importing the
package costs nothing.

========================  =================================================================
``KiteBroker``            the ``Broker`` contract over ``KiteConnect`` (``adapter.py``)
``KiteMarketData``        the ``MarketData`` contract over ``KiteTicker`` (``ticker.py``)
``KiteSimulator``         Kite's REST API and ticker on 127.0.0.1 (``simulator.py``)
``KITE_CAPABILITIES``     what Kite accepts, as data (``mapping.py``)
``connect``               log in with the stored session (``session.py``, the registry's entry)
========================  =================================================================
"""

from __future__ import annotations

import importlib

__all__ = ["KITE_CAPABILITIES", "KiteBroker", "KiteMarketData", "KiteSimulator", "connect"]

_HOMES = {
    "KiteBroker": "velox.brokers.kite.adapter",
    "KiteMarketData": "velox.brokers.kite.ticker",
    "KiteSimulator": "velox.brokers.kite.simulator",
    "KITE_CAPABILITIES": "velox.brokers.kite.mapping",
    "connect": "velox.brokers.kite.session",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'velox.brokers.kite' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
