"""Angel One SmartAPI as a Velox :class:`~velox.brokers.base.Broker`, through the official SDK.

Requests go through ``SmartConnect`` (root pointed at the configured URL, never by editing the
SDK), each behind the throttle of its endpoint at Angel's published limits
(:data:`~velox.brokers.smartapi.mapping.SMARTAPI_RATE_LIMITS`). The SDK answers failures with
``{status: false, errorcode}`` or ``None`` instead of raising; every such answer becomes a
Velox error here (:func:`~velox.brokers.smartapi.mapping.error_of`). Order updates arrive on
``SmartWebSocketOrderUpdate`` (its own thread, reconnecting; on reconnect the order book is
read again so nothing of the gap is lost); a fill is booked from the trade book (fill id =
Angel's ``fillid``) once, whichever update reports it first.

Velox's client id travels as the ``ordertag``: a place that timed out is looked up in the
order book by its tag before anything is sent again, and a restarted engine re-sending a
client id already in today's book gets that order back.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from velox.brokers.base import (
    BrokerListener,
    Capabilities,
    ConnectionEvent,
    ConnectionListener,
    ConnectionState,
    Funds,
)
from velox.brokers.smartapi import _sdk
from velox.brokers.smartapi import mapping as m
from velox.brokers.throttle import ThrottleSet
from velox.calendar import IST, as_ist
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited
from velox.types import Fill, Order, OrderType, Position, Tick

if TYPE_CHECKING:
    import pandas as pd

    from velox.instruments import InstrumentMaster
    from velox.store import Store

__all__ = ["SmartApiBroker", "smartapi_throttles"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def smartapi_throttles(margin: float = 0.05) -> ThrottleSet:
    """Return throttles at Angel's published limits, each window widened by ``margin`` s so
    loopback or network jitter cannot land two requests a full window apart inside one."""
    return ThrottleSet(m.SMARTAPI_RATE_LIMITS, default="other", margin=margin)


def _ambiguous(exc: BaseException) -> bool:
    """Whether a failed request may still have reached Angel (a timeout, a dropped line)."""
    import requests

    return isinstance(exc, requests.Timeout | requests.ConnectionError)


class SmartApiBroker:
    """Angel One SmartAPI as a Velox broker (see the module docstring).

    Parameters
    ----------
    api_key, client_code
        The SmartAPI app key and the Angel client code.
    jwt, refresh_token, feed_token
        The day's session (``velox broker login smartapi``).
    instruments
        The instrument master (SmartAPI tokens and symbols; default: the bundled one).
    root
        SmartAPI's REST root (default setting ``smartapi_root``).
    order_ws_url
        The order-update websocket; ``None``: no order updates (reads only).
    expires_at
        When the session ends; a call at or after it raises AuthExpired without sending.
    timeout, settle
        Seconds the SDK waits for an answer; seconds before a timed-out order is looked up a
        second time.
    """

    name = "smartapi"
    capabilities: Capabilities = m.SMARTAPI_CAPABILITIES

    def __init__(
        self,
        api_key: str,
        client_code: str,
        jwt: str,
        *,
        refresh_token: str = "",
        feed_token: str = "",
        instruments: Any = None,
        root: str | None = None,
        order_ws_url: str | None = None,
        expires_at: datetime | None = None,
        timeout: float = 7.0,
        settle: float = 0.5,
        throttles: ThrottleSet | None = None,
    ) -> None:
        from velox.config import get_settings

        if instruments is None:
            from velox.instruments import load_bundled_master

            instruments = load_bundled_master()
        self.api_key, self.client_code = api_key, client_code
        jwt = jwt.removeprefix("Bearer ")  # SmartConnect.generateSession prefixes it
        self._jwt, self.feed_token = jwt, feed_token
        self.root = root or get_settings().smartapi_root
        self._api = _sdk.SmartConnect(
            api_key=api_key, access_token=jwt, refresh_token=refresh_token,
            feed_token=feed_token, userId=client_code, root=self.root, timeout=timeout,
        )  # fmt: skip
        self.expires_at = expires_at
        self.settle = settle
        self.throttles = throttles or smartapi_throttles()
        self.timeout = timeout
        self._use_master(instruments.table)
        self._listener: BrokerListener | None = None
        self._lock = threading.RLock()
        self._book: dict[str, dict[str, Any]] = {}  # orderid → latest order-book entry
        self._tags: dict[str, str] = {}  # ordertag → orderid
        self._book_loaded = False
        self._booked: set[str] = set()  # fill ids handed to the listener
        self._booked_qty: dict[str, int] = {}  # orderid → quantity of those fills
        self._dead: str | None = None
        self.updates_received = 0
        self._updates: _OrderUpdates | None = None
        if order_ws_url:
            self._updates = _OrderUpdates(self, order_ws_url)
            self._updates.start()

    def __repr__(self) -> str:
        return f"SmartApiBroker(client_code={self.client_code!r}, root={self.root!r})"

    def set_listener(self, listener: BrokerListener) -> None:
        self._listener = listener

    def close(self) -> None:
        """Stop the order-update websocket."""
        if self._updates is not None:
            self._updates.stop()

    # ---- the request path --------------------------------------------------------------------

    def _check_session(self) -> None:
        if self._dead is not None:
            raise AuthExpired(self._dead)
        if self.expires_at is not None and datetime.now(IST) >= self.expires_at:
            self._dead = (f"the SmartAPI session expired at {self.expires_at:%Y-%m-%d %H:%M} "
                          f"IST; log in again with `{m.LOGIN_COMMAND}`")  # fmt: skip
            raise AuthExpired(self._dead)

    def _call(self, route: str, what: str, call: Callable[[], Any],
              client_id: str | None = None) -> Any:  # fmt: skip
        """Send one request behind its throttle; return its ``data`` or raise a Velox error."""
        self._check_session()
        self.throttles.acquire(route)
        try:
            answer = call()
        except Exception as exc:
            if _ambiguous(exc):
                raise
            raise BrokerError(f"SmartAPI failed {what}: {type(exc).__name__}: {exc}") from None
        if not isinstance(answer, Mapping) or answer.get("status") is not True:
            error = m.error_of(answer, what, client_id)
            if isinstance(error, AuthExpired):
                self._dead = str(error)  # never hammer Angel with a dead session
                log.error("%s", error)
            raise error
        return answer.get("data")

    def _read(self, route: str, what: str, call: Callable[[], Any]) -> Any:
        """Send a read; retry it once after a timeout, or after one window when Angel's gateway
        counted another process on this API key (a restarted engine) inside the limit."""
        try:
            return self._call(route, what, call)
        except RateLimited:
            limits = self.throttles.throttle(route).limits
            time.sleep(min(limit.period for limit in limits))
            return self._call(route, what, call)
        except BrokerError:
            raise
        except Exception as exc:  # a timeout on a read: one more try
            log.warning("SmartAPI %s failed (%s); retrying once", what, exc)
            try:
                return self._call(route, what, call)
            except BrokerError:
                raise
            except Exception as again:
                raise BrokerError(f"SmartAPI failed {what}: {again}") from None

    # ---- instruments -------------------------------------------------------------------------

    def key(self, instrument_id: str) -> tuple[str, str, str]:
        """Return (token, trading symbol, exchange) of an instrument at Angel."""
        key = self._key.get(instrument_id)
        if key is None:
            raise OrderRejected(f"{instrument_id} has no SmartAPI token in the instrument master")
        return key

    def _use_master(self, table: pd.DataFrame) -> None:
        rows = table[table["angel_token"].notna()]
        self._key = {iid: (str(tok), str(sym), str(ex)) for iid, tok, sym, ex in
                     zip(rows["id"], rows["angel_token"], rows["angel_symbol"], rows["exchange"],
                         strict=True)}  # fmt: skip
        self._iid = {(ex, tok): iid for iid, (tok, _, ex) in self._key.items()}

    def download_instruments(
        self, store: Store | None = None, *, url: str | None = None, as_of: date | None = None
    ) -> InstrumentMaster:
        """Download Angel's ``OpenAPIScripMaster.json`` (the ``smartapi_master_url`` setting),
        read it (:func:`velox.instruments.read_angel_json`: strikes and tick sizes from paise,
        NSE/BSE/NFO/BFO rows), use it, and upsert it into ``store``'s instruments, keeping what
        the store knew of the same instruments from other brokers (Kite's tokens)."""
        import requests

        from velox.config import get_settings
        from velox.instruments import InstrumentMaster, read_angel_json

        url = url or get_settings().smartapi_master_url
        try:
            answer = requests.get(url, timeout=max(self.timeout, 30.0))
            answer.raise_for_status()
        except requests.RequestException as exc:
            raise BrokerError(f"downloading Angel's instrument master failed: {exc}") from None
        with tempfile.TemporaryDirectory(prefix="velox-angel-") as folder:
            path = Path(folder) / "OpenAPIScripMaster.json"
            path.write_bytes(answer.content)
            table = read_angel_json(path, as_of=as_of)
        if store is not None:
            known = store.read_instruments()
            if len(known):  # an upsert replaces a row wholesale: keep the other brokers' fields
                table = table.set_index("id").combine_first(known.set_index("id"))
                table = table.reset_index()[list(known.columns)]
            log.info("stored %d SmartAPI instruments", store.write_instruments(table))
        master = InstrumentMaster(table)
        self._use_master(master.table)
        return master

    def keys(self) -> dict[str, tuple[str, str, str]]:
        """Return every instrument Angel trades: id → (token, trading symbol, exchange)."""
        return dict(self._key)

    def _instrument_of(self, data: Mapping[str, Any]) -> str:
        exchange, token = str(data.get("exchange")), str(data.get("symboltoken") or "")
        iid = self._iid.get((exchange, token))
        if iid is None:  # the trade book names no token: its symbol
            symbol = str(data.get("tradingsymbol"))
            iid = next((i for i, (_, sym, ex) in self._key.items()
                        if sym == symbol and ex == exchange), None)  # fmt: skip
        if iid is None:
            raise BrokerError(f"SmartAPI reported {exchange} {token or data.get('tradingsymbol')}"
                              ", which the instrument master does not have")  # fmt: skip
        return iid

    # ---- orders ------------------------------------------------------------------------------

    def _remember(self, data: Mapping[str, Any]) -> Order:
        """Keep one order-book entry (caller holds the lock) and return it as a Velox order."""
        oid = str(data["orderid"])
        self._book[oid] = dict(data)
        tag = str(data.get("ordertag") or "")
        if tag:
            self._tags.setdefault(tag, oid)
        return m.order_from_angel(data, self._instrument_of(data))

    def _load_book(self) -> list[dict[str, Any]]:
        raw = self._read("api.order.book", "listing orders", self._api.orderBook) or []
        with self._lock:
            for data in raw:
                self._remember(data)
            self._book_loaded = True
        return raw

    def place_order(self, order: Order) -> str:
        """Send ``order``; return Angel's order id (a client id already in today's book is
        adopted, not sent again)."""
        problem = self.capabilities.supports(order)
        if problem:
            raise OrderRejected(problem, client_id=order.client_id)
        token, symbol, exchange = self.key(order.instrument_id)
        params = m.order_params(order, token=token, symbol=symbol, exchange=exchange)
        tag = params["ordertag"]
        if not self._book_loaded:
            self._load_book()
        with self._lock:
            if tag in self._tags:
                log.warning("order %s is already at Angel as %s; adopted", tag, self._tags[tag])
                return self._tags[tag]
        for attempt in (1, 2):
            try:
                data = self._call("api.order.place", f"placing order {tag}",
                                  lambda: self._api.placeOrderFullResponse(dict(params)),
                                  client_id=order.client_id)  # fmt: skip
            except BrokerError:
                raise
            except Exception as exc:  # noqa: BLE001 - ambiguous: it may have reached Angel
                log.warning("placing %s may or may not have reached Angel (%s); looking it up "
                            "by its ordertag", tag, type(exc).__name__)  # fmt: skip
                found = self._find(tag)
                if found is None:
                    time.sleep(self.settle)
                    found = self._find(tag)
                if found is not None:
                    log.warning("order %s was placed as %s; adopted, not re-sent", tag, found)
                    return found
                if attempt == 2:
                    raise BrokerError(f"placing order {tag} failed twice in transit and it is "
                                      "not in the order book; check Angel before sending it "
                                      "again") from None  # fmt: skip
                continue
            oid = str((data or {}).get("orderid") or "")
            if not oid:
                raise BrokerError(f"SmartAPI accepted order {tag} but returned no order id")
            with self._lock:
                self._tags.setdefault(tag, oid)
            return oid
        raise AssertionError("unreachable")  # pragma: no cover

    def _find(self, tag: str) -> str | None:
        try:
            self._load_book()
        except AuthExpired:
            raise
        except BrokerError as exc:
            log.warning("order book lookup failed: %s", exc)
            return None
        with self._lock:
            return self._tags.get(tag)

    def _entry(self, broker_order_id: str) -> dict[str, Any]:
        with self._lock:
            entry = self._book.get(broker_order_id)
        if entry is None:
            self._load_book()
            with self._lock:
                entry = self._book.get(broker_order_id)
        if entry is None:
            raise OrderRejected(f"order {broker_order_id} is not in today's SmartAPI order book")
        return entry

    def modify_order(
        self,
        broker_order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        trigger_price: float | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        entry = self._entry(broker_order_id)
        kind = order_type or m.ORDER_TYPE_OF.get(str(entry["ordertype"]), OrderType.LIMIT)
        price = limit_price if limit_price is not None else m._num(entry.get("price"))
        trigger = trigger_price if trigger_price is not None else m._num(entry.get("triggerprice"))
        params = {
            "variety": m.VARIETY[kind], "orderid": broker_order_id,
            "ordertype": m.ORDER_TYPE[kind], "producttype": str(entry["producttype"]),
            "duration": str(entry.get("duration") or "DAY"),
            "price": f"{price:g}",
            "quantity": str(qty if qty is not None else m._int(entry.get("quantity"))),
            "tradingsymbol": str(entry["tradingsymbol"]), "symboltoken": str(entry["symboltoken"]),
            "exchange": str(entry["exchange"]),
            "triggerprice": f"{trigger:g}",
        }  # fmt: skip
        self._call("api.order.modify", f"modifying order {broker_order_id}",
                   lambda: self._api.modifyOrder(dict(params)),
                   client_id=broker_order_id)  # fmt: skip
        with self._lock:
            entry.update({k: params[k] for k in ("price", "quantity", "triggerprice", "ordertype")})

    def cancel_order(self, broker_order_id: str) -> None:
        entry = self._entry(broker_order_id)
        self._call("api.order.cancel", f"cancelling order {broker_order_id}",
                   lambda: self._api.cancelOrder(broker_order_id, str(entry["variety"])),
                   client_id=broker_order_id)  # fmt: skip

    def orders(self) -> list[Order]:
        raw = self._load_book()
        with self._lock:
            return [m.order_from_angel(d, self._instrument_of(d)) for d in raw]

    def _book_entry(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            entry = self._book.get(order_id)
        if entry is None:
            self._load_book()
            with self._lock:
                entry = self._book.get(order_id, {})
        return entry

    def _fill_of(self, trade: Mapping[str, Any]) -> Fill:
        """A trade-book line's ``filltime`` is a time of day only: its date is the order's
        (the book's ``exchorderupdatetime``), today's when the book has no date."""
        entry = self._book_entry(str(trade["orderid"]))
        stamp = m.angel_time(entry.get("exchorderupdatetime") or entry.get("updatetime"))
        day = stamp.date() if stamp is not None else datetime.now(IST).date()
        tag = str(entry.get("ordertag") or f"angel-{trade['orderid']}")
        return m.fill_from_angel(trade, self._instrument_of(trade), tag, day)

    def fills(self) -> list[Fill]:
        raw = self._read("api.trade.book", "listing trades", self._api.tradeBook) or []
        return [self._fill_of(t) for t in raw]

    def positions(self) -> list[Position]:
        raw = self._read("api.position", "listing positions", self._api.position) or []
        return [m.position_from_angel(p, self._instrument_of(p)) for p in raw]

    def holdings(self) -> list[Position]:
        raw = self._read("api.holding", "listing holdings", self._api.holding) or []
        return [m.holding_from_angel(h, self._instrument_of(h)) for h in raw]

    def funds(self) -> Funds:
        return m.funds_from_angel(self._read("api.rms.limit", "reading funds",
                                             self._api.rmsLimit) or {})  # fmt: skip

    def history(
        self, instrument_id: str, timeframe: str, start: datetime | str, end: datetime | str
    ) -> pd.DataFrame:
        """Return candles of ``[start, end]`` as Velox's bar frame (ready for
        ``store.write_bars``), paged within Angel's per-request span of the interval
        (:data:`~velox.brokers.smartapi.mapping.CANDLE_MAX_DAYS`) and its 3 requests a second.
        Naive times and dates are IST; a date ``end`` is the end of that day."""
        import pandas as pd

        token, _, exchange = self.key(instrument_id)
        interval = m.candle_interval(timeframe)
        frames = []
        for lo, hi in m.candle_windows(as_ist(start), as_ist(end, end_of_day=True), timeframe):
            params = {"exchange": exchange, "symboltoken": token, "interval": interval,
                      "fromdate": f"{lo:%Y-%m-%d %H:%M}",
                      "todate": f"{hi:%Y-%m-%d %H:%M}"}  # fmt: skip
            what = f"reading {timeframe} candles of {instrument_id}"
            rows = self._read("api.candle.data", what,
                              lambda p=params: self._api.getCandleData(p))  # fmt: skip
            frames.append(m.candles_frame(rows))
        frame = pd.concat(frames) if frames else m.candles_frame([])
        return frame[~frame.index.duplicated(keep="last")].sort_index()

    def quote(self, instrument_ids: list[str]) -> dict[str, Tick]:
        """Return a full quote (``getMarketData`` FULL) of each instrument as a Velox tick:
        last price, day volume, best bid and ask; by Velox id."""
        by_exchange: dict[str, list[str]] = {}
        ids: dict[tuple[str, str], str] = {}
        for iid in instrument_ids:
            token, _, exchange = self.key(iid)
            by_exchange.setdefault(exchange, []).append(token)
            ids[(exchange, token)] = iid
        out: dict[str, Tick] = {}
        for i in range(0, len(ids), 50):  # Angel takes 50 tokens a request
            batch: dict[str, list[str]] = {}
            for exchange, token in list(ids)[i : i + 50]:
                batch.setdefault(exchange, []).append(token)
            data = self._read("api.market.data", "reading quotes",
                              lambda b=batch: self._api.getMarketData("FULL", b)) or {}  # fmt: skip
            for row in data.get("fetched") or []:
                iid = ids.get((str(row.get("exchange")), str(row.get("symbolToken"))))
                if iid is not None:
                    out[iid] = m.tick_from_quote(row, iid)
        return out

    def ltp(self, instrument_id: str) -> float:
        """Return the last traded price of one instrument (``getLtpData``)."""
        token, symbol, exchange = self.key(instrument_id)
        data = self._read("api.ltp.data", f"reading the LTP of {instrument_id}",
                          lambda: self._api.ltpData(exchange, symbol, token))  # fmt: skip
        return float(data["ltp"])

    # ---- order updates -----------------------------------------------------------------------

    def on_angel_order_update(self, message: Mapping[str, Any]) -> None:
        """Take one order-update message: the order to the listener, then its new fills."""
        data = message.get("orderData")
        if not isinstance(data, Mapping) or not data.get("orderid"):
            return  # AB00: the connection's greeting
        try:
            with self._lock:
                order = self._remember(data)
            listener = self._listener
            if listener is not None:
                listener.on_order_update(order)
            with self._lock:
                booked = self._booked_qty.get(str(order.broker_order_id), 0)
            if order.filled_qty > booked:
                self._book_fills(order)
        except (BrokerError, ValueError, KeyError) as exc:
            log.error("SmartAPI order update not understood (%s): %s", exc,
                      {k: data.get(k) for k in ("orderid", "status", "ordertag")})  # fmt: skip

    def _book_fills(self, order: Order) -> None:
        """Hand the listener each trade of ``order`` not handed before (from the trade book)."""
        listener = self._listener
        if listener is None:
            return
        for fill in self.fills():
            if fill.broker_order_id != order.broker_order_id:
                continue
            with self._lock:
                if fill.fill_id in self._booked:
                    continue
                self._booked.add(fill.fill_id)
                oid = str(order.broker_order_id)
                self._booked_qty[oid] = self._booked_qty.get(oid, 0) + fill.qty
            listener.on_fill(fill)

    def resync(self) -> None:
        """Read the order book again after a reconnection and replay what changed in the gap."""
        with self._lock:
            seen = {oid: (e.get("status"), e.get("filledshares")) for oid, e in self._book.items()}
        for data in self._read("api.order.book", "listing orders", self._api.orderBook) or []:
            if seen.get(str(data["orderid"])) != (data.get("status"), data.get("filledshares")):
                self.on_angel_order_update({"orderData": data})


class _OrderUpdates:
    """``SmartWebSocketOrderUpdate`` on its own thread, reconnecting until stopped.

    The SDK's own retry sleeps 10 s twice and then gives up; here a closed connection is
    reopened after ``backoff`` seconds (doubling to 5 s) and the order book is read again.
    """

    def __init__(self, broker: SmartApiBroker, url: str, backoff: float = 0.2) -> None:
        self.broker, self.url, self.backoff = broker, url, backoff
        self._stop = threading.Event()
        self._ws: Any = None
        self.connected = threading.Event()
        self._dropped = False  # closed while running: the next open is a reconnection
        self._thread = threading.Thread(target=self._run, name="velox-smartapi-orders",
                                        daemon=True)  # fmt: skip

    def start(self) -> None:
        self._thread.start()
        self.connected.wait(10)

    def stop(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None and ws.wsapp is not None:
            ws.wsapp.close()
        self._thread.join(5)

    def _run(self) -> None:
        broker, delay = self.broker, self.backoff
        cls = _sdk.SmartWebSocketOrderUpdate
        while not self._stop.is_set():
            ws = cls(broker._jwt, broker.api_key, broker.client_code, broker.feed_token)  # noqa: SLF001
            ws.WEBSOCKET_URI = self.url
            ws.retry_connect = lambda: None  # reconnection is ours
            ws.on_message = self._on_message
            ws.on_open = self._opened
            self._ws = ws
            ws.connect()  # returns when the connection closes
            self.connected.clear()
            if self._stop.is_set() or broker._dead is not None:  # noqa: SLF001
                return
            if not self._dropped:
                self._dropped = True
                self._tell(ConnectionState.DISCONNECTED, "order-update websocket closed")
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)
            try:
                broker.resync()
            except BrokerError as exc:
                log.warning("SmartAPI order book resync after a reconnect failed: %s", exc)

    def _opened(self, _app: object) -> None:
        self.connected.set()
        if self._dropped:
            self._dropped = False
            self._tell(ConnectionState.CONNECTED, "order-update websocket reopened")

    def _tell(self, state: ConnectionState, detail: str) -> None:
        """Report the order-update socket's state to a listener that hears connections."""
        log.warning("SmartAPI %s", detail)
        listener = self.broker._listener  # noqa: SLF001
        if isinstance(listener, ConnectionListener):
            listener.on_connection(ConnectionEvent("smartapi order updates", state,
                                                   datetime.now(IST), detail))  # fmt: skip

    def _on_message(self, _app: object, message: str | bytes) -> None:
        if message in ("pong", b"pong", "", b""):  # heartbeat answers
            return
        try:
            parsed = json.loads(message)
        except ValueError:
            log.warning("SmartAPI order update is not JSON: %r", message[:80])
            return
        self.broker.on_angel_order_update(parsed)
        self.broker.updates_received += 1
