"""Breeze market data: the SDK's socket.io rate stream turned into Velox ticks.

``BreezeConnect.ws_connect`` opens the connection (its own ``socketio.Client``, authenticated
with the session's user id and token); Velox then uses that client directly rather than the
SDK's ``subscribe_feeds``, because:

* ``subscribe_feeds`` routes every ``stock`` event through ``parse_data``, which renders the
  exchange's trade time with ``datetime.fromtimestamp(…).strftime('%c')``: the machine's local
  time, to the second, without a zone. Here the raw 21-field list is read
  (:func:`velox.brokers.breeze.mapping.tick_from_stock`) with the epoch time kept exact;
* ``ws_disconnect`` only sends a "disconnect" *event* and leaves the socket open, so
  :meth:`BreezeMarketData.stop` closes the client itself.

socket.io reconnects on its own after a dropped line (python-socketio's back-off); on each
(re)connection the instruments Velox holds in :attr:`BreezeMarketData.subscriptions` are
joined again, and the callback hears ``ConnectionEvent(CONNECTED, "reconnected after …")``
after a ``ConnectionEvent(DISCONNECTED)``. Breeze streams quotes (``4.1!token``) and depth
(``4.2!token``) separately; every Velox mode subscribes to the quotes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from velox.brokers.base import ConnectionEvent, ConnectionState, TickMode
from velox.brokers.breeze import _sdk
from velox.brokers.breeze.mapping import tick_from_stock
from velox.errors import DataError
from velox.types import Tick

__all__ = ["BreezeMarketData"]

log = logging.getLogger(__name__)


class BreezeMarketData:
    """Ticks of the subscribed instruments from Breeze's rate stream.

    ``tokens`` maps a Velox instrument id to its quote-stream token (``4.1!2885``), as
    :meth:`BreezeBroker.stream_tokens` returns them.
    """

    name = "breeze"

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        user_id: str,
        session_key: str,
        tokens: Mapping[str, str],
        *,
        urls: _sdk.BreezeUrls | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if urls is None:
            from velox.config import get_settings

            urls = _sdk.BreezeUrls.for_root(get_settings().breeze_root)
        self.urls = urls
        self._auth = (api_key, api_secret, user_id, session_key)
        self._tokens = dict(tokens)
        self._ids = {token: iid for iid, token in tokens.items()}
        self.subscriptions: dict[str, TickMode] = {}
        self.backoff, self.max_backoff = backoff, max_backoff
        self._lock = threading.Lock()
        self._sio: Any = None
        self._stopped = threading.Event()
        self._callback: Callable[[Tick | ConnectionEvent], object] | None = None
        self._lost_at: float | None = None
        self.ticks = 0
        self.connects = 0

    def __repr__(self) -> str:
        held = len(self.subscriptions)
        return f"BreezeMarketData(stream={self.urls.stream_url!r}, subscribed={held})"

    # ---- subscriptions -----------------------------------------------------------------------

    def subscribe(self, instrument_ids: Collection[str], mode: TickMode = TickMode.QUOTE) -> None:
        unknown = sorted(i for i in instrument_ids if i not in self._tokens)
        if unknown:
            raise DataError(f"Breeze has no stream token for {', '.join(unknown)} (Velox streams "
                            "NSE/BSE stocks with an exchange token)")  # fmt: skip
        with self._lock:
            for iid in instrument_ids:
                self.subscriptions[iid] = mode
            sio = self._sio
        if sio is not None and sio.connected:  # else the next connection joins them
            self._emit(sio, "join", [self._tokens[i] for i in instrument_ids])

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        with self._lock:
            gone = [self._tokens[i] for i in instrument_ids if self.subscriptions.pop(i, None)]
            sio = self._sio
        if gone and sio is not None and sio.connected:
            self._emit(sio, "leave", gone)

    @staticmethod
    def _emit(sio: Any, event: str, tokens: list[str]) -> None:
        try:
            sio.emit(event, tokens)
        except Exception as exc:  # noqa: BLE001 - a dropping connection: the next one joins
            log.warning("[breeze] %s failed (%s); the next connection will", event, exc)

    # ---- the connection ----------------------------------------------------------------------

    def run(self, callback: Callable[[Tick | ConnectionEvent], object]) -> None:
        """Connect, deliver ticks and connection events to ``callback`` until :meth:`stop`
        (socket.io reconnects a dropped line; a refused first connection is retried here)."""
        self._callback = callback
        delay = self.backoff
        while not self._stopped.is_set():
            try:
                sio = self._connect()
            except Exception as exc:  # noqa: BLE001 - refused or unreachable: retried
                log.warning("[breeze] rate stream did not connect: %s", exc)
                self._stopped.wait(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            self._on_connect()
            while not self._stopped.wait(0.2):
                if not sio.connected and sio._reconnect_task is None:  # noqa: SLF001 - gave up
                    break
            if not self._stopped.is_set():
                log.warning("[breeze] rate stream gave up reconnecting; connecting again")
        self._disconnect()

    def _connect(self) -> Any:
        api = _sdk.client(*self._auth, self.urls)
        with _sdk.pointed_at(self.urls):
            api.ws_connect()
        sio = api.sio_rate_refresh_handler.sio
        sio.on("stock", self._on_stock)
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        with self._lock:
            self._sio = sio
        return sio

    def _on_connect(self) -> None:
        self.connects += 1
        with self._lock:
            tokens = [self._tokens[i] for i in self.subscriptions]
            sio = self._sio
        if tokens and sio is not None:
            self._emit(sio, "join", tokens)
        lost, self._lost_at = self._lost_at, None
        detail = "connected" if lost is None else (
            f"reconnected after a {time.monotonic() - lost:.1f} s gap")  # fmt: skip
        self._event(ConnectionState.CONNECTED, detail)

    def _on_disconnect(self, *reason: object) -> None:
        if self._stopped.is_set():
            return
        self._lost_at = time.monotonic()
        self._event(ConnectionState.DISCONNECTED, "the Breeze rate stream closed")

    def _event(self, state: ConnectionState, detail: str) -> None:
        callback = self._callback
        if callback is not None:
            callback(ConnectionEvent(self.name, state, datetime.now(UTC), detail))

    def _on_stock(self, data: Any) -> None:
        if not isinstance(data, list) or len(data) != 21:
            return  # depth lists and F&O quotes are not subscribed
        iid = self._ids.get(str(data[0]))
        callback = self._callback
        if iid is None or callback is None:
            return
        try:
            tick = tick_from_stock(data, iid)
        except (TypeError, ValueError, OverflowError) as exc:
            log.warning("[breeze] quote not understood (%s): %r", exc, data[:3])
            return
        self.ticks += 1
        callback(tick)

    def _disconnect(self) -> None:
        with self._lock:
            sio, self._sio = self._sio, None
        if sio is not None:
            try:
                sio.disconnect()
            except Exception as exc:  # noqa: BLE001 - closing an already closed client
                log.debug("[breeze] close: %s", exc)

    def stop(self) -> None:
        self._stopped.set()
        self._disconnect()
