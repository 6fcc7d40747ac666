"""A loopback Kite Connect simulator: Kite's REST API and ticker on 127.0.0.1, backed by SimBroker.

Why: the Kite adapter and ticker must be tested against Kite's wire protocol (routes, JSON
envelopes, error types and HTTP codes, binary tick packets, order-update messages, rate limits,
token expiry) without a Zerodha account or the network. The simulator speaks that protocol
with the official SDK as its client (``KiteConnect(api_key, root=sim.url)``,
``KiteTicker(api_key, access_token, root=sim.ws_url)``); orders are matched by the one
simulated exchange, :class:`velox.brokers.sim.exchange.SimBroker`, and the market is a paced
replay of stored bars (as the paper simulator's :class:`~velox.brokers.sim.paper.SimServer`
does) or, with no replay, whatever ``POST /_sim/trade`` makes it trade.

Translation between Kite's vocabulary and Velox types lives here on purpose: the adapter has
its own (``velox.brokers.kite.mapping``) and the two are kept independent so that a test of
one against the other can fail. Shapes follow the recorded responses in ``kiteconnect-mocks``.

Everything (HTTP, websocket, replay, faults) runs on one tornado IOLoop on its own thread;
the in-process levers (:meth:`KiteSimulator.trade`, :meth:`~KiteSimulator.fault`, …) hand
their work to that thread and wait for it. ``docs/kite-simulator.md`` is the user guide.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import math
import re
import secrets
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import tornado.httpclient
import tornado.web

from velox.brokers.kite.sim_ws import HEARTBEAT, TickerSocket, encode_frame, encode_packet
from velox.brokers.sim.exchange import SimConfig
from velox.brokers.simcore import DEFAULT_SESSION, BarReader, LoopbackSimulator, SimMarket, number
from velox.calendar import IST, is_open
from velox.errors import ConfigError, OrderRejected
from velox.types import (
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
    is_on_tick,
)

if TYPE_CHECKING:
    import pandas as pd

    from velox.instruments import InstrumentMaster

__all__ = ["KiteSimulator", "RATE_LIMITS", "HISTORICAL_LIMIT_DAYS", "DEFAULT_SESSION", "FAULTS"]

log = logging.getLogger(__name__)

#: Kite's documented request limits per api_key: category → ((window seconds, requests), …).
RATE_LIMITS: dict[str, tuple[tuple[float, int], ...]] = {
    "quote": ((1.0, 1),),
    "historical": ((1.0, 3),),
    "order": ((1.0, 10), (60.0, 400), (86_400.0, 5000)),
    "other": ((1.0, 10),),
}
#: Kite's largest span (days) of one historical-candles request, per interval.
HISTORICAL_LIMIT_DAYS = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}
_INTERVAL_TIMEFRAME = {
    "minute": "1m",
    "3minute": "3m",
    "5minute": "5m",
    "10minute": "10m",
    "15minute": "15m",
    "30minute": "30m",
    "60minute": "1h",
    "day": "1d",
}
#: Fault kinds ``POST /_sim/fault`` (and :meth:`KiteSimulator.fault`) accept.
FAULTS = (
    "drop_ws",
    "http_status",
    "slow",
    "malformed_packet",
    "expire_token",
    "timeout_after_place",
    "clear",
)
_VARIETIES_REFUSED = ("amo", "co", "iceberg", "auction")
_STATUS = {
    OrderStatus.SUBMITTED: "OPEN PENDING",
    OrderStatus.OPEN: "OPEN",
    OrderStatus.PARTIAL: "OPEN",
    OrderStatus.TRIGGER_PENDING: "TRIGGER PENDING",
    OrderStatus.FILLED: "COMPLETE",
    OrderStatus.CANCELLED: "CANCELLED",
    OrderStatus.REJECTED: "REJECTED",
}
_ERROR_OF_STATUS = {
    400: "InputException",
    403: "TokenException",
    429: "NetworkException",
    500: "GeneralException",
    502: "NetworkException",
    503: "NetworkException",
    504: "NetworkException",
}
_MESSAGE_OF_STATUS = {
    429: "Too many requests",
    500: "Something went wrong (simulated server error)",
    502: "Bad gateway (simulated)",
    503: "Service unavailable (simulated)",
    504: "Gateway timeout (simulated)",
}
_USER_ID = "XS0001"


class KiteError(Exception):
    """A Kite error response: HTTP status, ``error_type`` and message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _input(message: str) -> KiteError:
    return KiteError(400, "InputException", message)


def _kite_time(ts: datetime | None) -> str | None:
    """Return Kite's timestamp text: IST, naive, ``YYYY-MM-DD HH:MM:SS``."""
    return None if ts is None else ts.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class _Session:
    api_key: str
    access_token: str
    expires_at: datetime
    expired: bool = False


class _KiteMarket(SimMarket):
    """The last print of one instrument, as Kite's ticker packets carry it."""

    def tick(self, mode: str) -> dict[str, object]:
        """Return the tick in ``mode`` as ``KiteTicker`` decodes it (``encode_packet``'s input)."""
        tick: dict[str, object] = {
            "mode": mode,
            "instrument_token": self.token,
            "last_price": self.ltp,
        }
        if mode == "ltp":
            return tick
        depth = self.depth()
        tick.update(
            last_quantity=self.last_qty,
            average_price=round(self.average, 2),
            volume=self.volume,
            buy_quantity=sum(int(x["quantity"]) for x in depth["buy"]),
            sell_quantity=sum(int(x["quantity"]) for x in depth["sell"]),
            ohlc={"open": self.open, "high": self.high, "low": self.low, "close": self.close},
        )
        if mode == "full":
            tick.update(
                last_trade_time=self.last_trade,
                oi=0,
                oi_day_high=0,
                oi_day_low=0,
                timestamp=self.last_trade,
                depth=depth,
            )
        return tick


@dataclass
class _KiteOrder:
    """The Kite view of one order: its numeric id, variety, tag, owner and history."""

    order_id: str
    api_key: str | None
    variety: str
    instrument: Instrument
    token: int
    order: Order
    placed_at: datetime
    exchange_order_id: str | None = None
    updated_at: datetime | None = None
    modified: bool = False
    disclosed_quantity: int = 0
    history: list[dict[str, object]] = field(default_factory=list)


def _category(route: str) -> str:
    if route.startswith("market.quote"):
        return "quote"
    if route == "market.historical":
        return "historical"
    if route == "order.place":
        return "order"
    return "other"


