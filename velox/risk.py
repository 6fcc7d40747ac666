"""Pre-trade risk checks, post-trade loss guards and the kill switch.

Every order a strategy sends passes :meth:`RiskEngine.check_order` before it reaches a broker, in
replay, paper and live alike. The checks are plain functions ``(order, limits, view, state) ->
None`` that raise :class:`~velox.errors.RiskBreach` naming the limit, collected in
:data:`PRE_TRADE_CHECKS`. Post-trade, :meth:`RiskEngine.on_equity` watches the day's P&L and trips
the kill switch on the daily loss limit or the intraday drawdown; the engine then cancels every
open order, squares off every position at market and halts. While the switch is engaged every
order is refused (limit ``"kill_switch"``) except the engine's own square-off orders, until an
admin calls :meth:`RiskEngine.reset_kill`. A restart keeps it engaged (:meth:`RiskEngine.to_state`).

Conventions
-----------
* Limits are checked *inclusively*: an order exactly at a limit passes, one unit over is refused.
  The loss guards trip *at* their limit (P&L <= -daily_loss_limit, drawdown >= max_drawdown).
* Exposure is the worst case: a position limit counts the position plus every open order on the
  same side (as if they all fill) plus the new order. An order that only *reduces* a position
  (opposite side, and together with open orders on its side no larger than the position) is never
  blocked by ``max_position_qty`` or ``max_gross_exposure``: exits must always get out.
* A check that cannot verify its limit refuses (fail closed): with no last traded price the price
  band refuses every order and a market order cannot be valued for notional/exposure limits.
* Times are tz-aware; trading hours are compared in IST, start inclusive, end exclusive.
* The throttle counts orders per exchange (``NSE``, ``NFO``, ``BSE`` … from the instrument id)
  in a sliding one-second window; the default 8/s stays below SEBI's 10 orders/s per exchange,
  above which a retail algo needs a registered algo ID.

See ``docs/risk.md`` for each check with worked examples.
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import tomllib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from velox.calendar import IST, trading_hours_ns
from velox.errors import ConfigError, RiskBreach, ValidationError
from velox.types import Instrument, Order, Side, check_instrument_id, is_aware

__all__ = [
    "SEBI_ALGO_RATE",
    "RiskLimits",
    "default_risk_limits",
    "AccountView",
    "RiskState",
    "RiskEvent",
    "RiskEngine",
    "LossGuard",
    "PRE_TRADE_CHECKS",
    "check_allowed_instruments",
    "check_trading_hours",
    "check_order_qty",
    "check_price_band",
    "check_order_notional",
    "check_position_qty",
    "check_gross_exposure",
    "check_open_orders",
    "check_duplicate",
    "check_throttle",
]

logger = logging.getLogger(__name__)

#: SEBI's retail-algo line: an order stream at or above this many orders per second per
#: exchange needs an exchange-registered algo ID (``RiskLimits.algo_id``).
SEBI_ALGO_RATE = 10.0

#: Spelling that disables an optional limit in a TOML file (TOML has no null).
OFF = "off"

_STATE_VERSION = 1


def _exceeds(value: float, limit: float) -> bool:
    """Return True if ``value`` is over ``limit`` beyond float noise (limits are inclusive)."""
    return value > limit + 1e-9 * max(1.0, abs(limit))


def _rupees(value: float) -> str:
    return f"₹{value:,.2f}"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The account's risk limits; every limit is optional (``None`` = off) except the throttle.

    Build from a ``velox.toml`` ``[risk]`` table with :meth:`from_toml` or from a dict with
    :meth:`from_mapping`; both refuse unknown keys, because a misspelt limit silently falling
    back to "off" is exactly the failure a risk layer exists to prevent.

    Attributes
    ----------
    max_order_qty
        Largest quantity of one order (units, not lots).
    max_order_notional
        Largest ``qty × price`` of one order in rupees; the price is the limit price, else the
        trigger price (an SL-M fires at market near it), else the last traded price.
    max_position_qty
        Largest absolute net position per instrument after the order, counting open orders on
        the same side as filled.
    max_gross_exposure
        Largest ``Σ |qty| × LTP`` over all instruments after the order (open orders as filled).
    max_open_orders
        Largest number of working (non-terminal) orders, the new one included.
    max_orders_per_second
        Orders sent per exchange in any one-second window; ``floor`` of the value for rates of
        1/s and above, one order per ``1/rate`` seconds below. Default 8: under SEBI's 10/s.
        A rate of :data:`SEBI_ALGO_RATE` (10/s) or more is refused unless ``algo_id`` is set.
    algo_id
        The exchange-registered algo ID under which this stream may send
        :data:`SEBI_ALGO_RATE` orders per second or more (SEBI's retail-algo framework); only
        its presence is checked, Velox does not tag orders with it.
    allowed_instruments
        If set, the only instrument ids that may be traded.
    trading_start, trading_end
        IST wall-clock window for new orders on regular sessions, start inclusive, end
        exclusive. On a special session (Muhurat evening, an outage-extended day; from
        :mod:`velox.calendar`) the window is that session's own trading hours instead.
    price_band_pct
        Fat-finger guard: a limit or trigger price more than this percent away from the last
        traded price is refused.
    duplicate_window_seconds
        An order identical to one sent less than this many seconds ago (instrument, side, qty,
        type, prices) is refused as a probable double-send; 0 turns the guard off.
    daily_loss_limit
        Rupees (positive); the kill switch trips when the day's realised + unrealised − charges
        is at or below ``-daily_loss_limit``.
    max_drawdown
        Rupees (positive); the kill switch trips when the day's P&L falls this far below its
        intraday peak (the peak starts at 0, the day's opening equity).

    Examples
    --------
    >>> limits = RiskLimits.from_mapping({"max_order_qty": 500, "price_band_pct": "off"})
    >>> limits.max_order_qty, limits.price_band_pct, limits.max_orders_per_second
    (500, None, 8.0)
    """

    max_order_qty: int | None = None
    max_order_notional: float | None = None
    max_position_qty: int | None = None
    max_gross_exposure: float | None = None
    max_open_orders: int | None = None
    max_orders_per_second: float = 8.0
    algo_id: str | None = None
    allowed_instruments: frozenset[str] | None = None
    trading_start: time = time(9, 15)
    trading_end: time = time(15, 30)
    price_band_pct: float | None = 5.0
    duplicate_window_seconds: float = 2.0
    daily_loss_limit: float | None = None
    max_drawdown: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_order_qty", "max_position_qty", "max_open_orders"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"risk limit {name}={value!r} must be a whole number >= 1")
        for name, optional in (
            ("max_order_notional", True),
            ("max_gross_exposure", True),
            ("max_orders_per_second", False),
            ("price_band_pct", True),
            ("daily_loss_limit", True),
            ("max_drawdown", True),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                extra = " (give a loss as a positive amount of rupees)" if "loss" in name else ""
                raise ConfigError(f"risk limit {name}={value!r} must be a number > 0{extra}")
            object.__setattr__(self, name, float(value))
        self._check_algo_rate()
        window = self.duplicate_window_seconds
        if isinstance(window, bool) or not isinstance(window, int | float) or not window >= 0:
            raise ConfigError(
                f"risk limit duplicate_window_seconds={window!r} must be a number >= 0 (0 = off)"
            )
        object.__setattr__(self, "duplicate_window_seconds", float(window))
        for name in ("trading_start", "trading_end"):
            object.__setattr__(self, name, _parse_time(name, getattr(self, name)))
        if not self.trading_start < self.trading_end:
            raise ConfigError(
                f"risk limits trading_start={self.trading_start} must be before "
                f"trading_end={self.trading_end}"
            )
        allowed = self.allowed_instruments
        if allowed is not None:
            if isinstance(allowed, str) or not isinstance(allowed, (Sequence, set, frozenset)):
                raise ConfigError(
                    f"risk limit allowed_instruments={allowed!r} must be a list of instrument "
                    "ids such as ['NSE:RELIANCE', 'NFO:NIFTY24APRFUT']"
                )
            ids = frozenset(allowed)
            for instrument_id in sorted(ids, key=str):
                try:
                    check_instrument_id(instrument_id)
                except ValidationError as exc:
                    raise ConfigError(f"risk limit allowed_instruments: {exc}") from None
            object.__setattr__(self, "allowed_instruments", ids)

    def _check_algo_rate(self) -> None:
        """Refuse a throttle at or above SEBI's algo line unless an algo ID is declared."""
        algo_id = self.algo_id
        if algo_id is not None and (not isinstance(algo_id, str) or not algo_id.strip()):
            raise ConfigError(f"risk limit algo_id={algo_id!r} must be the exchange's algo ID text")
        if self.max_orders_per_second >= SEBI_ALGO_RATE and algo_id is None:
            raise ConfigError(
                f"risk limit max_orders_per_second={self.max_orders_per_second:g} is at or above "
                f"SEBI's {SEBI_ALGO_RATE:g} orders/s per exchange, which needs an "
                'exchange-registered algo ID: set algo_id = "<your algo ID>" beside it, or '
                f"stay below {SEBI_ALGO_RATE:g} (default 8)"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], *, source: str = "risk limits") -> RiskLimits:
        """Return limits from a flat mapping (a TOML table or a JSON object).

        ``None`` or the string ``"off"`` disables an optional limit; times are ``"HH:MM"``,
        ``"HH:MM:SS"`` or :class:`datetime.time` (TOML's local-time literal).

        Raises
        ------
        ConfigError
            For an unknown key (with the closest valid name) or a malformed value; the message
            starts with ``source``.

        Examples
        --------
        >>> RiskLimits.from_mapping({"daily_los_limit": 5000})
        Traceback (most recent call last):
        ...
        velox.errors.ConfigError: risk limits: unknown risk limit 'daily_los_limit'; did you mean 'daily_loss_limit'?
        """  # noqa: E501
        names = [f.name for f in fields(cls)]
        optional = {f.name for f in fields(cls) if "None" in str(f.type)}
        values: dict[str, object] = {}
        for key, raw in data.items():
            if key not in names:
                hint = difflib.get_close_matches(str(key), names, n=1)
                raise ConfigError(
                    f"{source}: unknown risk limit {key!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(names)}")
                )
            if isinstance(raw, str) and raw.strip().lower() == OFF:
                raw = None
            if raw is None and key not in optional:
                hint = " (0 turns the guard off)" if key == "duplicate_window_seconds" else ""
                raise ConfigError(f"{source}: {key} cannot be turned off{hint}")
            values[key] = raw
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: Path | str, *, table: str = "risk") -> RiskLimits:
        """Return limits from the ``[table]`` of a TOML file (``[risk]`` in ``velox.toml``).

        Examples
        --------
        A ``velox.toml`` holding::

            [risk]
            max_order_notional = 200000
            max_orders_per_second = 5
            daily_loss_limit = 10000
            trading_end = "15:15"
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"risk limits file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        section = data.get(table)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: no [{table}] table with risk limits")
        return cls.from_mapping(section, source=f"{path} [{table}]")

    def to_mapping(self) -> dict[str, object]:
        """Return the limits as TOML/JSON-friendly values that :meth:`from_mapping` reads back."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                value = OFF
            elif isinstance(value, time):
                value = value.isoformat()
            elif isinstance(value, frozenset):
                value = sorted(value)
            out[f.name] = value
        return out


