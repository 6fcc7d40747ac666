"""A loopback simulator of ICICI Direct's Breeze API, for the official ``breeze-connect`` SDK.

It serves, on 127.0.0.1, what ``BreezeConnect`` calls:

* REST under ``/breezeapi/api/v1/`` (``customerdetails``, ``order`` GET/POST/PUT/DELETE,
  ``trades``, ``portfoliopositions``, ``portfolioholdings``, ``funds``, ``quotes``): JSON bodies
  on every method (GET and DELETE too, as the SDK sends them), answered with Breeze's envelope
  ``{"Success": …, "Status": 200, "Error": null}``; every call but ``customerdetails`` must
  carry ``X-AppKey``, ``X-SessionToken`` (base64 of ``user_id:session_token``),
  ``X-Timestamp`` and ``X-Checksum: token sha256(timestamp + body + api_secret)``;
* the v2 candles ``/api/v2/historicalcharts`` (query parameters, at most 1,000 candles a
  request);
* the security master ``/SecurityMaster.zip`` (``NSEScripMaster.txt``, ``BSEScripMaster.txt``:
  token, stock code, series, company name, … as ICICI's file has them), which
  ``BreezeConnect.generate_session`` downloads;
* socket.io (python-socketio, ``/socket.io/``) for both streams (ICICI has one host each;
  here the connection's query names it: ``?stream=orders`` for the notifications, else the
  rate stream): a connection authenticates with ``auth={"user", "token"}``;
  ``join``/``leave`` of stock tokens such as ``4.1!2885`` (exchange 4 = NSE, 1 = BSE;
  ``.1`` quotes) and ``stock`` events out (21-field quote lists ``parse_data`` reads);
  ``order`` events (the 47-field order-notification list, message type 4) go to every
  order-stream connection of the order's user.

Logins: ``GET /apiuser/login?api_key=K`` is ICICI's login page; here it answers the
``apisession`` a user would be redirected with (:meth:`BreezeSimulator.api_session` is the
in-process lever). With ``api_key``/``api_secret`` configured only they are accepted.
Faults (``POST /_sim/fault`` or :meth:`fault`): ``http_status``, ``slow``,
``timeout_after_place``, ``drop_ws`` (disconnect every socket.io client),
``expire_session`` (every session token stops working), ``clear``. The request limit is
Breeze's published one: 100 calls a minute and 5,000 a day per app key, every endpoint
counted together; above it the answer is HTTP 429 with ``Status`` 429.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import tornado.web

from velox.brokers.breeze.mapping import BREEZE_RATE_LIMITS, CANDLE_INTERVALS, MAX_CANDLES
from velox.brokers.simcore import LoopbackSimulator, SimMarket, number
from velox.calendar import IST, is_open
from velox.errors import ConfigError, OrderRejected
from velox.types import Fill, Order, OrderStatus, OrderType, Product, Side, Validity, is_on_tick

__all__ = ["RATE_LIMITS", "BreezeSimulator"]

log = logging.getLogger(__name__)

RATE_LIMITS: dict[str, tuple[tuple[float, int], ...]] = {
    name: tuple((limit.period, limit.count) for limit in limits)
    for name, limits in BREEZE_RATE_LIMITS.items()
}
FAULTS = ("http_status", "slow", "timeout_after_place", "drop_ws", "expire_session", "clear")
API = "/breezeapi/api/v1/"
#: (method, endpoint) → route name (what :meth:`stats` counts).
_ROUTES = {
    ("GET", "customerdetails"): "customerdetails",
    ("POST", "order"): "order.place",
    ("PUT", "order"): "order.modify",
    ("DELETE", "order"): "order.cancel",
    ("GET", "order"): "order.book",
    ("GET", "trades"): "trades",
    ("GET", "portfoliopositions"): "positions",
    ("GET", "portfolioholdings"): "holdings",
    ("GET", "dematholdings"): "holdings",
    ("GET", "funds"): "funds",
    ("GET", "quotes"): "quotes",
    ("GET", "historicalcharts"): "historicalcharts.v1",
}
#: The v1 candles' interval words (the SDK sends ``minute``/``day`` for ``1minute``/``1day``).
_V1_INTERVALS = {"minute": "1m", "5minute": "5m", "30minute": "30m", "day": "1d"}
#: Breeze's order-book status words and the order notification's status letter.
_STATUS = {
    OrderStatus.SUBMITTED: ("Requested", "R"),
    OrderStatus.OPEN: ("Ordered", "O"),
    OrderStatus.TRIGGER_PENDING: ("Ordered", "O"),
    OrderStatus.PARTIAL: ("Partially Executed", "P"),
    OrderStatus.FILLED: ("Executed", "E"),
    OrderStatus.CANCELLED: ("Cancelled", "C"),
    OrderStatus.REJECTED: ("Rejected", "J"),
}
_PRODUCT = {Product.CNC: "Cash", Product.MIS: "Margin"}
_PRODUCT_OF = {"cash": Product.CNC, "margin": Product.MIS}
_TYPE = {OrderType.LIMIT: "Limit", OrderType.SL: "StopLoss", OrderType.MARKET: "Market"}
_EXCHANGE_TYPE = {"NSE": "4", "BSE": "1"}


class BreezeError(Exception):
    """An answer with ``Status`` ≠ 200 (and the HTTP status it travels with)."""

    def __init__(self, message: str, status: int = 500, http: int = 200) -> None:
        super().__init__(message)
        self.message, self.status, self.http = message, status, http


def breeze_time(ts: datetime | None) -> str:
    """``20-May-2025 10:40:05`` (IST), Breeze's order-book time."""
    return "" if ts is None else ts.astimezone(IST).strftime("%d-%b-%Y %H:%M:%S")


