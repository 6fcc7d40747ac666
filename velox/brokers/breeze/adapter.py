"""ICICI Direct Breeze as a Velox :class:`~velox.brokers.base.Broker`, through the official SDK.

Requests go through ``BreezeConnect`` (its addresses set through
:mod:`velox.brokers.breeze._sdk`, never by editing the SDK), every one behind the single
throttle of Breeze's published limit (100 calls a minute, 5,000 a day per app key). The SDK
answers with the envelope ``{"Success", "Status", "Error"}`` and raises a bare ``Exception``
(the cause chained) when a request fails in transit; both become Velox errors here
(:func:`~velox.brokers.breeze.mapping.error_of`).

Order notifications arrive on the SDK's order socket.io stream (``subscribe_feeds(
get_order_notification=True)``, which needs the rate stream connected first); they carry no
``user_remark``, so the client id is the one the order was placed with (kept by order id;
after a restart, read from the order book). A notification showing more executed quantity
reads the order's executions (``get_trade_detail``, fill id = the exchange's trade id) and
hands each new one to the listener once. On a reconnection of the stream the order book is
read again so nothing of the gap is lost.

Velox's client id travels as the ``user_remark``: a place that timed out is looked up in the
order book by its remark before anything is sent again, and a restarted engine re-sending a
client id already in today's book gets that order back.

A MARKET order is priced the SDK's way but by Velox (the SDK's own conversion refuses intraday
orders, see :mod:`~velox.brokers.breeze.mapping`): a quote, then a LIMIT 3 % through the last
price inside the circuit band, so Breeze's book, and Velox's view of it, show a LIMIT order.
An SL-M is sent as a ``stoploss`` order whose limit is 3 % through the trigger
(:func:`~velox.brokers.breeze.mapping.protective_limit`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from velox.brokers.base import BrokerListener, Capabilities, Funds
from velox.brokers.breeze import _sdk
from velox.brokers.breeze import mapping as m
from velox.brokers.throttle import ThrottleSet
from velox.calendar import IST, as_ist
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited
from velox.types import Fill, Order, OrderType, Position, Tick

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BreezeBroker", "breeze_throttles"]

log = logging.getLogger(__name__)


def breeze_throttles(margin: float = 0.05) -> ThrottleSet:
    """Return the throttle at Breeze's published limits (one group: every call counts)."""
    return ThrottleSet(m.BREEZE_RATE_LIMITS, default="api", margin=margin)