def default_risk_limits() -> RiskLimits:
    """Return the limits an engine uses when given none: ``velox.toml``'s ``[risk]`` table.

    Without that table these are the built-in defaults (``RiskLimits()``). ``--risk FILE`` and
    an explicit ``risk_limits=`` replace the table whole; they are not merged with it.
    """
    from velox.config import get_settings

    return get_settings().risk_limits


def _parse_time(name: str, value: object) -> time:
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ConfigError(f"risk limit {name}={value} must be a plain IST wall-clock time")
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"risk limit {name}={value!r} must be a time like '09:15' (IST)")


class AccountView(Protocol):
    """What the pre-trade checks may read about the account; the engine implements it.

    ``now`` is tz-aware (the engine's clock: event time in replay, wall clock live).
    ``positions`` maps instrument id to signed net quantity; ``open_orders`` are the working
    (non-terminal) orders, possibly including the order being checked (matched by client id
    and ignored).
    """

    now: datetime

    def position_qty(self, instrument_id: str) -> int: ...

    def positions(self) -> Mapping[str, int]: ...

    def open_orders(self) -> Sequence[Order]: ...

    def last_price(self, instrument_id: str) -> float | None: ...

    def instrument(self, instrument_id: str) -> Instrument: ...


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """One breach, kill or reset: the engine writes it to the audit trail (and, later, alerts).

    ``kind`` is ``"breach"`` (an order refused), ``"kill"`` (the switch engaged) or ``"reset"``
    (an admin re-enabled trading); ``limit`` names the limit (``"manual"`` for a manual kill,
    ``"kill_switch"`` for an order refused while killed, the released limit for a reset).
    """

    ts: datetime
    kind: str
    limit: str
    message: str
    account: str = ""

    def to_dict(self) -> dict[str, str]:
        """Return the event as JSON-ready strings (``ts`` in ISO 8601 with its offset)."""
        return {
            "ts": self.ts.isoformat(),
            "kind": self.kind,
            "limit": self.limit,
            "message": self.message,
            "account": self.account,
        }


