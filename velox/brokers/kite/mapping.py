"""Pure translation between Velox values and Kite Connect's wire vocabulary.

No I/O here: every function takes dicts as Kite (or the official SDK) returns them and gives
Velox values back, or the reverse, so each rule is tested against Zerodha's recorded responses.

Conventions
-----------
* Kite timestamps are IST wall-clock strings (``"2021-05-31 09:18:57"``) or, once the SDK has
  parsed them, naive datetimes in IST. Both become tz-aware IST datetimes (Velox stores UTC and
  shows IST; an aware value converts either way). Historical candles carry ``+0530`` already.
* Kite's instrument is ``exchange`` + ``tradingsymbol``; Velox's id is ``EXCHANGE:SYMBOL``.
* Velox's ``client_id`` travels in the order ``tag`` (20 characters at Kite). An order without
  a tag (placed outside Velox) gets ``client_id = "kite:" + order_id``.
* Validity ``TTL`` (minutes) reads as DAY.
* Products Velox does not model map to the nearest one it does: ``MTF`` (margin delivery) to
  CNC, ``CO``/``BO`` (intraday brackets) to MIS; their orders are never Velox's own.
* Errors: :func:`translate_error` is the one place SDK exceptions become Velox errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from velox.brokers.base import Capabilities, Funds
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited, ValidationError
from velox.types import Fill, Order, OrderStatus, OrderType, Position, Product, Side, Validity

__all__ = [
    "KITE_CAPABILITIES",
    "HISTORY_LIMITS",
    "LOGIN_COMMAND",
    "KiteDict",
    "aggregate_orders",
    "candles_frame",
    "funds_from_kite",
    "history_windows",
    "holding_from_kite",
    "is_retryable",
    "kite_instrument",
    "kite_interval",
    "kite_time",
    "modify_params",
    "order_from_kite",
    "order_params",
    "order_status",
    "position_from_kite",
    "positions_from_kite",
    "split_instrument_id",
    "trade_from_kite",
    "translate_error",
]

#: A JSON object as Kite sends it.
KiteDict = Mapping[str, Any]

#: What the user runs when the session is gone (every AuthExpired names it).
LOGIN_COMMAND = "velox broker login kite"

#: The Kite order rate Velox keeps to by default: under Kite's (and SEBI's) 10 orders/s.
DEFAULT_ORDERS_PER_SECOND = 8

#: What Kite takes, as data (regular variety; GTT, baskets and iceberg are not used).
KITE_CAPABILITIES = Capabilities(
    order_types=frozenset(OrderType),
    products=frozenset(Product),
    validities=frozenset(Validity),
    modify=True,
    modify_stop=True,
    gtt=False,
    basket=False,
    varieties=("regular",),
    max_orders_per_second=float(DEFAULT_ORDERS_PER_SECOND),
    tag_length=20,
)

_PRODUCTS = {"CNC": Product.CNC, "MIS": Product.MIS, "NRML": Product.NRML}
_PRODUCTS.update({"MTF": Product.CNC, "CO": Product.MIS, "BO": Product.MIS})

#: Kite order statuses → Velox. Kite's transient states (the order is with its OMS or the
#: exchange and may still be refused) are SUBMITTED; a pending modify/cancel is still working.
_STATUSES = {
    "OPEN": OrderStatus.OPEN,
    "COMPLETE": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    "TRIGGER PENDING": OrderStatus.TRIGGER_PENDING,
    "PUT ORDER REQ RECEIVED": OrderStatus.SUBMITTED,
    "VALIDATION PENDING": OrderStatus.SUBMITTED,
    "OPEN PENDING": OrderStatus.SUBMITTED,
    "AMO REQ RECEIVED": OrderStatus.SUBMITTED,
    "MODIFY VALIDATION PENDING": OrderStatus.OPEN,
    "MODIFY PENDING": OrderStatus.OPEN,
    "CANCEL PENDING": OrderStatus.OPEN,
    "UPDATE": OrderStatus.OPEN,
}
_WORKING = (OrderStatus.OPEN, OrderStatus.SUBMITTED)
#: TTL (good for N minutes) is a day order that may end sooner: Velox models it as DAY.
_VALIDITIES = {"DAY": Validity.DAY, "IOC": Validity.IOC, "TTL": Validity.DAY}

#: Velox timeframe → (Kite interval, most days one historical request may span).
HISTORY_LIMITS: dict[str, tuple[str, int]] = {
    "1m": ("minute", 60),
    "3m": ("3minute", 100),
    "5m": ("5minute", 100),
    "10m": ("10minute", 100),
    "15m": ("15minute", 200),
    "30m": ("30minute", 200),
    "1h": ("60minute", 400),
    "1d": ("day", 2000),
}


# ---- small helpers ---------------------------------------------------------------------------


def _odd(what: str, data: object) -> BrokerError:
    """Return the error for a Kite response that lacks what the API documents."""
    shown = repr(data)
    if len(shown) > 300:
        shown = shown[:300] + "…"
    return BrokerError(f"Kite sent an unexpected {what}: {shown}; is the API root right?")


def _field(data: KiteDict, key: str, what: str) -> Any:
    try:
        value = data[key]
    except (KeyError, TypeError):
        raise _odd(f"{what} without {key!r}", data) from None
    return value


def _number(value: object, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _odd("number", value) from None
    return number if math.isfinite(number) else default


def _whole(value: object) -> int:
    return int(round(_number(value)))


def kite_time(value: object) -> datetime | None:
    """Return a Kite timestamp as a tz-aware IST datetime (``None`` for a missing one).

    Takes ``"YYYY-MM-DD HH:MM:SS"`` strings (IST wall clock), the SDK's naive datetimes (the
    same wall clock), ISO strings with an offset, and aware datetimes (converted to IST).

    Examples
    --------
    >>> kite_time("2021-05-31 09:18:57").isoformat()
    '2021-05-31T09:18:57+05:30'
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _odd("timestamp", value) from None
    else:
        raise _odd("timestamp", value)
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        return stamp.replace(tzinfo=IST)
    return stamp.astimezone(IST)