def ambiguous(exc: BaseException) -> bool:
    """Whether a failed SDK call may still have reached Breeze (a timeout, a dropped line):
    the SDK re-raises a bare ``Exception``, so its cause chain is searched."""
    import requests

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, requests.Timeout | requests.ConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _iso(ts: datetime) -> str:
    """Breeze's request time: ``2025-05-20T03:45:00.000Z`` (UTC)."""
    from datetime import UTC

    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class BreezeBroker:
    """ICICI Breeze as a Velox broker (see the module docstring).

    Parameters
    ----------
    api_key, api_secret
        The Breeze app key and its secret (every request's checksum is signed with it).
    user_id, session_key
        The day's session (``velox broker login breeze``): ICICI's user id and session token.
    instruments
        The instrument master (exchange tokens; default: the bundled one).
    urls
        Where the SDK sends requests (default: the ``breeze_root`` setting).
    notifications
        Connect the order-notification stream (off: reads and orders only, no updates).
    expires_at
        When the session ends; a call at or after it raises AuthExpired without sending.
    timeout, settle
        Seconds a request waits for an answer; seconds before a timed-out order is looked up
        a second time.
    """

    name = "breeze"
    capabilities: Capabilities = m.BREEZE_CAPABILITIES

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        user_id: str,
        session_key: str,
        *,
        instruments: Any = None,
        urls: _sdk.BreezeUrls | None = None,
        notifications: bool = True,
        expires_at: datetime | None = None,
        timeout: float = 7.0,
        settle: float = 0.5,
        throttles: ThrottleSet | None = None,
    ) -> None:
        if instruments is None:
            from velox.instruments import load_bundled_master

            instruments = load_bundled_master()
        if urls is None:
            from velox.config import get_settings

            urls = _sdk.BreezeUrls.for_root(get_settings().breeze_root)
        self.api_key, self.user_id, self.urls = api_key, user_id, urls
        self._api = _sdk.client(api_key, api_secret, user_id, session_key, urls)
        self.expires_at, self.timeout, self.settle = expires_at, timeout, settle
        self.throttles = throttles or breeze_throttles()
        self._use_master(instruments.table)
        self._listener: BrokerListener | None = None
        self._lock = threading.RLock()
        self._book: dict[str, dict[str, Any]] = {}  # order id → latest order-book entry
        self._remarks: dict[str, str] = {}  # user_remark (client id) → order id
        self._client_of: dict[str, str] = {}  # order id → client id
        self._book_loaded = False
        self._booked: set[str] = set()
        self._booked_qty: dict[str, int] = {}
        self._exchanges = {"NSE"}
        self._dead: str | None = None
        self.updates_received = 0
        self._stream: Any = None
        if notifications:
            self._connect_notifications()

    def __repr__(self) -> str:
        return f"BreezeBroker(user_id={self.user_id!r}, api_url={self.urls.api_url!r})"

    def set_listener(self, listener: BrokerListener) -> None:
        self._listener = listener

    def close(self) -> None:
        """Close the order-notification streams (the SDK's ``ws_disconnect`` only sends a
        "disconnect" event and leaves the sockets open, so they are closed here)."""
        api = self._api
        for handler in (api.sio_order_refresh_handler, api.sio_rate_refresh_handler):
            if handler is not None and handler.sio.connected:
                handler.sio.disconnect()

    # ---- the request path --------------------------------------------------------------------

    def _check_session(self) -> None:
        if self._dead is not None:
            raise AuthExpired(self._dead)
        if self.expires_at is not None and datetime.now(IST) >= self.expires_at:
            self._dead = (f"the Breeze session expired at {self.expires_at:%Y-%m-%d %H:%M} IST;"
                          f" log in again with `{m.LOGIN_COMMAND}`")  # fmt: skip
            raise AuthExpired(self._dead)

    def _call(self, what: str, call: Callable[[], Any], client_id: str | None = None) -> Any:
        """Send one request behind the throttle; return its ``Success`` or raise."""
        self._check_session()
        self.throttles.acquire("api")
        try:
            with _sdk.timeout(self.timeout):
                answer = call()
        except Exception as exc:
            if ambiguous(exc):
                raise
            raise BrokerError(f"Breeze failed {what}: {exc}") from None
        if not isinstance(answer, Mapping) or answer.get("Status") != 200:
            error = m.error_of(answer, what, client_id)
            if isinstance(error, AuthExpired):
                self._dead = str(error)  # never hammer Breeze with a dead session
                log.error("%s", error)
            raise error
        return answer.get("Success")

    def _read(self, what: str, call: Callable[[], Any]) -> Any:
        """Send a read; retry it once after a timeout, or after one window when Breeze counted
        another process on this app key (a restarted engine) inside the limit."""
        try:
            return self._call(what, call)
        except RateLimited:
            time.sleep(min(limit.period for limit in self.throttles.throttle("api").limits))
            return self._call(what, call)
        except BrokerError:
            raise
        except Exception as exc:  # a timeout on a read: one more try
            log.warning("Breeze %s failed (%s); retrying once", what, type(exc).__name__)
            try:
                return self._call(what, call)
            except BrokerError:
                raise
            except Exception as again:
                raise BrokerError(f"Breeze failed {what}: {type(again).__name__}") from None

    # ---- instruments -------------------------------------------------------------------------

    def _use_master(self, table: pd.DataFrame) -> None:
        codes = m.stock_codes(table)
        tokens = dict(zip(table["id"], table["exchange_token"], strict=True))
        self._code = codes
        self._iid = {(ex, code): iid for iid, (ex, code) in codes.items()}
        self._tick = dict(zip(table["id"], table["tick_size"].astype(float), strict=True))
        self._token = {iid: f"{'4' if ex == 'NSE' else '1'}.1!{int(tokens[iid])}"
                       for iid, (ex, _) in codes.items()
                       if tokens.get(iid) is not None and tokens[iid] == tokens[iid]}  # fmt: skip

    def key(self, instrument_id: str) -> tuple[str, str]:
        """Return (exchange code, ICICI stock code) of an instrument."""
        key = self._code.get(instrument_id)
        if key is None:
            raise OrderRejected(f"{instrument_id} is not an NSE/BSE stock Breeze trades "
                                "through Velox")  # fmt: skip
        return key

    def stream_tokens(self) -> dict[str, str]:
        """Return every instrument's quote-stream token (``4.1!2885``): id → token."""
        return dict(self._token)

    def _instrument_of(self, data: Mapping[str, Any]) -> str:
        key = (str(data.get("exchange_code") or "").upper(), str(data.get("stock_code") or ""))
        iid = self._iid.get(key)
        if iid is None:
            raise BrokerError(f"Breeze reported {key[0]} {key[1]}, which the instrument master "
                              "does not have")  # fmt: skip
        return iid

    # ---- orders ------------------------------------------------------------------------------

    def _remember(self, data: Mapping[str, Any]) -> Order:
        """Keep one order-book entry (caller holds the lock) and return it as a Velox order."""
        oid = str(data["order_id"])
        self._book[oid] = dict(data)
        remark = str(data.get("user_remark") or "")
        if remark:
            self._remarks.setdefault(remark, oid)
            self._client_of.setdefault(oid, remark)
        return m.order_from_breeze(data, self._instrument_of(data))

    def _load_book(self) -> list[dict[str, Any]]:
        now = datetime.now(IST)
        start = datetime.combine(now.date(), datetime.min.time(), IST) - timedelta(days=1)
        raw: list[dict[str, Any]] = []
        for exchange in sorted(self._exchanges):
            raw += self._read("listing orders", lambda e=exchange: self._api.get_order_list(
                exchange_code=e, from_date=_iso(start), to_date=_iso(now))) or []  # fmt: skip
        with self._lock:
            for data in raw:
                self._remember(data)
            self._book_loaded = True
        return raw

    def place_order(self, order: Order) -> str:
        """Send ``order``; return Breeze's order id (a client id already in today's book is
        adopted, not sent again)."""
        problem = self.capabilities.supports(order)
        if problem:
            raise OrderRejected(problem, client_id=order.client_id)
        exchange, code = self.key(order.instrument_id)
        tick = self._tick.get(order.instrument_id, 0.05)
        market = None
        if order.order_type is OrderType.MARKET:
            market = self._market_limit(order, exchange, code, tick)
        params = m.order_params(order, stock_code=code, exchange=exchange, tick_size=tick,
                                market_limit=market)  # fmt: skip
        remark = params["user_remark"]
        self._exchanges.add(exchange)
        if not self._book_loaded:
            self._load_book()
        with self._lock:
            if remark in self._remarks:
                log.warning("order %s is already at Breeze as %s; adopted", remark,
                            self._remarks[remark])  # fmt: skip
                return self._remarks[remark]
        for attempt in (1, 2):
            try:
                data = self._call(f"placing order {remark}",
                                  lambda: self._api.place_order(**params),
                                  client_id=order.client_id)  # fmt: skip
            except BrokerError:
                raise
            except Exception as exc:  # noqa: BLE001 - ambiguous: it may have reached Breeze
                log.warning("placing %s may or may not have reached Breeze (%s); looking it up "
                            "by its user_remark", remark, type(exc).__name__)  # fmt: skip
                found = self._find(remark)
                if found is None:
                    time.sleep(self.settle)
                    found = self._find(remark)
                if found is not None:
                    log.warning("order %s was placed as %s; adopted, not re-sent", remark, found)
                    return found
                if attempt == 2:
                    raise BrokerError(f"placing order {remark} failed twice in transit and it "
                                      "is not in the order book; check Breeze before sending "
                                      "it again") from None  # fmt: skip
                continue
            oid = str((data or {}).get("order_id") or "")
            if not oid:
                raise BrokerError(f"Breeze accepted order {remark} but returned no order id")
            with self._lock:
                self._remarks.setdefault(remark, oid)
                self._client_of.setdefault(oid, order.client_id)
            return oid
        raise AssertionError("unreachable")  # pragma: no cover

    def _market_limit(self, order: Order, exchange: str, code: str, tick: float) -> float:
        rows = self._read(f"reading the quote for order {order.client_id}",
                          lambda: self._api.get_quotes(stock_code=code, exchange_code=exchange,
                                                       product_type="cash")) or []  # fmt: skip
        row = (rows[-1] if exchange == "BSE" else rows[0]) if rows else {}
        ltp = m._num(row.get("ltp"))
        if not ltp:
            raise OrderRejected(
                f"Breeze has no last price of {order.instrument_id} to price the MARKET order's "
                "protective limit",
                client_id=order.client_id,
            )
        return m.marketable_limit(order.side, ltp, tick, m._num(row.get("lower_circuit")),
                                  m._num(row.get("upper_circuit")))  # fmt: skip

    def _find(self, remark: str) -> str | None:
        try:
            self._load_book()
        except AuthExpired:
            raise
        except BrokerError as exc:
            log.warning("order book lookup failed: %s", exc)
            return None
        with self._lock:
            return self._remarks.get(remark)

    def _entry(self, broker_order_id: str) -> dict[str, Any]:
        with self._lock:
            entry = self._book.get(broker_order_id)
        if entry is None:
            self._load_book()
            with self._lock:
                entry = self._book.get(broker_order_id)
        if entry is None:
            raise OrderRejected(f"order {broker_order_id} is not in today's Breeze order book")
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
        """Change a working order (the SDK reads the order first and refuses one that is no
        longer working, as :class:`~velox.errors.OrderRejected`)."""
        entry = self._entry(broker_order_id)
        kind = m.ORDER_TYPE[order_type] if order_type else str(entry.get("order_type")).lower()
        args = {
            "order_id": broker_order_id, "exchange_code": str(entry["exchange_code"]),
            "order_type": kind, "stoploss": m._price(trigger_price),
            "quantity": "" if qty is None else str(qty), "price": m._price(limit_price),
            "validity": str(entry.get("validity") or "day").lower(), "disclosed_quantity": "",
            "validity_date": "",
        }  # fmt: skip
        self._call(f"modifying order {broker_order_id}",
                   lambda: self._api.modify_order(**args), client_id=broker_order_id)  # fmt: skip

    def cancel_order(self, broker_order_id: str) -> None:
        entry = self._entry(broker_order_id)
        self._call(f"cancelling order {broker_order_id}",
                   lambda: self._api.cancel_order(exchange_code=str(entry["exchange_code"]),
                                                  order_id=broker_order_id),
                   client_id=broker_order_id)  # fmt: skip

    def orders(self) -> list[Order]:
        raw = self._load_book()
        with self._lock:
            return [m.order_from_breeze(d, self._instrument_of(d)) for d in raw]

    def _executions(self, entry: Mapping[str, Any]) -> list[Fill]:
        oid = str(entry["order_id"])
        exchange = str(entry["exchange_code"])
        rows = self._read(f"reading the trades of order {oid}",
                          lambda: self._api.get_trade_detail(exchange_code=exchange,
                                                             order_id=oid)) or []  # fmt: skip
        iid = self._instrument_of(entry)
        client_id = self._client_of.get(oid) or str(entry.get("user_remark") or f"breeze-{oid}")
        return [m.fill_from_breeze(row, entry, iid, client_id) for row in rows]

    def fills(self) -> list[Fill]:
        """Return today's executions: those of every order of the book with executed quantity
        (Breeze's trade list has no trade ids; each order's trade detail does)."""
        out: list[Fill] = []
        for entry in self._load_book():
            if m.order_from_breeze(entry, self._instrument_of(entry)).filled_qty:
                out += self._executions(entry)
        return out

    def positions(self) -> list[Position]:
        raw = self._read("listing positions", self._api.get_portfolio_positions) or []
        return [m.position_from_breeze(p, self._instrument_of(p)) for p in raw
                if str(p.get("segment") or "equity").lower() == "equity"]  # fmt: skip

    def holdings(self) -> list[Position]:
        raw = self._read("listing holdings", lambda: self._api.get_portfolio_holdings(
            exchange_code="NSE", from_date="", to_date="", stock_code="",
            portfolio_type="")) or []  # fmt: skip
        return [m.holding_from_breeze(h, self._instrument_of(h)) for h in raw]

    def funds(self) -> Funds:
        return m.funds_from_breeze(self._read("reading funds", self._api.get_funds) or {})

    def history(
        self,
        instrument_id: str,
        timeframe: str,
        start: datetime | str,
        end: datetime | str,
        *,
        version: int = 2,
    ) -> pd.DataFrame:
        """Return candles of ``[start, end]`` as Velox's bar frame, paged within Breeze's 1,000
        candles a request: the v2 ``historicalcharts`` (NSE and BSE, 1 s to 1 day) or, with
        ``version=1``, the v1 one (NSE, 1 m to 1 day). Naive times and dates are IST; a date
        ``end`` is the end of that day."""
        import pandas as pd

        exchange, code = self.key(instrument_id)
        interval = m.CANDLE_INTERVALS.get(timeframe, "")
        if version not in (1, 2) or (version == 1 and timeframe == "1s"):
            from velox.errors import ConfigError

            raise ConfigError(f"Breeze's historical data v{version} has no {timeframe!r} "
                              "candles (v1: 1m, 5m, 30m, 1d; v2 adds 1s)")  # fmt: skip
        fetch = self._api.get_historical_data if version == 1 else (
            self._api.get_historical_data_v2)  # fmt: skip
        frames = []
        for lo, hi in m.candle_windows(as_ist(start), as_ist(end, end_of_day=True), timeframe):

            def read(lo: datetime = lo, hi: datetime = hi) -> Any:
                with _sdk.pointed_at(self.urls):  # v2 reads its address at call time
                    return fetch(interval=interval, from_date=_iso(lo), to_date=_iso(hi),
                                 stock_code=code, exchange_code=exchange)  # fmt: skip

            frames.append(m.candles_frame(self._read(f"reading {timeframe} candles of "
                                                     f"{instrument_id}", read)))  # fmt: skip
        frame = pd.concat(frames) if frames else m.candles_frame([])
        return frame[~frame.index.duplicated(keep="last")].sort_index()

    def quote(self, instrument_ids: list[str]) -> dict[str, Tick]:
        """Return the quote of each instrument (``get_quotes``, one call each) as a tick."""
        out: dict[str, Tick] = {}
        for iid in instrument_ids:
            exchange, code = self.key(iid)
            rows = self._read(f"reading the quote of {iid}", lambda e=exchange, c=code:
                              self._api.get_quotes(stock_code=c,
                                                   exchange_code=e)) or []  # fmt: skip
            if rows:
                out[iid] = m.tick_from_quote(rows[-1] if exchange == "BSE" else rows[0], iid)
        return out

    def ltp(self, instrument_id: str) -> float:
        """Return the last traded price of one instrument."""
        return self.quote([instrument_id])[instrument_id].ltp

    # ---- order notifications -----------------------------------------------------------------

    def _connect_notifications(self) -> None:
        api = self._api
        api.on_ticks = self.on_breeze_notification
        with _sdk.pointed_at(self.urls):
            api.ws_connect()  # the SDK subscribes only when its rate stream is up
            answer = api.subscribe_feeds(get_order_notification=True)
        handler = api.sio_order_refresh_handler
        if handler is None or not handler.sio.connected:
            raise BrokerError(f"Breeze's order notification stream did not connect ({answer})")
        handler.sio.on("connect", self._reconnected)

    def _reconnected(self) -> None:
        try:
            self.resync()
        except BrokerError as exc:
            log.warning("Breeze order book resync after a reconnect failed: %s", exc)

    def on_breeze_notification(self, data: Mapping[str, Any]) -> None:
        """Take one order notification (as the SDK parsed it): the order to the listener,
        then its new executions."""
        self.updates_received += 1
        oid = str(data.get("orderReference") or "")
        if not oid or "orderStatus" not in data:
            return
        try:
            entry = {"exchange_code": data.get("orderExchangeCode"),
                     "stock_code": data.get("stockCode"), "order_id": oid}  # fmt: skip
            iid = self._instrument_of(entry)
            with self._lock:
                client_id = self._client_of.get(oid)
            if client_id is None:  # placed before a restart: the book has its remark
                self._load_book()
                with self._lock:
                    client_id = self._client_of.get(oid, f"breeze-{oid}")
            order = m.order_from_notification(data, iid, client_id)
            listener = self._listener
            if listener is not None:
                listener.on_order_update(order)
            with self._lock:
                booked = self._booked_qty.get(oid, 0)
            if order.filled_qty > booked:
                self._book_fills(order, entry)
        except (BrokerError, ValueError, KeyError) as exc:
            log.error("Breeze order notification not understood (%s): %s", exc,
                      {k: data.get(k) for k in ("orderReference", "orderStatus")})  # fmt: skip

    def _book_fills(self, order: Order, entry: Mapping[str, Any]) -> None:
        listener = self._listener
        if listener is None:
            return
        oid = str(order.broker_order_id)
        full = {**entry, "action": order.side.value.lower(),
                "product_type": "cash" if order.product.value == "CNC" else "margin"}  # fmt: skip
        for fill in self._executions(full):
            with self._lock:
                if fill.fill_id in self._booked:
                    continue
                self._booked.add(fill.fill_id)
                self._booked_qty[oid] = self._booked_qty.get(oid, 0) + fill.qty
            listener.on_fill(fill)

    def resync(self) -> None:
        """Read the order book again after a reconnection and replay what changed in the gap."""
        with self._lock:
            seen = {oid: (e.get("status"), e.get("pending_quantity"))
                    for oid, e in self._book.items()}  # fmt: skip
        listener = self._listener
        for data in self._load_book():
            oid = str(data["order_id"])
            if seen.get(oid) == (data.get("status"), data.get("pending_quantity")):
                continue
            order = m.order_from_breeze(data, self._instrument_of(data))
            if listener is not None:
                listener.on_order_update(order)
            with self._lock:
                booked = self._booked_qty.get(oid, 0)
            if order.filled_qty > booked:
                self._book_fills(order, data)
