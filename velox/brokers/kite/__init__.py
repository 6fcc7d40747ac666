"""Zerodha Kite Connect: the adapter, its pure mapping, ticker, auth and a loopback simulator.

Kite's vocabulary (``tradingsymbol``, ``transaction_type``, instrument tokens) and the official
``kiteconnect`` SDK never leave this folder; everything outside sees the contracts of
:mod:`velox.brokers.base`.
"""
