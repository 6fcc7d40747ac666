"""Pure translations between SmartAPI's dicts and Velox's types (no SDK, no I/O).

Angel's vocabulary: products DELIVERY/INTRADAY/CARRYFORWARD (MARGIN is read as NRML; BO and
CO are not traded by Velox), order types MARKET/LIMIT/STOPLOSS_LIMIT/STOPLOSS_MARKET, the
variety NORMAL for market and limit orders and STOPLOSS for stops, ``ordertag`` (≤ 20
characters) carrying Velox's client id, order-book statuses in lower case (``open``,
``complete``, ``trigger pending``, …), times ``20-May-2025 10:40:05`` IST, numbers often as
strings. The SDK answers a failure with ``{status: false, errorcode: AB…/AG…}`` rather than
raising; :func:`error_of` turns that into a Velox error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from velox.brokers.base import Capabilities, Funds
from velox.brokers.throttle import RateLimit
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited, ValidationError
from velox.types import Fill, Order, OrderStatus, OrderType, Position, Product, Side, Tick, Validity

__all__ = [
    "CANDLE_INTERVALS",
    "CANDLE_MAX_DAYS",
    "LOGIN_COMMAND",
    "SMARTAPI_CAPABILITIES",
    "SMARTAPI_RATE_LIMITS",
    "candle_windows",
    "candles_frame",
    "error_of",
    "fill_from_angel",
    "funds_from_angel",
    "order_from_angel",
    "order_params",
    "position_from_angel",
    "tick_from_quote",
]

LOGIN_COMMAND = "velox broker login smartapi"

PRODUCT = {Product.CNC: "DELIVERY", Product.MIS: "INTRADAY", Product.NRML: "CARRYFORWARD"}
PRODUCT_OF = {v: k for k, v in PRODUCT.items()} | {"MARGIN": Product.NRML}
ORDER_TYPE = {OrderType.MARKET: "MARKET", OrderType.LIMIT: "LIMIT",
              OrderType.SL: "STOPLOSS_LIMIT", OrderType.SL_M: "STOPLOSS_MARKET"}  # fmt: skip
ORDER_TYPE_OF = {v: k for k, v in ORDER_TYPE.items()}
VARIETY = {OrderType.MARKET: "NORMAL", OrderType.LIMIT: "NORMAL",
           OrderType.SL: "STOPLOSS", OrderType.SL_M: "STOPLOSS"}  # fmt: skip

#: What Angel One takes through Velox (AMO, ROBO/BO and GTT are not used).
SMARTAPI_CAPABILITIES = Capabilities(
    order_types=frozenset(OrderType),
    products=frozenset(Product),
    validities=frozenset(Validity),
    modify=True,
    modify_stop=True,
    gtt=False,
    basket=False,
    varieties=("NORMAL", "STOPLOSS"),
    max_orders_per_second=9.0,  # Angel allows 20/s; SEBI's line for non-algo clients is 10/s
    tag_length=20,
)

#: Angel One's published request limits per endpoint (SmartAPI's "Rate Limits" page: requests
#: a second), keyed by the SDK's route names (``SmartConnect._routes``). The adapter's
#: throttles keep below them; the loopback simulator refuses above them.
SMARTAPI_RATE_LIMITS: dict[str, tuple[RateLimit, ...]] = {
    name: (RateLimit.per_second(count),)
    for name, count in {
        "api.login": 1, "api.token": 1, "api.user.profile": 3, "api.order.place": 20,
        "api.order.modify": 20, "api.order.cancel": 20, "api.order.book": 1,
        "api.trade.book": 1, "api.position": 1, "api.holding": 1, "api.rms.limit": 2,
        "api.ltp.data": 10, "api.market.data": 10, "api.candle.data": 3, "other": 1,
    }.items()
}  # fmt: skip

_STATUS_OF = {
    "open": OrderStatus.OPEN,
    "complete": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
    "trigger pending": OrderStatus.TRIGGER_PENDING,
    "open pending": OrderStatus.SUBMITTED,
    "validation pending": OrderStatus.SUBMITTED,
    "put order req received": OrderStatus.SUBMITTED,
    "modify pending": OrderStatus.OPEN,
    "modify validation pending": OrderStatus.OPEN,
    "modified": OrderStatus.OPEN,
    "cancel pending": OrderStatus.OPEN,
    "after market order req received": OrderStatus.SUBMITTED,
}
#: errorcodes of an expired or invalid session (the day's jwt is gone: log in again).
_SESSION_CODES = ("AG8001", "AG8002", "AG8003", "AB1010", "AB1011", "AB8050", "AB8051")


def _num(value: object, default: float = 0.0) -> float:
    try:
        return float(str(value).replace(",", "")) if value not in (None, "") else default
    except ValueError:
        return default


def _int(value: object) -> int:
    return int(_num(value))


def angel_time(text: object, day: date | None = None) -> datetime | None:
    """Return an IST-aware datetime of ``20-May-2025 10:40:05`` (or ``10:40:05`` on ``day``)."""
    raw = str(text or "").strip()
    if not raw:
        return None
    for fmt in ("%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=IST)
        except ValueError:
            continue
    if day is not None:
        try:
            clock = datetime.strptime(raw, "%H:%M:%S").time()
        except ValueError:
            return None
        return datetime.combine(day, clock, IST)
    return None


def order_params(order: Order, *, token: str, symbol: str, exchange: str) -> dict[str, str]:
    """Return ``placeOrder``'s parameters for ``order`` (its client id as the ``ordertag``)."""
    tag = order.client_id
    if len(tag) > SMARTAPI_CAPABILITIES.tag_length:
        raise OrderRejected(f"client id {tag!r} is longer than SmartAPI's 20-character ordertag",
                            client_id=order.client_id)  # fmt: skip
    return {
        "variety": VARIETY[order.order_type], "tradingsymbol": symbol, "symboltoken": token,
        "transactiontype": order.side.value, "exchange": exchange,
        "ordertype": ORDER_TYPE[order.order_type], "producttype": PRODUCT[order.product],
        "duration": order.validity.value, "price": f"{order.limit_price or 0:g}",
        "triggerprice": f"{order.trigger_price or 0:g}", "quantity": str(order.qty),
        "squareoff": "0", "stoploss": "0", "ordertag": tag,
    }  # fmt: skip


