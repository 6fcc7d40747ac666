"""A loopback simulator of Angel One SmartAPI, for the official ``smartapi-python`` SDK.

It serves, on 127.0.0.1, what ``SmartConnect`` calls (its ``_routes``, envelopes
``{status, message, errorcode, data}``), the order-update websocket
``SmartWebSocketOrderUpdate`` reads (``/smart-order-update``: one JSON text message per order
change, ``order-status`` AB01…AB11 as Angel documents them) and the market-data websocket
``SmartWebSocketV2`` reads (``/smart-stream``: JSON subscribe/unsubscribe in, ``ping`` →
``pong``, little-endian binary LTP 51 B / QUOTE 123 B / SNAP_QUOTE 379 B packets out,
encoded by :mod:`velox.brokers.smartapi.packets`). Behind it stands the simulated exchange of
:mod:`velox.brokers.simcore`: a paced replay of stored bars, or a market that trades when told
(``POST /_sim/trade``).

Logins: with no ``client_code`` configured any client code, PIN and TOTP are accepted (demo
credentials); with one, the PIN must match and the TOTP must be the current code of
``totp_secret`` (``pyotp``). Faults (``POST /_sim/fault`` or :meth:`fault`): ``http_status``,
``slow``, ``timeout_after_place`` (the order is placed; the answer waits ``delay`` s),
``drop_ws`` (close every websocket), ``expire_token`` (every session's jwt stops working:
``AG8002``), ``clear``. Request limits are Angel's published per-second limits (see
``RATE_LIMITS``); a request over them is answered HTTP 403 "Access denied because of exceeding
access rate", as Angel's gateway does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

import tornado.web
import tornado.websocket

from velox.brokers.simcore import LoopbackSimulator, SimMarket, number
from velox.brokers.smartapi import packets
from velox.brokers.smartapi.mapping import CANDLE_INTERVALS, CANDLE_MAX_DAYS, SMARTAPI_RATE_LIMITS
from velox.calendar import IST, is_open
from velox.errors import ConfigError, OrderRejected
from velox.types import Fill, Order, OrderStatus, OrderType, Product, Side, Validity, is_on_tick

__all__ = ["RATE_LIMITS", "SmartApiSimulator"]

log = logging.getLogger(__name__)

#: Angel One's published request limits (``mapping.SMARTAPI_RATE_LIMITS``)
#: as the simulator counts them: route name → ((window s, requests), …).
RATE_LIMITS: dict[str, tuple[tuple[float, int], ...]] = {
    name: tuple((limit.period, limit.count) for limit in limits)
    for name, limits in SMARTAPI_RATE_LIMITS.items()
}

_API = "/rest/secure/angelbroking"
#: (method, path) → the SDK's route name (``SmartConnect._routes``).
_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/rest/auth/angelbroking/user/v1/loginByPassword"): "api.login",
    ("POST", "/rest/auth/angelbroking/jwt/v1/generateTokens"): "api.token",
    ("POST", f"{_API}/user/v1/logout"): "api.logout",
    ("GET", f"{_API}/user/v1/getProfile"): "api.user.profile",
    ("POST", f"{_API}/order/v1/placeOrder"): "api.order.place",
    ("POST", f"{_API}/order/v1/modifyOrder"): "api.order.modify",
    ("POST", f"{_API}/order/v1/cancelOrder"): "api.order.cancel",
    ("GET", f"{_API}/order/v1/getOrderBook"): "api.order.book",
    ("GET", f"{_API}/order/v1/getTradeBook"): "api.trade.book",
    ("GET", f"{_API}/order/v1/getPosition"): "api.position",
    ("GET", f"{_API}/portfolio/v1/getHolding"): "api.holding",
    ("GET", f"{_API}/user/v1/getRMS"): "api.rms.limit",
    ("POST", f"{_API}/order/v1/getLtpData"): "api.ltp.data",
    ("POST", f"{_API}/market/v1/quote"): "api.market.data",
    ("POST", f"{_API}/historical/v1/getCandleData"): "api.candle.data",
}
_NO_AUTH = ("api.login", "api.token")
#: Where Angel serves its instrument master (a static file beside the API).
MASTER_PATH = "/OpenAPI_File/files/OpenAPIScripMaster.json"
_INDEX_UNDERLYINGS = {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50", "SENSEX",
                      "BANKEX", "SENSEX50"}  # fmt: skip


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


FAULTS = ("http_status", "slow", "timeout_after_place", "drop_ws", "expire_token", "clear")

#: Angel's order status text and the order-update websocket's code for it.
_STATUS = {
    OrderStatus.SUBMITTED: ("open pending", "AB09"),
    OrderStatus.OPEN: ("open", "AB01"),
    OrderStatus.PARTIAL: ("open", "AB01"),
    OrderStatus.TRIGGER_PENDING: ("trigger pending", "AB10"),
    OrderStatus.FILLED: ("complete", "AB05"),
    OrderStatus.CANCELLED: ("cancelled", "AB02"),
    OrderStatus.REJECTED: ("rejected", "AB03"),
}
_PRODUCT = {Product.CNC: "DELIVERY", Product.MIS: "INTRADAY", Product.NRML: "CARRYFORWARD"}
_PRODUCT_OF = {v: k for k, v in _PRODUCT.items()} | {"MARGIN": Product.NRML}
_ORDER_TYPE = {OrderType.MARKET: "MARKET", OrderType.LIMIT: "LIMIT",
               OrderType.SL: "STOPLOSS_LIMIT", OrderType.SL_M: "STOPLOSS_MARKET"}  # fmt: skip
_ORDER_TYPE_OF = {v: k for k, v in _ORDER_TYPE.items()}
_VARIETY_OF = {OrderType.MARKET: "NORMAL", OrderType.LIMIT: "NORMAL",
               OrderType.SL: "STOPLOSS", OrderType.SL_M: "STOPLOSS"}  # fmt: skip


class AngelError(Exception):
    """An answer with ``status: false`` (and its HTTP status)."""

    def __init__(self, errorcode: str, message: str, http: int = 200) -> None:
        super().__init__(message)
        self.errorcode, self.message, self.http = errorcode, message, http


def _angel_time(ts: datetime | None) -> str:
    return "" if ts is None else ts.astimezone(IST).strftime("%d-%b-%Y %H:%M:%S")


def _jwt(client_code: str, hours: float = 24.0) -> str:
    """Return a JWT shaped like Angel's (HS512 header, ``username`` and ``exp`` claims; the
    signature is random: only the simulator checks it, by lookup)."""

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    exp = int(_time.time() + hours * 3600)
    return ".".join((part({"alg": "HS512"}), part({"username": client_code, "exp": exp}),
                     secrets.token_urlsafe(32)))  # fmt: skip


@dataclass
class _Session:
    client_code: str
    jwt: str
    refresh: str
    feed: str


@dataclass
class _AngelOrder:
    order_id: str
    variety: str
    order: Order
    token: str
    symbol: str
    owner: str  # the client code whose websockets hear of it
    updated_at: datetime | None = None
    text: str = ""
    unique_id: str = field(default_factory=lambda: secrets.token_hex(16))


class SmartApiSimulator(LoopbackSimulator):
    """Angel One SmartAPI on 127.0.0.1 (see the module docstring).

    Parameters are :class:`~velox.brokers.simcore.LoopbackSimulator`'s, plus ``client_code``,
    ``pin`` and ``totp_secret`` (only this login is accepted when given).

    Examples
    --------
    >>> sim = SmartApiSimulator()                                  # doctest: +SKIP
    >>> sim.start(); sim.trade("NSE:SBIN", 812.4)                  # doctest: +SKIP
    >>> SmartConnect(api_key="demo", root=sim.url)                 # doctest: +SKIP
    """

    NAME = "SmartAPI"
    RATE_LIMITS: ClassVar[Mapping[str, tuple[tuple[float, int], ...]]] = RATE_LIMITS
    FAULTS: ClassVar[tuple[str, ...]] = FAULTS
    MARKET: ClassVar[type[SimMarket]] = SimMarket

    def __init__(
        self,
        *args: Any,
        client_code: str | None = None,
        pin: str | None = None,
        totp_secret: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.client_code, self.pin, self.totp_secret = client_code, pin, totp_secret
        self._sessions: dict[str, _Session] = {}  # jwt → session
        self._refresh: dict[str, _Session] = {}
        self._orders: dict[str, _AngelOrder] = {}
        self._by_sim_id: dict[str, str] = {}
        self._placing: _AngelOrder | None = None
        self._trades: list[dict[str, Any]] = []
        self._seq = 0
        self._updates: list[dict[str, Any]] = []  # every order-update message sent
        self._order_sockets: set[OrderUpdateSocket] = set()
        self._stream_sockets: set[StreamSocket] = set()
        self._packet_seq = 0
        self._updates_written = 0  # order-update messages written to any socket, ever
        table = self.master.table
        rows = table[table["angel_token"].notna()]
        self._token_of = dict(zip(rows["id"], rows["angel_token"].astype(str), strict=True))
        self._symbol_of = dict(zip(rows["id"], rows["angel_symbol"].astype(str), strict=True))
        self._id_of = {(ex, tok): iid for iid, tok, ex in
                       zip(rows["id"], rows["angel_token"].astype(str), rows["exchange"],
                           strict=True)}  # fmt: skip

    # ------------------------------------------------------------------ instruments

    def key_of(self, instrument_id: str) -> str:
        token = self._token_of.get(instrument_id)
        if token is None:
            raise ConfigError(f"{instrument_id} has no SmartAPI token in the instrument master")
        return token

    def instrument_id(self, key: str | int) -> str:
        key = str(key)
        if key in self._token_of:
            return key
        for (_, token), iid in self._id_of.items():
            if token == key:
                return iid
        raise ConfigError(f"no instrument has SmartAPI token or id {key!r}")

    def _resolve(self, exchange: str, token: str, symbol: str) -> str:
        iid = self._id_of.get((exchange, token))
        if iid is None:
            raise AngelError("AB1009", f"Symbol Not Found: {exchange} token {token!r}")
        if symbol and symbol != self._symbol_of.get(iid):
            raise AngelError("AB1018", f"Failed to get symbol details: {symbol!r} is not token "
                                       f"{token} ({self._symbol_of.get(iid)})")  # fmt: skip
        return iid

    # ------------------------------------------------------------------ tornado

    @property
    def ws_url(self) -> str:
        """The market-data websocket (``SmartWebSocketV2.ROOT_URI``)."""
        return f"ws://127.0.0.1:{self.port}/smart-stream"

    @property
    def order_ws_url(self) -> str:
        """The order-update websocket (``SmartWebSocketOrderUpdate.WEBSOCKET_URI``)."""
        return f"ws://127.0.0.1:{self.port}/smart-order-update"

    def routes(self) -> list[tuple[Any, ...]]:
        return [
            (r"/smart-stream", StreamSocket, {"simulator": self}),
            (r"/smart-order-update", OrderUpdateSocket, {"simulator": self}),
            (r"/(.*)", _Handler, {"simulator": self}),
        ]

    def close_connections(self) -> None:
        """Close every websocket; they stop receiving at once (tornado's on_close runs later)."""
        socks = [*self._order_sockets, *self._stream_sockets]
        self._order_sockets.clear()
        self._stream_sockets.clear()
        for sock in socks:
            sock.close()

    # ------------------------------------------------------------------ sessions

    def _login(self, p: Mapping[str, Any]) -> dict[str, object]:
        code, pin, totp = (str(p.get(k) or "") for k in ("clientcode", "password", "totp"))
        if not code or not pin or not totp:
            raise AngelError("AB1000", "Invalid clientcode, password or totp")
        if self.client_code is not None:
            if code != self.client_code or (self.pin is not None and pin != self.pin):
                raise AngelError("AB1000", "Invalid clientcode or password")
            if self.totp_secret is not None:
                import pyotp

                if not pyotp.TOTP(self.totp_secret).verify(totp, valid_window=1):
                    raise AngelError("AB1050", "Invalid totp")
        return self._new_session(code)

    def _new_session(self, code: str) -> dict[str, object]:
        session = _Session(code, _jwt(code), secrets.token_urlsafe(24), secrets.token_urlsafe(12))
        self._sessions[session.jwt] = self._refresh[session.refresh] = session
        return {"jwtToken": session.jwt, "refreshToken": session.refresh,
                "feedToken": session.feed}  # fmt: skip

    def _renew(self, p: Mapping[str, Any]) -> dict[str, object]:
        old = self._refresh.get(str(p.get("refreshToken") or ""))
        if old is None:
            raise AngelError("AB8050", "Invalid refresh token", 401)
        return self._new_session(old.client_code)

    def authenticate(self, header: str) -> _Session:
        """Return the session of an ``Authorization`` header (``Bearer jwt`` or the jwt)."""
        jwt = header.removeprefix("Bearer ").strip()
        session = self._sessions.get(jwt)
        if not jwt:
            raise AngelError("AG8003", "Token missing", 401)
        if session is None:
            raise AngelError("AG8002" if jwt.startswith("eyJ") else "AG8001",
                             "Invalid Token" if not jwt.startswith("eyJ") else "Token Expired",
                             401)  # fmt: skip
        return session

    def _profile(self, session: _Session) -> dict[str, object]:
        return {"clientcode": session.client_code, "name": "VELOX SIM", "email": "",
                "mobileno": "", "exchanges": ["NSE", "BSE", "NFO"],
                "products": list(_PRODUCT_OF), "lastlogintime": "", "broker": ""}  # fmt: skip

    # ------------------------------------------------------------------ orders

    def _place(self, session: _Session, p: Mapping[str, Any]) -> dict[str, object]:
        variety = str(p.get("variety") or "")
        if variety not in ("NORMAL", "STOPLOSS"):
            raise AngelError("AB1008", f"Invalid Order Variety: {variety!r} (simulated: NORMAL, "
                                       "STOPLOSS)")  # fmt: skip
        iid = self._resolve(str(p.get("exchange") or ""), str(p.get("symboltoken") or ""),
                            str(p.get("tradingsymbol") or ""))  # fmt: skip
        ins = self.master.get(iid)
        try:
            side = Side(str(p.get("transactiontype")))
            order_type = _ORDER_TYPE_OF[str(p.get("ordertype"))]
            product = _PRODUCT_OF[str(p.get("producttype"))]
            validity = Validity(str(p.get("duration") or "DAY"))
        except (KeyError, ValueError) as exc:
            raise AngelError("AB1012", f"Invalid order parameter: {exc}") from None
        if variety != _VARIETY_OF[order_type]:
            raise AngelError("AB1008", f"Invalid Order Variety: {order_type.value} orders are "
                                       f"variety {_VARIETY_OF[order_type]}")  # fmt: skip
        quantity = _int(p, "quantity")
        price, trigger = _float(p, "price"), _float(p, "triggerprice")
        if order_type in (OrderType.MARKET, OrderType.SL_M):
            price = None
        if order_type in (OrderType.MARKET, OrderType.LIMIT):
            trigger = None
        tag = str(p.get("ordertag") or "")
        if len(tag) > 20:
            raise AngelError("AB4008", "ordertag length should be less than 20 characters")
        now = self.sync_clock()
        if not is_open(now):
            raise AngelError("AB1004", f"Markets are closed (market time {_angel_time(now)})")
        self._seq += 1
        order_id = f"{now.astimezone(IST):%y%m%d}{self._seq:09d}"
        try:
            order = Order(client_id=f"angel-{self._seq}", instrument_id=iid, side=side,
                          qty=quantity, order_type=order_type, product=product,
                          validity=validity, limit_price=price or None,
                          trigger_price=trigger or None, tag=tag)  # fmt: skip
        except ValueError as exc:
            raise AngelError("AB1012", str(exc)) from None
        record = _AngelOrder(order_id, variety, order, self.key_of(iid),
                             self._symbol_of[iid], session.client_code)  # fmt: skip
        if quantity % ins.lot_size:
            record.text = f"Quantity should be a multiple of lot size ({ins.lot_size})"
        for label, value in (("price", price), ("trigger price", trigger)):
            if value and ins.tick_size and not is_on_tick(value, ins.tick_size):
                record.text = f"Tick size is {ins.tick_size:g}: {label} {value:g} is off it"
        if record.text:  # Angel accepts the request and rejects the order
            record.order = Order(**{**_fields(order), "status": OrderStatus.REJECTED,
                                    "status_message": record.text})  # fmt: skip
            record.updated_at = now
            self._orders[order_id] = record
            self._publish(record)
            return {"script": record.symbol, "orderid": order_id, "uniqueorderid": record.unique_id}
        self._placing = record
        try:
            self.sim.place_order(order)
        except OrderRejected as exc:
            if order_id not in self._orders:
                record.text = exc.reason
                self._orders[order_id] = record
        finally:
            self._placing = None
        return {"script": record.symbol, "orderid": order_id, "uniqueorderid": record.unique_id}

    def _record(self, order_id: str) -> _AngelOrder:
        record = self._orders.get(order_id)
        if record is None:
            raise AngelError("AB1013", f"Order not found: {order_id}")
        return record

    def _modify(self, p: Mapping[str, Any]) -> dict[str, object]:
        record = self._record(str(p.get("orderid") or ""))
        if record.order.is_terminal:
            raise AngelError("AB1004", f"Order {record.order_id} cannot be modified: it is "
                                       f"{_STATUS[record.order.status][0]}")  # fmt: skip
        changes: dict[str, object] = {}
        if p.get("quantity"):
            changes["qty"] = _int(p, "quantity")
        if p.get("ordertype"):
            changes["order_type"] = _ORDER_TYPE_OF.get(str(p["ordertype"]), record.order.order_type)
        if _float(p, "price"):
            changes["limit_price"] = _float(p, "price")
        if _float(p, "triggerprice"):
            changes["trigger_price"] = _float(p, "triggerprice")
        self.sync_clock()
        try:
            self.sim.modify_order(str(record.order.broker_order_id), **changes)  # type: ignore[arg-type]
        except (OrderRejected, ValueError) as exc:
            raise AngelError("AB1004", str(getattr(exc, "reason", exc))) from None
        return {"orderid": record.order_id, "uniqueorderid": record.unique_id}

    def _cancel(self, p: Mapping[str, Any]) -> dict[str, object]:
        record = self._record(str(p.get("orderid") or ""))
        if record.order.is_terminal:
            raise AngelError("AB1004", f"Order {record.order_id} cannot be cancelled: it is "
                                       f"{_STATUS[record.order.status][0]}")  # fmt: skip
        self.sync_clock()
        try:
            self.sim.cancel_order(str(record.order.broker_order_id))
        except OrderRejected as exc:
            raise AngelError("AB1004", exc.reason) from None
        return {"orderid": record.order_id, "uniqueorderid": record.unique_id}

    def on_order_update(self, order: Order) -> None:
        """SimBroker's postback: keep Angel's view of the order and tell its owner's sockets."""
        sim_id = str(order.broker_order_id)
        order_id = self._by_sim_id.get(sim_id)
        if order_id is None:
            record = self._placing
            if record is None:  # the exchange's own order (the MIS square-off)
                self._seq += 1
                now = self.sim.now or self.market_now()
                record = _AngelOrder(f"{now.astimezone(IST):%y%m%d}{self._seq:09d}", "NORMAL",
                                     order, self.key_of(order.instrument_id),
                                     self._symbol_of[order.instrument_id], "")  # fmt: skip
            self._by_sim_id[sim_id] = record.order_id
            self._orders[record.order_id] = record
        else:
            record = self._orders[order_id]
        record.order = order
        record.updated_at = self.sim.now
        if order.status is OrderStatus.REJECTED:
            record.text = order.status_message
        self._publish(record)

    def on_fill(self, fill: Fill) -> None:
        """SimBroker's fill: one line of the trade book."""
        order_id = self._by_sim_id.get(str(fill.broker_order_id))
        record = self._orders.get(order_id) if order_id else self._placing
        if record is None:
            return
        ins = self.master.get(fill.instrument_id)
        self._trades.append({
            "exchange": ins.exchange, "producttype": _PRODUCT[fill.product],
            "tradingsymbol": record.symbol, "instrumenttype": "", "symbolgroup": "EQ",
            "strikeprice": "-1", "optiontype": "", "expirydate": "", "marketlot": str(ins.lot_size),
            "precision": "2", "multiplier": "-1", "tradevalue": str(number(fill.qty * fill.price)),
            "transactiontype": fill.side.value, "fillprice": number(fill.price),
            "fillsize": str(fill.qty), "orderid": record.order_id,
            "fillid": f"{len(self._trades) + 1:08d}",
            "filltime": fill.ts.astimezone(IST).strftime("%H:%M:%S"),
            "_ts": fill.ts, "_iid": fill.instrument_id, "_product": fill.product,
        })  # fmt: skip

    def _order_dict(self, record: _AngelOrder) -> dict[str, object]:
        o = record.order
        status = _STATUS.get(o.status, ("open pending", "AB09"))[0]
        ins = self.master.get(o.instrument_id)
        return {
            "variety": record.variety, "ordertype": _ORDER_TYPE[o.order_type],
            "producttype": _PRODUCT[o.product], "duration": o.validity.value,
            "price": number(o.limit_price or 0), "triggerprice": number(o.trigger_price or 0),
            "quantity": str(o.qty), "disclosedquantity": "0", "squareoff": 0, "stoploss": 0,
            "trailingstoploss": 0, "tradingsymbol": record.symbol,
            "transactiontype": o.side.value, "exchange": ins.exchange,
            "symboltoken": record.token, "ordertag": o.tag, "instrumenttype": "",
            "strikeprice": -1, "optiontype": "", "expirydate": "", "lotsize": str(ins.lot_size),
            "cancelsize": str(o.qty - o.filled_qty if o.status is OrderStatus.CANCELLED else 0),
            "averageprice": number(o.average_price), "filledshares": str(o.filled_qty),
            "unfilledshares": str(o.qty - o.filled_qty), "orderid": record.order_id,
            "text": record.text, "status": status, "orderstatus": status,
            "updatetime": _angel_time(record.updated_at), "exchtime": _angel_time(o.created_at),
            "exchorderupdatetime": _angel_time(record.updated_at), "fillid": "", "filltime": "",
            "parentorderid": "", "uniqueorderid": record.unique_id,
        }  # fmt: skip

    def _publish(self, record: _AngelOrder) -> None:
        code = _STATUS.get(record.order.status, ("", "AB09"))[1]
        message = {"user-id": record.owner, "status-code": "200", "order-status": code,
                   "error-message": record.text if code == "AB03" else "",
                   "orderData": self._order_dict(record)}  # fmt: skip
        self._updates.append(message)
        for sock in list(self._order_sockets):
            if sock.client_code == record.owner:
                sock.send(message)

    def _public_trades(self) -> list[dict[str, object]]:
        return [{k: v for k, v in t.items() if not k.startswith("_")} for t in self._trades]

    # ------------------------------------------------------------------ portfolio

    def _positions(self) -> list[dict[str, object]]:
        rows = []
        for pos in self.sim.positions():
            ins = self.master.get(pos.instrument_id)
            mine = [t for t in self._trades
                    if t["_iid"] == pos.instrument_id and t["_product"] is pos.product]  # fmt: skip
            bq = sum(int(t["fillsize"]) for t in mine if t["transactiontype"] == "BUY")
            sq = sum(int(t["fillsize"]) for t in mine if t["transactiontype"] == "SELL")
            bv = sum(int(t["fillsize"]) * float(t["fillprice"]) for t in mine
                     if t["transactiontype"] == "BUY")  # fmt: skip
            sv = sum(int(t["fillsize"]) * float(t["fillprice"]) for t in mine
                     if t["transactiontype"] == "SELL")  # fmt: skip
            market = self._markets.get(pos.instrument_id)
            ltp = market.ltp if market and market.ltp else pos.average_price
            rows.append({
                "exchange": ins.exchange, "symboltoken": self.key_of(ins.id),
                "producttype": _PRODUCT[pos.product], "tradingsymbol": self._symbol_of[ins.id],
                "symbolname": ins.symbol, "instrumenttype": "", "lotsize": str(ins.lot_size),
                "buyqty": str(bq), "sellqty": str(sq), "buyamount": str(number(bv)),
                "sellamount": str(number(sv)), "buyavgprice": str(number(bv / bq if bq else 0)),
                "sellavgprice": str(number(sv / sq if sq else 0)),
                "avgnetprice": str(number(pos.average_price)), "netqty": str(pos.qty),
                "netvalue": str(number(sv - bv)), "realised": str(number(pos.realised_pnl)),
                "unrealised": str(number(pos.qty * (ltp - pos.average_price))),
                "ltp": str(number(ltp)), "close": str(number(market.close if market else 0)),
                "cfbuyqty": "0", "cfsellqty": "0",
            })  # fmt: skip
        return rows

    def _holdings(self) -> list[dict[str, object]]:
        rows = []
        for pos in self.sim.holdings():
            market = self._markets.get(pos.instrument_id)
            ltp = market.ltp if market and market.ltp else pos.average_price
            rows.append({
                "tradingsymbol": self._symbol_of.get(pos.instrument_id, pos.instrument_id),
                "exchange": pos.instrument_id.split(":")[0], "isin": "", "t1quantity": 0,
                "realisedquantity": pos.qty, "quantity": pos.qty, "authorisedquantity": 0,
                "product": "DELIVERY", "collateralquantity": None, "collateraltype": None,
                "haircut": 0, "averageprice": number(pos.average_price), "ltp": number(ltp),
                "symboltoken": self.key_of(pos.instrument_id),
                "close": number(market.close if market else ltp),
                "profitandloss": number(pos.qty * (ltp - pos.average_price)), "pnlpercentage": 0,
            })  # fmt: skip
        return rows

    def _rms(self) -> dict[str, object]:
        funds = self.sim.funds()
        net = funds.cash - funds.used_margin
        return {"net": str(number(net)), "availablecash": str(number(funds.cash)),
                "availableintradaypayin": "0", "availablelimitmargin": "0", "collateral": "0",
                "m2munrealized": "0", "m2mrealized": str(number(funds.realised_pnl)),
                "utiliseddebits": str(number(funds.used_margin)), "utilisedspan": "0",
                "utilisedoptionpremium": "0", "utilisedholdingsales": "0",
                "utilisedexposure": "0", "utilisedturnover": "0",
                "utilisedpayout": "0"}  # fmt: skip

    def _ltp(self, p: Mapping[str, Any]) -> dict[str, object]:
        iid = self._resolve(str(p.get("exchange") or ""), str(p.get("symboltoken") or ""),
                            str(p.get("tradingsymbol") or ""))  # fmt: skip
        m = self.market(iid)
        return {"exchange": iid.split(":")[0], "tradingsymbol": self._symbol_of[iid],
                "symboltoken": m.token, "open": number(m.open), "high": number(m.high),
                "low": number(m.low), "close": number(m.close), "ltp": number(m.ltp)}  # fmt: skip

    def scrip_master(self) -> list[dict[str, str]]:
        """Return the instrument master as Angel's ``OpenAPIScripMaster.json`` lists it
        (strikes and tick sizes in paise, ``-EQ`` cash symbols, ``AMXIDX`` indices)."""
        table = self.master.table
        rows = table[table["angel_token"].notna()]
        indices = set(table.loc[table["kind"] == "INDEX", "symbol"])
        out = []
        for r in rows.itertuples():
            kind = str(r.kind)
            on_index = str(r.underlying) in indices or str(r.underlying) in _INDEX_UNDERLYINGS
            option = "OPTIDX" if on_index else "OPTSTK"
            angel_type = {"EQ": "", "INDEX": "AMXIDX", "FUT": "FUTIDX" if on_index else "FUTSTK",
                          "CE": option, "PE": option}.get(kind)  # fmt: skip
            if angel_type is None:
                continue
            expiry = "" if pd_isna(r.expiry) else r.expiry.strftime("%d%b%Y").upper()
            strike = 0.0 if pd_isna(r.strike) or kind not in ("CE", "PE") else float(r.strike)
            tick = 0.0 if kind == "INDEX" else float(r.tick_size)
            out.append({
                "token": str(r.angel_token), "symbol": str(r.angel_symbol),
                "name": str(r.underlying if kind in ("FUT", "CE", "PE", "EQ") else r.name),
                "expiry": expiry, "strike": f"{strike * 100:.6f}", "lotsize": str(int(r.lot_size)),
                "instrumenttype": angel_type, "exch_seg": str(r.exchange),
                "tick_size": f"{tick * 100:.6f}",
            })  # fmt: skip
        return out

    @property
    def master_url(self) -> str:
        """Where the simulator serves ``OpenAPIScripMaster.json`` (``smartapi_master_url``)."""
        return self.url + MASTER_PATH

    def _quotes(self, p: Mapping[str, Any]) -> dict[str, object]:
        """``getMarketData``: FULL, OHLC or LTP rows of up to 50 tokens, by exchange."""
        mode = str(p.get("mode") or "")
        groups = p.get("exchangeTokens")
        if mode not in ("FULL", "OHLC", "LTP") or not isinstance(groups, Mapping):
            raise AngelError("AB4006", "Invalid mode or exchangeTokens")
        wanted = [(str(ex), str(tok)) for ex, toks in groups.items() for tok in toks]
        if len(wanted) > 50:
            raise AngelError("AB4007", "Up to 50 tokens a request")
        fetched, unfetched = [], []
        for exchange, token in wanted:
            iid = self._id_of.get((exchange, token))
            if iid is None:
                unfetched.append({"exchange": exchange, "symbolToken": token,
                                  "message": "Invalid token", "errorCode": "AB4008"})  # fmt: skip
                continue
            m = self.market(iid)
            row: dict[str, object] = {"exchange": exchange, "tradingSymbol": self._symbol_of[iid],
                                      "symbolToken": token, "ltp": number(m.ltp)}  # fmt: skip
            if mode != "LTP":
                row.update(open=number(m.open), high=number(m.high), low=number(m.low),
                           close=number(m.close))  # fmt: skip
            if mode == "FULL":
                stamp = _angel_time(m.last_trade)
                row.update(lastTradeQty=m.last_qty, exchFeedTime=stamp, exchTradeTime=stamp,
                           netChange=number(round(m.ltp - m.close, 2)) if m.close else 0,
                           avgPrice=number(m.average), tradeVolume=m.volume, opnInterest=0,
                           depth=m.depth())  # fmt: skip
            fetched.append(row)
        return {"fetched": fetched, "unfetched": unfetched}

    def _candles(self, p: Mapping[str, Any]) -> list[list[object]]:
        timeframe = {v: k for k, v in CANDLE_INTERVALS.items()}.get(str(p.get("interval")))
        if timeframe is None:
            raise AngelError("AB1004", f"Invalid interval {p.get('interval')!r}")
        iid = self._resolve(str(p.get("exchange") or ""), str(p.get("symboltoken") or ""), "")
        try:
            start, end = (datetime.strptime(str(p.get(k)), "%Y-%m-%d %H:%M").replace(tzinfo=IST)
                          for k in ("fromdate", "todate"))  # fmt: skip
        except ValueError:
            raise AngelError("AB1004", "fromdate/todate must be 'YYYY-MM-DD HH:MM'") from None
        most = CANDLE_MAX_DAYS[str(p["interval"])]
        if end - start > timedelta(days=most):
            raise AngelError("AB1004", f"{p['interval']} candles span at most {most} days a "
                             "request")  # fmt: skip
        frame = self.bars_between(iid, timeframe, start, end)
        if frame is None:
            return []
        rows = zip(frame.index, frame.itertuples(), strict=True)
        return [[ts.isoformat(), number(r.open), number(r.high), number(r.low), number(r.close),
                 int(r.volume)] for ts, r in rows]  # fmt: skip

    # ------------------------------------------------------------------ market data

    def flush_ticks(self, pending: set[str]) -> None:
        for sock in list(self._stream_sockets):
            for iid in pending:
                mode = sock.modes.get(self.key_of(iid))
                if mode is not None:
                    sock.write_message(self.packet(iid, mode), binary=True)

    def packet(self, instrument_id: str, mode: int) -> bytes:
        """Return the current tick of ``instrument_id`` as a SmartAPI packet of ``mode``."""
        m = self.market(instrument_id)
        self._packet_seq += 1
        exchange = packets.EXCHANGE_TYPES[instrument_id.split(":")[0]]
        return packets.encode(
            mode, exchange, str(m.token), sequence=self._packet_seq,
            ts=m.last_trade or self.market_now(), ltp=m.ltp, last_qty=m.last_qty,
            average=m.average, volume=m.volume, ohlc=(m.open, m.high, m.low, m.close),
            last_trade=m.last_trade, depth=m.depth(),
        )  # fmt: skip

    # ------------------------------------------------------------------ faults and levers

    def arm_fault(self, kind: str, params: dict[str, object]) -> dict[str, object]:
        if kind == "drop_ws":
            dropped = len(self._order_sockets) + len(self._stream_sockets)
            self.close_connections()
            return {"dropped": dropped}
        if kind == "expire_token":
            expired = len(self._sessions)
            self._sessions.clear()
            self.close_connections()
            return {"expired": expired}
        if kind == "timeout_after_place":
            params.setdefault("route", "api.order.place")
        return super().arm_fault(kind, params)

    def updates_sent(self) -> int:
        """Return how many order-update messages were written to sockets (greetings too)."""
        return self.call(lambda: self._updates_written)  # type: ignore[return-value]

    def state(self) -> dict[str, object]:
        """Return the orders (as the order book shows them), trades and update messages."""

        def run() -> dict[str, object]:
            return {"orders": [self._order_dict(r) for r in self._orders.values()],
                    "trades": self._public_trades(), "updates": list(self._updates)}  # fmt: skip

        return self.call(run)  # type: ignore[return-value]


def _fields(order: Order) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(order, f.name) for f in fields(order)}


