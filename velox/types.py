"""Core value types shared by every part of Velox.

All are frozen, slotted dataclasses: cheap, hashable where it makes sense, safe to hand between
threads, and picklable for engine restarts. A state change (an order being filled, a position
growing) produces a *new* value via :func:`dataclasses.replace` or the helpers here.

Conventions
-----------
* Timestamps are tz-aware; Velox shows them in Asia/Kolkata (IST). Naive datetimes are rejected
  where they would be ambiguous (bars, ticks, fills).
* Instrument ids read ``EXCHANGE:SYMBOL`` (``NSE:RELIANCE``, ``NFO:NIFTY24APR22500CE``), one
  grammar checked by :func:`check_instrument_id` wherever an id enters Velox.
* A :class:`Bar` is labelled by its **start** time (09:15 is the first 1-minute bar of a session).
* Prices are rupees as floats; they are compared with the tick grid in integer paise-of-tick
  units, never with ``==`` on floats.
* Quantities are in units (shares / contracts' underlying units), so an F&O quantity is a multiple
  of the lot size, exactly as brokers' APIs take it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timezone
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar

from velox.errors import ValidationError

__all__ = [
    "Side",
    "OrderType",
    "Product",
    "Validity",
    "OrderStatus",
    "InstrumentKind",
    "Instrument",
    "Tick",
    "Bar",
    "Order",
    "Fill",
    "Position",
    "ID_EXCHANGES",
    "MAX_SYMBOL_LENGTH",
    "check_instrument_id",
    "is_aware",
    "is_on_tick",
    "snap_to_tick",
    "apply_fill",
    "replacer",
    "TERMINAL_STATUSES",
]


# ---- instrument ids ------------------------------------------------------------------------------

#: Exchange codes an instrument id may start with (Kite's exchange names). Velox's master holds
#: NSE, BSE (cash) and NFO, BFO (F&O); the currency and commodity codes are valid ids that the
#: master and the cost model refuse by name.
ID_EXCHANGES = frozenset({"NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX", "NCO"})

#: Longest symbol accepted. Kite's longest trading symbols (weekly options of long underlyings,
#: ``MIDCPNIFTY24O0312345.5CE``) are about 25 characters; 40 leaves room and bounds what an id
#: can put into a log line, a message or a store row.
MAX_SYMBOL_LENGTH = 40

#: A symbol: upper-case letters, digits and ``& - .`` (``M&M``, ``BAJAJ-AUTO``, ``CDSL-BE``,
#: strikes like ``162.5``), starting with a letter or digit; single spaces may separate words,
#: as in Kite's index names (``NIFTY 50``, ``NIFTY BANK``).
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9&.\-]*(?: [A-Z0-9&.\-]+)*")

#: How much of a refused id a message quotes (it may be kilobytes of garbage).
_SHOWN = 48


def _shown(text: str) -> str:
    """Return ``repr`` of ``text``, truncated: control characters escaped, never a long line."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}… ({len(text):,} characters)"