#: (method, path regex, SDK route name) of every Kite route served, most specific first.
_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", r"/session/token", "api.token"),
    ("DELETE", r"/session/token", "api.token.invalidate"),
    ("GET", r"/user/profile", "user.profile"),
    ("GET", r"/user/margins", "user.margins"),
    ("GET", r"/user/margins/(?P<segment>[a-z]+)", "user.margins.segment"),
    ("GET", r"/orders", "orders"),
    ("GET", r"/trades", "trades"),
    ("GET", r"/orders/(?P<order_id>[0-9]+)/trades", "order.trades"),
    ("GET", r"/orders/(?P<order_id>[^/]+)", "order.info"),
    ("POST", r"/orders/(?P<variety>[a-z_]+)", "order.place"),
    ("PUT", r"/orders/(?P<variety>[a-z_]+)/(?P<order_id>[^/]+)", "order.modify"),
    ("DELETE", r"/orders/(?P<variety>[a-z_]+)/(?P<order_id>[^/]+)", "order.cancel"),
    ("GET", r"/portfolio/positions", "portfolio.positions"),
    ("GET", r"/portfolio/holdings", "portfolio.holdings"),
    ("GET", r"/quote", "market.quote"),
    ("GET", r"/quote/ohlc", "market.quote.ohlc"),
    ("GET", r"/quote/ltp", "market.quote.ltp"),
    ("GET", r"/instruments", "market.instruments.all"),
    (
        "GET",
        r"/instruments/historical/(?P<instrument_token>[0-9]+)/(?P<interval>[a-z0-9]+)",
        "market.historical",
    ),
    ("GET", r"/instruments/(?P<exchange>[A-Z]+)", "market.instruments"),
    ("GET", r"/connect/login", "connect.login"),
)
_COMPILED = tuple((m, re.compile(p + r"/?\Z"), name) for m, p, name in _ROUTES)
_NO_AUTH = ("api.token", "api.token.invalidate", "connect.login", "market.instruments.all",
            "market.instruments")  # fmt: skip