def split_instrument_id(instrument_id: str) -> tuple[str, str]:
    """Return ``(exchange, tradingsymbol)`` of a Velox id (``"NSE:SBIN"`` → ``("NSE", "SBIN")``)."""
    exchange, _, symbol = instrument_id.partition(":")
    if not exchange or not symbol:
        raise ValidationError(f"instrument id {instrument_id!r} must read 'EXCHANGE:SYMBOL'")
    return exchange, symbol


def kite_instrument(data: KiteDict) -> str:
    """Return the Velox id of a Kite dict's ``exchange`` + ``tradingsymbol``."""
    return f"{_field(data, 'exchange', 'record')}:{_field(data, 'tradingsymbol', 'record')}"


def _product(value: object) -> Product:
    try:
        return _PRODUCTS[str(value)]
    except KeyError:
        raise _odd("product", value) from None


# ---- orders out ------------------------------------------------------------------------------


def order_params(order: Order, *, qty: int | None = None, tag: str | None = None) -> dict[str, Any]:
    """Return the keyword arguments of ``KiteConnect.place_order`` for ``order``.

    ``qty`` overrides the quantity (a freeze-quantity slice); ``tag`` the tag (default: the
    order's client id, the id that lets a restart find the order again; a strategy's own
    ``Order.tag`` label does not travel to Kite).

    Examples
    --------
    >>> o = Order("R1-7", "NSE:SBIN", "BUY", 5, "LIMIT", product="MIS", limit_price=801.5)
    >>> p = order_params(o)
    >>> p["tradingsymbol"], p["transaction_type"], p["price"], p["tag"], "trigger_price" in p
    ('SBIN', 'BUY', 801.5, 'R1-7', False)
    """
    exchange, symbol = split_instrument_id(order.instrument_id)
    tag = tag if tag is not None else order.client_id
    if len(tag) > KITE_CAPABILITIES.tag_length:
        raise OrderRejected(
            f"tag {tag!r} is longer than Kite's {KITE_CAPABILITIES.tag_length} characters; "
            "use a shorter client id",
            client_id=order.client_id,
        )
    params: dict[str, Any] = {
        "variety": "regular",
        "exchange": exchange,
        "tradingsymbol": symbol,
        "transaction_type": order.side.value,
        "quantity": int(order.qty if qty is None else qty),
        "product": order.product.value,
        "order_type": order.order_type.value,
        "validity": order.validity.value,
        "tag": tag,
    }
    if order.order_type in (OrderType.LIMIT, OrderType.SL):
        params["price"] = order.limit_price
    if order.order_type in (OrderType.SL, OrderType.SL_M):
        params["trigger_price"] = order.trigger_price
    return params