def check_instrument_id(instrument_id: object) -> str:
    """Return ``instrument_id`` if it follows Velox's id grammar, else raise ValidationError.

    The grammar is ``EXCHANGE:SYMBOL``: one ``:``, an exchange from :data:`ID_EXCHANGES`, a
    symbol of at most :data:`MAX_SYMBOL_LENGTH` characters from the exchanges' symbol set
    (upper-case letters, digits, ``&``, ``-``, ``.``; single inner spaces). Every entry point
    calls it (CLI options, imports, store writes, strategy subscriptions, commands, risk
    lists), so a trailing blank, a tab or newline (which would forge log lines) or kilobytes of
    garbage are refused with the id shown by ``repr`` (truncated), before anything is stored.
    It does not say whether the instrument exists: that is the master's
    :class:`~velox.errors.UnknownInstrument`.

    Raises
    ------
    ValidationError
        Naming the id and the rule it breaks.

    Examples
    --------
    >>> check_instrument_id("NFO:NIFTY24APR22500CE")
    'NFO:NIFTY24APR22500CE'
    >>> check_instrument_id("NSE:RELIANCE ")
    Traceback (most recent call last):
    ...
    velox.errors.ValidationError: instrument id 'NSE:RELIANCE ' has leading or trailing blanks
    """
    if not isinstance(instrument_id, str):
        raise ValidationError(
            f"instrument id {instrument_id!r} must be a string like 'NSE:RELIANCE', not "
            f"{type(instrument_id).__name__}"
        )
    text = instrument_id
    shown = _shown(text)
    exchange, colon, symbol = text.partition(":")
    if len(text) > len("NSE:") + MAX_SYMBOL_LENGTH:
        problem = f"is too long (at most {MAX_SYMBOL_LENGTH} characters after 'EXCHANGE:')"
    elif not text.isprintable():
        problem = "has control characters (tab, newline …)"
    elif text != text.strip():
        problem = "has leading or trailing blanks"
    elif not colon or not exchange or not symbol:
        problem = "must read 'EXCHANGE:SYMBOL', e.g. 'NSE:RELIANCE' or 'NFO:NIFTY24APR22500CE'"
    elif ":" in symbol:
        problem = "has more than one ':'; ids read 'EXCHANGE:SYMBOL'"
    elif exchange not in ID_EXCHANGES:
        known = ", ".join(sorted(ID_EXCHANGES))
        if exchange.upper() in ID_EXCHANGES:
            hint = f"ids are upper case: {_shown(text.upper())}; "
        else:
            close = difflib.get_close_matches(exchange.upper(), sorted(ID_EXCHANGES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
        problem = f"has unknown exchange {_shown(exchange)}; {hint}known: {known}"
    elif len(symbol) > MAX_SYMBOL_LENGTH:
        problem = f"has a symbol longer than {MAX_SYMBOL_LENGTH} characters"
    elif _SYMBOL.fullmatch(symbol) is None:
        upper = symbol.upper()
        hint = (
            f"; ids are upper case: '{exchange}:{upper}'"
            if upper != symbol and _SYMBOL.fullmatch(upper)
            else ""
        )
        problem = (
            "has a symbol outside the exchange's character set (A-Z, 0-9, '&', '-', '.', "
            f"single inner spaces){hint}"
        )
    else:
        return text
    raise ValidationError(f"instrument id {shown} {problem}")


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL: the sign a fill adds to a position."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"  # stop-limit: trigger price + limit price
    SL_M = "SL-M"  # stop-market: trigger price only


class Product(StrEnum):
    CNC = "CNC"  # equity delivery
    MIS = "MIS"  # intraday, squared off by the broker before the close
    NRML = "NRML"  # F&O carry-forward


class Validity(StrEnum):
    DAY = "DAY"
    IOC = "IOC"


class OrderStatus(StrEnum):
    """Order lifecycle: NEW → RISK_CHECKED → SUBMITTED → OPEN → PARTIAL → FILLED/CANCELLED/REJECTED.

    ``TRIGGER_PENDING`` is OPEN for a stop order whose trigger has not been hit yet (brokers report
    it separately, so do we).
    """

    NEW = "NEW"
    RISK_CHECKED = "RISK_CHECKED"
    SUBMITTED = "SUBMITTED"
    OPEN = "OPEN"
    TRIGGER_PENDING = "TRIGGER_PENDING"
    PARTIAL = "PARTIAL"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})


class InstrumentKind(StrEnum):
    EQ = "EQ"
    FUT = "FUT"
    CE = "CE"
    PE = "PE"
    INDEX = "INDEX"

    @property
    def is_derivative(self) -> bool:
        return self in (InstrumentKind.FUT, InstrumentKind.CE, InstrumentKind.PE)


def is_aware(ts: datetime) -> bool:
    """Return True if the datetime ``ts`` is tz-aware (has a UTC offset).

    A fixed-offset :class:`datetime.timezone` (Velox's IST) always has one, so only other
    tzinfo objects are asked for it: the engine checks every order's and fill's time.

    Examples
    --------
    >>> from velox.calendar import IST
    >>> is_aware(datetime(2024, 4, 1, 9, 15, tzinfo=IST)), is_aware(datetime(2024, 4, 1, 9, 15))
    (True, False)
    """
    tz = ts.tzinfo
    return tz is not None and (tz.__class__ is timezone or ts.utcoffset() is not None)


def _require_aware(name: str, ts: datetime) -> None:
    if not isinstance(ts, datetime):
        raise ValidationError(f"{name} must be a datetime, got {type(ts).__name__} {ts!r}")
    if not is_aware(ts):
        raise ValidationError(
            f"{name}={ts!r} is naive; pass a tz-aware timestamp (Velox uses Asia/Kolkata)"
        )