class KiteSimulator(LoopbackSimulator):
    """Serve Kite Connect's REST API and ticker on 127.0.0.1, matching orders on SimBroker.

    Parameters
    ----------
    instruments
        The instrument master whose Kite instruments are served (the bundled master,
        ``velox.instruments.load_bundled_master()``, when omitted). Instrument tokens are its
        ``kite_token`` column: NSE:RELIANCE is 738561.
    bars
        ``{(instrument_id, timeframe): DataFrame}`` of stored bars to replay as ticks (paced by
        ``speed``, as the paper simulator does with :class:`velox.feeds.BarReplay`); also what
        historical candles come from when no ``store`` is given. ``None``: no replay, the
        market trades only when told (:meth:`trade`, ``POST /_sim/trade``).
    speed
        Replay pace (simulated seconds per wall second); without a replay, the pace of the
        market clock from ``session_start``.
    cash
        Opening cash (rupees) of the simulated account.
    api_key, api_secret
        When given, only this app is accepted and ``POST /session/token`` must carry
        ``checksum = sha256(api_key + request_token + api_secret)``; otherwise any values work.
        The secret also signs postbacks (Kite's ``checksum`` field).
    postback_url
        Where order updates are POSTed as JSON (Kite's postback), if anywhere.
    store
        Where historical candles are read (``velox.store.Store``; resamples finer bars).
    session_start
        Market time the clock starts at when there is no replay (09:15 IST of
        :data:`DEFAULT_SESSION` by default).
    rate_clock
        Monotonic clock (seconds) of the rate limiter; tests pass a frozen one so "11 orders
        within a second" does not depend on how fast the machine is.
    rate_limits
        Enforce :data:`RATE_LIMITS` (HTTP 429). Off only for experiments.
    sim_config
        Behaviour switches of the simulated exchange.
    replay_on_subscribe
        Hold the replay until a ticker connection first subscribes (and half a second more,
        for its mode message): a client that starts later still sees the session from its
        first tick, e.g. a live engine compared with a replay of the same bars.

    Examples
    --------
    >>> sim = KiteSimulator()  # doctest: +SKIP
    >>> port = sim.start()  # doctest: +SKIP
    >>> from kiteconnect import KiteConnect  # doctest: +SKIP
    >>> kite = KiteConnect("demo", root=sim.url)  # doctest: +SKIP
    >>> session = kite.generate_session("request-token", "secret")  # doctest: +SKIP
    >>> kite.set_access_token(session["access_token"])  # doctest: +SKIP
    >>> sim.trade("NSE:RELIANCE", 1402.5)  # doctest: +SKIP
    >>> kite.ltp("NSE:RELIANCE")["NSE:RELIANCE"]["last_price"]  # doctest: +SKIP
    1402.5
    """

    NAME = "Kite"
    RATE_LIMITS = RATE_LIMITS
    FAULTS = FAULTS
    MARKET = _KiteMarket

    def __init__(
        self,
        instruments: InstrumentMaster | None = None,
        bars: Mapping[tuple[str, str], pd.DataFrame] | None = None,
        *,
        speed: float = 1.0,
        cash: float = 1_000_000.0,
        api_key: str | None = None,
        api_secret: str | None = None,
        postback_url: str | None = None,
        store: BarReader | None = None,
        session_start: datetime | None = None,
        rate_clock: Callable[[], float] = _time.monotonic,
        rate_limits: bool = True,
        sim_config: SimConfig | None = None,
        replay_on_subscribe: bool = False,
    ) -> None:
        if (api_key is None) != (api_secret is None):
            raise ConfigError("give both api_key and api_secret (or neither, to accept any)")
        super().__init__(
            instruments,
            bars,
            speed=speed,
            cash=cash,
            store=store,
            session_start=session_start,
            rate_clock=rate_clock,
            rate_limits=rate_limits,
            sim_config=sim_config,
            replay_on_subscribe=replay_on_subscribe,
        )
        self.api_key, self.api_secret = api_key, api_secret
        self.postback_url = postback_url
        self._index_instruments()
        if self.replay is not None:
            for iid in self.replay.instrument_ids:
                self.key_of(iid)  # every replayed instrument must have a Kite token
        self._sessions: dict[str, _Session] = {}
        self._used_request_tokens: set[str] = set()
        self._orders: dict[str, _KiteOrder] = {}  # Kite order id → record, in placement order
        self._by_sim_id: dict[str, str] = {}
        self._placing: _KiteOrder | None = None
        self._trades: list[dict[str, object]] = []
        self._order_seq = 0
        self._trade_seq = 0
        self._sockets: set[TickerSocket] = set()
        self._postbacks: list[dict[str, object]] = []

    # ------------------------------------------------------------------ instruments

    def _index_instruments(self) -> None:
        table = self.master.table
        known = table[table["kite_token"].notna()]
        self._token_of: dict[str, int] = {}
        self._id_of_token: dict[int, str] = {}
        self._kite_key: dict[str, str] = {}
        self._id_of_key: dict[str, str] = {}
        for row in known.itertuples(index=False):
            iid, token = str(row.id), int(row.kite_token)
            self._token_of[iid] = token
            self._id_of_token[token] = iid
            symbol = str(row.name) if str(row.kind) == "INDEX" else str(row.symbol)
            key = f"{row.exchange}:{symbol}"
            self._kite_key[iid] = key
            self._id_of_key[key] = iid
            self._id_of_key.setdefault(iid, iid)

    def _resolve(self, exchange: str, tradingsymbol: str) -> str:
        key = f"{exchange}:{tradingsymbol}"
        iid = self._id_of_key.get(key)
        if iid is None:
            raise _input(f"Invalid `tradingsymbol`: {key} is not in the instrument master")
        return iid

    def instrument_id(self, key: str | int) -> str:
        """Return the Velox id of ``EXCHANGE:TRADINGSYMBOL``, a Velox id or a Kite token."""
        if isinstance(key, int) or str(key).isdigit():
            try:
                return self._id_of_token[int(key)]
            except KeyError:
                raise KeyError(f"unknown instrument token {key}") from None
        iid = self._id_of_key.get(str(key))
        if iid is None:
            raise KeyError(f"unknown instrument {key!r}")
        return iid

    def key_of(self, instrument_id: str) -> int:
        """Return the Kite instrument token of ``instrument_id`` (``ConfigError`` if none)."""
        try:
            return self._token_of[instrument_id]
        except KeyError:
            raise ConfigError(
                f"{instrument_id} has no Kite instrument token in the instrument master; "
                "replay and trade instruments of the Kite master (e.g. NSE:RELIANCE)"
            ) from None

    # ------------------------------------------------------------------ lifecycle

    @property
    def ws_url(self) -> str:
        """Return the ticker root (``KiteTicker(root=…)``); :attr:`url` is the REST root."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def routes(self) -> list[tuple[Any, ...]]:
        """The ticker websocket at ``/ws`` and every REST route (and ``/_sim/*``)."""
        return [
            (r"/ws/?", TickerSocket, {"simulator": self}),
            (r"/(.*)", _KiteHandler, {"simulator": self}),
        ]

    def close_connections(self) -> None:
        """Close every ticker connection."""
        for sock in list(self._sockets):
            sock.close()

    # ------------------------------------------------------------------ ticker side

    def _ws_auth_problem(self, api_key: str, access_token: str) -> str | None:
        try:
            self._authenticate(api_key, access_token)
        except KiteError as exc:
            return exc.message
        return None

    def _ws_opened(self, sock: TickerSocket) -> None:
        self._sockets.add(sock)
        self.count("ws.connect", "GET", "/ws", 101)

    def _ws_closed(self, sock: TickerSocket) -> None:
        self._sockets.discard(sock)

    def _ws_snapshot(self, sock: TickerSocket, tokens: list[int]) -> None:
        self.release_replay()  # the first subscriber starts a held replay
        packets = []
        for token in tokens:
            iid = self._id_of_token.get(token)
            market = self._markets.get(iid) if iid else None
            mode = sock.modes.get(token)
            if market is not None and market.ltp and mode:
                packets.append(encode_packet(market.tick(mode)))
        if packets:
            sock.send_binary(encode_frame(packets))

    def flush_ticks(self, pending: set[str]) -> None:
        """Send each ticker connection the packets of its subscribed tokens in ``pending``."""
        if not self._sockets:
            return
        ticks = {self._markets[iid].token: self._markets[iid] for iid in pending}
        for sock in list(self._sockets):
            packets = [
                encode_packet(ticks[token].tick(mode))
                for token, mode in sock.modes.items()
                if token in ticks
            ]
            if packets:
                sock.send_binary(encode_frame(packets))

    def heartbeat(self) -> None:
        """Kite's one-byte heartbeat to every ticker connection, every second."""
        for sock in list(self._sockets):
            sock.send_binary(HEARTBEAT)

    # ------------------------------------------------------------------ listener (SimBroker)

    def on_order_update(self, order: Order) -> None:
        """Take SimBroker's postback: update the Kite order, its history, and tell the owner.

        An id SimBroker has not reported before belongs to the order being placed right now
        (``_placing``), or else to the exchange itself (the MIS square-off).
        """
        sim_id = str(order.broker_order_id)
        kite_id = self._by_sim_id.get(sim_id)
        if kite_id is None:
            record = self._placing
            if record is None:  # the exchange's own order (the MIS square-off)
                record = self._new_record(
                    None, "regular", order, self.master.get(order.instrument_id)
                )
            self._by_sim_id[sim_id] = record.order_id
            self._orders[record.order_id] = record
        else:
            record = self._orders[kite_id]
        record.order = order
        record.updated_at = self.sim.now
        if record.exchange_order_id is None and order.status is not OrderStatus.REJECTED:
            record.exchange_order_id = f"1{record.order_id}"
        record.history.append(self._history_entry(record))
        self._publish(record)

    def on_fill(self, fill: Fill) -> None:
        """Take SimBroker's fill: record it as a Kite trade of its order."""
        kite_id = self._by_sim_id.get(str(fill.broker_order_id))
        record = self._orders.get(kite_id) if kite_id else self._placing
        if record is None:
            return
        self._trade_seq += 1
        self._trades.append(
            {
                "trade_id": f"{self._trade_seq:08d}",
                "order_id": record.order_id,
                "exchange": record.instrument.exchange,
                "tradingsymbol": self._symbol(record.instrument),
                "instrument_token": record.token,
                "product": fill.product.value,
                "average_price": number(fill.price),
                "quantity": fill.qty,
                "exchange_order_id": record.exchange_order_id or f"1{record.order_id}",
                "transaction_type": fill.side.value,
                "fill_timestamp": _kite_time(fill.ts),
                "order_timestamp": fill.ts.astimezone(IST).strftime("%H:%M:%S"),
                "exchange_timestamp": _kite_time(fill.ts),
                "_instrument_id": fill.instrument_id,
                "_day": fill.ts.astimezone(IST).date(),
            }
        )

    def _publish(self, record: _KiteOrder) -> None:
        """Send an order update to the owner's ticker connections and the postback URL."""
        if record.api_key is None:
            return
        data = self._order_dict(record)
        for sock in list(self._sockets):
            if sock.api_key == record.api_key:
                sock.send_text({"type": "order", "id": "", "data": data})
        if self.postback_url:
            body = self._postback_dict(record, data)
            self._postbacks.append(body)
            self.spawn(self._post(body))

    async def _post(self, body: Mapping[str, object]) -> None:
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            await client.fetch(
                str(self.postback_url),
                method="POST",
                body=json.dumps(body),
                headers={"Content-Type": "application/json"},
                request_timeout=10,
            )
        except Exception as exc:  # noqa: BLE001 - a failed postback is logged, as at Kite
            log.warning("postback to %s failed: %s", self.postback_url, exc)

    # ------------------------------------------------------------------ Kite shapes

    def _symbol(self, ins: Instrument) -> str:
        return self._kite_key.get(ins.id, ins.id).split(":", 1)[1]

    def _new_record(
        self, api_key: str | None, variety: str, order: Order, ins: Instrument
    ) -> _KiteOrder:
        self._order_seq += 1
        now = self.sim.now or self.market_now()
        order_id = f"{now.astimezone(IST):%y%m%d}{self._order_seq:09d}"
        return _KiteOrder(order_id, api_key, variety, ins, self.key_of(ins.id), order, now)

    def _order_dict(self, record: _KiteOrder, status: str | None = None) -> dict[str, object]:
        o = record.order
        kite_status = status or _STATUS.get(o.status, "OPEN PENDING")
        terminal = o.status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)
        pending = 0 if terminal else o.qty - o.filled_qty
        cancelled = o.qty - o.filled_qty if o.status is OrderStatus.CANCELLED else 0
        message = o.status_message if o.status is OrderStatus.REJECTED else None
        exchange_ts = _kite_time(record.updated_at) if record.exchange_order_id else None
        return {
            "placed_by": _USER_ID,
            "order_id": record.order_id,
            "exchange_order_id": record.exchange_order_id,
            "parent_order_id": None,
            "status": kite_status,
            "status_message": message,
            "status_message_raw": message,
            "order_timestamp": _kite_time(record.placed_at),
            "exchange_update_timestamp": _kite_time(record.updated_at),
            "exchange_timestamp": exchange_ts,
            "variety": record.variety,
            "modified": record.modified,
            "exchange": record.instrument.exchange,
            "tradingsymbol": self._symbol(record.instrument),
            "instrument_token": record.token,
            "order_type": o.order_type.value,
            "transaction_type": o.side.value,
            "validity": o.validity.value,
            "product": o.product.value,
            "quantity": o.qty,
            "disclosed_quantity": record.disclosed_quantity,
            "price": number(o.limit_price or 0),
            "trigger_price": number(o.trigger_price or 0),
            "average_price": number(o.average_price),
            "filled_quantity": o.filled_qty,
            "pending_quantity": pending,
            "cancelled_quantity": cancelled,
            "market_protection": 0,
            "meta": {},
            "tag": o.tag or None,
            "tags": [o.tag] if o.tag else [],
            "guid": f"sim-{record.order_id}",
        }

    _HISTORY_KEYS = (
        "average_price", "cancelled_quantity", "disclosed_quantity", "exchange",
        "exchange_order_id", "exchange_timestamp", "filled_quantity", "instrument_token",
        "modified", "order_id", "order_timestamp", "order_type", "parent_order_id",
        "pending_quantity", "placed_by", "price", "product", "quantity", "status",
        "status_message", "tag", "tradingsymbol", "transaction_type", "trigger_price",
        "validity", "variety",
    )  # fmt: skip

    def _history_entry(self, record: _KiteOrder, status: str | None = None) -> dict[str, object]:
        full = self._order_dict(record, status)
        if status is not None:  # a transient step before the exchange saw the order
            full.update(exchange_order_id=None, exchange_timestamp=None, filled_quantity=0,
                        average_price=0, pending_quantity=record.order.qty)  # fmt: skip
        return {k: full[k] for k in self._HISTORY_KEYS}

    def _postback_dict(self, record: _KiteOrder, data: Mapping[str, object]) -> dict[str, object]:
        timestamp = str(data["order_timestamp"])
        secret = self.api_secret or ""
        checksum = hashlib.sha256((record.order_id + timestamp + secret).encode()).hexdigest()
        body: dict[str, object] = {
            "user_id": _USER_ID,
            "unfilled_quantity": int(data["pending_quantity"]),  # type: ignore[call-overload]
            "app_id": 1,
            "checksum": checksum,
        }
        body.update({k: v for k, v in data.items() if k not in ("tags", "modified")})
        return body

    # ------------------------------------------------------------------ auth

    def _authenticate(self, api_key: str, access_token: str) -> _Session:
        if self.api_key is not None and api_key != self.api_key:
            raise KiteError(403, "TokenException", "Invalid `api_key`.")
        session = self._sessions.get(access_token)
        if session is None or session.api_key != api_key:
            raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        if session.expired or self.market_now() >= session.expires_at:
            session.expired = True
            raise KiteError(403, "TokenException", "Token is invalid or has expired.")
        return session

    def _new_session(self, params: Mapping[str, str]) -> dict[str, object]:
        api_key = params.get("api_key", "")
        request_token = params.get("request_token", "")
        checksum = params.get("checksum", "")
        if not api_key or not request_token or not checksum:
            raise _input("Missing `api_key`, `request_token` or `checksum`.")
        if self.api_key is not None:
            if api_key != self.api_key:
                raise KiteError(403, "TokenException", "Invalid `api_key`.")
            expected = hashlib.sha256(
                (api_key + request_token + str(self.api_secret)).encode()
            ).hexdigest()
            if not secrets.compare_digest(expected, checksum):
                raise KiteError(403, "TokenException", "Invalid `checksum`.")
        if request_token in self._used_request_tokens:
            raise KiteError(403, "TokenException", "Token is invalid or has expired.")
        self._used_request_tokens.add(request_token)
        now = self.market_now().astimezone(IST)
        expires = datetime.combine(now.date() + timedelta(days=1), time(6, 0), IST)
        if now.time() < time(6, 0):
            expires = datetime.combine(now.date(), time(6, 0), IST)
        access_token = secrets.token_hex(16)
        self._sessions[access_token] = _Session(api_key, access_token, expires)
        return {
            "user_type": "individual",
            "email": "sim@example.invalid",
            "user_name": "Velox Simulator",
            "user_shortname": "Simulator",
            "broker": "ZERODHA",
            "exchanges": ["NSE", "NFO", "BSE", "BFO"],
            "products": ["CNC", "NRML", "MIS"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "avatar_url": "",
            "user_id": _USER_ID,
            "api_key": api_key,
            "access_token": access_token,
            "public_token": secrets.token_hex(8),
            "enctoken": secrets.token_hex(8),
            "refresh_token": "",
            "silo": "",
            "login_time": _kite_time(now),
            "meta": {"demat_consent": "physical"},
        }

    def _profile(self) -> dict[str, object]:
        """Return the user profile (``GET /user/profile``)."""
        return {
            "user_id": _USER_ID,
            "user_type": "individual",
            "email": "sim@example.invalid",
            "user_name": "Velox Simulator",
            "user_shortname": "Simulator",
            "broker": "ZERODHA",
            "exchanges": ["NSE", "NFO", "BSE", "BFO"],
            "products": ["CNC", "NRML", "MIS"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "avatar_url": None,
            "meta": {"demat_consent": "physical"},
        }

    # ------------------------------------------------------------------ orders

    def _place(self, api_key: str, variety: str, p: Mapping[str, str]) -> dict[str, object]:
        if variety in _VARIETIES_REFUSED:
            raise _input(
                f"Invalid `variety`: {variety} orders are not simulated; use variety regular"
            )
        if variety != "regular":
            raise _input(f"Invalid `variety`: {variety!r}")
        exchange, symbol = p.get("exchange", ""), p.get("tradingsymbol", "")
        if not exchange or not symbol:
            raise _input("Missing `exchange` or `tradingsymbol`.")
        iid = self._resolve(exchange, symbol)
        ins = self.master.get(iid)
        side = _enum(p, "transaction_type", Side)
        order_type = _enum(p, "order_type", OrderType)
        product = _enum(p, "product", Product)
        validity = _enum(p, "validity", Validity, default="DAY")
        quantity = _integer(p, "quantity")
        if quantity <= 0:
            raise _input("Invalid `quantity`: must be a positive whole number.")
        price = _price(p, "price")
        trigger = _price(p, "trigger_price")
        if order_type in (OrderType.LIMIT, OrderType.SL) and not price:
            raise _input(f"Invalid `price`: a {order_type.value} order needs a price.")
        if order_type in (OrderType.SL, OrderType.SL_M) and not trigger:
            raise _input(f"Invalid `trigger_price`: a {order_type.value} order needs a trigger.")
        if order_type in (OrderType.MARKET, OrderType.SL_M):
            price = None
        if order_type in (OrderType.MARKET, OrderType.LIMIT):
            trigger = None
        if quantity % ins.lot_size:
            raise _input(
                f"Quantity should be a multiple of lot size ({ins.lot_size}) for {symbol}."
            )
        for label, value in (("price", price), ("trigger price", trigger)):
            if value is not None and ins.tick_size and not is_on_tick(value, ins.tick_size):
                raise _input(
                    f"Tick size for this script is {ins.tick_size:g}. Kindly enter {label} in "
                    "the multiple of tick size for this script"
                )
        tag = p.get("tag") or ""
        if len(tag) > 20:
            raise _input("Invalid `tag`: at most 20 characters.")
        now = self.sync_clock()
        if not is_open(now):  # Kite refuses the request itself: no order, no postback
            raise _input(
                "Markets are closed right now. Use GTT for placing long standing orders "
                f"instead. (market time {_kite_time(now)} IST)"
            )
        order = Order(
            client_id=f"kite-{self._order_seq + 1}",
            instrument_id=iid,
            side=side,
            qty=quantity,
            order_type=order_type,
            product=product,
            validity=validity,
            limit_price=price,
            trigger_price=trigger,
            tag=tag,
        )
        record = self._new_record(api_key, variety, order, ins)
        record.disclosed_quantity = int(p.get("disclosed_quantity") or 0)
        for step in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING"):
            record.history.append(self._history_entry(record, step))
        self._placing = record
        try:
            self.sim.place_order(order)
        except OrderRejected:
            if record.order_id not in self._orders:  # no postback reached us: record it
                self._orders[record.order_id] = record
        finally:
            self._placing = None
        if record.history and record.history[-1]["status"] in ("OPEN", "TRIGGER PENDING"):
            record.history.insert(-1, self._history_entry(record, "OPEN PENDING"))
        return {"order_id": record.order_id}

    def _record(self, order_id: str) -> _KiteOrder:
        record = self._orders.get(order_id)
        if record is None:
            raise _input(f"Couldn't find that `order_id` ({order_id}).")
        return record

    def _sim_id(self, record: _KiteOrder) -> str:
        return str(record.order.broker_order_id)

    def _modify(self, variety: str, order_id: str, p: Mapping[str, str]) -> dict[str, object]:
        record = self._record(order_id)
        if variety != record.variety:
            raise _input(f"Invalid `variety`: order {order_id} is {record.variety}")
        if record.order.is_terminal:
            raise KiteError(
                400,
                "OrderException",
                f"Order cannot be modified as it is {_STATUS[record.order.status].lower()}.",
            )
        changes: dict[str, object] = {}
        if p.get("quantity"):
            changes["qty"] = _integer(p, "quantity")
        if p.get("order_type"):
            changes["order_type"] = _enum(p, "order_type", OrderType)
        if _price(p, "price"):
            changes["limit_price"] = _price(p, "price")
        if _price(p, "trigger_price"):
            changes["trigger_price"] = _price(p, "trigger_price")
        self.sync_clock()
        try:
            self.sim.modify_order(self._sim_id(record), **changes)  # type: ignore[arg-type]
        except OrderRejected as exc:
            raise KiteError(400, "OrderException", exc.reason) from None
        except ValueError as exc:
            raise _input(str(exc)) from None
        record.modified = True
        return {"order_id": order_id}

    def _cancel(self, variety: str, order_id: str) -> dict[str, object]:
        record = self._record(order_id)
        if record.order.is_terminal:
            raise KiteError(
                400,
                "OrderException",
                f"Order cannot be cancelled as it is {_STATUS[record.order.status].lower()}.",
            )
        self.sync_clock()
        try:
            self.sim.cancel_order(self._sim_id(record))
        except OrderRejected as exc:
            raise KiteError(400, "OrderException", exc.reason) from None
        return {"order_id": order_id}

    def _public_trades(self, order_id: str | None = None) -> list[dict[str, object]]:
        return [
            {k: v for k, v in t.items() if not k.startswith("_")}
            for t in self._trades
            if order_id is None or t["order_id"] == order_id
        ]

    # ------------------------------------------------------------------ portfolio

    def _positions(self) -> dict[str, list[dict[str, object]]]:
        today = (self.sim.now or self.market_now()).astimezone(IST).date()
        day: dict[tuple[str, str], list[float]] = {}
        for t in self._trades:
            if t["_day"] != today:
                continue
            key = (str(t["_instrument_id"]), str(t["product"]))
            row = day.setdefault(key, [0, 0.0, 0, 0.0])
            qty, value = int(t["quantity"]), int(t["quantity"]) * float(t["average_price"])  # type: ignore[call-overload,arg-type]
            if t["transaction_type"] == "BUY":
                row[0] += qty
                row[1] += value
            else:
                row[2] += qty
                row[3] += value
        book = {(p.instrument_id, p.product.value): p for p in self.sim.positions()}
        net, day_rows = [], []
        for key in dict.fromkeys([*book, *day]):
            iid, product = key
            pos = book.get(key)
            qty = pos.qty if pos else 0
            average = pos.average_price if pos else 0.0
            realised = pos.realised_pnl if pos else 0.0
            bq, bv, sq, sv = day.get(key, [0, 0.0, 0, 0.0])
            overnight = qty - int(bq - sq)
            market = self._markets.get(iid)
            ltp = market.ltp if market and market.ltp else average
            close = market.close if market else 0.0
            unrealised = qty * (ltp - average) if qty else 0.0
            ins = self.master.get(iid)

            bp, sp = (bv / bq if bq else 0), (sv / sq if sq else 0)
            common: dict[str, object] = {
                "tradingsymbol": self._symbol(ins),
                "exchange": ins.exchange,
                "instrument_token": self.key_of(iid),
                "product": product,
                "quantity": qty,
                "overnight_quantity": overnight,
                "multiplier": 1,
                "average_price": number(average),
                "close_price": number(close),
                "last_price": number(ltp),
                "value": number(sv - bv),
                "pnl": number(realised + unrealised),
                "m2m": number(realised + unrealised),
                "unrealised": number(unrealised),
                "realised": number(realised),
                "buy_quantity": int(bq),
                "buy_price": number(bp),
                "buy_value": number(bv),
                "buy_m2m": number(bv),
                "sell_quantity": int(sq),
                "sell_price": number(sp),
                "sell_value": number(sv),
                "sell_m2m": number(sv),
                "day_buy_quantity": int(bq),
                "day_buy_price": number(bp),
                "day_buy_value": number(bv),
                "day_sell_quantity": int(sq),
                "day_sell_price": number(sp),
                "day_sell_value": number(sv),
            }
            net.append(common)
            if key in day:
                day_rows.append({**common, "quantity": int(bq - sq), "overnight_quantity": 0})
        return {"net": net, "day": day_rows}

    def _holdings(self) -> list[dict[str, object]]:
        rows = []
        for pos in self.sim.holdings():
            ins = self.master.get(pos.instrument_id)
            market = self._markets.get(pos.instrument_id)
            ltp = market.ltp if market and market.ltp else pos.average_price
            close = market.close if market and market.close else ltp
            rows.append(
                {
                    "tradingsymbol": self._symbol(ins),
                    "exchange": ins.exchange,
                    "instrument_token": self.key_of(ins.id),
                    "isin": "",
                    "product": "CNC",
                    "price": 0,
                    "quantity": pos.qty,
                    "used_quantity": 0,
                    "t1_quantity": 0,
                    "realised_quantity": pos.qty,
                    "authorised_quantity": 0,
                    "authorised_date": "",
                    "authorisation": {},
                    "opening_quantity": pos.qty,
                    "short_quantity": 0,
                    "collateral_quantity": 0,
                    "collateral_type": "",
                    "discrepancy": False,
                    "average_price": number(pos.average_price),
                    "last_price": number(ltp),
                    "close_price": number(close),
                    "pnl": number(pos.qty * (ltp - pos.average_price)),
                    "day_change": number(ltp - close),
                    "day_change_percentage": number((ltp - close) / close * 100 if close else 0),
                    "mtf": {
                        "quantity": 0,
                        "used_quantity": 0,
                        "average_price": 0,
                        "value": 0,
                        "initial_margin": 0,
                    },
                }
            )
        return rows

    def _segment_margins(self, segment: str) -> dict[str, object]:
        if segment == "equity":
            funds = self.sim.funds()
            cash, used, realised = funds.cash, funds.used_margin, funds.realised_pnl
        else:
            cash = used = realised = 0.0
        net = cash - used
        return {
            "enabled": segment == "equity",
            "net": number(net),
            "available": {
                "adhoc_margin": 0,
                "cash": number(cash),
                "opening_balance": number(cash - realised),
                "live_balance": number(net),
                "collateral": 0,
                "intraday_payin": 0,
            },
            "utilised": {
                "debits": number(used),
                "exposure": 0,
                "m2m_realised": number(realised),
                "m2m_unrealised": 0,
                "option_premium": 0,
                "payout": 0,
                "span": 0,
                "holding_sales": 0,
                "turnover": 0,
                "liquid_collateral": 0,
                "stock_collateral": 0,
                "delivery": 0,
            },
        }

    # ------------------------------------------------------------------ market data

    def _quotes(self, keys: list[str], kind: str) -> dict[str, object]:
        if not keys:
            raise _input("Missing instruments (`i=EXCHANGE:TRADINGSYMBOL`).")
        if len(keys) > (500 if kind == "quote" else 1000):
            raise _input("Too many instruments in one request.")
        out: dict[str, object] = {}
        for key in keys:
            iid = self._id_of_key.get(key)
            if iid is None and key.isdigit():
                iid = self._id_of_token.get(int(key))
            if iid is None:
                continue  # Kite leaves unknown instruments out of the answer
            market = self.market(iid)
            entry: dict[str, object] = {"instrument_token": market.token,
                                        "last_price": number(market.ltp)}  # fmt: skip
            ohlc = {"open": number(market.open), "high": number(market.high),
                    "low": number(market.low), "close": number(market.close)}  # fmt: skip
            if kind == "ohlc":
                entry["ohlc"] = ohlc
            elif kind == "quote":
                depth = market.depth()
                limit = market.close or market.ltp
                entry = {
                    "instrument_token": market.token,
                    "timestamp": _kite_time(self.market_now()),
                    "last_trade_time": _kite_time(market.last_trade),
                    "last_price": number(market.ltp),
                    "last_quantity": market.last_qty,
                    "buy_quantity": sum(int(x["quantity"]) for x in depth["buy"]),
                    "sell_quantity": sum(int(x["quantity"]) for x in depth["sell"]),
                    "volume": market.volume,
                    "average_price": number(round(market.average, 2)),
                    "oi": 0,
                    "oi_day_high": 0,
                    "oi_day_low": 0,
                    "net_change": number(market.ltp - market.close if market.close else 0),
                    "lower_circuit_limit": number(round(limit * 0.8, 2)),
                    "upper_circuit_limit": number(round(limit * 1.2, 2)),
                    "ohlc": ohlc,
                    "depth": depth,
                }
            out[key] = entry
        return out

    def _instruments_csv(self, exchange: str | None) -> str:
        table = self.master.table
        rows = table[table["kite_token"].notna()]
        if exchange is not None:
            rows = rows[rows["exchange"] == exchange]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["instrument_token", "exchange_token", "tradingsymbol", "name",
                         "last_price", "expiry", "strike", "tick_size", "lot_size",
                         "instrument_type", "segment", "exchange"])  # fmt: skip
        for r in rows.itertuples(index=False):
            kind = str(r.kind)
            index = kind == "INDEX"
            token = int(r.kite_token)
            expiry = r.expiry
            strike = r.strike
            writer.writerow(
                [
                    token,
                    int(r.exchange_token) if r.exchange_token == r.exchange_token else token // 256,
                    r.name if index else r.symbol,
                    r.name or "",
                    0,
                    "" if expiry is None or expiry != expiry else f"{expiry:%Y-%m-%d}",
                    0 if strike is None or strike != strike else number(strike),
                    number(r.tick_size),
                    int(r.lot_size),
                    "EQ" if index else kind,
                    r.segment or r.exchange,
                    r.exchange,
                ]
            )
        return buffer.getvalue()

    def _historical(self, token: str, interval: str, p: Mapping[str, str]) -> dict[str, object]:
        if interval not in HISTORICAL_LIMIT_DAYS:
            raise _input(f"Invalid interval {interval!r}; use one of "
                         f"{', '.join(HISTORICAL_LIMIT_DAYS)}")  # fmt: skip
        iid = self._id_of_token.get(int(token))
        if iid is None:
            raise _input(f"Invalid token {token}.")
        start, end = _kite_date(p.get("from")), _kite_date(p.get("to"))
        if start is None or end is None:
            raise _input("Missing or invalid `from`/`to` (yyyy-mm-dd hh:mm:ss).")
        if end < start:
            raise _input("Invalid `to`: it is before `from`.")
        limit = HISTORICAL_LIMIT_DAYS[interval]
        if (end - start) > timedelta(days=limit):
            raise _input(f"interval exceeds max limit: {limit} days")
        frame = self.bars_between(iid, _INTERVAL_TIMEFRAME[interval], start, end)
        candles: list[list[object]] = []
        with_oi = p.get("oi") in ("1", "true")
        if frame is not None:
            for ts, row in zip(frame.index, frame.itertuples(index=False), strict=True):
                candle: list[object] = [
                    ts.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    number(row.open), number(row.high), number(row.low), number(row.close),
                    int(row.volume) if row.volume == row.volume else 0,
                ]  # fmt: skip
                if with_oi:
                    candle.append(0)
                candles.append(candle)
        return {"candles": candles}

    # ------------------------------------------------------------------ faults and stats

    def fault(self, kind: str, **params: object) -> dict[str, object]:
        """Inject a fault (see ``docs/kite-simulator.md``); return what was done.

        ``drop_ws``: cut every ticker connection (KiteTicker must reconnect by itself).
        ``http_status``: the next ``count`` requests of ``route`` (an SDK route name such as
        ``order.place``, a path, or ``*``) answer HTTP ``status`` with Kite's error envelope.
        ``slow``: the next ``count`` requests of ``route`` are answered after ``delay`` s.
        ``malformed_packet``: send every ticker connection a garbage binary frame.
        ``expire_token``: expire ``access_token`` (every token when omitted): HTTP 403.
        ``timeout_after_place``: the next ``count`` order placements are accepted and matched,
        but answered only after ``delay`` s (longer than the client's timeout).
        ``clear``: remove every pending fault.
        """
        return super().fault(kind, **params)

    def arm_fault(self, kind: str, params: dict[str, object]) -> dict[str, object]:
        """Kite's immediate faults (ticker drops, garbage, token expiry) and its HTTP statuses."""
        count = int(params.get("count", 1))  # type: ignore[call-overload]
        if kind == "drop_ws":
            dropped = len(self._sockets)
            for sock in list(self._sockets):
                sock.drop()
            return {"dropped": dropped}
        if kind == "malformed_packet":
            garbage = b"\x00\x03\x00\x2c\xde\xad\xbe\xef"  # claims 3 packets of 44 bytes
            for sock in list(self._sockets):
                for _ in range(count):
                    sock.send_binary(garbage)
            return {"sent": len(self._sockets) * count}
        if kind == "expire_token":
            token = params.get("access_token")
            expired = 0
            for session in self._sessions.values():
                if token is None or session.access_token == token:
                    session.expired = True
                    expired += 1
            return {"expired": expired}
        if kind == "timeout_after_place":
            params.setdefault("route", "order.place")
        status = int(params.get("status", 500))  # type: ignore[call-overload]
        if kind == "http_status" and status not in _ERROR_OF_STATUS:
            raise ConfigError(f"status {status} is not a Kite error status "
                              f"({', '.join(map(str, _ERROR_OF_STATUS))})")  # fmt: skip
        return super().arm_fault(kind, params)

    def state(self) -> dict[str, object]:
        """Return orders (Kite dicts), trades, positions, holdings, margins and the clock."""

        def run() -> dict[str, object]:
            return {
                "market_time": _kite_time(self.market_now()),
                "orders": [self._order_dict(r) for r in self._orders.values()],
                "trades": self._public_trades(),
                "positions": self._positions(),
                "holdings": self._holdings(),
                "margins": self._segment_margins("equity"),
                "postbacks": list(self._postbacks),
                "ws_connections": len(self._sockets),
            }

        return self.call(run)  # type: ignore[return-value]

    def order_history(self, order_id: str) -> list[dict[str, object]]:
        """Return the Kite history entries of an order (what ``GET /orders/{id}`` serves)."""
        return self.call(lambda: list(self._record(order_id).history))  # type: ignore[return-value]


# ---------------------------------------------------------------------- parameter helpers


def _enum(p: Mapping[str, str], name: str, kind: type, default: str | None = None):  # noqa: ANN202
    value = p.get(name) or default
    if not value:
        raise _input(f"Missing `{name}`.")
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)  # type: ignore[attr-defined]
        raise _input(f"Invalid `{name}`: {value!r} (use one of {allowed}).") from None


def _integer(p: Mapping[str, str], name: str) -> int:
    value = p.get(name)
    if value in (None, ""):
        raise _input(f"Missing `{name}`.")
    try:
        number = float(value)
    except ValueError:
        raise _input(f"Invalid `{name}`: {value!r} is not a number.") from None
    if number != int(number):
        raise _input(f"Invalid `{name}`: {value!r} is not a whole number.")
    return int(number)


def _price(p: Mapping[str, str], name: str) -> float | None:
    value = p.get(name)
    if value in (None, ""):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except ValueError:
        raise _input(f"Invalid `{name}`: {value!r} is not a number.") from None
    if not math.isfinite(number) or number < 0:
        raise _input(f"Invalid `{name}`: {value!r}.")
    return number or None


def _kite_date(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=IST)
        except ValueError:
            continue
    return None


class _KiteHandler(tornado.web.RequestHandler):
    """Every Kite route and ``/_sim/*``: stats, faults, rate limits, auth, then the route."""

    def initialize(self, simulator: KiteSimulator) -> None:  # noqa: D401 - tornado's hook
        self.simulator = simulator

    def check_xsrf_cookie(self) -> None:
        """No XSRF on an API server."""

    async def get(self, path: str) -> None:
        await self._dispatch("GET", path)

    async def post(self, path: str) -> None:
        await self._dispatch("POST", path)

    async def put(self, path: str) -> None:
        await self._dispatch("PUT", path)

    async def delete(self, path: str) -> None:
        await self._dispatch("DELETE", path)

    def _params(self) -> dict[str, str]:
        params = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        if self.request.method in ("POST", "PUT"):
            content = self.request.headers.get("Content-Type", "")
            if "json" in content and self.request.body:
                body = json.loads(self.request.body)
                params.update({k: str(v) for k, v in body.items()})
            else:
                params.update({k: self.get_body_argument(k) for k in self.request.body_arguments})
        return params

    def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(body if isinstance(body, str | bytes) else json.dumps(body))

    def _error(self, exc: KiteError) -> None:
        self._send(exc.status, {"status": "error", "message": exc.message,
                                "error_type": exc.error_type, "data": None})  # fmt: skip

    async def _dispatch(self, method: str, path: str) -> None:
        sim = self.simulator
        path = "/" + path
        if path.startswith("/_sim/"):
            await self._sim_route(method, path)
            return
        for m, pattern, route_name in _COMPILED:
            match = pattern.match(path)
            if m == method and match:
                name = route_name
                break
        else:
            sim.count("unknown", method, path, 404)
            self._send(404, {"status": "error", "message": f"Route not found: {method} {path}",
                             "error_type": "GeneralException", "data": None})  # fmt: skip
            return
        args = match.groupdict()
        api_key, access_token = _auth_header(self.request.headers.get("Authorization", ""))
        fault = sim.take_fault(("http_status",), name, path)
        if fault is not None:
            sim.count(name, method, path, fault.status)
            message = _MESSAGE_OF_STATUS.get(fault.status, "Simulated error")
            self._error(KiteError(fault.status, _ERROR_OF_STATUS[fault.status], message))
            return
        slow = sim.take_fault(("slow",), name, path)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        params = self._params()
        rate_key = api_key or params.get("api_key", "") or "-"
        if not sim.allow(rate_key, _category(name)):
            sim.count(name, method, path, 429)
            self._error(KiteError(429, "NetworkException", "Too many requests"))
            return
        try:
            session = None
            if name not in _NO_AUTH:
                session = sim._authenticate(api_key, access_token)
            result = self._route(name, args, params, session)
        except KiteError as exc:
            sim.count(name, method, path, exc.status)
            self._error(exc)
            return
        except ValueError as exc:  # a value Velox's types refuse (e.g. an Order field)
            sim.count(name, method, path, 400)
            self._error(_input(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - a simulator bug: answer as Kite would, log it
            log.exception("Kite simulator failed on %s %s", method, path)
            sim.count(name, method, path, 500)
            self._error(KiteError(500, "GeneralException", f"{type(exc).__name__}: {exc}"))
            return
        sim.count(name, method, path, 200)
        if name == "order.place":
            held = sim.take_fault(("timeout_after_place",), name, path)
            if held is not None:
                await asyncio.sleep(held.delay)
        if isinstance(result, _Csv):
            self._send(200, result.text, "text/csv")
        elif isinstance(result, _Redirect):
            self.redirect(result.url)
        else:
            self._send(200, {"status": "success", "data": result})

    def _route(  # noqa: PLR0911 - one branch per Kite route
        self, name: str, args: dict[str, str], p: dict[str, str], session: _Session | None
    ) -> object:
        sim = self.simulator
        if name == "api.token":
            return sim._new_session(p)
        if name == "api.token.invalidate":
            token = p.get("access_token", "")
            found = sim._sessions.get(token)
            if found is not None:
                found.expired = True
            return True
        if name == "connect.login":
            request_token = secrets.token_hex(12)
            redirect = p.get("redirect_url")
            if redirect:
                return _Redirect(f"{redirect}?action=login&type=login&status=success"
                                 f"&request_token={request_token}")  # fmt: skip
            return {"request_token": request_token}
        if name == "market.instruments.all":
            return _Csv(sim._instruments_csv(None))
        if name == "market.instruments":
            return _Csv(sim._instruments_csv(args["exchange"]))
        assert session is not None
        if name == "user.profile":
            return sim._profile()
        if name == "user.margins":
            return {"equity": sim._segment_margins("equity"),
                    "commodity": sim._segment_margins("commodity")}  # fmt: skip
        if name == "user.margins.segment":
            if args["segment"] not in ("equity", "commodity"):
                raise _input(f"Invalid segment {args['segment']!r}; use equity or commodity.")
            return sim._segment_margins(args["segment"])
        if name == "orders":
            return [sim._order_dict(r) for r in sim._orders.values()]
        if name == "trades":
            return sim._public_trades()
        if name == "order.trades":
            sim._record(args["order_id"])
            return sim._public_trades(args["order_id"])
        if name == "order.info":
            return list(sim._record(args["order_id"]).history)
        if name == "order.place":
            return sim._place(session.api_key, args["variety"], p)
        if name == "order.modify":
            return sim._modify(args["variety"], args["order_id"], p)
        if name == "order.cancel":
            return sim._cancel(args["variety"], args["order_id"])
        if name == "portfolio.positions":
            return sim._positions()
        if name == "portfolio.holdings":
            return sim._holdings()
        if name.startswith("market.quote"):
            kind = {"market.quote": "quote", "market.quote.ohlc": "ohlc"}.get(name, "ltp")
            return sim._quotes(self.get_query_arguments("i"), kind)
        if name == "market.historical":
            return sim._historical(args["instrument_token"], args["interval"], p)
        raise _input(f"Route {name} is not simulated")

    async def _sim_route(self, method: str, path: str) -> None:
        sim = self.simulator
        try:
            body = json.loads(self.request.body) if self.request.body else {}
            if method == "POST" and path == "/_sim/fault":
                params = dict(body)
                kind = str(params.pop("kind", ""))
                result: object = sim.arm_fault(kind, params)
            elif method == "POST" and path == "/_sim/trade":
                key = body.get("instrument_id", body.get("token"))
                iid = sim.instrument_id(key)
                sim.key_of(iid)
                now = sim.sync_clock()
                qty = int(body.get("quantity", 1))
                volume = body.get("volume")
                sim.print_trade(iid, now, float(body["price"]),
                              None if volume is None else int(volume), qty)  # fmt: skip
                sim.send_ticks()
                result = {"instrument_id": iid, "time": _kite_time(now)}
            elif method == "GET" and path == "/_sim/stats":
                result = sim.stats_now()
            elif method == "GET" and path == "/_sim/state":
                result = sim.state()
            else:
                raise _input(f"Unknown simulator route {method} {path}; see docs/kite-simulator.md")
        except KiteError as exc:
            self._error(exc)
            return
        except (KeyError, ValueError, TypeError, ConfigError) as exc:
            self._error(_input(f"Bad simulator request: {exc}"))
            return
        self._send(200, {"status": "success", "data": result})


@dataclass
class _Csv:
    text: str


@dataclass
class _Redirect:
    url: str


def _auth_header(header: str) -> tuple[str, str]:
    """Return (api_key, access_token) of ``Authorization: token api_key:access_token``."""
    if not header.startswith("token "):
        return "", ""
    key, _, token = header[len("token ") :].partition(":")
    return key.strip(), token.strip()