def modify_params(
    *,
    qty: int | None = None,
    limit_price: float | None = None,
    trigger_price: float | None = None,
    order_type: OrderType | None = None,
) -> dict[str, Any]:
    """Return the keyword arguments of ``KiteConnect.modify_order`` (without the order id)."""
    params: dict[str, Any] = {"variety": "regular"}
    if qty is not None:
        params["quantity"] = int(qty)
    if limit_price is not None:
        params["price"] = limit_price
    if trigger_price is not None:
        params["trigger_price"] = trigger_price
    if order_type is not None:
        params["order_type"] = OrderType(order_type).value
    return params


# ---- orders and trades in --------------------------------------------------------------------


def order_status(kite_status: object, filled: int, qty: int) -> OrderStatus:
    """Return the Velox status of a Kite status string with ``filled`` of ``qty`` done."""
    status = _STATUSES.get(str(kite_status).upper())
    if status is None:
        raise _odd("order status", kite_status)
    if status in _WORKING and 0 < filled < qty:
        return OrderStatus.PARTIAL
    return status


def _client_id(data: KiteDict) -> str:
    tag = data.get("tag")
    if isinstance(tag, str) and tag:
        return tag
    tags = data.get("tags")  # Kite also sends the tags as a list
    if isinstance(tags, list) and tags and isinstance(tags[0], str):
        return tags[0]
    return f"kite:{_field(data, 'order_id', 'order')}"


def order_from_kite(data: KiteDict) -> Order:
    """Return the Velox :class:`Order` of one Kite order dict (GET /orders, postback, ticker).

    Kite sends ``price``/``trigger_price`` 0 where the type has none; they become ``None``.
    A Kite order too odd to be a Velox order (no quantity, a limit order without a price)
    raises :class:`~velox.errors.BrokerError` naming it.

    Examples
    --------
    >>> o = order_from_kite({"order_id": "9", "status": "OPEN", "exchange": "NSE",
    ...     "tradingsymbol": "SBIN", "transaction_type": "BUY", "quantity": 10,
    ...     "filled_quantity": 4, "order_type": "LIMIT", "product": "MIS", "validity": "DAY",
    ...     "price": 800, "trigger_price": 0, "average_price": 799.5, "tag": "R1-2",
    ...     "order_timestamp": "2024-04-01 09:20:00"})
    >>> o.client_id, o.status.value, o.filled_qty, o.limit_price
    ('R1-2', 'PARTIAL', 4, 800.0)
    """
    order_id = str(_field(data, "order_id", "order"))
    qty = _whole(_field(data, "quantity", "order"))
    filled = _whole(data.get("filled_quantity"))
    try:
        order_type = OrderType(str(_field(data, "order_type", "order")))
        side = Side(str(_field(data, "transaction_type", "order")))
        validity = _VALIDITIES[str(data.get("validity") or "DAY")]
    except (ValueError, KeyError):
        raise _odd("order", data) from None
    price = _number(data.get("price")) or None
    trigger = _number(data.get("trigger_price")) or None
    message = data.get("status_message") or ""
    try:
        return Order(
            client_id=_client_id(data),
            instrument_id=kite_instrument(data),
            side=side,
            qty=qty,
            order_type=order_type,
            product=_product(_field(data, "product", "order")),
            validity=validity,
            limit_price=price if order_type in (OrderType.LIMIT, OrderType.SL) else None,
            trigger_price=trigger if order_type in (OrderType.SL, OrderType.SL_M) else None,
            tag=str(data.get("tag") or ""),
            status=order_status(_field(data, "status", "order"), filled, qty),
            broker_order_id=order_id,
            filled_qty=min(filled, qty),
            average_price=_number(data.get("average_price")),
            status_message=str(message),
            created_at=kite_time(data.get("order_timestamp")),
        )
    except ValidationError as exc:
        raise BrokerError(f"Kite order {order_id} does not make a Velox order: {exc}") from None


