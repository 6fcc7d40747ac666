"""ICICI Direct Breeze: the safe door to the official ``breeze-connect`` SDK, its mapping,
simulator and :class:`~velox.brokers.breeze.adapter.BreezeBroker`.

Breeze's vocabulary (``stock_code`` such as ``STABAN`` for NSE:SBIN, ``user_remark``,
``exchange_code``, the checksum headers) and the SDK never leave this folder. ``_sdk`` imports
the SDK with its import-time download, top-level ``config`` module and ``./logs`` files shut
off. Importing this package imports none of them.
"""