def _ticks(price: float, tick_size: float) -> float:
    return price / tick_size


def is_on_tick(price: float, tick_size: float) -> bool:
    """Return True if ``price`` is a whole multiple of ``tick_size`` (within float noise).

    Examples
    --------
    >>> is_on_tick(2500.05, 0.05), is_on_tick(2500.07, 0.05)
    (True, False)
    """
    if tick_size <= 0:
        return True
    n = _ticks(price, tick_size)
    return abs(n - round(n)) < 1e-6


def snap_to_tick(price: float, tick_size: float, mode: str = "nearest") -> float:
    """Return ``price`` moved onto the tick grid.

    ``mode`` is ``"nearest"``, ``"down"`` (a buy limit that must not pay more) or ``"up"`` (a
    sell limit that must not receive less). The result is rounded to the tick's decimals so that
    ``snap_to_tick(100.1 + 0.2, 0.05)`` prints ``100.3``, not ``100.30000000000001``.

    Examples
    --------
    >>> snap_to_tick(101.23, 0.05), snap_to_tick(101.23, 0.05, "up")
    (101.25, 101.25)
    >>> snap_to_tick(101.23, 0.05, "down")
    101.2
    """
    if tick_size <= 0:
        return price
    n = price / tick_size
    nearest = round(n)
    if abs(n - nearest) < 1e-6 or mode == "nearest":
        k = nearest
    elif mode == "down":
        k = math.floor(n)
    elif mode == "up":
        k = math.ceil(n)
    else:
        raise ValidationError(f"snap mode must be 'nearest', 'down' or 'up', got {mode!r}")
    return round(k * tick_size, _decimals(tick_size))


