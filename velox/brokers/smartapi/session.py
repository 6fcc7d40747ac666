"""Log in to SmartAPI with the stored session and wire its three parts together.

:func:`connect` is what ``velox live`` / ``velox paper`` call for ``broker = "smartapi"``
(through :func:`velox.brokers.connect`): the REST adapter (:class:`SmartApiBroker`, whose
order-update websocket feeds the engine's listener) and the market-data websocket
(:class:`SmartApiMarketData`), all on the session ``velox broker login smartapi`` stored.
The session is renewed first with its refresh token (``generateTokens``): that proves it is
alive before any order can be sent and starts the day's run on fresh tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from velox.brokers.base import LiveConnection

if TYPE_CHECKING:
    from velox.store import Store
    from velox.types import Instrument

__all__ = ["connect"]


def connect(
    *, store: Store, instruments: Callable[[str], Instrument] | None = None
) -> LiveConnection:
    """Return the logged-in SmartAPI connection (``AuthExpired`` naming
    ``velox broker login smartapi`` if the stored session is missing, expired or refused).

    Angel's tokens of the instruments come from the bundled master (``instruments`` is not
    used for them).
    """
    from velox.brokers.smartapi.adapter import SmartApiBroker
    from velox.brokers.smartapi.auth import load_session, refresh_session
    from velox.brokers.smartapi.feed import SmartApiMarketData
    from velox.config import get_settings
    from velox.instruments import load_bundled_master
    from velox.secrets import SecretStore

    settings = get_settings()
    secrets = SecretStore(store)
    session = load_session(secrets)  # AuthExpired before anything is sent
    if session.refresh_token:
        session = refresh_session(session, root=settings.smartapi_root, secrets=secrets)
    broker = SmartApiBroker(
        session.api_key, session.client_code, session.jwt,
        refresh_token=session.refresh_token, feed_token=session.feed_token,
        instruments=load_bundled_master(), root=settings.smartapi_root,
        order_ws_url=settings.smartapi_order_ws, expires_at=session.expires_at,
    )  # fmt: skip
    feed = SmartApiMarketData(
        session.jwt, session.api_key, session.client_code, session.feed_token,
        broker.keys(), url=settings.smartapi_ws_root,
    )  # fmt: skip

    def close() -> None:
        feed.stop()
        broker.close()

    return LiveConnection(broker=broker, feed=feed, close=close)