@dataclass(slots=True)
class RiskState:
    """The mutable state behind the checks and the kill switch, owned by one :class:`RiskEngine`.

    ``sent`` holds recent send times per exchange (throttle); ``recent`` holds recent order
    signatures (duplicate guard). Both only span seconds and are not persisted. ``peak_equity``
    and ``last_equity`` are the day's P&L peak and latest value; the kill fields are persisted.
    """

    sent: dict[str, deque[datetime]] = field(default_factory=dict)
    recent: deque[tuple[datetime, tuple[object, ...]]] = field(default_factory=deque)
    day: date | None = None
    peak_equity: float = 0.0
    last_equity: float = 0.0
    killed: bool = False
    kill_reason: str | None = None
    kill_limit: str | None = None
    kill_ts: datetime | None = None


# The last datetime _now accepted: every check of one order reads the same view.now, and a
# zoneinfo utcoffset() lookup per check is most of their cost (datetimes are immutable).
_accepted_now: list[datetime | None] = [None]
# The last (time, IST wall-clock time) pair check_trading_hours computed, one tuple so a
# reader on another engine's thread always sees a matching pair.
_ist_clock: list[tuple[datetime | None, time, date]] = [(None, time(0), date(1970, 1, 1))]


def _now(view: AccountView) -> datetime:
    now = view.now
    if now is _accepted_now[0]:
        return now
    if not isinstance(now, datetime) or not is_aware(now):
        raise ValidationError(
            f"AccountView.now={now!r} must be a tz-aware datetime (Velox uses Asia/Kolkata)"
        )
    _accepted_now[0] = now
    return now


def _ist_time(now: datetime) -> tuple[time, date]:
    """Return the IST wall-clock time and date of ``now`` (cached for the last ``now`` seen)."""
    seen, clock, day = _ist_clock[0]
    if seen is not now:
        local = now.astimezone(IST)
        clock, day = local.time(), local.date()
        _ist_clock[0] = (now, clock, day)
    return clock, day


@functools.lru_cache(maxsize=32)
def _special_hours(day: date) -> tuple[tuple[time, time], ...] | None:
    """Return a special session's trading intervals (IST), None on a regular day or holiday.

    Special sessions (Diwali Muhurat trading in the evening, a session extended after an
    outage) come from the exchange calendar; the user's ``trading_start``/``trading_end``
    window is written for regular days and would refuse every order of a Muhurat evening.
    """
    intervals = trading_hours_ns(day)
    if not intervals:
        return None
    local = [
        tuple(datetime.fromtimestamp(ns / 1e9, IST).time() for ns in pair) for pair in intervals
    ]
    if local == [(time(9, 15), time(15, 30))]:
        return None
    return tuple((start, end) for start, end in local)


def _exchange(instrument_id: str) -> str:
    # Instrument ids are "EXCHANGE:SYMBOL" by construction (Instrument.__post_init__).
    return instrument_id.split(":", 1)[0]


def _signature(order: Order) -> tuple[object, ...]:
    return (
        order.instrument_id,
        order.side,
        order.qty,
        order.order_type,
        order.limit_price,
        order.trigger_price,
    )