def _int(p: Mapping[str, Any], name: str) -> int:
    try:
        value = int(str(p.get(name)))
    except ValueError:
        raise AngelError("AB1004", f"Invalid {name}: {p.get(name)!r}") from None
    if value <= 0:
        raise AngelError("AB1004", f"Invalid {name}: must be a positive whole number")
    return value


def _float(p: Mapping[str, Any], name: str) -> float | None:
    raw = p.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(str(raw))
    except ValueError:
        raise AngelError("AB1004", f"Invalid {name}: {raw!r}") from None


class _Handler(tornado.web.RequestHandler):
    """Every REST route and ``/_sim/*``: stats, faults, limits, auth, then the route."""

    def initialize(self, simulator: SmartApiSimulator) -> None:  # noqa: D401 - tornado's hook
        self.simulator = simulator

    def check_xsrf_cookie(self) -> None:
        """No XSRF on an API server."""

    async def get(self, path: str) -> None:
        await self._dispatch("GET", "/" + path)

    async def post(self, path: str) -> None:
        await self._dispatch("POST", "/" + path)

    def _params(self) -> dict[str, Any]:
        # SmartConnect sends POST parameters as a JSON body and GET parameters as a JSON text
        # in the query string (``params=json.dumps(params)``): both are read here.
        raw = self.request.body if self.request.method == "POST" else self.request.query
        if not raw:
            return {}
        try:
            value = json.loads(raw.decode() if isinstance(raw, bytes) else unquote(raw))
        except ValueError:
            raise AngelError("AB1004", f"the parameters are not JSON: {raw[:80]!r}") from None
        return value if isinstance(value, dict) else {}

    def _send(self, status: int, body: object) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _error(self, exc: AngelError) -> None:
        self._send(exc.http, {"status": False, "message": exc.message,
                              "errorcode": exc.errorcode, "data": None})  # fmt: skip

    async def _dispatch(self, method: str, path: str) -> None:
        sim = self.simulator
        if path.startswith("/_sim/"):
            self._sim_route(method, path)
            return
        if method == "GET" and path == MASTER_PATH:  # a static file at Angel: no session
            sim.count("scrip.master", method, path, 200)
            self._send(200, sim.call(sim.scrip_master))
            return
        name = _ROUTES.get((method, path))
        if name is None:
            sim.count("unknown", method, path, 404)
            self._error(AngelError("AB1004", f"Route not found: {method} {path}", 404))
            return
        fault = sim.take_fault(("http_status",), name, path)
        if fault is not None:
            sim.count(name, method, path, fault.status)
            self._error(AngelError("AB2001", "Internal Error (simulated)", fault.status))
            return
        slow = sim.take_fault(("slow",), name, path)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        key = self.request.headers.get("X-PrivateKey", "-")
        if not sim.allow(key, name):
            sim.count(name, method, path, 403)
            self._send(403, {"status": False, "errorcode": "AB1019",
                             "message": "Access denied because of exceeding access rate",
                             "data": None})  # fmt: skip
            return
        try:
            p = self._params()
            session = None if name in _NO_AUTH else sim.authenticate(
                self.request.headers.get("Authorization", ""))  # fmt: skip
            data = self._route(name, p, session)
        except AngelError as exc:
            sim.count(name, method, path, exc.http)
            self._error(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a simulator bug: answer as Angel would, log it
            log.exception("SmartAPI simulator failed on %s %s", method, path)
            sim.count(name, method, path, 500)
            self._error(AngelError("AB2001", f"Internal Error: {type(exc).__name__}: {exc}", 500))
            return
        sim.count(name, method, path, 200)
        if name == "api.order.place":
            held = sim.take_fault(("timeout_after_place",), name, path)
            if held is not None:
                await asyncio.sleep(held.delay)
        self._send(200, {"status": True, "message": "SUCCESS", "errorcode": "", "data": data})

    def _route(self, name: str, p: dict[str, Any], session: _Session | None) -> object:  # noqa: PLR0911 - one branch per route
        sim = self.simulator
        if name == "api.login":
            return sim._login(p)  # noqa: SLF001
        if name == "api.token":
            return sim._renew(p)  # noqa: SLF001
        assert session is not None
        if name == "api.user.profile":
            return sim._profile(session)  # noqa: SLF001
        if name == "api.logout":
            sim._sessions.pop(session.jwt, None)  # noqa: SLF001
            return None
        if name == "api.order.place":
            return sim._place(session, p)  # noqa: SLF001
        if name == "api.order.modify":
            return sim._modify(p)  # noqa: SLF001
        if name == "api.order.cancel":
            return sim._cancel(p)  # noqa: SLF001
        if name == "api.order.book":  # Angel answers an empty book with data null
            mine = [sim._order_dict(r) for r in sim._orders.values()  # noqa: SLF001
                    if r.owner in (session.client_code, "")]  # fmt: skip
            return mine or None
        if name == "api.trade.book":
            return sim._public_trades() or None  # noqa: SLF001
        if name == "api.position":
            return sim._positions() or None  # noqa: SLF001
        if name == "api.holding":
            return sim._holdings()  # noqa: SLF001
        if name == "api.rms.limit":
            return sim._rms()  # noqa: SLF001
        if name == "api.ltp.data":
            return sim._ltp(p)  # noqa: SLF001
        if name == "api.candle.data":
            return sim._candles(p)  # noqa: SLF001
        if name == "api.market.data":
            return sim._quotes(p)  # noqa: SLF001
        raise AngelError("AB1004", f"{name} is not simulated")

    def _sim_route(self, method: str, path: str) -> None:
        sim = self.simulator
        body = json.loads(self.request.body or b"{}") if method == "POST" else {}
        try:
            if path == "/_sim/trade" and method == "POST":
                ts = sim.trade(body["instrument_id"], float(body["price"]),
                               quantity=int(body.get("quantity", 1)))  # fmt: skip
                self._send(200, {"status": True, "data": {"ts": ts.isoformat()}})
            elif path == "/_sim/fault" and method == "POST":
                kind = body.pop("kind")
                self._send(200, {"status": True, "data": sim.arm_fault(kind, body)})
            elif path == "/_sim/stats":
                self._send(200, {"status": True, "data": sim.stats_now()})
            elif path == "/_sim/state":
                self._send(200, {"status": True, "data": {
                    "orders": [sim._order_dict(r) for r in sim._orders.values()],  # noqa: SLF001
                    "trades": sim._public_trades()}})  # noqa: SLF001  # fmt: skip
            else:
                self._send(404, {"status": False, "message": f"no simulator lever {path}"})
        except (KeyError, ValueError, ConfigError) as exc:
            self._send(400, {"status": False, "message": str(exc)})


class _Socket(tornado.websocket.WebSocketHandler):
    """A websocket authenticated like Angel's: ``Authorization`` (jwt), ``x-client-code``."""

    def initialize(self, simulator: SmartApiSimulator) -> None:  # noqa: D401 - tornado's hook
        self.simulator = simulator
        self.client_code = ""

    def check_origin(self, origin: str) -> bool:
        return True

    async def get(self, *args: str, **kwargs: str) -> None:
        try:
            session = self.simulator.authenticate(self.request.headers.get("Authorization", ""))
        except AngelError as exc:
            self.set_status(401)
            self.finish(json.dumps({"status": False, "errorcode": exc.errorcode,
                                    "message": exc.message}))  # fmt: skip
            return
        self.client_code = session.client_code
        await super().get(*args, **kwargs)


class OrderUpdateSocket(_Socket):
    """``/smart-order-update``: every change of the client's orders, one JSON text each."""

    def initialize(self, simulator: SmartApiSimulator) -> None:  # noqa: D401
        super().initialize(simulator)

    def send(self, message: Mapping[str, object]) -> None:
        self.simulator._updates_written += 1  # noqa: SLF001
        self.write_message(json.dumps(message))

    def open(self, *args: str, **kwargs: str) -> None:
        self.simulator._order_sockets.add(self)  # noqa: SLF001
        self.send(
            {
                "user-id": self.client_code,
                "status-code": "200",
                "order-status": "AB00",
                "error-message": "",
                "orderData": None,
            }
        )

    def on_close(self) -> None:
        self.simulator._order_sockets.discard(self)  # noqa: SLF001

    def on_message(self, message: str | bytes) -> None:
        if message == "ping":
            self.write_message("pong")


class StreamSocket(_Socket):
    """``/smart-stream``: JSON (un)subscriptions in, binary packets out, ``ping`` → ``pong``."""

    def initialize(self, simulator: SmartApiSimulator) -> None:  # noqa: D401
        super().initialize(simulator)
        self.modes: dict[str, int] = {}

    def open(self, *args: str, **kwargs: str) -> None:
        self.simulator._stream_sockets.add(self)  # noqa: SLF001

    def on_close(self) -> None:
        self.simulator._stream_sockets.discard(self)  # noqa: SLF001

    def on_message(self, message: str | bytes) -> None:
        if message == "ping":
            self.write_message("pong")
            return
        try:
            request = json.loads(message)
            action, params = int(request["action"]), request["params"]
            mode = int(params["mode"])
            tokens = [str(t) for group in params["tokenList"] for t in group["tokens"]]
        except (ValueError, KeyError, TypeError):
            log.warning("SmartAPI simulator: bad stream request %r", message)
            return
        sim = self.simulator
        if action == 1:
            if mode not in packets.SIZES:
                return
            for token in tokens:
                self.modes[token] = mode
            sim.release_replay()
            for token in tokens:  # the last print at once, as Angel sends a snapshot
                iid = next((i for (_, t), i in sim._id_of.items() if t == token), None)  # noqa: SLF001
                if iid is not None and sim.market(iid).ltp:
                    self.write_message(sim.packet(iid, mode), binary=True)
        elif action == 0:
            for token in tokens:
                self.modes.pop(token, None)