def order_from_angel(data: Mapping[str, Any], instrument_id: str) -> Order:
    """Return the Velox order of one order-book entry (client id = its ``ordertag``)."""
    status = _STATUS_OF.get(str(data.get("status") or data.get("orderstatus") or "").lower(),
                            OrderStatus.SUBMITTED)  # fmt: skip
    qty, filled = _int(data.get("quantity")), _int(data.get("filledshares"))
    if status is OrderStatus.OPEN and filled:
        status = OrderStatus.PARTIAL
    order_type = ORDER_TYPE_OF.get(str(data.get("ordertype")), OrderType.MARKET)
    limit = _num(data.get("price")) or None
    trigger = _num(data.get("triggerprice")) or None
    tag = str(data.get("ordertag") or "")
    return Order(
        client_id=tag or f"angel-{data.get('orderid')}", instrument_id=instrument_id,
        side=Side(str(data.get("transactiontype"))), qty=max(qty, 1), order_type=order_type,
        product=PRODUCT_OF.get(str(data.get("producttype")), Product.CNC),
        validity=Validity(str(data.get("duration") or "DAY")),
        limit_price=limit if order_type in (OrderType.LIMIT, OrderType.SL) else None,
        trigger_price=trigger if order_type in (OrderType.SL, OrderType.SL_M) else None,
        tag=tag, status=status, broker_order_id=str(data.get("orderid")), filled_qty=filled,
        average_price=_num(data.get("averageprice")),
        status_message=str(data.get("text") or ""),
        created_at=angel_time(data.get("exchtime")) or angel_time(data.get("updatetime")),
    )  # fmt: skip


def fill_from_angel(data: Mapping[str, Any], instrument_id: str, client_id: str,
                    day: date) -> Fill:  # fmt: skip
    """Return the Velox fill of one trade-book line (fill id = Angel's ``fillid``)."""
    return Fill(
        fill_id=str(data["fillid"]), client_id=client_id, instrument_id=instrument_id,
        side=Side(str(data["transactiontype"])), qty=_int(data["fillsize"]),
        price=_num(data["fillprice"]), ts=angel_time(data.get("filltime"), day) or
        datetime.combine(day, datetime.min.time(), IST),
        product=PRODUCT_OF.get(str(data.get("producttype")), Product.CNC),
        broker_order_id=str(data["orderid"]),
    )  # fmt: skip


def position_from_angel(data: Mapping[str, Any], instrument_id: str) -> Position:
    """Return the Velox position of one ``getPosition`` line."""
    return Position(
        instrument_id=instrument_id,
        product=PRODUCT_OF.get(str(data.get("producttype")), Product.CNC),
        qty=_int(data.get("netqty")), average_price=_num(data.get("avgnetprice")),
        realised_pnl=_num(data.get("realised")), bought_qty=_int(data.get("buyqty")),
        sold_qty=_int(data.get("sellqty")),
    )  # fmt: skip


def holding_from_angel(data: Mapping[str, Any], instrument_id: str) -> Position:
    """Return the Velox holding of one ``getHolding`` line."""
    return Position(instrument_id=instrument_id, product=Product.CNC,
                    qty=_int(data.get("quantity")),
                    average_price=_num(data.get("averageprice")))  # fmt: skip


def funds_from_angel(data: Mapping[str, Any]) -> Funds:
    """Return the account's funds of ``getRMS`` (``net`` = cash less the debits)."""
    return Funds(cash=_num(data.get("availablecash")), used_margin=_num(data.get("utiliseddebits")),
                 realised_pnl=_num(data.get("m2mrealized")))  # fmt: skip


