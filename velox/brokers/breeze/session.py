"""Log in to Breeze with the stored session and wire its parts together.

:func:`connect` is what ``velox live`` / ``velox paper`` call for ``broker = "breeze"``
(through :func:`velox.brokers.connect`): the REST adapter (:class:`BreezeBroker`, whose
order-notification stream feeds the engine's listener) and the rate stream
(:class:`BreezeMarketData`), on the session ``velox broker login breeze`` stored. The funds
are read first: that proves the session (and the app secret's checksum) before any order can
be sent.
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
    """Return the logged-in Breeze connection (``AuthExpired`` naming
    ``velox broker login breeze`` if the stored session is missing, expired or refused).

    ICICI's stock codes and exchange tokens come from the bundled master (``instruments`` is
    not used for them).
    """
    from velox.brokers.breeze import _sdk
    from velox.brokers.breeze.adapter import BreezeBroker
    from velox.brokers.breeze.auth import load_session
    from velox.brokers.breeze.feed import BreezeMarketData
    from velox.config import get_settings
    from velox.instruments import load_bundled_master
    from velox.secrets import SecretStore

    session = load_session(SecretStore(store))  # AuthExpired before anything is sent
    urls = _sdk.BreezeUrls.for_root(get_settings().breeze_root)
    master = load_bundled_master()
    probe = BreezeBroker(session.api_key, session.api_secret, session.user_id,
                         session.session_key, instruments=master, urls=urls,
                         notifications=False, expires_at=session.expires_at)  # fmt: skip
    probe.funds()  # a refused session or secret fails here, before the streams open
    broker = BreezeBroker(session.api_key, session.api_secret, session.user_id,
                          session.session_key, instruments=master, urls=urls,
                          expires_at=session.expires_at)  # fmt: skip
    feed = BreezeMarketData(session.api_key, session.api_secret, session.user_id,
                            session.session_key, broker.stream_tokens(), urls=urls)  # fmt: skip

    def close() -> None:
        feed.stop()
        broker.close()

    return LiveConnection(broker=broker, feed=feed, close=close)
