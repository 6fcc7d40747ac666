"""Log in to Kite with the stored session and wire its two halves together.

:func:`connect` is what ``velox live --broker kite`` and ``velox paper --broker kite`` call
(through :func:`velox.brokers.connect`): the REST adapter (:class:`KiteBroker`) on the session
``velox broker login kite`` stored, and the ticker (:class:`KiteMarketData`) on the same
session, whose order-update messages go to the adapter (which maps them to Velox orders and
fills for the engine's listener). With the ``kite_postback_port`` setting
(``VELOX_KITE_POSTBACK_PORT``), Kite's HTTP postbacks
are taken too (checksum verified) on that port; the adapter books each trade once whichever
path reports it first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from velox.brokers.base import LiveConnection

if TYPE_CHECKING:
    from velox.store import Store
    from velox.types import Instrument

__all__ = ["connect"]

log = logging.getLogger(__name__)


def connect(
    *, store: Store, instruments: Callable[[str], Instrument] | None = None
) -> LiveConnection:
    """Return the logged-in Kite connection (``AuthExpired`` if the stored login is missing or
    expired: log in with ``velox broker login kite``).

    The instrument master is the store's when ``velox`` downloaded one
    (:meth:`KiteBroker.download_instruments`), else the bundled one; ``instruments`` is not
    used for Kite's tokens (the bundled master carries them).
    """
    from velox.brokers.kite.adapter import KiteBroker
    from velox.brokers.kite.auth import load_credentials, load_session
    from velox.brokers.kite.ticker import KiteMarketData
    from velox.config import get_settings
    from velox.secrets import SecretStore

    secrets = SecretStore(store)
    session = load_session(secrets)  # AuthExpired before anything is sent
    broker = KiteBroker.from_store(store, secrets=secrets)
    feed = KiteMarketData(
        session.api_key,
        session.access_token,
        root=get_settings().kite_ws_root,
        instruments=broker._master,  # noqa: SLF001 - the same master as the adapter's
        on_order_update=broker.on_kite_order_update,
    )
    postbacks = None
    port = get_settings().kite_postback_port
    if port:
        from velox.brokers.kite.postback import PostbackServer

        secret = load_credentials(secrets).api_secret
        postbacks = PostbackServer(broker.on_kite_order_update, secret, port=port)
        log.info("[kite] postbacks on port %d", postbacks.start())

    def close() -> None:
        feed.stop()
        if postbacks is not None:
            postbacks.stop()

    return LiveConnection(broker=broker, feed=feed, close=close)