def error_of(answer: object, what: str, client_id: str | None = None) -> BrokerError:
    """Return the Velox error of a failed SmartAPI answer (an envelope, ``None`` or text).

    Session codes (AG8001 invalid, AG8002 expired, AG8003 missing, AB1010/AB1011 not logged
    in, AB8050/AB8051 refresh token) are :class:`~velox.errors.AuthExpired` naming the login
    command; the gateway's "exceeding access rate" is :class:`~velox.errors.RateLimited`;
    an order request refused is :class:`~velox.errors.OrderRejected` with Angel's message.
    """
    if not isinstance(answer, Mapping):
        return BrokerError(f"SmartAPI answered {what} with {answer!r}; is the API root right?")
    code = str(answer.get("errorcode") or "")
    message = str(answer.get("message") or "no message")
    if code in _SESSION_CODES:
        return AuthExpired(f"SmartAPI session is no longer valid ({code} {message}) while "
                           f"{what}; log in again with `{LOGIN_COMMAND}`")  # fmt: skip
    if "exceeding access rate" in message.lower():
        return RateLimited(f"SmartAPI refused {what}: {message}")
    if client_id is not None:
        return OrderRejected(f"{message} ({code})" if code else message, client_id=client_id)
    return BrokerError(f"SmartAPI failed {what}: {message} ({code})")


# ---- historical candles ----------------------------------------------------------------------

#: Velox timeframe → ``getCandleData``'s ``interval``.
CANDLE_INTERVALS = {
    "1m": "ONE_MINUTE", "3m": "THREE_MINUTE", "5m": "FIVE_MINUTE", "10m": "TEN_MINUTE",
    "15m": "FIFTEEN_MINUTE", "30m": "THIRTY_MINUTE", "1h": "ONE_HOUR", "1d": "ONE_DAY",
}  # fmt: skip

#: Angel's most days of candles one ``getCandleData`` request may span, per interval
#: (SmartAPI "Historical API" documentation); longer ranges are paged.
CANDLE_MAX_DAYS = {
    "ONE_MINUTE": 30, "THREE_MINUTE": 60, "FIVE_MINUTE": 100, "TEN_MINUTE": 100,
    "FIFTEEN_MINUTE": 200, "THIRTY_MINUTE": 200, "ONE_HOUR": 400, "ONE_DAY": 2000,
}  # fmt: skip


def candle_interval(timeframe: str) -> str:
    """Return Angel's interval name of a Velox timeframe (ValidationError listing them)."""
    interval = CANDLE_INTERVALS.get(timeframe)
    if interval is None:
        raise ValidationError(f"SmartAPI has no {timeframe!r} candles; it serves "
                              + ", ".join(CANDLE_INTERVALS))  # fmt: skip
    return interval


def candle_windows(
    start: datetime, end: datetime, timeframe: str
) -> list[tuple[datetime, datetime]]:
    """Return ``getCandleData`` windows covering ``[start, end]``, each within Angel's span
    for the interval; ``fromdate``/``todate`` are minutes, inclusive, so windows do not
    overlap: each starts a minute after the previous one ends.

    Examples
    --------
    >>> start, end = datetime(2024, 1, 1, tzinfo=IST), datetime(2024, 3, 15, tzinfo=IST)
    >>> w = candle_windows(start, end, "1m")
    >>> len(w), w[0][1].isoformat(), w[1][0].isoformat()
    (3, '2024-01-30T23:59:00+05:30', '2024-01-31T00:00:00+05:30')
    """
    days = CANDLE_MAX_DAYS[candle_interval(timeframe)]
    if end < start:
        raise ValidationError(f"history end {end} is before start {start}")
    span = timedelta(days=days) - timedelta(minutes=1)
    windows, at = [], start.replace(second=0, microsecond=0)
    while at <= end:
        stop = min(at + span, end)
        windows.append((at, stop))
        at = stop.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return windows


def candles_frame(rows: list[list[Any]] | None) -> Any:
    """Return ``getCandleData`` rows (``[iso time, open, high, low, close, volume]``) as
    Velox's bar frame (tz-aware IST index ``ts`` of bar starts, float64 OHLCV, sorted)."""
    import pandas as pd

    rows = rows or []
    index = pd.DatetimeIndex([pd.Timestamp(r[0]) for r in rows], name="ts")
    index = index.tz_convert(IST) if len(index) else pd.DatetimeIndex([], name="ts", tz=IST)
    columns = ["open", "high", "low", "close", "volume"]
    frame = pd.DataFrame([r[1:6] for r in rows] or None, index=index, columns=columns,
                         dtype="float64")  # fmt: skip
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def tick_from_quote(row: Mapping[str, Any], instrument_id: str) -> Tick:
    """Return one ``getMarketData`` FULL row as a Velox tick (best bid and ask from its
    depth; the exchange's trade time, else its feed time)."""
    depth = row.get("depth") or {}
    bids = [d for d in depth.get("buy") or [] if _num(d.get("price")) > 0]
    asks = [d for d in depth.get("sell") or [] if _num(d.get("price")) > 0]
    ts = angel_time(row.get("exchTradeTime")) or angel_time(row.get("exchFeedTime"))
    return Tick(
        instrument_id, ts or datetime.now(IST), _num(row.get("ltp")),
        _int(row.get("tradeVolume")) or None, _int(row.get("lastTradeQty")) or None,
        _num(bids[0]["price"]) if bids else None, _num(asks[0]["price"]) if asks else None,
    )  # fmt: skip