@cache  # a handful of tick sizes; every simulated market fill snaps its price
def _decimals(tick_size: float) -> int:
    """Return the decimals a price on the ``tick_size`` grid is rounded to (two spare)."""
    return max(0, -math.floor(math.log10(tick_size)) + 2)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable (or index) instrument as Velox sees it, whatever the broker.

    ``id`` is ``EXCHANGE:SYMBOL``; ``symbol`` is the exchange trading symbol. ``tick_size`` and
    ``lot_size`` come from the instrument master (never hard-coded: NSE revises them).
    ``freeze_qty`` is the largest single-order quantity the exchange accepts (F&O), if known.
    """

    id: str
    exchange: str
    symbol: str
    kind: InstrumentKind
    tick_size: float = 0.05
    lot_size: int = 1
    name: str = ""
    underlying: str = ""
    expiry: date | None = None
    strike: float | None = None
    freeze_qty: int | None = None
    segment: str = ""

    def __post_init__(self) -> None:
        check_instrument_id(self.id)
        if self.id.split(":", 1)[0] != self.exchange:
            raise ValidationError(
                f"Instrument.id={self.id!r} must read 'EXCHANGE:SYMBOL' with exchange "
                f"{self.exchange!r}"
            )
        if self.tick_size < 0 or not math.isfinite(self.tick_size):
            raise ValidationError(f"Instrument.tick_size={self.tick_size!r} must be >= 0")
        if self.lot_size < 1:
            raise ValidationError(f"Instrument.lot_size={self.lot_size!r} must be >= 1")
        if self.kind in (InstrumentKind.CE, InstrumentKind.PE) and (
            self.strike is None or self.expiry is None
        ):
            raise ValidationError(f"option {self.id} needs strike and expiry")
        if self.freeze_qty is not None and self.freeze_qty < 1:
            raise ValidationError(f"Instrument.freeze_qty={self.freeze_qty!r} must be >= 1")

    def snap_price(self, price: float, mode: str = "nearest") -> float:
        """Return ``price`` on this instrument's tick grid (see :func:`snap_to_tick`)."""
        return snap_to_tick(price, self.tick_size, mode)

    def snap_qty(self, qty: int) -> int:
        """Return ``qty`` rounded down to a whole number of lots."""
        return (int(qty) // self.lot_size) * self.lot_size


@dataclass(frozen=True, slots=True)
class Tick:
    """One market data update for an instrument.

    ``volume`` is the broker's *cumulative* traded volume for the day (as Kite and SmartAPI send
    it); the candle aggregator turns it into per-candle volume. Ticks are market input, so a tick
    is *not* validated on construction: a malformed one (NaN or non-positive price) must reach the
    feed, which rejects and counts it instead of crashing (see ``velox.feeds``).
    """

    instrument_id: str
    ts: datetime
    ltp: float
    volume: int | None = None
    last_qty: int | None = None
    bid: float | None = None
    ask: float | None = None
    oi: int | None = None


@dataclass(frozen=True, slots=True)
class Bar:
    """An OHLCV candle labelled by its start time ``ts``.

    ``closed`` is False for the still-forming candle a live feed hands out on every tick.
    """

    instrument_id: str
    timeframe: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    closed: bool = True

    def __post_init__(self) -> None:
        _require_aware("Bar.ts", self.ts)
        o, h, l, c = self.open, self.high, self.low, self.close  # noqa: E741
        if not all(math.isfinite(x) and x > 0 for x in (o, h, l, c)):
            raise ValidationError(
                f"Bar {self.instrument_id} {self.ts}: prices must be finite and > 0, "
                f"got open={o} high={h} low={l} close={c}"
            )
        if not (l <= min(o, c) and max(o, c) <= h):
            raise ValidationError(
                f"Bar {self.instrument_id} {self.ts}: needs low <= open,close <= high, "
                f"got open={o} high={h} low={l} close={c}"
            )
        if self.volume < 0:
            raise ValidationError(f"Bar {self.instrument_id} {self.ts}: volume={self.volume} < 0")


@dataclass(frozen=True, slots=True)
class Order:
    """An order as Velox tracks it through its life.

    ``client_id`` is Velox's own idempotency key: it travels to the broker in the order tag so a
    restarted engine recognises orders it already sent. ``filled_qty``/``average_price`` accumulate
    fills; ``status`` follows :class:`OrderStatus`.

    Intrinsic rules are checked here (positive quantity, the prices each order type needs). Rules
    that need the instrument (tick grid, lot multiple, freeze quantity) are checked by
    :meth:`check_against` or by building with :meth:`for_instrument`.
    """

    client_id: str
    instrument_id: str
    side: Side
    qty: int
    order_type: OrderType = OrderType.MARKET
    product: Product = Product.CNC
    validity: Validity = Validity.DAY
    limit_price: float | None = None
    trigger_price: float | None = None
    tag: str = ""
    strategy: str = ""
    status: OrderStatus = OrderStatus.NEW
    broker_order_id: str | None = None
    filled_qty: int = 0
    average_price: float = 0.0
    status_message: str = ""
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        # The common case (members given as enums, a market order, no creation time) is
        # checked without loops: every strategy order is built and validated here.
        if not (
            type(self.side) is Side
            and type(self.order_type) is OrderType
            and type(self.product) is Product
            and type(self.validity) is Validity
            and type(self.status) is OrderStatus
        ):
            self._coerce_enums()
        qty = self.qty
        if qty.__class__ is not int and (isinstance(qty, bool) or not isinstance(qty, int)):
            raise ValidationError(f"Order.qty={qty!r} must be an int")
        if qty <= 0:
            raise ValidationError(f"Order.qty={qty} must be > 0")
        if not 0 <= self.filled_qty <= qty:
            raise ValidationError(f"Order.filled_qty={self.filled_qty} outside 0..qty={qty}")
        kind = self.order_type
        if kind is not OrderType.MARKET or self.limit_price is not None:
            self._check_prices()
        elif self.trigger_price is not None:
            raise ValidationError(f"MARKET order must not carry trigger_price={self.trigger_price}")
        if self.created_at is not None:
            _require_aware("Order.created_at", self.created_at)

    def _coerce_enums(self) -> None:
        for name, enum in (
            ("side", Side),
            ("order_type", OrderType),
            ("product", Product),
            ("validity", Validity),
            ("status", OrderStatus),
        ):
            value = getattr(self, name)
            if not isinstance(value, enum):
                try:
                    object.__setattr__(self, name, enum(value))
                except ValueError:
                    allowed = ", ".join(m.value for m in enum)
                    raise ValidationError(
                        f"Order.{name}={value!r} is not one of {allowed}"
                    ) from None

    def _check_prices(self) -> None:
        needs_limit = self.order_type in (OrderType.LIMIT, OrderType.SL)
        needs_trigger = self.order_type in (OrderType.SL, OrderType.SL_M)
        for name, needed, value in (
            ("limit_price", needs_limit, self.limit_price),
            ("trigger_price", needs_trigger, self.trigger_price),
        ):
            if needed and value is None:
                raise ValidationError(f"{self.order_type.value} order needs {name}")
            if not needed and value is not None:
                raise ValidationError(
                    f"{self.order_type.value} order must not carry {name}={value}"
                )
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValidationError(f"Order.{name}={value!r} must be a finite price > 0")

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def remaining_qty(self) -> int:
        return self.qty - self.filled_qty

    def check_against(self, instrument: Instrument) -> None:
        """Raise :class:`ValidationError` if the order breaks the instrument's grid or lot rules."""
        if instrument.id != self.instrument_id:
            raise ValidationError(f"order is for {self.instrument_id}, not {instrument.id}")
        if self.qty % instrument.lot_size:
            raise ValidationError(
                f"Order.qty={self.qty} is not a multiple of lot size {instrument.lot_size} "
                f"for {instrument.id}"
            )
        if self.limit_price is None and self.trigger_price is None:
            return
        for name in ("limit_price", "trigger_price"):
            value = getattr(self, name)
            if value is not None and not is_on_tick(value, instrument.tick_size):
                raise ValidationError(
                    f"Order.{name}={value} is off the tick grid {instrument.tick_size} for "
                    f"{instrument.id}; nearest valid price {instrument.snap_price(value)}"
                )

    @classmethod
    def for_instrument(cls, instrument: Instrument, **fields: object) -> Order:
        """Build an order for ``instrument`` and check it against the instrument's rules."""
        order = cls(instrument_id=instrument.id, **fields)  # type: ignore[arg-type]
        order.check_against(instrument)
        return order

    def with_status(self, status: OrderStatus, message: str = "", **changes: object) -> Order:
        """Return a copy in ``status`` (plus any other field changes)."""
        return replace(self, status=status, status_message=message, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution (trade) of an order. ``charges`` is the total statutory + brokerage cost."""

    fill_id: str
    client_id: str
    instrument_id: str
    side: Side
    qty: int
    price: float
    ts: datetime
    product: Product = Product.CNC
    broker_order_id: str | None = None
    charges: float = 0.0
    strategy: str = ""

    def __post_init__(self) -> None:
        _require_aware("Fill.ts", self.ts)
        if not isinstance(self.side, Side):
            object.__setattr__(self, "side", Side(self.side))
        if not isinstance(self.product, Product):
            object.__setattr__(self, "product", Product(self.product))
        if self.qty <= 0:
            raise ValidationError(f"Fill.qty={self.qty} must be > 0")
        if not (math.isfinite(self.price) and self.price > 0):
            raise ValidationError(f"Fill.price={self.price!r} must be a finite price > 0")

    @property
    def value(self) -> float:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class Position:
    """Net position in one instrument and product, built from fills.

    ``qty`` is signed (+long / -short); ``average_price`` is the average entry price of the open
    quantity; ``realised_pnl`` is gross of charges (charges accumulate in ``charges``).
    """

    instrument_id: str
    product: Product = Product.CNC
    qty: int = 0
    average_price: float = 0.0
    realised_pnl: float = 0.0
    charges: float = 0.0
    strategy: str = ""
    bought_qty: int = field(default=0)
    sold_qty: int = field(default=0)

    def unrealised_pnl(self, last_price: float) -> float:
        """Return the mark-to-market P&L of the open quantity at ``last_price``."""
        return self.qty * (last_price - self.average_price)

    def market_value(self, last_price: float) -> float:
        return self.qty * last_price


def apply_fill(position: Position, fill: Fill) -> Position:
    """Return ``position`` after ``fill``: average price on adds, realised P&L on reductions.

    The single definition of position accounting, used by the simulated broker and the OMS so the
    two can never disagree. Crossing through zero realises the closed part and opens the rest at
    the fill price.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> p = Position("NSE:SBIN")
    >>> p = apply_fill(p, Fill("f1", "c1", "NSE:SBIN", Side.BUY, 10, 100.0, t))
    >>> p = apply_fill(p, Fill("f2", "c2", "NSE:SBIN", Side.SELL, 4, 110.0, t))
    >>> p.qty, p.average_price, p.realised_pnl
    (6, 100.0, 40.0)
    """
    buy = fill.side is Side.BUY
    signed = fill.qty if buy else -fill.qty
    qty, avg, realised = position.qty, position.average_price, position.realised_pnl
    if qty == 0 or (qty > 0) == (signed > 0):
        new_qty = qty + signed
        avg = (avg * abs(qty) + fill.price * fill.qty) / abs(new_qty)
    else:
        closed = min(abs(qty), fill.qty)
        realised += closed * (fill.price - avg) * (1 if qty > 0 else -1)
        new_qty = qty + signed
        if new_qty == 0:
            avg = 0.0
        elif (new_qty > 0) != (qty > 0):
            avg = fill.price
    # Position has no validation to skip, but the generated writer sets its slots directly,
    # cheaper than the dataclass __init__ (this runs three times per fill of a replay).
    make = _position_after if type(position) is Position else _replacer_of(type(position))
    return make(
        position,
        new_qty,
        avg,
        realised,
        position.charges + fill.charges,
        position.bought_qty + (fill.qty if buy else 0),
        position.sold_qty + (0 if buy else fill.qty),
    )


_T = TypeVar("_T")


def replacer(cls: type[_T], *names: str) -> Callable[..., _T]:
    """Return ``copy(source, *values)``: a copy of ``source`` with the fields ``names`` set.

    For frozen, slotted dataclasses such as :class:`Order`, :class:`Fill` and
    :class:`Position`. Unlike :func:`dataclasses.replace` the copy is **not validated**
    (``__post_init__`` does not run): only for values the caller built and checked itself
    (the OMS's and the simulator's own records, the engine's bars); anything from a user goes
    through the constructor. When ``names`` lists every field, ``source`` is not read and may
    be None.

    Why it is fast: the copy is built as an instance of a mutable twin class with the same
    slots, whose ``__init__`` stores them as plain attributes (what the interpreter does
    fastest), and is then given its real class: ``__class__`` assignment is allowed between
    classes of identical layout, and from then on the object is an ordinary frozen instance.
    That is several times cheaper than a validated copy, and half the cost of writing each
    slot through its descriptor, which remains the way for subclasses of other dataclasses.

    Examples
    --------
    >>> with_qty = replacer(Position, "qty")
    >>> moved = with_qty(Position("NSE:SBIN", qty=5), 7)
    >>> type(moved).__name__, moved.qty
    ('Position', 7)
    """
    every = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    values = ", ".join(name if name in names else f"source.{name}" for name in every)
    namespace: dict[str, Any] = {"cls": cls}
    if cls.__bases__ == (object,) and tuple(getattr(cls, "__slots__", ())) == tuple(every):
        namespace["Twin"] = _twin(cls, tuple(every))
        body = f"    obj = Twin({values})\n    obj.__class__ = cls\n"
    else:
        namespace.update({f"set_{name}": getattr(cls, name).__set__ for name in every})
        namespace["new"] = object.__new__
        body = "    obj = new(cls)\n" + "".join(
            f"    set_{name}(obj, {name if name in names else 'source.' + name})\n"
            for name in every
        )
    code = f"def copy(source, {', '.join(names)}):\n{body}    return obj\n"
    exec(code, namespace)  # noqa: S102 - fixed code built from the dataclass's field names
    return namespace["copy"]  # type: ignore[no-any-return]


@cache
def _twin(cls: type, every: Sequence[str]) -> type:
    """Return a mutable class with ``cls``'s slots, whose ``__init__`` takes every field."""
    code = f"def __init__(self, {', '.join(every)}):\n" + "".join(
        f"    self.{name} = {name}\n" for name in every
    )
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - fixed code built from the dataclass's field names
    return type(f"_{cls.__name__}Twin", (), {"__slots__": tuple(every), **namespace})


_POSITION_CHANGES = ("qty", "average_price", "realised_pnl", "charges", "bought_qty", "sold_qty")
_position_after = replacer(Position, *_POSITION_CHANGES)


@cache
def _replacer_of(cls: type[Position]) -> Callable[..., Position]:
    """Return the writer of :func:`apply_fill` for a subclass of :class:`Position`."""
    return replacer(cls, *_POSITION_CHANGES)