@cache  # one value per account's limit; spares a timedelta per order
def _throttle_window(rate: float) -> tuple[int, timedelta]:
    """Return (orders allowed, window length) for a rate in orders per second."""
    if rate >= 1:
        return math.floor(rate), timedelta(seconds=1)
    return 1, timedelta(seconds=1 / rate)


@cache
def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _other_open_orders(order: Order, view: AccountView) -> list[Order]:
    return [o for o in view.open_orders() if o.client_id != order.client_id and not o.is_terminal]


def _same_side_open_qty(order: Order, view: AccountView) -> int:
    return sum(
        o.remaining_qty
        for o in _other_open_orders(order, view)
        if o.instrument_id == order.instrument_id and o.side is order.side
    )


def _is_reducing(order: Order, view: AccountView) -> bool:
    """Return True if the order, with open orders on its side, cannot cross the position's zero."""
    position = view.position_qty(order.instrument_id)
    if position == 0 or (position > 0) == (order.side is Side.BUY):
        return False
    return _same_side_open_qty(order, view) + order.qty <= abs(position)


def _reference_price(order: Order, view: AccountView) -> float | None:
    """Return the price the order is expected to trade at: limit, else trigger, else LTP."""
    if order.limit_price is not None:
        return order.limit_price
    if order.trigger_price is not None:
        return order.trigger_price
    return view.last_price(order.instrument_id)


# --- pre-trade checks: (order, limits, view, state) -> None, raising RiskBreach -------------

Check = Callable[[Order, RiskLimits, AccountView, RiskState], None]
#: Checks of one optional limit: check → (limit name, "is it off?", core). The core takes the
#: limit's value instead of the limits; :class:`RiskEngine` calls it only when the limit is on.
_ONE_LIMIT: dict[Check, tuple[str, Callable[[Any], bool], Callable[..., None]]] = {}


def _is_none(value: object) -> bool:
    return value is None


def _one_limit(
    name: str, *, off: Callable[[Any], bool] = _is_none
) -> Callable[[Callable[..., None]], Check]:
    """Return a decorator turning ``core(order, value, view, state)`` into a pre-trade check.

    The check reads the limit ``name`` and does nothing while it is off (``None`` unless
    ``off`` says otherwise), so each check states its limit once instead of opening with the
    same guard; the risk engine skips off limits without calling anything.
    """

    def decorate(core: Callable[..., None]) -> Check:
        def check(order: Order, limits: RiskLimits, view: AccountView, state: RiskState) -> None:
            value = getattr(limits, name)
            if not off(value):
                core(order, value, view, state)

        # the core's name and docstring; the signature (and annotations) stay the check's own
        functools.update_wrapper(
            check, core, assigned=("__module__", "__name__", "__qualname__", "__doc__")
        )
        del check.__wrapped__  # type: ignore[attr-defined]
        _ONE_LIMIT[check] = (name, off, core)
        return check

    return decorate


@_one_limit("allowed_instruments")
def check_allowed_instruments(
    order: Order, allowed: frozenset[str], view: AccountView, state: RiskState
) -> None:
    """Refuse an instrument outside ``allowed_instruments`` (when that list is set)."""
    if order.instrument_id not in allowed:
        raise RiskBreach(
            "allowed_instruments",
            f"{order.instrument_id} is not in allowed_instruments ({len(allowed)} ids: "
            f"{', '.join(sorted(allowed)[:5])}{' …' if len(allowed) > 5 else ''}); "
            "add it to the list to trade it",
        )


def check_trading_hours(
    order: Order, limits: RiskLimits, view: AccountView, state: RiskState
) -> None:
    """Refuse an order outside ``[trading_start, trading_end)`` IST; special sessions: theirs."""
    clock, day = _ist_time(_now(view))
    special = _special_hours(day)
    if special is not None:
        if not any(start <= clock < end for start, end in special):
            hours = ", ".join(f"{a.isoformat()}–{b.isoformat()}" for a, b in special)
            raise RiskBreach(
                "trading_hours",
                f"order for {order.instrument_id} at {clock.isoformat()} IST is outside the "
                f"special session of {day} ({hours} IST, from the exchange calendar)",
            )
        return
    if not limits.trading_start <= clock < limits.trading_end:
        raise RiskBreach(
            "trading_hours",
            f"order for {order.instrument_id} at {clock.isoformat()} IST is outside trading "
            f"hours {limits.trading_start.isoformat()}–{limits.trading_end.isoformat()} IST "
            "(trading_start/trading_end)",
        )


@_one_limit("max_order_qty")
def check_order_qty(order: Order, limit: int, view: AccountView, state: RiskState) -> None:
    """Refuse an order whose quantity exceeds ``max_order_qty``."""
    if order.qty > limit:
        raise RiskBreach(
            "max_order_qty",
            f"order qty {order.qty} for {order.instrument_id} exceeds max_order_qty="
            f"{limit}; split the order or raise the limit",
        )


@_one_limit("price_band_pct")
def check_price_band(order: Order, pct: float, view: AccountView, state: RiskState) -> None:
    """Refuse a limit/trigger price more than ``price_band_pct`` from the last traded price.

    Without a last price nothing can be verified, so every order is refused: a market order
    would trade blind, a priced one could be a fat finger.
    """
    ltp = view.last_price(order.instrument_id)
    if ltp is None or not 0 < ltp < math.inf:  # NaN fails the comparison too
        raise RiskBreach(
            "price_band_pct",
            f"no last traded price for {order.instrument_id}, so the {pct:g}% price band "
            f"cannot be checked for this {order.order_type.value} order; wait for the first "
            "tick or set price_band_pct = 'off'",
        )
    if order.limit_price is None and order.trigger_price is None:
        return
    band = ltp * pct / 100
    for name in ("limit_price", "trigger_price"):
        price = getattr(order, name)
        if price is not None and _exceeds(abs(price - ltp), band):
            raise RiskBreach(
                "price_band_pct",
                f"{name} {price:g} for {order.instrument_id} is "
                f"{abs(price - ltp) / ltp * 100:.2f}% from LTP {ltp:g}, outside "
                f"price_band_pct={pct:g}% (allowed {ltp - band:g}–{ltp + band:g})",
            )