def aggregate_orders(slices: Iterable[Order], *, broker_order_id: str | None = None) -> Order:
    """Return one Velox order made of the Kite orders of one tag (freeze-quantity slices).

    Quantity and filled quantity add up; the average price is quantity-weighted; the status is
    FILLED when every slice is, REJECTED/CANCELLED when every slice is terminal and none is
    working, PARTIAL while something is filled and something works, else the least advanced
    working status. ``broker_order_id`` is the first slice's id unless given (the id the
    engine was told when it placed the order).
    """
    parts = list(slices)
    if not parts:
        raise ValueError("aggregate_orders needs at least one order")
    if len(parts) == 1 and broker_order_id in (None, parts[0].broker_order_id):
        return parts[0]
    qty = sum(p.qty for p in parts)
    filled = sum(p.filled_qty for p in parts)
    value = sum(p.filled_qty * p.average_price for p in parts)
    statuses = {p.status for p in parts}
    working = [p for p in parts if not p.is_terminal]
    if statuses == {OrderStatus.FILLED}:
        status = OrderStatus.FILLED
    elif not working:
        if filled:
            status = OrderStatus.CANCELLED  # part filled, the rest cancelled/rejected
        elif OrderStatus.CANCELLED in statuses:
            status = OrderStatus.CANCELLED
        else:
            status = OrderStatus.REJECTED
    elif filled:
        status = OrderStatus.PARTIAL
    else:
        order = [OrderStatus.SUBMITTED, OrderStatus.TRIGGER_PENDING, OrderStatus.OPEN]
        status = next(s for s in order if s in {p.status for p in working})
    messages = [p.status_message for p in parts if p.status_message]
    first = parts[0]
    created = [p.created_at for p in parts if p.created_at is not None]
    return Order(
        client_id=first.client_id,
        instrument_id=first.instrument_id,
        side=first.side,
        qty=qty,
        order_type=first.order_type,
        product=first.product,
        validity=first.validity,
        limit_price=first.limit_price,
        trigger_price=first.trigger_price,
        tag=first.tag,
        status=status,
        broker_order_id=broker_order_id or first.broker_order_id,
        filled_qty=filled,
        average_price=value / filled if filled else 0.0,
        status_message="; ".join(dict.fromkeys(messages)),
        created_at=min(created) if created else None,
    )


