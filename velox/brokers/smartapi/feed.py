"""SmartAPI market data: ``SmartWebSocketV2`` connections turned into Velox ticks.

The official client opens the socket, sends the (un)subscriptions and the heartbeat; Velox
decodes the binary packets itself (:func:`velox.brokers.smartapi.packets.decode`, held to the
SDK's own parser by the tests, and faster) and owns reconnection, because the SDK's does not
hold up:

* its subscription list is a class attribute shared by every instance (each connection here
  gets its own, :func:`velox.brokers.smartapi._sdk.new_feed`);
* it reconnects only on an error, not when Angel closes the socket, and its ``resubscribe``
  after ``unsubscribe`` can raise out of the websocket thread. Here every connection is a new
  client that subscribes to what Velox holds in :attr:`SmartApiMarketData.subscriptions`;
  a lost connection is a ``ConnectionEvent(DISCONNECTED)``, the next one
  ``ConnectionEvent(CONNECTED, "reconnected after …")``, with a growing back-off.
* it skips TLS verification (``cert_reqs=CERT_NONE``, written into ``connect``): Velox cannot
  change that without editing the SDK, so it says so in ``docs/smartapi.md``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from velox.brokers.base import ConnectionEvent, ConnectionState, TickMode
from velox.brokers.smartapi import _sdk, packets
from velox.errors import DataError
from velox.types import Tick

__all__ = ["MODES", "SmartApiMarketData"]

log = logging.getLogger(__name__)

#: Velox tick mode → SmartWebSocketV2 subscription mode.
MODES = {
    TickMode.LTP: packets.LTP,
    TickMode.QUOTE: packets.QUOTE,
    TickMode.FULL: packets.SNAP_QUOTE,
}


class SmartApiMarketData:
    """Ticks of the subscribed instruments from Angel's ``smart-stream`` websocket.

    ``keys`` maps a Velox instrument id to its (token, trading symbol, exchange) at Angel, as
    :meth:`SmartApiBroker.key` returns them.
    """

    name = "smartapi"

    def __init__(
        self,
        jwt: str,
        api_key: str,
        client_code: str,
        feed_token: str,
        keys: Mapping[str, tuple[str, str, str]],
        *,
        url: str | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if url is None:
            from velox.config import get_settings

            url = get_settings().smartapi_ws_root
        self.url = url
        self._auth = (jwt, api_key, client_code, feed_token)
        self._keys = dict(keys)
        self._ids = {(packets.EXCHANGE_TYPES[ex], tok): iid for iid, (tok, _, ex) in keys.items()
                     if ex in packets.EXCHANGE_TYPES}  # fmt: skip
        self.subscriptions: dict[str, TickMode] = {}
        self.backoff, self.max_backoff = backoff, max_backoff
        self._lock = threading.Lock()
        self._ws: Any = None
        self._raw: Any = None  # the open connection's socket
        self._open = threading.Event()
        self._stopped = threading.Event()
        self.ticks = 0
        self.connects = 0

    def __repr__(self) -> str:
        return f"SmartApiMarketData(url={self.url!r}, subscribed={len(self.subscriptions)})"

    # ---- subscriptions -----------------------------------------------------------------------

    def _token_list(self, instrument_ids: Collection[str]) -> list[dict[str, Any]]:
        groups: dict[int, list[str]] = {}
        for iid in instrument_ids:
            token, _, exchange = self._keys[iid]
            groups.setdefault(packets.EXCHANGE_TYPES[exchange], []).append(token)
        return [{"exchangeType": ex, "tokens": toks} for ex, toks in groups.items()]

    def subscribe(self, instrument_ids: Collection[str], mode: TickMode = TickMode.QUOTE) -> None:
        unknown = sorted(i for i in instrument_ids if i not in self._keys)
        if unknown:
            raise DataError(f"SmartAPI has no token for {', '.join(unknown)} in the instrument "
                            "master (Velox knows Angel's NSE cash and F&O tokens)")  # fmt: skip
        with self._lock:
            for iid in instrument_ids:
                self.subscriptions[iid] = mode
            ws = self._ws if self._open.is_set() else None
        if ws is not None:  # else the next connection subscribes
            self._send(ws, instrument_ids, mode)

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        with self._lock:
            gone = {iid: self.subscriptions.pop(iid) for iid in instrument_ids
                    if iid in self.subscriptions}  # fmt: skip
            ws = self._ws if self._open.is_set() else None
        if ws is None:
            return
        by_mode: dict[TickMode, list[str]] = {}
        for iid, mode in gone.items():
            by_mode.setdefault(mode, []).append(iid)
        for mode, ids in by_mode.items():
            try:
                ws.unsubscribe("velox", MODES[mode], self._token_list(ids))
            except Exception as exc:  # noqa: BLE001 - a closing socket: the next one won't ask
                log.warning("[smartapi] unsubscribe failed (%s)", exc)

    def _send(self, ws: Any, instrument_ids: Collection[str], mode: TickMode) -> None:
        try:
            ws.subscribe("velox", MODES[mode], self._token_list(instrument_ids))
        except Exception as exc:  # noqa: BLE001 - the connection dropped: it resubscribes
            log.warning("[smartapi] subscribe failed (%s); the next connection will", exc)

    # ---- the connection loop -----------------------------------------------------------------

    def run(self, callback: Callable[[Tick | ConnectionEvent], object]) -> None:
        """Connect, deliver ticks and connection events to ``callback``, reconnect until
        :meth:`stop`."""
        delay = self.backoff
        lost_at: float | None = None
        while not self._stopped.is_set():
            started = time.monotonic()
            ws = self._client(callback, lost_at)
            with self._lock:
                self._ws = ws
            if self._stopped.is_set():  # stop() ran before this client existed to be closed
                break
            self._connection(ws)
            self._open.clear()
            if self._stopped.is_set():
                break
            lost_at = time.monotonic()
            callback(ConnectionEvent(self.name, ConnectionState.DISCONNECTED, datetime.now(UTC),
                                     "the SmartAPI websocket closed"))  # fmt: skip
            delay = self.backoff if lost_at - started > 5 else min(delay * 2, self.max_backoff)
            self._stopped.wait(delay)

    def _connection(self, ws: Any) -> None:
        """Run one connection (``ws.connect()`` blocks until its socket closes) on a thread of
        its own, and return when it ends or :meth:`stop` is called.

        Why a thread: websocket-client reads in ``epoll`` with no timeout (the SDK sets none),
        and its ``close()`` may close the file descriptor without shutting the socket down,
        which leaves ``epoll`` waiting for ever; so ``run`` never waits on the read itself.
        """

        def connect() -> None:
            try:
                ws.connect()
            except Exception as exc:  # noqa: BLE001 - a failed connect is retried by run
                log.warning("[smartapi] websocket failed: %s", exc)

        thread = threading.Thread(target=connect, name="velox-smartapi-ws", daemon=True)
        thread.start()
        while thread.is_alive() and not self._stopped.is_set():
            thread.join(0.2)

    def _client(self, callback: Callable[[Tick | ConnectionEvent], object],
                lost_at: float | None) -> Any:  # fmt: skip
        ws = _sdk.new_feed(*self._auth, max_retry_attempt=0)
        ws.ROOT_URI = self.url  # a class attribute in the SDK: set on this instance only
        ids = self._ids

        def on_open(app: Any) -> None:
            sock = getattr(app, "sock", None)
            self._raw = getattr(sock, "sock", None)  # what stop() shuts down
            self.connects += 1
            self._open.set()
            with self._lock:
                held = dict(self.subscriptions)
            by_mode: dict[TickMode, list[str]] = {}
            for iid, mode in held.items():
                by_mode.setdefault(mode, []).append(iid)
            for mode, group in by_mode.items():
                self._send(ws, group, mode)
            detail = "connected" if lost_at is None else (
                f"reconnected after a {time.monotonic() - lost_at:.1f} s gap")  # fmt: skip
            callback(ConnectionEvent(self.name, ConnectionState.CONNECTED, datetime.now(UTC),
                                     detail))  # fmt: skip

        def on_data(_app: object, data: object, data_type: int, _more: object) -> None:
            if data_type != 2 or not isinstance(data, bytes | bytearray):
                return
            try:
                tick = packets.decode(bytes(data), ids)
            except DataError as exc:
                log.warning("[smartapi] %s", exc)
                return
            if tick is not None:
                self.ticks += 1
                callback(tick)

        ws._on_open = on_open  # the SDK's would call its own resubscribe on a reconnect
        ws._on_data = on_data  # raw packets to Velox's decoder, not the SDK's dict parser
        # the SDK's _on_close takes one argument where websocket-client passes three
        ws._on_close = lambda *_: None
        ws.on_error = lambda *a: (
            None if self._stopped.is_set() else log.warning("[smartapi] websocket error %s", a)
        )
        return ws

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            ws = self._ws
        if ws is None:
            return
        # websocket-client's close() may only close() the fd (when it takes the connection to
        # be down already), which does not wake the reading thread's poll(): the socket is shut
        # down first, so run_forever returns whatever close() then does
        raw = self._raw
        if raw is not None:
            with contextlib.suppress(OSError):  # already shut
                raw.shutdown(socket.SHUT_RDWR)
        try:
            ws.close_connection()
        except Exception as exc:  # noqa: BLE001 - closing an already closed socket
            log.debug("[smartapi] close: %s", exc)