@_one_limit("max_order_notional")
def check_order_notional(order: Order, limit: float, view: AccountView, state: RiskState) -> None:
    """Refuse an order whose ``qty × price`` exceeds ``max_order_notional`` rupees."""
    price = _reference_price(order, view)
    if price is None:
        raise RiskBreach(
            "max_order_notional",
            f"cannot value the {order.order_type.value} order for {order.instrument_id}: no "
            f"limit price and no last traded price; max_order_notional={_rupees(limit)} "
            "needs one (send a limit order or wait for the first tick)",
        )
    notional = order.qty * price
    if _exceeds(notional, limit):
        raise RiskBreach(
            "max_order_notional",
            f"order notional {order.qty} × {price:g} = {_rupees(notional)} for "
            f"{order.instrument_id} exceeds max_order_notional={_rupees(limit)}",
        )


@_one_limit("max_position_qty")
def check_position_qty(order: Order, limit: int, view: AccountView, state: RiskState) -> None:
    """Refuse an order that would take the instrument's position beyond ``max_position_qty``.

    The position after the order counts open orders on the same side as filled. A reducing
    order (see :func:`_is_reducing`) always passes so that exits are never blocked.
    """
    if _is_reducing(order, view):
        return
    position = view.position_qty(order.instrument_id)
    pending = _same_side_open_qty(order, view)
    after = position + order.side.sign * (pending + order.qty)
    if abs(after) > limit:
        raise RiskBreach(
            "max_position_qty",
            f"{order.side.value} {order.qty} {order.instrument_id} would take the position "
            f"from {position} (plus {pending} in open {order.side.value} orders) to {after}, "
            f"beyond max_position_qty={limit}",
        )


@_one_limit("max_gross_exposure")
def check_gross_exposure(order: Order, limit: float, view: AccountView, state: RiskState) -> None:
    """Refuse an order that would take ``Σ |qty| × LTP`` beyond ``max_gross_exposure``.

    Each instrument counts at its worst case, ``max(|pos + open buys|, |pos − open sells|)``,
    valued at its last price (the order's own instrument falls back to the order's price).
    A reducing order always passes.
    """
    if _is_reducing(order, view):
        return
    buys: dict[str, int] = {}
    sells: dict[str, int] = {}
    for o in [*_other_open_orders(order, view), order]:
        book = buys if o.side is Side.BUY else sells
        book[o.instrument_id] = book.get(o.instrument_id, 0) + o.remaining_qty
    positions = view.positions()
    gross = 0.0
    for instrument_id in sorted({*positions, *buys, *sells}):
        position = positions.get(instrument_id, 0)
        worst = max(
            abs(position + buys.get(instrument_id, 0)), abs(position - sells.get(instrument_id, 0))
        )
        if worst == 0:
            continue
        price = view.last_price(instrument_id)
        if price is None and instrument_id == order.instrument_id:
            price = _reference_price(order, view)
        if price is None:
            raise RiskBreach(
                "max_gross_exposure",
                f"cannot value {instrument_id} (qty {worst}) for max_gross_exposure="
                f"{_rupees(limit)}: no last traded price yet",
            )
        gross += worst * price
    if _exceeds(gross, limit):
        raise RiskBreach(
            "max_gross_exposure",
            f"{order.side.value} {order.qty} {order.instrument_id} would take gross exposure "
            f"to {_rupees(gross)}, beyond max_gross_exposure={_rupees(limit)}",
        )


@_one_limit("max_open_orders")
def check_open_orders(order: Order, limit: int, view: AccountView, state: RiskState) -> None:
    """Refuse a new order when ``max_open_orders`` working orders are already open."""
    working = len(_other_open_orders(order, view))
    if working + 1 > limit:
        raise RiskBreach(
            "max_open_orders",
            f"{working} orders are already open; another would exceed max_open_orders={limit}; "
            "cancel some first",
        )


def _no_window(seconds: float) -> bool:
    return seconds <= 0


@_one_limit("duplicate_window_seconds", off=_no_window)
def check_duplicate(order: Order, window: float, view: AccountView, state: RiskState) -> None:
    """Refuse an order identical to one sent within ``duplicate_window_seconds``.

    Identical means the same instrument, side, qty, order type, limit and trigger price: the
    signature of a strategy firing the same signal twice or a retry that already went through.
    """
    if not state.recent:
        return
    signature = _signature(order)
    for sent_at, seen in state.recent:
        if seen != signature:
            continue
        age = (_now(view) - sent_at).total_seconds()
        if 0 <= age < window:
            raise RiskBreach(
                "duplicate_window_seconds",
                f"identical {order.side.value} {order.qty} {order.instrument_id} "
                f"{order.order_type.value} order was sent {age:.3f}s ago, within "
                f"duplicate_window_seconds={window:g}; change the order or wait",
            )


def _never(value: object) -> bool:
    return False