def trade_from_kite(
    data: KiteDict, *, client_id: str, charges: float = 0.0, strategy: str = ""
) -> Fill:
    """Return the Velox :class:`Fill` of one Kite trade (``fill_id`` = Kite's ``trade_id``).

    ``client_id`` is the Velox order the trade belongs to (the trade itself has no tag);
    ``charges`` are computed by the caller with :mod:`velox.costs`, as the simulator does.
    """
    ts = kite_time(data.get("fill_timestamp")) or kite_time(data.get("exchange_timestamp"))
    if ts is None:
        raise _odd("trade without a fill time", data)
    try:
        return Fill(
            fill_id=str(_field(data, "trade_id", "trade")),
            client_id=client_id,
            instrument_id=kite_instrument(data),
            side=Side(str(_field(data, "transaction_type", "trade"))),
            qty=_whole(_field(data, "quantity", "trade")),
            price=_number(_field(data, "average_price", "trade")),
            ts=ts,
            product=_product(_field(data, "product", "trade")),
            broker_order_id=str(_field(data, "order_id", "trade")),
            charges=charges,
            strategy=strategy,
        )
    except (ValidationError, ValueError) as exc:
        raise BrokerError(f"Kite trade does not make a Velox fill: {exc}: {data!r}") from None


# ---- account ---------------------------------------------------------------------------------


def position_from_kite(data: KiteDict) -> Position:
    """Return the Velox :class:`Position` of one Kite ``net`` position.

    ``qty`` is Kite's signed net ``quantity``; ``realised_pnl`` its ``realised``; bought and
    sold quantities are the day's and overnight's totals as Kite reports them.
    """
    return Position(
        instrument_id=kite_instrument(data),
        product=_product(_field(data, "product", "position")),
        qty=_whole(_field(data, "quantity", "position")),
        average_price=_number(data.get("average_price")),
        realised_pnl=_number(data.get("realised")),
        bought_qty=_whole(data.get("buy_quantity")),
        sold_qty=_whole(data.get("sell_quantity")),
    )


def positions_from_kite(data: KiteDict) -> list[Position]:
    """Return the ``net`` positions of a GET /portfolio/positions payload."""
    net = _field(data, "net", "positions payload")
    if not isinstance(net, list):
        raise _odd("positions payload", data)
    return [position_from_kite(p) for p in net]


def holding_from_kite(data: KiteDict) -> Position:
    """Return one Kite holding as a CNC :class:`Position`.

    The quantity is the settled ``quantity`` plus ``t1_quantity`` (bought, awaiting delivery):
    both are owned, as an engine that bought them yesterday counts them.
    """
    return Position(
        instrument_id=kite_instrument(data),
        product=Product.CNC,
        qty=_whole(_field(data, "quantity", "holding")) + _whole(data.get("t1_quantity")),
        average_price=_number(data.get("average_price")),
    )


def funds_from_kite(data: KiteDict, segment: str = "equity") -> Funds:
    """Return :class:`~velox.brokers.base.Funds` of a GET /user/margins payload.

    Kite's ``net`` is what a new order may use; ``utilised.debits`` the margin in use. So that
    ``Funds.available`` equals Kite's ``net``, ``cash`` is ``net + debits``. ``realised_pnl``
    is ``utilised.m2m_realised``. Velox trades the equity segment (cash and F&O).
    """
    part = _field(data, segment, "margins payload")
    if not isinstance(part, Mapping):
        raise _odd("margins payload", data)
    utilised = _field(part, "utilised", f"{segment} margins")
    net = _number(_field(part, "net", f"{segment} margins"))
    debits = _number(utilised.get("debits"))
    return Funds(
        cash=net + debits, used_margin=debits, realised_pnl=_number(utilised.get("m2m_realised"))
    )


# ---- historical data -------------------------------------------------------------------------


def kite_interval(timeframe: str) -> tuple[str, int]:
    """Return ``(Kite interval, most days per request)`` for a Velox timeframe."""
    try:
        return HISTORY_LIMITS[timeframe]
    except KeyError:
        raise ValidationError(
            f"timeframe {timeframe!r} has no Kite interval; use one of {', '.join(HISTORY_LIMITS)}"
        ) from None