@dataclass
class _Session:
    user_id: str
    token: str
    app_key: str

    @property
    def header(self) -> str:
        return base64.b64encode(f"{self.user_id}:{self.token}".encode()).decode()


@dataclass
class _BreezeOrder:
    order_id: str
    order: Order
    stock_code: str
    owner: str
    remark: str
    updated_at: datetime | None = None
    text: str = ""


class BreezeSimulator(LoopbackSimulator):
    """ICICI Breeze on 127.0.0.1 (see the module docstring).

    Parameters are :class:`~velox.brokers.simcore.LoopbackSimulator`'s, plus ``api_key`` and
    ``api_secret`` (only this app is accepted when given; the checksum is always verified
    against the app's secret, ``"velox-demo-secret"`` for any key when none is given) and
    ``user_id`` (the ICICI user the logins belong to).

    Examples
    --------
    >>> sim = BreezeSimulator(); sim.start(); sim.trade("NSE:SBIN", 812.4)  # doctest: +SKIP
    """

    NAME = "Breeze"
    RATE_LIMITS: ClassVar[Mapping[str, tuple[tuple[float, int], ...]]] = RATE_LIMITS
    FAULTS: ClassVar[tuple[str, ...]] = FAULTS
    MARKET: ClassVar[type[SimMarket]] = SimMarket
    DEMO_SECRET = "velox-demo-secret"

    def __init__(
        self,
        *args: Any,
        api_key: str | None = None,
        api_secret: str | None = None,
        user_id: str = "VELOXSIM",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        from velox.brokers.breeze.mapping import stock_codes

        self.api_key, self.api_secret, self.user_id = api_key, api_secret, user_id
        self._api_sessions: set[str] = set()
        self._sessions: dict[str, _Session] = {}  # X-SessionToken header → session
        self._orders: dict[str, _BreezeOrder] = {}
        self._by_sim_id: dict[str, str] = {}
        self._placing: _BreezeOrder | None = None
        self._trades: list[dict[str, Any]] = []
        self._seq = 0
        self._notifications: list[list[object]] = []
        self.notifications_written = 0
        self._sids: dict[str, str] = {}  # order-stream socket.io sid → user id
        self._rate_sids: set[str] = set()  # rate-stream sids
        self._wires: dict[str, Any] = {}  # sid → its tornado websocket handler
        table = self.master.table
        self._code_of = stock_codes(table)  # iid → (exchange, stock code)
        tokens = dict(zip(table["id"], table["exchange_token"], strict=True))
        self._token_of = {iid: str(int(tokens[iid])) for iid in self._code_of
                          if tokens.get(iid) is not None
                          and tokens[iid] == tokens[iid]}  # fmt: skip
        self._id_of_code = {code: iid for iid, code in self._code_of.items()}
        self._id_of_token = {(ex, self._token_of[iid]): iid for iid, (ex, _) in
                             self._code_of.items() if iid in self._token_of}  # fmt: skip
        import socketio

        self.sio = socketio.AsyncServer(async_mode="tornado", cors_allowed_origins="*",
                                        logger=False, engineio_logger=False)  # fmt: skip
        self._wire_socketio()

    # ------------------------------------------------------------------ instruments

    def key_of(self, instrument_id: str) -> str:
        token = self._token_of.get(instrument_id)
        if token is None:
            raise ConfigError(f"{instrument_id} has no Breeze stock code and exchange token")
        return f"{_EXCHANGE_TYPE[instrument_id.split(':')[0]]}.1!{token}"

    def instrument_id(self, key: str | int) -> str:
        key = str(key)
        if key in self._token_of:
            return key
        for iid in self._token_of:
            if self.key_of(iid) == key:
                return iid
        raise ConfigError(f"no instrument has Breeze stock token or id {key!r}")

    def _resolve(self, exchange: str, stock_code: str) -> str:
        iid = self._id_of_code.get((exchange.upper(), stock_code.upper()))
        if iid is None:
            raise BreezeError(f"Invalid stock code {stock_code!r} for exchange {exchange!r}")
        return iid

    def security_master(self) -> bytes:
        """Return ``SecurityMaster.zip`` of the served instruments (ICICI's column layout)."""
        header = ('"Token","ShortName","Series","CompanyName","ticksize","Lotsize",'
                  '"DateOfListing","DateOfDeListing","IssuePrice","FaceValue","ISINCode",'
                  '"52WeeksHigh","52WeeksLow","LifeTimeHigh","LifeTimeLow","HighDate",'
                  '"LowDate","Symbol","InstrumentType","PermittedToTrade","IssueCapital",'
                  '"WarrantyMonths","CreditRating","ExchangeCode"')  # fmt: skip
        files: dict[str, list[str]] = {"NSE": [header], "BSE": [header]}
        for iid, (exchange, code) in sorted(self._code_of.items()):
            if iid not in self._token_of:
                continue
            ins = self.master.get(iid)
            tick = int(round(ins.tick_size * 100))
            files[exchange].append(
                f'"{self._token_of[iid]}","{code}","EQ","{ins.name or ins.symbol}","{tick}",'
                f'"{ins.lot_size}","","","0","1","","0","0","0","0","","","{ins.symbol}",'
                f'"EQUITY","1","0","0","","{ins.symbol}"'
            )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for exchange, lines in files.items():
                archive.writestr(f"{exchange}ScripMaster.txt", "\n".join(lines) + "\n")
        return buffer.getvalue()

    # ------------------------------------------------------------------ tornado, socket.io

    @property
    def master_url(self) -> str:
        return f"{self.url}/SecurityMaster.zip"

    def routes(self) -> list[tuple[Any, ...]]:
        import socketio

        return [
            (r"/socket.io/", socketio.get_tornado_handler(self.sio)),
            (r"/(.*)", _Handler, {"simulator": self}),
        ]

    def _wire_socketio(self) -> None:
        sio = self.sio

        @sio.event
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
            auth = auth if isinstance(auth, Mapping) else {}
            user, token = str(auth.get("user") or ""), str(auth.get("token") or "")
            session = self._sessions.get(_Session(user, token, "").header)
            if session is None:
                log.info("Breeze simulator refused a socket.io connection of %r", user)
                return False
            self._wires[sid] = environ.get("tornado.handler")
            if "stream=orders" in str(environ.get("QUERY_STRING", "")):
                self._sids[sid] = user  # the order-notification stream (LIVE_FEEDS_URL)
                await sio.enter_room(sid, f"user:{user}")
            else:
                self._rate_sids.add(sid)
            return True

        @sio.event
        async def disconnect(sid: str, *args: object) -> None:
            self._sids.pop(sid, None)
            self._rate_sids.discard(sid)
            self._wires.pop(sid, None)

        @sio.on("join")
        async def join(sid: str, data: Any) -> None:
            rooms = data if isinstance(data, list) else [data]
            self.release_replay()
            for room in rooms:
                await sio.enter_room(sid, str(room))
                iid = self._token_room(str(room))
                if iid is not None and self.market(iid).ltp:  # the last print at once
                    await sio.emit("stock", self.quote_list(iid), to=sid)

        @sio.on("leave")
        async def leave(sid: str, data: Any) -> None:
            for room in data if isinstance(data, list) else [data]:
                await sio.leave_room(sid, str(room))

    def _token_room(self, room: str) -> str | None:
        try:
            exchange, rest = room.split(".", 1)
            kind, token = rest.split("!", 1)
        except ValueError:
            return None
        names = {v: k for k, v in _EXCHANGE_TYPE.items()}
        if kind != "1" or exchange not in names:
            return None
        return self._id_of_token.get((names[exchange], token))

    def close_connections(self) -> None:
        """Close every socket.io connection's websocket, as a dropped line would (a socket.io
        "disconnect" would tell the client not to reconnect)."""
        wires = [w for w in self._wires.values() if w is not None]
        self._sids.clear()
        self._rate_sids.clear()
        self._wires.clear()
        for wire in wires:
            wire.close()

    def stop(self) -> None:
        """Stop socket.io's background tasks (pings, the service task), then the server."""
        loop = self._loop
        if loop is not None:
            import concurrent.futures

            done: concurrent.futures.Future[None] = concurrent.futures.Future()

            async def shutdown() -> None:
                try:
                    self.close_connections()
                    await self.sio.shutdown()
                finally:
                    done.set_result(None)

            loop.add_callback(shutdown)
            try:
                done.result(timeout=10)
            except concurrent.futures.TimeoutError:
                log.warning("Breeze simulator: socket.io did not shut down in 10 s")
        super().stop()

    def flush_ticks(self, pending: set[str]) -> None:
        for iid in pending:
            if iid in self._token_of:
                self.spawn(self.sio.emit("stock", self.quote_list(iid), room=self.key_of(iid)))

    def quote_list(self, instrument_id: str) -> list[object]:
        """Return the current quote of ``instrument_id`` as Breeze's 21-field ``stock`` list."""
        m = self.market(instrument_id)
        depth = m.depth()
        bid, ask = depth["buy"][0], depth["sell"][0]
        ltt = m.last_trade or self.market_now()
        band = m.close or m.ltp
        return [
            self.key_of(instrument_id), number(m.open), number(m.ltp), number(m.high),
            number(m.low), number(round(m.ltp - (m.close or m.ltp), 2)), bid["price"],
            bid["quantity"], ask["price"], ask["quantity"], m.last_qty, number(m.average),
            m.volume, 1500, 1500, number(round(m.turnover, 2)), "", number(round(band * 0.8, 2)),
            number(round(band * 1.2, 2)), int(ltt.timestamp()), number(m.close),
        ]  # fmt: skip

    # ------------------------------------------------------------------ sessions

    def api_session(self) -> str:
        """Issue the ``apisession`` ICICI's login page would redirect a user with."""

        def run() -> str:
            code = f"{secrets.randbelow(10**8):08d}"
            self._api_sessions.add(code)
            return code

        return self.call(run)  # type: ignore[return-value]

    def secret_of(self, app_key: str) -> str | None:
        if self.api_key is not None and app_key != self.api_key:
            return None
        return self.api_secret or self.DEMO_SECRET

    def _customer(self, p: Mapping[str, Any]) -> dict[str, object]:
        app_key, code = str(p.get("AppKey") or ""), str(p.get("SessionToken") or "")
        if self.secret_of(app_key) is None:
            raise BreezeError("Public Key does not exist.", 401)
        if code not in self._api_sessions:
            raise BreezeError("Invalid session.", 401)
        session = _Session(self.user_id, secrets.token_hex(8), app_key)
        self._sessions[session.header] = session
        return {
            "exg_trade_date": {"NSE": f"{self.market_now():%d-%b-%Y}"},
            "exg_status": {"NSE": "O", "BSE": "O", "FNO": "N"},
            "segments_allowed": {"Trading": "Y", "Equity": "Y", "Derivatives": "N"},
            "idirect_userid": self.user_id, "session_token": session.header,
            "idirect_user_name": "VELOX SIMULATOR", "idirect_ORD_TYP": "",
            "idirect_lastlogin_time": breeze_time(self.market_now()),
            "mf_holding_mode_popup_flg": "N", "commodity_exchange_status": "N",
            "commodity_trade_date": "", "commodity_allowed": "N",
        }  # fmt: skip

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> _Session:
        """Check the app key, session token and checksum headers of one request."""
        app_key = headers.get("X-AppKey", "")
        secret = self.secret_of(app_key)
        if secret is None:
            raise BreezeError("Public Key does not exist.", 401)
        session = self._sessions.get(headers.get("X-SessionToken", ""))
        if session is None:
            raise BreezeError("Session key is expired.", 401)
        stamp = headers.get("X-Timestamp", "")
        expected = hashlib.sha256((stamp + body.decode() + secret).encode()).hexdigest()
        if headers.get("X-Checksum", "") != f"token {expected}":
            raise BreezeError("Request Object is Null or Checksum mismatch", 401)
        return session

    # ------------------------------------------------------------------ orders

    def _place(self, session: _Session, p: Mapping[str, Any]) -> dict[str, object]:
        iid = self._resolve(str(p.get("exchange_code") or ""), str(p.get("stock_code") or ""))
        ins = self.master.get(iid)
        try:
            side = Side(str(p.get("action") or "").upper())
            product = _PRODUCT_OF[str(p.get("product") or "").lower()]
            validity = Validity(str(p.get("validity") or "day").upper())
            kind = str(p.get("order_type") or "").lower()
        except (KeyError, ValueError) as exc:
            raise BreezeError(f"Invalid order parameter: {exc}") from None
        price, trigger = _float(p, "price"), _float(p, "stoploss")
        if kind == "limit":
            order_type, trigger = OrderType.LIMIT, None
        elif kind == "stoploss":
            order_type = OrderType.SL
        elif kind == "market":  # the SDK never sends one; Breeze's API would take it
            order_type, price, trigger = OrderType.MARKET, None, None
        else:
            raise BreezeError(f"Invalid order_type {kind!r}: limit, market or stoploss")
        if order_type is not OrderType.MARKET and not price:
            raise BreezeError("Price cannot be empty for a limit or stoploss order")
        if order_type is OrderType.SL and not trigger:
            raise BreezeError("Stoploss trigger cannot be empty for a stoploss order")
        quantity = _int(p, "quantity")
        remark = str(p.get("user_remark") or "")
        if len(remark) > 20:
            raise BreezeError("User remark cannot be longer than 20 characters")
        now = self.sync_clock()
        if not is_open(now):
            raise BreezeError(f"Market is closed (market time {breeze_time(now)})")
        self._seq += 1
        order_id = f"{now.astimezone(IST):%Y%m%d}N{300000000 + self._seq}"
        try:
            order = Order(client_id=f"breeze-{self._seq}", instrument_id=iid, side=side,
                          qty=quantity, order_type=order_type, product=product,
                          validity=validity, limit_price=price, trigger_price=trigger,
                          tag=remark)  # fmt: skip
        except ValueError as exc:
            raise BreezeError(str(exc)) from None
        record = _BreezeOrder(order_id, order, self._code_of[iid][1], session.user_id, remark)
        for label, value in (("price", price), ("stoploss", trigger)):
            if value and ins.tick_size and not is_on_tick(value, ins.tick_size):
                record.text = f"Price should be in multiples of tick size {ins.tick_size:g}: " \
                              f"{label} {value:g}"  # fmt: skip
        if quantity % ins.lot_size:
            record.text = f"Quantity should be in multiples of lot size {ins.lot_size}"
        if record.text:  # accepted, then rejected by the exchange
            record.order = _with(order, status=OrderStatus.REJECTED, status_message=record.text)
            record.updated_at = now
            self._orders[order_id] = record
            self._notify(record)
            return {"order_id": order_id, "message": "Successfully Placed the order",
                    "user_remark": remark}  # fmt: skip
        self._placing = record
        try:
            self.sim.place_order(order)
        except OrderRejected as exc:
            if order_id not in self._orders:
                record.text = exc.reason
                record.order = _with(order, status=OrderStatus.REJECTED, status_message=exc.reason)
                self._orders[order_id] = record
                self._notify(record)
        finally:
            self._placing = None
        return {"order_id": order_id, "message": "Successfully Placed the order",
                "user_remark": remark}  # fmt: skip

    def _record(self, order_id: str) -> _BreezeOrder:
        record = self._orders.get(order_id)
        if record is None:
            raise BreezeError(f"No order found for order id {order_id!r}")
        return record

    def _modify(self, p: Mapping[str, Any]) -> dict[str, object]:
        record = self._record(str(p.get("order_id") or ""))
        if record.order.is_terminal:
            raise BreezeError(f"Order {record.order_id} is {_STATUS[record.order.status][0]} "
                              "and cannot be modified")  # fmt: skip
        changes: dict[str, object] = {}
        if p.get("quantity"):
            changes["qty"] = _int(p, "quantity")
        if _float(p, "price"):
            changes["limit_price"] = _float(p, "price")
        if _float(p, "stoploss"):
            changes["trigger_price"] = _float(p, "stoploss")
        kind = str(p.get("order_type") or "").lower()
        if kind == "limit" and record.order.order_type is not OrderType.LIMIT:
            changes["order_type"] = OrderType.LIMIT
        self.sync_clock()
        try:
            self.sim.modify_order(str(record.order.broker_order_id), **changes)  # type: ignore[arg-type]
        except (OrderRejected, ValueError) as exc:
            raise BreezeError(str(getattr(exc, "reason", exc))) from None
        return {"order_id": record.order_id, "message": "Successfully Modified the order"}

    def _cancel(self, p: Mapping[str, Any]) -> dict[str, object]:
        record = self._record(str(p.get("order_id") or ""))
        if record.order.is_terminal:
            raise BreezeError(f"Order {record.order_id} is {_STATUS[record.order.status][0]} "
                              "and cannot be cancelled")  # fmt: skip
        self.sync_clock()
        try:
            self.sim.cancel_order(str(record.order.broker_order_id))
        except OrderRejected as exc:
            raise BreezeError(exc.reason) from None
        return {"order_id": record.order_id, "message": "Successfully cancelled the order"}

    def on_order_update(self, order: Order) -> None:
        """SimBroker's postback: keep Breeze's view of the order and notify its user."""
        sim_id = str(order.broker_order_id)
        order_id = self._by_sim_id.get(sim_id)
        if order_id is None:
            record = self._placing
            if record is None:  # the exchange's own order (the MIS square-off)
                self._seq += 1
                now = self.sim.now or self.market_now()
                record = _BreezeOrder(f"{now.astimezone(IST):%Y%m%d}N{300000000 + self._seq}",
                                      order, self._code_of[order.instrument_id][1],
                                      self.user_id, "")  # fmt: skip
            self._by_sim_id[sim_id] = record.order_id
            self._orders[record.order_id] = record
        else:
            record = self._orders[order_id]
        record.order = order
        record.updated_at = self.sim.now
        if order.status is OrderStatus.REJECTED:
            record.text = order.status_message
        self._notify(record)

    def on_fill(self, fill: Fill) -> None:
        """SimBroker's fill: one execution of the trade book."""
        order_id = self._by_sim_id.get(str(fill.broker_order_id))
        record = self._orders.get(order_id) if order_id else self._placing
        if record is None:
            return
        self._trades.append({
            "order_id": record.order_id, "_iid": fill.instrument_id, "_ts": fill.ts,
            "_product": fill.product, "_side": fill.side, "exchange_code":
            fill.instrument_id.split(":")[0], "stock_code": record.stock_code,
            "settlement_id": f"{fill.ts.astimezone(IST):%Y%j}", "exchange_trade_id":
            f"{len(self._trades) + 1:010d}", "executed_quantity": str(fill.qty),
            "action": fill.side.value.title(), "total_transaction_cost": "0",
            "brokerage_amount": "0", "taxes": "0", "eq_cost": "0",
            "execution_price": str(number(fill.price)),
            "exchange_trade_time": breeze_time(fill.ts), "trade_date": breeze_time(fill.ts),
        })  # fmt: skip

    def _order_dict(self, record: _BreezeOrder) -> dict[str, object]:
        o = record.order
        cancelled = o.qty - o.filled_qty if o.status is OrderStatus.CANCELLED else 0
        pending = 0 if o.is_terminal else o.qty - o.filled_qty
        return {
            "order_id": record.order_id, "exchange_order_id": f"1{record.order_id[-9:]}",
            "exchange_code": o.instrument_id.split(":")[0], "stock_code": record.stock_code,
            "product_type": _PRODUCT[o.product], "action": o.side.value.title(),
            "order_type": _TYPE.get(o.order_type, "StopLoss"),
            "stoploss": str(number(o.trigger_price or 0)), "quantity": str(o.qty),
            "price": str(number(o.limit_price or 0)), "validity": o.validity.value.title(),
            "disclosed_quantity": "0", "expiry_date": None, "right": None, "strike_price": 0,
            "average_price": str(number(o.average_price)), "cancelled_quantity": str(cancelled),
            "pending_quantity": str(pending), "status": _STATUS[o.status][0],
            "user_remark": record.remark, "order_datetime": breeze_time(o.created_at),
            "parent_order_id": None, "modification_number": None,
            "exchange_acknowledgement_date": breeze_time(record.updated_at),
            "SLTP_price": None, "exchange_acknowledge_number": None, "initial_limit": None,
            "intial_sltp": None, "LTP": None, "limit_offset": None, "mbc_flag": None,
            "cutoff_price": None, "validity_date": breeze_time(o.created_at),
            "rejection_reason": record.text,
        }  # fmt: skip

    def notification(self, record: _BreezeOrder) -> list[object]:
        """Return the order-notification list (message type 4) ``parse_data`` reads."""
        o, now = record.order, record.updated_at or self.market_now()
        ist = now.astimezone(IST)
        flag = {OrderType.LIMIT: "L", OrderType.MARKET: "M"}.get(o.order_type, "S")
        cancelled = o.qty - o.filled_qty if o.status is OrderStatus.CANCELLED else 0
        values: list[object] = [
            "VELOX", "ORDER", record.owner, "key", "0", "0", str(self._seq),
            f"{ist:%d-%b-%Y}", f"{ist:%H:%M:%S}", "O", "1", "4", record.owner,
            o.instrument_id.split(":")[0], record.stock_code, o.side.value[0], flag,
            "I" if o.validity is Validity.IOC else "T", str(number(o.limit_price or 0)),
            "C" if o.product is Product.CNC else "M", _STATUS[o.status][1], f"{ist:%d-%b-%Y}",
            f"{ist:%d-%b-%Y}", record.order_id, str(o.qty),
            str(0 if o.is_terminal else o.qty - o.filled_qty),
            str(o.filled_qty), str(cancelled), "0", "0", str(number(o.trigger_price or 0)),
            "N", "0", "0", "API", "", "", "Equity", "", "", f"{ist:%d-%b-%Y}", record.text,
            str(number(o.average_price)), "N", "N", "0", "",
        ]  # fmt: skip
        return values

    def _notify(self, record: _BreezeOrder) -> None:
        message = self.notification(record)
        self._notifications.append(message)
        room = f"user:{record.owner}"
        listeners = [sid for sid, user in self._sids.items() if user == record.owner]
        self.notifications_written += len(listeners)
        if listeners:
            self.spawn(self.sio.emit("order", message, room=room))

    def notifications_sent(self) -> int:
        """Return how many order notifications were written to socket.io connections."""
        return self.call(lambda: self.notifications_written)  # type: ignore[return-value]

    # ------------------------------------------------------------------ portfolio, quotes

    def _trade_rows(self, p: Mapping[str, Any]) -> list[dict[str, object]]:
        order_id = str(p.get("order_id") or "")
        rows = [t for t in self._trades if not order_id or t["order_id"] == order_id]
        if order_id and order_id not in self._orders:
            raise BreezeError(f"No order found for order id {order_id!r}")
        return [{k: v for k, v in t.items() if not k.startswith("_")} for t in rows]

    def _positions(self) -> list[dict[str, object]]:
        rows = []
        for pos in self.sim.positions():
            if not pos.qty or pos.instrument_id not in self._code_of:
                continue
            market = self._markets.get(pos.instrument_id)
            ltp = market.ltp if market and market.ltp else pos.average_price
            exchange, code = self._code_of[pos.instrument_id]
            rows.append({
                "segment": "equity", "product_type": _PRODUCT[pos.product],
                "exchange_code": exchange, "stock_code": code, "expiry_date": None,
                "strike_price": None, "right": None, "action": "Buy" if pos.qty > 0 else "Sell",
                "quantity": str(abs(pos.qty)), "average_price": str(number(pos.average_price)),
                "settlement_id": None, "margin_amount": None, "ltp": str(number(ltp)),
                "price": str(number(pos.average_price)), "stock_index_indicator": "Stock",
                "cover_quantity": "0", "stoploss_trigger": None, "stoploss": None,
                "take_profit": None, "available_margin": None, "squareoff_mode": None,
                "mtf_sell_quantity": None, "mtf_net_amount_payable": None,
                "mtf_expiry_date": None, "order_id": "", "cover_order_flow": None,
                "cover_order_executed_quantity": None, "pledge_status": None,
                "pnl": str(number(round(pos.qty * (ltp - pos.average_price), 2))),
                "underlying": code, "order_segment_code": None,
            })  # fmt: skip
        return rows

    def _holdings(self) -> list[dict[str, object]]:
        rows = []
        for pos in self.sim.holdings():
            if pos.instrument_id not in self._code_of:
                continue
            exchange, code = self._code_of[pos.instrument_id]
            market = self._markets.get(pos.instrument_id)
            rows.append({
                "stock_code": code, "exchange_code": exchange, "quantity": str(pos.qty),
                "average_price": str(number(pos.average_price)),
                "booked_profit_loss": None, "current_market_price":
                str(number(market.ltp if market and market.ltp else pos.average_price)),
                "change_percentage": None, "answer_flag": "N", "product_type": None,
                "expiry_date": None, "strike_price": None, "right": None,
                "category_index_per_stock": None, "action": None, "realized_profit": None,
                "unrealized_profit": None,
                "open_position_value": None, "portfolio_charges": None,
            })  # fmt: skip
        return rows

    def _funds(self) -> dict[str, object]:
        funds = self.sim.funds()
        return {
            "bank_account": "000000000000", "total_bank_balance": number(funds.cash),
            "allocated_equity": number(funds.cash), "allocated_fno": 0,
            "allocated_commodity": 0, "allocated_currency": 0,
            "block_by_trade_equity": number(funds.used_margin), "block_by_trade_fno": 0,
            "block_by_trade_commodity": 0, "block_by_trade_currency": 0,
            "block_by_trade_balance": number(funds.used_margin),
            "unallocated_balance": "0",
        }  # fmt: skip

    def _quotes(self, p: Mapping[str, Any]) -> list[dict[str, object]]:
        exchange = str(p.get("exchange_code") or "").upper()
        iid = self._resolve(exchange, str(p.get("stock_code") or ""))
        m = self.market(iid)
        depth = m.depth()
        band = m.close or m.ltp
        row = {
            "exchange_code": exchange, "product_type": "", "stock_code": self._code_of[iid][1],
            "expiry_date": None, "right": None, "strike_price": 0, "ltp": number(m.ltp),
            "ltt": breeze_time(m.last_trade), "best_bid_price": depth["buy"][0]["price"],
            "best_bid_quantity": str(depth["buy"][0]["quantity"]),
            "best_offer_price": depth["sell"][0]["price"],
            "best_offer_quantity": str(depth["sell"][0]["quantity"]), "open": number(m.open),
            "high": number(m.high), "low": number(m.low), "previous_close": number(m.close),
            "ltp_percent_change": 0, "upper_circuit": number(round(band * 1.2, 2)),
            "lower_circuit": number(round(band * 0.8, 2)), "total_quantity_traded":
            str(m.volume), "spot_price": number(m.ltp),
        }  # fmt: skip
        # Breeze answers a BSE quote as a pair whose second line is BSE's (the SDK reads [1])
        return [row, row] if exchange == "BSE" else [row]

    def _candles(self, p: Mapping[str, Any], v1: bool = False) -> list[dict[str, object]]:
        """Candles of the v2 API (query parameters) or, ``v1``, of the v1 API (a JSON body,
        ``minute``/``day`` intervals, ``exchange_code``; NSE only, as ICICI's v1 is)."""
        names = _V1_INTERVALS if v1 else {v: k for k, v in CANDLE_INTERVALS.items()}
        timeframe = names.get(str(p.get("interval")))
        if timeframe is None:
            raise BreezeError(f"Invalid interval {p.get('interval')!r}")
        exchange = str(p.get("exchange_code" if v1 else "exch_code") or "")
        if v1 and exchange.upper() != "NSE":
            raise BreezeError(f"historical data v1 has no {exchange!r} cash candles; use v2")
        iid = self._resolve(exchange, str(p.get("stock_code") or ""))
        try:
            start, end = (datetime.strptime(str(p.get(k)), "%Y-%m-%dT%H:%M:%S.000Z")
                          .replace(tzinfo=UTC) for k in ("from_date", "to_date"))  # fmt: skip
        except ValueError:
            raise BreezeError("from_date/to_date must be ISO 8601, e.g. "
                              "2025-05-20T03:45:00.000Z") from None  # fmt: skip
        frame = self.bars_between(iid, timeframe, start, end)
        if frame is None:
            return []
        if len(frame) > MAX_CANDLES:
            raise BreezeError(f"at most {MAX_CANDLES} candles a request; this range has "
                              f"{len(frame)}")  # fmt: skip
        exchange, code = self._code_of[iid]
        return [{"close": number(r.close), "datetime": f"{ts.astimezone(IST):%Y-%m-%d %H:%M:%S}",
                 "exchange_code": exchange, "high": number(r.high), "low": number(r.low),
                 "open": number(r.open), "stock_code": code, "volume": int(r.volume)}
                for ts, r in zip(frame.index, frame.itertuples(), strict=True)]  # fmt: skip

    # ------------------------------------------------------------------ faults and levers

    def arm_fault(self, kind: str, params: dict[str, object]) -> dict[str, object]:
        if kind == "drop_ws":
            dropped = len(self._sids) + len(self._rate_sids)
            self.close_connections()
            return {"dropped": dropped}
        if kind == "expire_session":
            expired = len(self._sessions)
            self._sessions.clear()
            self.close_connections()
            return {"expired": expired}
        if kind == "timeout_after_place":
            params.setdefault("route", "order.place")
        return super().arm_fault(kind, params)

    def state(self) -> dict[str, object]:
        """Return the orders (as the order book shows them), trades and notifications."""

        def run() -> dict[str, object]:
            return {"orders": [self._order_dict(r) for r in self._orders.values()],
                    "trades": self._trade_rows({}),
                    "notifications": list(self._notifications)}  # fmt: skip

        return self.call(run)  # type: ignore[return-value]


def _with(order: Order, **changes: object) -> Order:
    from dataclasses import replace

    return replace(order, **changes)  # type: ignore[arg-type]


def _int(p: Mapping[str, Any], name: str) -> int:
    try:
        value = int(float(str(p.get(name))))
    except ValueError:
        raise BreezeError(f"Invalid {name}: {p.get(name)!r}") from None
    if value <= 0:
        raise BreezeError(f"Invalid {name}: must be a positive whole number")
    return value


def _float(p: Mapping[str, Any], name: str) -> float | None:
    raw = p.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(str(raw)) or None
    except ValueError:
        raise BreezeError(f"Invalid {name}: {raw!r}") from None


class _Handler(tornado.web.RequestHandler):
    """Every REST route, the security master, the login page and ``/_sim/*``."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE")

    def initialize(self, simulator: BreezeSimulator) -> None:  # noqa: D401 - tornado's hook
        self.simulator = simulator

    def check_xsrf_cookie(self) -> None:
        """No XSRF on an API server."""

    async def get(self, path: str) -> None:
        await self._dispatch("GET", "/" + path)

    async def post(self, path: str) -> None:
        await self._dispatch("POST", "/" + path)

    async def put(self, path: str) -> None:
        await self._dispatch("PUT", "/" + path)

    async def delete(self, path: str) -> None:
        await self._dispatch("DELETE", "/" + path)

    def _send(self, http: int, body: object) -> None:
        self.set_status(http)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _error(self, exc: BreezeError) -> None:
        self._send(exc.http, {"Success": None, "Status": exc.status, "Error": exc.message})

    def _body(self) -> dict[str, Any]:
        raw = self.request.body
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            raise BreezeError(f"the body is not JSON: {raw[:80]!r}") from None
        return value if isinstance(value, dict) else {}

    async def _dispatch(self, method: str, path: str) -> None:  # noqa: PLR0911 - one exit per kind
        sim = self.simulator
        if path.startswith("/_sim/"):
            self._sim_route(method, path)
            return
        if path == "/SecurityMaster.zip":
            sim.count("security.master", method, path, 200)
            self.set_header("Content-Type", "application/zip")
            self.finish(sim.call(sim.security_master))
            return
        if path == "/apiuser/login":
            key = self.get_argument("api_key", "")
            if sim.secret_of(key) is None:
                self._send(401, {"Success": None, "Status": 401, "Error": "Invalid API key"})
                return
            self._send(200, {"Success": {"apisession": sim.api_session()}, "Status": 200,
                             "Error": None})  # fmt: skip
            return
        if path == "/api/v2/historicalcharts":
            name, endpoint = "historicalcharts", "historicalcharts"
        elif path.startswith(API):
            endpoint = path[len(API) :]
            name = _ROUTES.get((method, endpoint), "")
        else:
            name = endpoint = ""
        if not name:
            sim.count("unknown", method, path, 404)
            self._error(BreezeError(f"Route not found: {method} {path}", 404, 404))
            return
        fault = sim.take_fault(("http_status",), name, path)
        if fault is not None:
            sim.count(name, method, path, fault.status)
            self._error(BreezeError("Internal Server Error (simulated)", fault.status,
                                    fault.status))  # fmt: skip
            return
        slow = sim.take_fault(("slow",), name, path)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        key = self.request.headers.get("X-AppKey") or self.request.headers.get("apikey") or "-"
        if not sim.allow(key, "api"):
            sim.count(name, method, path, 429)
            self._error(BreezeError("Request limit exceeded: 100 calls a minute, 5000 a day",
                                    429, 429))  # fmt: skip
            return
        try:
            data = self._route(name, endpoint)
        except BreezeError as exc:
            sim.count(name, method, path, exc.status)
            self._error(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a simulator bug: answer as Breeze would, log it
            log.exception("Breeze simulator failed on %s %s", method, path)
            sim.count(name, method, path, 500)
            self._error(BreezeError(f"Internal Server Error: {type(exc).__name__}: {exc}"))
            return
        sim.count(name, method, path, 200)
        if name == "order.place":
            held = sim.take_fault(("timeout_after_place",), name, path)
            if held is not None:
                await asyncio.sleep(held.delay)
        self._send(200, {"Success": data, "Status": 200, "Error": None})

    def _route(self, name: str, endpoint: str) -> object:  # noqa: PLR0911 - one branch per route
        sim = self.simulator
        if name == "customerdetails":
            return sim._customer(self._body())  # noqa: SLF001
        if name == "historicalcharts":
            session = sim._sessions.get(self.request.headers.get("X-SessionToken", ""))  # noqa: SLF001
            if session is None or sim.secret_of(self.request.headers.get("apikey", "")) is None:
                raise BreezeError("Session key is expired.", 401)
            params = {k: self.get_argument(k) for k in self.request.arguments}
            return sim._candles(params)  # noqa: SLF001
        session = sim.authenticate(self.request.headers, self.request.body)
        p = self._body()
        if name == "order.place":
            return sim._place(session, p)  # noqa: SLF001
        if name == "order.modify":
            return sim._modify(p)  # noqa: SLF001
        if name == "order.cancel":
            return sim._cancel(p)  # noqa: SLF001
        if name == "order.book":
            if p.get("order_id"):
                return [sim._order_dict(sim._record(str(p["order_id"])))]  # noqa: SLF001
            mine = [sim._order_dict(r) for r in sim._orders.values()  # noqa: SLF001
                    if r.owner == session.user_id]  # fmt: skip
            return mine or None  # Breeze answers an empty book with Success null
        if name == "trades":
            return sim._trade_rows(p) or None  # noqa: SLF001
        if name == "positions":
            return sim._positions() or None  # noqa: SLF001
        if name == "holdings":
            return sim._holdings() or None  # noqa: SLF001
        if name == "funds":
            return sim._funds()  # noqa: SLF001
        if name == "quotes":
            return sim._quotes(p)  # noqa: SLF001
        if name == "historicalcharts.v1":
            return sim._candles(p, v1=True)  # noqa: SLF001
        raise BreezeError(f"{endpoint} is not simulated")

    def _sim_route(self, method: str, path: str) -> None:
        sim = self.simulator
        body = json.loads(self.request.body or b"{}") if method == "POST" else {}
        try:
            if path == "/_sim/trade" and method == "POST":
                ts = sim.trade(body["instrument_id"], float(body["price"]),
                               quantity=int(body.get("quantity", 1)))  # fmt: skip
                self._send(200, {"Success": {"ts": ts.isoformat()}, "Status": 200})
            elif path == "/_sim/fault" and method == "POST":
                kind = body.pop("kind")
                self._send(200, {"Success": sim.fault(kind, **body), "Status": 200})
            elif path == "/_sim/stats":
                self._send(200, {"Success": sim.stats_now(), "Status": 200})
            elif path == "/_sim/session" and method == "POST":
                self._send(200, {"Success": {"apisession": sim.api_session()}, "Status": 200})
            else:
                self._send(404, {"Success": None, "Status": 404,
                                 "Error": f"no simulator lever {path}"})  # fmt: skip
        except (KeyError, ValueError, ConfigError) as exc:
            self._send(400, {"Success": None, "Status": 400, "Error": str(exc)})