@_one_limit("max_orders_per_second", off=_never)
def check_throttle(order: Order, rate: float, view: AccountView, state: RiskState) -> None:
    """Refuse an order that would exceed ``max_orders_per_second`` on its exchange."""
    exchange = _exchange(order.instrument_id)
    allowed, window = _throttle_window(rate)
    sent = state.sent.get(exchange, ())
    if len(sent) < allowed:  # fewer sends than allowed at all: no window can be full
        return
    now = _now(view)
    start = now - window
    recent = sum(1 for t in sent if start < t <= now)
    if recent >= allowed:
        raise RiskBreach(
            "max_orders_per_second",
            f"{recent} orders sent on {exchange} in the last {window.total_seconds():g}s; "
            f"max_orders_per_second={rate:g} (SEBI requires an algo ID "
            "at 10/s per exchange); retry after the window",
        )


#: Pre-trade checks in the order :meth:`RiskEngine.check_order` runs them.
PRE_TRADE_CHECKS: tuple[Check, ...] = (
    check_allowed_instruments,
    check_trading_hours,
    check_order_qty,
    check_price_band,
    check_order_notional,
    check_position_qty,
    check_gross_exposure,
    check_open_orders,
    check_duplicate,
    check_throttle,
)


def _active_checks(limits: RiskLimits) -> tuple[tuple[Callable[..., None], object], ...]:
    """Return ``(function, second argument)`` for each check that can refuse under ``limits``.

    A one-limit check whose limit is off is left out and the others are called as their core
    with the limit's value; any other check is called as it is, with the limits.
    """
    active: list[tuple[Callable[..., None], object]] = []
    for check in PRE_TRADE_CHECKS:
        one = _ONE_LIMIT.get(check)
        if one is None:
            active.append((check, limits))
            continue
        name, off, core = one
        value = getattr(limits, name)
        if not off(value):
            active.append((core, value))
    return tuple(active)


@dataclass(frozen=True, slots=True)
class LossGuard:
    """The post-trade loss guards' trip points: the one definition of when they trip.

    ``RiskEngine.on_equity``, the engine's bar stepping and its compiled fast path
    (``velox.engine._kernels.forward``, which takes :attr:`loss_at` and :attr:`drawdown_at` as
    arguments and makes the same two comparisons) all read them from here, so the kill switch
    trips on the same tick whichever path marks the position.

    ``loss_at``: the day's P&L at or below which the daily loss limit trips (``-inf`` when off).
    ``drawdown_at``: the drop below the day's peak P&L at or beyond which the drawdown guard
    trips (``inf`` when off). Both forgive float noise of 1e-9 of the limit, never more.

    Examples
    --------
    >>> guard = LossGuard.from_limits(RiskLimits(daily_loss_limit=5000, max_drawdown=3000))
    >>> guard.trip(pnl=-5000.0, peak=0.0), guard.trip(pnl=500.0, peak=3500.0)
    ('daily_loss_limit', 'max_drawdown')
    >>> guard.trip(pnl=-2999.0, peak=0.0) is None
    True
    """

    loss_at: float = -math.inf
    drawdown_at: float = math.inf

    @classmethod
    def from_limits(cls, limits: RiskLimits) -> LossGuard:
        loss, drawdown = limits.daily_loss_limit, limits.max_drawdown
        return cls(
            loss_at=-math.inf if loss is None else -loss + 1e-9 * loss,
            drawdown_at=math.inf if drawdown is None else drawdown - 1e-9 * drawdown,
        )

    @property
    def active(self) -> bool:
        """Return True if either guard is on (else the day's P&L need not be watched)."""
        return self.loss_at > -math.inf or self.drawdown_at < math.inf

    def trip(self, pnl: float, peak: float) -> str | None:
        """Return the limit that a day P&L of ``pnl`` trips (``peak`` ≥ ``pnl``), else None."""
        if pnl <= self.loss_at:
            return "daily_loss_limit"
        if peak - pnl >= self.drawdown_at:
            return "max_drawdown"
        return None


class _BasketView:
    """An :class:`AccountView` that also lists a basket's orders among the working ones."""

    __slots__ = ("_view", "_basket", "now")

    def __init__(self, view: AccountView, basket: Sequence[Order]) -> None:
        self._view = view
        self._basket = basket
        self.now = view.now

    def position_qty(self, instrument_id: str) -> int:
        return self._view.position_qty(instrument_id)

    def positions(self) -> Mapping[str, int]:
        return self._view.positions()

    def open_orders(self) -> Sequence[Order]:
        working = list(self._view.open_orders())
        listed = {o.client_id for o in working}
        return working + [o for o in self._basket if o.client_id not in listed]

    def last_price(self, instrument_id: str) -> float | None:
        return self._view.last_price(instrument_id)

    def instrument(self, instrument_id: str) -> Instrument:
        return self._view.instrument(instrument_id)


