"""The broker boundary: contracts in :mod:`velox.brokers.base`, one folder per venue, and the
registry of live brokers.

A live broker's folder has a ``session`` module whose ``connect(*, store, instruments)`` logs in
with the stored credentials and returns a :class:`~velox.brokers.base.LiveConnection`. Adding a
broker adds its folder and one line to ``LIVE_BROKERS``; nothing else changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from velox.errors import ConfigError

if TYPE_CHECKING:
    from velox.brokers.base import LiveConnection
    from velox.store import Store
    from velox.types import Instrument

__all__ = ["LIVE_BROKERS", "connect"]

#: Live broker name → the module whose ``connect`` logs in to it.
LIVE_BROKERS = {
    "kite": "velox.brokers.kite.session",
    "smartapi": "velox.brokers.smartapi.session",
    "breeze": "velox.brokers.breeze.session",
}


def connect(name: str, *, store: Store, instruments: Callable[[str], Instrument]) -> LiveConnection:
    """Return a logged-in connection to the live broker ``name`` (see :data:`LIVE_BROKERS`).

    Raises :class:`~velox.errors.ConfigError` for an unknown name (listing the known ones) and
    :class:`~velox.errors.AuthExpired` when the stored login is missing or expired.
    """
    module = LIVE_BROKERS.get(name)
    if module is None:
        known = ", ".join(sorted(LIVE_BROKERS))
        raise ConfigError(f"unknown broker {name!r}: Velox trades through {known}")
    return importlib.import_module(module).connect(store=store, instruments=instruments)  # type: ignore[no-any-return]
