"""Pure translations between Breeze's dicts and Velox's types (no SDK, no I/O).

Breeze's vocabulary: ICICI's own stock codes (``STABAN`` is NSE:SBIN, see
:func:`stock_codes`), ``exchange_code`` ``NSE``/``BSE``, products ``cash`` (delivery, CNC)
and ``margin`` (intraday, MIS), actions ``buy``/``sell``, order types ``market``/``limit``/
``stoploss`` (``stoploss`` is the trigger, ``price`` the limit), validities ``day``/``ioc``,
``user_remark`` carrying Velox's client id (Breeze has no order tag), order ids such as
``20250520N300000001``, order-book statuses ``Ordered``/``Executed``/``Cancelled``/
``Rejected``/``Partially Executed``/``Requested``/``Expired``, times ``20-May-2025 10:40:05``
IST, numbers often as strings. The SDK answers everything, failures too, with the envelope
``{"Success": …, "Status": 200, "Error": null}``; :func:`error_of` turns a failed one into a
Velox error.

How orders travel: ``breeze-connect`` 1.0.69's ``place_order`` turns a ``market`` order into an
*aggressive limit* before sending it (it reads a quote, prices the order 3 % through the last
price for cash, clamps it to the circuit band and rounds it on its own tick table), but its
quote call passes the order's product as the quote's ``product_type``, which refuses
``margin``: an intraday market order fails in the SDK with "Quotes not available". So Velox
prices MARKET orders itself, the SDK's way (:func:`marketable_limit`: 3 % through the quote's
last price, inside the circuit band, on the instrument's tick from Velox's master) and sends a
``limit`` order; Breeze's book, and Velox's view of it, show a LIMIT order. Breeze's cash
segment has no stop-market order; an SL-M is sent as a ``stoploss`` order whose limit is 3 %
through the trigger (:func:`protective_limit`) and reads back as SL. A stop order still
working is reported TRIGGER_PENDING (Breeze's book says ``Ordered`` for it, with nothing
executed).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from velox.brokers.base import Capabilities, Funds
from velox.brokers.throttle import RateLimit
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited
from velox.types import (
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Side,
    Tick,
    Validity,
    snap_to_tick,
)

__all__ = [
    "BREEZE_CAPABILITIES",
    "BREEZE_RATE_LIMITS",
    "LOGIN_COMMAND",
    "error_of",
    "fill_from_breeze",
    "funds_from_breeze",
    "order_from_breeze",
    "order_params",
    "position_from_breeze",
    "stock_codes",
]

LOGIN_COMMAND = "velox broker login breeze"

#: Velox product → Breeze's for cash (NRML is for derivatives, not traded here yet).
PRODUCT = {Product.CNC: "cash", Product.MIS: "margin"}
PRODUCT_OF = {"cash": Product.CNC, "margin": Product.MIS, "btst": Product.CNC,
              "futures": Product.NRML, "options": Product.NRML}  # fmt: skip
ORDER_TYPE = {OrderType.MARKET: "market", OrderType.LIMIT: "limit", OrderType.SL: "stoploss",
              OrderType.SL_M: "stoploss"}  # fmt: skip
ORDER_TYPE_OF = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stoploss": OrderType.SL}
VALIDITY = {Validity.DAY: "day", Validity.IOC: "ioc"}

#: Breeze's published limits: 100 calls a minute and 5,000 a day per app key, every endpoint
#: counted together (ICICI's Breeze API terms). One group, ``api``: the adapter throttles
#: every request through it; the loopback simulator refuses above it.
BREEZE_RATE_LIMITS: dict[str, tuple[RateLimit, ...]] = {
    "api": (RateLimit.per_minute(100), RateLimit.per_day(5000)),
}

#: Velox timeframe → the v2 historical API's interval (``config.INTERVAL_TYPES_HIST_V2``).
CANDLE_INTERVALS = {"1s": "1second", "1m": "1minute", "5m": "5minute", "30m": "30minute",
                    "1d": "1day"}  # fmt: skip
#: Candles the v2 historical API answers a request at most (ICICI's Breeze API notes).
MAX_CANDLES = 1000

#: How far through the trigger an SL-M's protective limit is put (the SDK's cash band).
PROTECTIVE_BAND = 0.03

#: What Breeze takes through Velox (NSE/BSE cash; no GTT, no basket; the client id, up to 20
#: characters, travels as ``user_remark``).
BREEZE_CAPABILITIES = Capabilities(
    order_types=frozenset(OrderType),
    products=frozenset({Product.CNC, Product.MIS}),
    validities=frozenset(Validity),
    modify=True,
    modify_stop=True,
    gtt=False,
    basket=False,
    varieties=("regular",),
    max_orders_per_second=100 / 60,  # every call counts against 100 a minute
    tag_length=20,
)

_STATUS_OF = {
    "ordered": OrderStatus.OPEN,
    "requested": OrderStatus.SUBMITTED,
    "queued": OrderStatus.SUBMITTED,
    "partially executed": OrderStatus.PARTIAL,
    "executed": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
    "expired": OrderStatus.CANCELLED,
    "partially executed and expired": OrderStatus.CANCELLED,
    "partially executed and cancelled": OrderStatus.CANCELLED,
    "freezed": OrderStatus.SUBMITTED,
}
#: Order-notification status codes (``config.TUX_TO_USER_MAP['orderStatus']``) are mapped by
#: the SDK to the words above; the simulator sends the codes.

#: Errors of a session that is gone (the day's session token): log in again.
_SESSION_TEXTS = ("session key is expired", "invalid session", "session expired",
                  "resource not available")  # fmt: skip


def _num(value: object, default: float = 0.0) -> float:
    try:
        return float(str(value).replace(",", "")) if value not in (None, "") else default
    except ValueError:
        return default


def _int(value: object) -> int:
    return int(_num(value))


def stock_codes(table: Any, codes_csv: str | None = None) -> dict[str, tuple[str, str]]:
    """Return ``{instrument id: (exchange_code, stock_code)}`` of the NSE/BSE stocks of a master.

    ICICI names stocks by its own codes (``STABAN`` for SBIN); the shipped table
    ``data/instruments/breeze_stock_codes.csv`` (see its PROVENANCE row) has those of the
    NIFTY 50, and any other stock is sent under its NSE symbol.
    """
    from velox.instruments import DATA_DIR

    path = codes_csv or str(DATA_DIR / "breeze_stock_codes.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        known = {row["nse_symbol"]: row["breeze_stock_code"] for row in csv.DictReader(handle)}
    rows = table[(table["kind"].astype(str) == "EQ") & table["exchange"].isin(["NSE", "BSE"])]
    return {str(iid): (str(ex), known.get(str(sym), str(sym)))
            for iid, ex, sym in zip(rows["id"], rows["exchange"], rows["symbol"],
                                    strict=True)}  # fmt: skip


def protective_limit(side: Side, trigger: float, tick_size: float) -> float:
    """Return the limit an SL-M is sent with: ``PROTECTIVE_BAND`` through the trigger, on tick.

    Examples
    --------
    >>> protective_limit(Side.SELL, 800.0, 0.05), protective_limit(Side.BUY, 800.0, 0.05)
    (776.0, 824.0)
    """
    sign = 1 if side is Side.BUY else -1
    raw = trigger * (1 + sign * PROTECTIVE_BAND)
    if not tick_size:
        return round(raw, 2)
    ticks = raw / tick_size
    whole = math.ceil(ticks - 1e-9) if sign > 0 else math.floor(ticks + 1e-9)
    return snap_to_tick(whole * tick_size, tick_size)


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def marketable_limit(side: Side, ltp: float, tick_size: float, lower: float = 0.0,
                     upper: float = 0.0) -> float:  # fmt: skip
    """Return the limit a MARKET order is sent with: :data:`PROTECTIVE_BAND` through the last
    price, inside the day's circuit band ``[lower, upper]`` (when known), on tick.

    Examples
    --------
    >>> marketable_limit(Side.BUY, 800.0, 0.05), marketable_limit(Side.BUY, 800.0, 0.05, upper=820)
    (824.0, 820.0)
    """
    price = protective_limit(side, ltp, tick_size)
    if upper and price > upper:
        price = snap_to_tick(math.floor(upper / tick_size + 1e-9) * tick_size, tick_size)
    if lower and price < lower:
        price = snap_to_tick(math.ceil(lower / tick_size - 1e-9) * tick_size, tick_size)
    return price


def order_params(order: Order, *, stock_code: str, exchange: str, tick_size: float,
                 market_limit: float | None = None) -> dict[str, str]:  # fmt: skip
    """Return ``BreezeConnect.place_order``'s keyword arguments for ``order``.

    The client id is the ``user_remark`` (at most 20 characters); a MARKET order goes as a
    ``limit`` order at ``market_limit`` (:func:`marketable_limit` of the quote), an SL-M as a
    ``stoploss`` order with a :func:`protective_limit`.
    """
    if len(order.client_id) > BREEZE_CAPABILITIES.tag_length:
        raise OrderRejected(
            f"client id {order.client_id!r} is longer than the 20 characters Velox keeps in "
            "Breeze's user_remark",
            client_id=order.client_id,
        )
    product = PRODUCT.get(order.product)
    if product is None:
        raise OrderRejected(f"product {order.product.value} is not traded through Breeze's cash "
                            "segment (CNC or MIS)", client_id=order.client_id)  # fmt: skip
    limit, kind = order.limit_price, ORDER_TYPE[order.order_type]
    if order.order_type is OrderType.SL_M:
        assert order.trigger_price is not None
        limit = protective_limit(order.side, order.trigger_price, tick_size)
    if order.order_type is OrderType.MARKET:
        if market_limit is None:
            raise OrderRejected("a MARKET order through Breeze needs the last price to set its "
                                "protective limit", client_id=order.client_id)  # fmt: skip
        limit, kind = market_limit, "limit"
    return {
        "stock_code": stock_code, "exchange_code": exchange, "product": product,
        "action": order.side.value.lower(), "order_type": kind,
        "stoploss": _price(order.trigger_price), "quantity": str(order.qty),
        "price": _price(limit), "validity": VALIDITY[order.validity],
        "user_remark": order.client_id,
    }  # fmt: skip


def breeze_time(text: object, day: date | None = None) -> datetime | None:
    """Return an IST-aware datetime of ``20-May-2025 10:40:05`` (``10:40:05`` on ``day``)."""
    raw = str(text or "").strip()
    if not raw:
        return None
    for fmt in ("%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%d-%b-%Y"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=IST)
        except ValueError:
            continue
    if day is not None:
        try:
            return datetime.combine(day, datetime.strptime(raw, "%H:%M:%S").time(), IST)
        except ValueError:
            return None
    return None


def order_from_breeze(data: Mapping[str, Any], instrument_id: str) -> Order:
    """Return the Velox order of one order-book entry (client id = its ``user_remark``)."""
    word = str(data.get("status") or "").strip().lower()
    status = _STATUS_OF.get(word, OrderStatus.SUBMITTED)
    qty = _int(data.get("quantity"))
    pending = _int(data.get("pending_quantity"))
    cancelled = _int(data.get("cancelled_quantity"))
    filled = max(0, qty - pending - cancelled) if word != "rejected" else 0
    order_type = ORDER_TYPE_OF.get(str(data.get("order_type") or "").lower(), OrderType.LIMIT)
    if order_type is OrderType.SL and status is OrderStatus.OPEN and not filled:
        status = OrderStatus.TRIGGER_PENDING
    if status is OrderStatus.OPEN and filled:
        status = OrderStatus.PARTIAL
    remark = str(data.get("user_remark") or "")
    product = PRODUCT_OF.get(str(data.get("product_type") or "").lower(), Product.CNC)
    validity = Validity.IOC if str(data.get("validity")).lower() == "ioc" else Validity.DAY
    limit = _num(data.get("price")) or None
    trigger = _num(data.get("stoploss")) or None
    return Order(
        client_id=remark or f"breeze-{data.get('order_id')}", instrument_id=instrument_id,
        side=Side(str(data.get("action")).upper()), qty=max(qty, 1), order_type=order_type,
        product=product, validity=validity,
        limit_price=limit if order_type in (OrderType.LIMIT, OrderType.SL) else None,
        trigger_price=trigger if order_type is OrderType.SL else None,
        tag=remark, status=status, broker_order_id=str(data.get("order_id")),
        filled_qty=filled, average_price=_num(data.get("average_price")),
        status_message=str(data.get("rejection_reason") or ""),
        created_at=breeze_time(data.get("order_datetime")),
    )  # fmt: skip


def fill_from_breeze(detail: Mapping[str, Any], entry: Mapping[str, Any], instrument_id: str,
                     client_id: str) -> Fill:  # fmt: skip
    """Return the Velox fill of one ``get_trade_detail`` execution of the order ``entry``
    (fill id = the exchange's trade id, ``exchange_trade_id``)."""
    ts = breeze_time(detail.get("exchange_trade_time"))
    return Fill(
        fill_id=str(detail.get("exchange_trade_id") or detail["trade_id"]),
        client_id=client_id, instrument_id=instrument_id,
        side=Side(str(entry.get("action")).upper()), qty=_int(detail.get("executed_quantity")),
        price=_num(detail.get("execution_price")),
        ts=ts or datetime.now(IST),
        product=PRODUCT_OF.get(str(entry.get("product_type") or "").lower(), Product.CNC),
        broker_order_id=str(entry.get("order_id")),
    )  # fmt: skip


def position_from_breeze(data: Mapping[str, Any], instrument_id: str) -> Position:
    """Return the Velox position of one ``get_portfolio_positions`` line (``action`` gives
    the side of the net quantity)."""
    qty = _int(data.get("quantity"))
    if str(data.get("action") or "").lower() == "sell":
        qty = -qty
    return Position(
        instrument_id=instrument_id,
        product=PRODUCT_OF.get(str(data.get("product_type") or "").lower(), Product.MIS),
        qty=qty, average_price=_num(data.get("average_price")),
        realised_pnl=_num(data.get("realized_profit")),
    )  # fmt: skip


def holding_from_breeze(data: Mapping[str, Any], instrument_id: str) -> Position:
    """Return the Velox holding of one ``get_portfolio_holdings`` line."""
    return Position(instrument_id=instrument_id, product=Product.CNC,
                    qty=_int(data.get("quantity")),
                    average_price=_num(data.get("average_price")))  # fmt: skip


def funds_from_breeze(data: Mapping[str, Any]) -> Funds:
    """Return the account's funds of ``get_funds`` (the equity allocation and its blocks)."""
    return Funds(cash=_num(data.get("allocated_equity")),
                 used_margin=_num(data.get("block_by_trade_equity")))  # fmt: skip


def error_of(answer: object, what: str, client_id: str | None = None) -> BrokerError:
    """Return the Velox error of a failed Breeze answer (an envelope, ``None`` or text).

    A session that is gone (``Status`` 401 or a session text) is
    :class:`~velox.errors.AuthExpired` naming the login command; ``Status`` 429 is
    :class:`~velox.errors.RateLimited`; a refused checksum names the API secret; an order
    request refused is :class:`~velox.errors.OrderRejected` with Breeze's message.
    """
    if not isinstance(answer, Mapping):
        return BrokerError(f"Breeze answered {what} with {answer!r}; is the API root right?")
    status = _int(answer.get("Status"))
    message = str(answer.get("Error") or "no message")
    lowered = message.lower()
    if "checksum" in lowered:
        return BrokerError(f"Breeze refused {what}: {message}; the API secret (breeze "
                           "api_secret) does not match the app key")  # fmt: skip
    if status == 401 or any(text in lowered for text in _SESSION_TEXTS):
        return AuthExpired(f"Breeze session is no longer valid ({message}) while {what}; log "
                           f"in again with `{LOGIN_COMMAND}`")  # fmt: skip
    if status == 429 or "limit exceeded" in lowered:
        return RateLimited(f"Breeze refused {what}: {message}")
    if client_id is not None:
        return OrderRejected(message, client_id=client_id)
    return BrokerError(f"Breeze failed {what}: {message} (Status {status})")


#: The order notification's status letters (``config.TUX_TO_USER_MAP["orderStatus"]``), which
#: the SDK turns into the order book's words before Velox sees them.
NOTIFICATION_STATUS = {"A": "all", "R": "requested", "Q": "queued", "O": "ordered",
                       "P": "partially executed", "E": "executed", "J": "rejected",
                       "X": "expired", "B": "partially executed and expired",
                       "D": "partially executed and cancelled", "F": "freezed",
                       "C": "cancelled"}  # fmt: skip


def order_from_notification(data: Mapping[str, Any], instrument_id: str,
                            client_id: str) -> Order:  # fmt: skip
    """Return the Velox order of one order notification as ``BreezeConnect.parse_data`` hands
    it on (camelCase keys, the status as a word; no ``user_remark``: ``client_id`` is the one
    Velox placed the order with)."""
    word = str(data.get("orderStatus") or "").strip().lower()
    word = NOTIFICATION_STATUS.get(word.upper(), word)
    flag = str(data.get("limitMarketFlag") or "").lower()
    order_type = {"limit": OrderType.LIMIT, "market": OrderType.MARKET,
                  "stoploss": OrderType.SL}.get(flag, OrderType.LIMIT)  # fmt: skip
    entry = {
        "status": word, "quantity": data.get("orderQuantity"),
        "pending_quantity": data.get("openQuantity"),
        "cancelled_quantity": data.get("cancelledQuantity"),
        "order_type": order_type.value.lower() if order_type is not OrderType.SL else "stoploss",
        "user_remark": client_id,
        "product_type": "cash" if str(data.get("productType")).lower() == "cash" else "margin",
        "validity": "ioc" if str(data.get("orderType")).lower() == "ioc" else "day",
        "price": data.get("orderLimitRate"), "stoploss": data.get("orderStopLossTrigger"),
        "action": "buy" if str(data.get("orderFlow")).lower() == "buy" else "sell",
        "order_id": data.get("orderReference"),
        "average_price": data.get("averageExecutedRate"),
        "rejection_reason": data.get("orderMessageCharacter"),
    }  # fmt: skip
    order = order_from_breeze(entry, instrument_id)
    executed = _int(data.get("orderExecutedQuantity"))  # said outright: it wins
    if executed != order.filled_qty and word != "rejected":
        from dataclasses import replace

        order = replace(order, filled_qty=min(executed, order.qty))
    return order


def tick_from_stock(data: list[Any], instrument_id: str) -> Tick:
    """Return one raw ``stock`` event of a quotes token (the 21-field NSE/BSE cash list) as a
    Velox tick, with the exchange's trade time kept exact (``parse_data`` renders it in the
    machine's local time to the second, without a zone: Velox reads the list itself).

    The list's numbers are JSON numbers; text numbers (``"812.5"``) are read too.
    """
    try:
        ltp, volume, last = float(data[2]), int(data[12]), int(data[10])
        bid, ask = float(data[6]), float(data[8])
        ts = datetime.fromtimestamp(data[19], IST)
    except (TypeError, ValueError):  # text fields: the slower, forgiving reading
        ltp, volume, last = _num(data[2]), _int(data[12]), _int(data[10])
        bid, ask = _num(data[6]), _num(data[8])
        ts = datetime.fromtimestamp(_num(data[19]), IST)
    return Tick(instrument_id, ts, ltp, volume or None, last or None, bid or None, ask or None)


def tick_from_quote(row: Mapping[str, Any], instrument_id: str) -> Tick:
    """Return one ``get_quotes`` line as a Velox tick (last price, day volume, best bid/ask)."""
    return Tick(
        instrument_id, breeze_time(row.get("ltt")) or datetime.now(IST), _num(row.get("ltp")),
        _int(row.get("total_quantity_traded")) or None, None,
        _num(row.get("best_bid_price")) or None, _num(row.get("best_offer_price")) or None,
    )  # fmt: skip


def candles_frame(rows: list[Mapping[str, Any]] | None) -> Any:
    """Return v2 ``historicalcharts`` rows (``datetime`` IST text, open … volume) as Velox's
    bar frame (tz-aware IST index ``ts`` of bar starts, float64 OHLCV, sorted)."""
    import pandas as pd

    rows = rows or []
    index = pd.DatetimeIndex([pd.Timestamp(str(r["datetime"])) for r in rows], name="ts")
    index = index.tz_localize(IST) if len(index) else pd.DatetimeIndex([], name="ts", tz=IST)
    columns = ["open", "high", "low", "close", "volume"]
    frame = pd.DataFrame([[r.get(c) for c in columns] for r in rows] or None, index=index,
                         columns=columns, dtype="float64")  # fmt: skip
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def candle_windows(
    start: datetime, end: datetime, timeframe: str
) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end]`` into spans of at most :data:`MAX_CANDLES` candles of
    ``timeframe`` (counted in calendar time, so a span never holds more than the limit)."""
    from datetime import timedelta

    from velox.errors import ConfigError

    if timeframe not in CANDLE_INTERVALS:
        raise ConfigError(f"Breeze has no {timeframe!r} candles; use one of "
                          f"{', '.join(CANDLE_INTERVALS)}")  # fmt: skip
    seconds = {"1s": 1, "1m": 60, "5m": 300, "30m": 1800, "1d": 86400}[timeframe]
    step = timedelta(seconds=seconds * (MAX_CANDLES - 1))
    out, lo = [], start
    while lo <= end:
        hi = min(lo + step, end)
        out.append((lo, hi))
        lo = hi + timedelta(seconds=seconds)
    return out