class RiskEngine:
    """Run the pre-trade checks, watch the day's P&L and own the kill switch for one account.

    The engine thread is the only caller (no locking). Breaches, kills and resets are appended
    to :attr:`events`, which the engine drains into the audit trail with :meth:`drain_events`.

    Examples
    --------
    >>> from datetime import datetime
    >>> from velox.calendar import IST, trading_hours_ns
    >>> risk = RiskEngine(RiskLimits(daily_loss_limit=5000), account="ZX1234")
    >>> now = datetime(2026, 4, 6, 11, 0, tzinfo=IST)
    >>> risk.on_equity(now, realised=-3000, unrealised=-1800, charges=150) is None
    True
    >>> risk.on_equity(now, realised=-3000, unrealised=-1900, charges=150).limit
    'daily_loss_limit'
    >>> risk.killed
    True
    """

    def __init__(self, limits: RiskLimits, *, account: str = "") -> None:
        self.limits = limits
        self.account = account
        self.state = RiskState()
        self.events: list[RiskEvent] = []
        # the checks that can refuse under self.limits (recomputed if limits are replaced)
        self._active = (limits, _active_checks(limits))
        self._guard = (limits, LossGuard.from_limits(limits))

    @property
    def guard(self) -> LossGuard:
        """Return the loss guards of the current limits (see :class:`LossGuard`)."""
        limits, guard = self._guard
        if limits is not self.limits:
            guard = LossGuard.from_limits(self.limits)
            self._guard = (self.limits, guard)
        return guard

    # --- kill switch -----------------------------------------------------------------------

    @property
    def killed(self) -> bool:
        """Return True while the kill switch is engaged."""
        return self.state.killed

    @property
    def kill_reason(self) -> str | None:
        """Return why the kill switch was engaged, or None when it is not."""
        return self.state.kill_reason

    @property
    def kill_limit(self) -> str | None:
        """Return the limit that engaged the kill switch (``"manual"`` for an operator kill)."""
        return self.state.kill_limit

    def _event(self, now: datetime, kind: str, limit: str, message: str) -> RiskEvent:
        event = RiskEvent(ts=now, kind=kind, limit=limit, message=message, account=self.account)
        self.events.append(event)
        return event

    def engage_kill(self, reason: str, now: datetime, *, limit: str = "manual") -> RiskEvent:
        """Engage the kill switch and return the ``"kill"`` event.

        The engine, on this event, cancels all open orders and squares off all positions at
        market; from now on :meth:`check_order` refuses everything but those square-off orders.
        Engaging again while engaged records another event but keeps the original cause.
        """
        if not self.state.killed:
            self.state.killed = True
            self.state.kill_reason = reason
            self.state.kill_limit = limit
            self.state.kill_ts = now
        logger.critical("kill switch engaged (%s) for account %r: %s", limit, self.account, reason)
        return self._event(now, "kill", limit, reason)

    def reset_kill(self, admin: str, now: datetime) -> RiskEvent:
        """Release the kill switch on an admin's explicit request and return the ``"reset"`` event.

        The intraday drawdown peak restarts from the current P&L (the admin accepted the loss so
        far); the daily loss limit does not: if the day's P&L is still at or below it, the next
        :meth:`on_equity` trips the switch again. Raise the limit or wait for :meth:`new_day`.

        Raises
        ------
        ValidationError
            If ``admin`` is empty or the switch is not engaged.
        """
        if not isinstance(admin, str) or not admin.strip():
            raise ValidationError("reset_kill needs the admin's name (who re-enabled trading)")
        if not self.state.killed:
            raise ValidationError(f"kill switch for account {self.account!r} is not engaged")
        released = self.state.kill_limit or "manual"
        message = (
            f"kill switch reset by {admin.strip()} (was engaged by {released}: "
            f"{self.state.kill_reason})"
        )
        self.state.killed = False
        self.state.kill_reason = None
        self.state.kill_limit = None
        self.state.kill_ts = None
        self.state.peak_equity = self.state.last_equity
        logger.warning("%s", message)
        return self._event(now, "reset", released, message)

    # --- pre-trade --------------------------------------------------------------------------

    def check_order(self, order: Order, view: AccountView, *, flatten: bool = False) -> None:
        """Raise :class:`RiskBreach` unless ``order`` may be sent now; record any breach.

        ``flatten=True`` is for the engine's own square-off orders (kill switch, strategy
        failure, intraday square-off): they skip every limit, including the kill switch, but
        must reduce an existing position without reversing it (limit ``"flatten"``).

        Raises
        ------
        RiskBreach
            Naming the limit: ``"kill_switch"`` (with the limit that engaged it) while killed,
            else the first pre-trade check that fails.
        """
        now = _now(view)
        try:
            if flatten:
                position = view.position_qty(order.instrument_id)
                if not (
                    position != 0
                    and (position > 0) != (order.side is Side.BUY)
                    and order.qty <= abs(position)
                ):
                    raise RiskBreach(
                        "flatten",
                        f"square-off {order.side.value} {order.qty} {order.instrument_id} does "
                        f"not reduce the position {position}; only reducing orders may bypass "
                        "risk checks",
                    )
                return
            if self.state.killed:
                raise RiskBreach(
                    "kill_switch",
                    f"kill switch engaged by {self.state.kill_limit} at "
                    f"{self.state.kill_ts.isoformat() if self.state.kill_ts else '?'} "
                    f"({self.state.kill_reason}); orders are refused until an admin resets it",
                )
            limits, active = self._active
            if limits is not self.limits:
                limits = self.limits
                active = _active_checks(limits)
                self._active = (limits, active)
            state = self.state
            for check, argument in active:
                check(order, argument, view, state)
        except RiskBreach as breach:
            logger.warning("order %s refused: %s", order.client_id, breach)
            self._event(now, "breach", breach.limit, f"order {order.client_id}: {breach}")
            raise

    def check_basket(self, orders: Sequence[Order], view: AccountView) -> None:
        """Raise :class:`RiskBreach` unless every order of a basket may be sent now: all or none.

        Each order is checked with all the basket's other orders counted as working (the
        position, exposure and open-order limits judge the basket as a whole, as it will stand
        once sent; the view may list them already, as the engine's does), and the whole basket
        must fit the order throttle of each exchange. Orders of one basket are
        not duplicates of each other (a leg split at the freeze quantity sends equal orders
        on purpose); each is still compared with the orders sent before it. A breach is
        recorded once, naming the order that failed.
        """
        whole = _BasketView(view, orders)
        for order in orders:
            self.check_order(order, whole)
        now = _now(view)
        allowed, window = _throttle_window(self.limits.max_orders_per_second)
        counts: dict[str, int] = {}
        for order in orders:
            exchange = _exchange(order.instrument_id)
            counts[exchange] = counts.get(exchange, 0) + 1
        for exchange, n in counts.items():
            recent = sum(1 for t in self.state.sent.get(exchange, ()) if now - window < t <= now)
            if recent + n > allowed:
                breach = RiskBreach(
                    "max_orders_per_second",
                    f"a basket of {n} orders on {exchange} (with {recent} sent in the last "
                    f"{window.total_seconds():g}s) exceeds max_orders_per_second="
                    f"{self.limits.max_orders_per_second:g}; send fewer legs or split it",
                )
                logger.warning("basket refused: %s", breach)
                self._event(now, "breach", breach.limit, f"basket {orders[0].tag}: {breach}")
                raise breach

    def record_sent(self, order: Order, now: datetime) -> None:
        """Record that ``order`` went to the broker (feeds the throttle and the duplicate guard)."""
        exchange = _exchange(order.instrument_id)
        _, window = _throttle_window(self.limits.max_orders_per_second)
        sent = self.state.sent.get(exchange)
        if sent is None:
            sent = self.state.sent[exchange] = deque()
        sent.append(now)
        start = now - window
        while sent and sent[0] <= start:
            sent.popleft()
        recent = self.state.recent
        recent.append((now, _signature(order)))
        start = now - _seconds(self.limits.duplicate_window_seconds)
        while recent and recent[0][0] <= start:
            recent.popleft()

    # --- post-trade -------------------------------------------------------------------------

    def on_equity(
        self, now: datetime, realised: float, unrealised: float, charges: float
    ) -> RiskEvent | None:
        """Update the day's P&L and return the kill event if a loss guard trips, else None.

        ``realised``, ``unrealised`` and ``charges`` are the account's figures for the current
        trading day (charges positive). P&L = realised + unrealised − charges. The daily loss
        limit trips at ``P&L <= -daily_loss_limit``; the drawdown guard at
        ``peak − P&L >= max_drawdown``, the peak starting at 0 each day. The engine then cancels
        all open orders, squares off all positions and halts. While killed, returns None.
        """
        pnl = realised + unrealised - charges
        state = self.state
        state.last_equity = pnl
        state.peak_equity = max(state.peak_equity, pnl)
        if state.killed:
            return None
        limit = self.guard.trip(pnl, state.peak_equity)
        if limit == "daily_loss_limit":
            return self.engage_kill(
                f"day P&L {_rupees(pnl)} (realised {_rupees(realised)} + unrealised "
                f"{_rupees(unrealised)} − charges {_rupees(charges)}) reached "
                f"daily_loss_limit={_rupees(self.limits.daily_loss_limit or 0.0)}",
                now,
                limit=limit,
            )
        if limit == "max_drawdown":
            return self.engage_kill(
                f"day P&L {_rupees(pnl)} is {_rupees(state.peak_equity - pnl)} below the "
                f"intraday peak {_rupees(state.peak_equity)}, reaching "
                f"max_drawdown={_rupees(self.limits.max_drawdown or 0.0)}",
                now,
                limit=limit,
            )
        return None

    def new_day(self, day: date) -> None:
        """Start a trading day: reset the P&L peak and the throttle/duplicate windows.

        The kill switch stays as it is: only :meth:`reset_kill` releases it.
        """
        self.state.day = day
        self.state.peak_equity = 0.0
        self.state.last_equity = 0.0
        self.state.sent.clear()
        self.state.recent.clear()

    def drain_events(self) -> list[RiskEvent]:
        """Return the events recorded since the last drain and forget them."""
        events, self.events = self.events, []
        return events

    # --- persistence ------------------------------------------------------------------------

    def to_state(self) -> dict[str, object]:
        """Return the state to persist (JSON-ready): the kill switch and the day's P&L peak.

        The throttle and duplicate windows span seconds and are not kept.
        """
        state = self.state
        return {
            "version": _STATE_VERSION,
            "account": self.account,
            "killed": state.killed,
            "kill_reason": state.kill_reason,
            "kill_limit": state.kill_limit,
            "kill_ts": state.kill_ts.isoformat() if state.kill_ts else None,
            "day": state.day.isoformat() if state.day else None,
            "peak_equity": state.peak_equity,
            "last_equity": state.last_equity,
        }

    @classmethod
    def from_state(cls, limits: RiskLimits, state: Mapping[str, object]) -> RiskEngine:
        """Return an engine restored from :meth:`to_state` output (a restart stays killed)."""
        if state.get("version") != _STATE_VERSION:
            raise ValidationError(
                f"risk state version {state.get('version')!r} is not {_STATE_VERSION}; it was "
                "written by another Velox version"
            )
        try:
            engine = cls(limits, account=str(state.get("account") or ""))
            restored = engine.state
            restored.killed = bool(state["killed"])
            restored.kill_reason = state["kill_reason"]  # type: ignore[assignment]
            restored.kill_limit = state["kill_limit"]  # type: ignore[assignment]
            kill_ts = state["kill_ts"]
            restored.kill_ts = datetime.fromisoformat(str(kill_ts)) if kill_ts else None
            day = state["day"]
            restored.day = date.fromisoformat(str(day)) if day else None
            restored.peak_equity = float(state["peak_equity"])  # type: ignore[arg-type]
            restored.last_equity = float(state["last_equity"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"risk state is malformed ({exc!r}); expected to_state() output"
            ) from None
        return engine