def history_windows(
    start: datetime, end: datetime, timeframe: str
) -> list[tuple[datetime, datetime]]:
    """Return the request windows covering ``[start, end]`` within Kite's per-request span.

    Consecutive windows do not overlap: each starts one second after the previous one ends
    (Kite's ``from``/``to`` are inclusive, to the second).

    Examples
    --------
    >>> from velox.calendar import IST
    >>> start, end = datetime(2024, 1, 1, tzinfo=IST), datetime(2024, 5, 1, tzinfo=IST)
    >>> w = history_windows(start, end, "1m")
    >>> len(w), w[0][1].isoformat()
    (3, '2024-02-29T23:59:59+05:30')
    """
    _, days = kite_interval(timeframe)
    if end < start:
        raise ValidationError(f"history end {end} is before start {start}")
    span = timedelta(days=days) - timedelta(seconds=1)
    windows = []
    at = start
    while at <= end:
        stop = min(at + span, end)
        windows.append((at, stop))
        at = stop + timedelta(seconds=1)
    return windows


def candles_frame(records: Iterable[KiteDict]) -> Any:
    """Return the SDK's historical records as Velox's bar DataFrame.

    The shape of :meth:`velox.store.Store.read_bars`: a tz-aware ``DatetimeIndex`` named
    ``ts`` (IST; bar start), float64 ``open high low close volume``, sorted, no duplicates.
    """
    import pandas as pd

    rows = list(records)
    stamps = [kite_time(_field(r, "date", "candle")) for r in rows]
    columns = ("open", "high", "low", "close", "volume")
    frame = pd.DataFrame(
        {c: [_number(_field(r, c, "candle")) for r in rows] for c in columns},
        index=pd.DatetimeIndex(stamps, name="ts"),
        dtype="float64",
    )
    if len(frame):
        frame.index = frame.index.tz_convert("Asia/Kolkata")
    else:
        frame.index = pd.DatetimeIndex([], name="ts", tz="Asia/Kolkata")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame


# ---- errors ----------------------------------------------------------------------------------


def is_retryable(exc: BaseException) -> bool:
    """Return True for a failure a *read* may retry: network trouble, HTTP 429 and 5xx."""
    import requests
    from kiteconnect import exceptions as kex

    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(exc, kex.NetworkException | kex.DataException):
        return True
    if isinstance(exc, kex.KiteException):
        code = getattr(exc, "code", 0) or 0
        return code == 429 or code >= 500 and not isinstance(exc, kex.OrderException)
    return False


def translate_error(exc: BaseException, *, what: str, client_id: str | None = None) -> BrokerError:
    """Return the Velox error for an SDK/HTTP exception raised while doing ``what``.

    TokenException → :class:`~velox.errors.AuthExpired` naming ``velox broker login kite``;
    HTTP 429 → :class:`~velox.errors.RateLimited`; InputException/OrderException →
    :class:`~velox.errors.OrderRejected` with Kite's message; everything else →
    :class:`~velox.errors.BrokerError`. Velox errors pass through unchanged.
    """
    import requests
    from kiteconnect import exceptions as kex

    if isinstance(exc, BrokerError):
        return exc
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, kex.TokenException):
        return AuthExpired(
            f"Kite session expired or invalid while {what} ({message}); log in again with "
            f"`{LOGIN_COMMAND}`"
        )
    code = getattr(exc, "code", None)
    if code == 429:
        return RateLimited(f"Kite throttled {what} (HTTP 429: {message}); slow down and retry")
    if isinstance(exc, kex.InputException | kex.OrderException):
        return OrderRejected(message, client_id=client_id)
    if isinstance(exc, requests.exceptions.Timeout):
        return BrokerError(f"Kite did not answer {what} in time ({message})")
    if isinstance(exc, requests.exceptions.RequestException):
        return BrokerError(f"cannot reach Kite while {what}: {message}")
    if isinstance(exc, kex.KiteException):
        return BrokerError(f"Kite failed {what}: {type(exc).__name__} (HTTP {code}): {message}")
    return BrokerError(f"Kite failed {what}: {type(exc).__name__}: {message}")
