"""The simulated exchange behind replay and paper trading.

Paper trading is this simulator fed live ticks; an event-driven backtest is this simulator fed
replayed ticks. Nothing else differs, so there is no ``if paper:`` anywhere: the engine hands the
simulator every tick (:meth:`SimBroker.on_tick`) and, when it has one, a clock
(:meth:`SimBroker.on_clock`), and talks to it through the :class:`~velox.brokers.base.Broker`
protocol exactly as it talks to Zerodha.

Fill rules (the full statement with examples is in ``docs/simulator.md``)
-------------------------------------------------------------------------
An order can only fill on a tick that arrives **after** it was placed (and after it became live,
when :attr:`SimConfig.latency` is set), never on the price that was visible when it was sent:
that would be look-ahead. With ``p`` the tick's last traded price:

* MARKET: fills at ``slippage.adjust(side, p, tick_size)``.
* LIMIT buy at ``L``: fills when ``p <= L`` (``p < L`` if ``limit_fill_on_touch=False``) at
  ``p``, which is ``min(L, p)``; a sell mirrors it (``p >= L`` at ``p``). A marketable limit
  therefore fills at the next tick's price, not at its limit. No slippage on limits.
* SL / SL-M buy with trigger ``T``: triggers when ``p >= T`` (sell: ``p <= T``); from that same
  tick on, SL behaves as a LIMIT at its limit price and SL-M as a MARKET order.
* IOC: matched against the first eligible tick only; what does not fill there is cancelled.
* Partial fills (``max_volume_share``): a tick may fill at most ``share × traded volume`` (whole
  lots), where traded volume is the rise of the tick's cumulative day volume since the previous
  tick, shared by the instrument's orders in time priority. When volume is unknown (``None``, or
  an index whose volume is always 0) partial fills are off for that tick and orders fill in full.

Money (simplified margin model, documented in ``docs/simulator.md``)
--------------------------------------------------------------------
``cash`` starts at ``initial_cash``; delivery (CNC) fills move the full trade value, intraday and
F&O (MIS/NRML) fills move only their realised P&L, and every fill's charges are deducted.
``used_margin`` is what open MIS/NRML positions and open orders block: CNC buys their full value,
MIS ``mis_margin`` and NRML ``nrml_margin`` of notional, option buys the full premium, option
sells ``margin × strike × qty``. So at every moment::

    cash + Σ CNC qty·ltp + Σ MIS/NRML qty·(ltp − avg) = initial + realised + unrealised − charges
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time, timedelta
from typing import Protocol

import numpy as np

from velox.brokers.base import BrokerListener, Capabilities, Funds
from velox.calendar import (
    IST,
    SESSION_CLOSE,
    SESSION_OPEN,
    is_open,
    square_off_ns,
    trading_hours_ns,
)
from velox.costs import CostModel, NoSlippage, SlippageModel
from velox.errors import BrokerError, ConfigError, OrderRejected
from velox.types import (
    TERMINAL_STATUSES,
    Fill,
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Side,
    Tick,
    Validity,
    apply_fill,
    is_aware,
    is_on_tick,
    replacer,
)

__all__ = ["SimBroker", "SimConfig", "ChargeModel"]

log = logging.getLogger(__name__)

_GST = 0.18
_EPS = 1e-9
_INF = math.inf

# Enum members the order path reads, bound once: on Python 3.11 reading a member off its class
# is an unspecialised lookup (~80 ns), and one order's life reads some thirty of them.
_BUY, _SELL = Side.BUY, Side.SELL
_CNC, _MIS, _NRML = Product.CNC, Product.MIS, Product.NRML
_IOC = Validity.IOC
_SL = OrderType.SL
_STOPS = (OrderType.SL, OrderType.SL_M)
_AT_MARKET = (OrderType.MARKET, OrderType.SL_M)
_OPEN, _PARTIAL, _FILLED = OrderStatus.OPEN, OrderStatus.PARTIAL, OrderStatus.FILLED
_INDEX = InstrumentKind.INDEX
_OPTIONS = (InstrumentKind.CE, InstrumentKind.PE)
_DERIVATIVES = (InstrumentKind.FUT, *_OPTIONS)


class _Charges(Protocol):
    brokerage: float

    @property
    def total(self) -> float: ...


class ChargeModel(Protocol):
    """What the simulator needs from a cost model (``velox.costs.CostModel`` is one)."""

    def fill_charges(
        self,
        instrument: Instrument,
        product: Product,
        side: Side,
        qty: int,
        price: float,
        trade_date: date,
        *,
        order_brokerage_so_far: float = 0.0,
    ) -> _Charges: ...


def _configured_square_off() -> time:
    """Return the ``mis_square_off`` setting: the simulator squares off when Velox's config says."""
    from velox.config import get_settings

    return get_settings().square_off_time


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Behaviour switches of :class:`SimBroker`; the defaults are a cautious retail broker.

    Parameters
    ----------
    latency
        Simulated time between ``place_order`` and the order being live at the exchange; until
        then it is SUBMITTED and cannot fill. Zero means live at once (still only next-tick fills).
    max_volume_share
        Largest share (0–1] of a tick's traded volume one tick may fill; ``None`` disables
        partial fills (every eligible order fills in full).
    limit_fill_on_touch
        True: a buy limit fills when the price touches it (``ltp <= limit``). False: only when
        the price trades *through* it (``ltp < limit``), the conservative queue assumption.
    auto_split_freeze
        Split an order above the freeze quantity into orders of at most the freeze quantity
        (whole lots) instead of rejecting it, as Kite's "iceberg"/auto-slice does.
    square_off_time
        Time (IST) at which open MIS orders are cancelled and MIS positions closed at market.
        Default: the ``mis_square_off`` setting (``VELOX_MIS_SQUARE_OFF``, 15:15 unless set),
        which runs before the brokers' own (Zerodha: 15:20 equity, 15:25 F&O). It must fall
        inside the regular session (after 09:15, before 15:30 IST). A special session (Muhurat,
        a shortened or extended day) squares off the same lead before its own close
        (:func:`velox.calendar.square_off_ns`: 19:00 for a 18:15-19:15 Muhurat session).
    square_off_charge
        Rupees charged (plus 18% GST) per square-off order, as brokers do when *they* square off
        (Zerodha ₹50). 0 by default: the square-off here models Velox's own exit.
    mis_margin, nrml_margin
        Fraction of notional blocked for MIS and NRML exposure (simplified: no SPAN, no
        exposure margin, no hedge benefit).
    ioc_window
        When set, an IOC order that saw no tick of its instrument within this long after going
        live is cancelled by the clock; ``None`` waits for the instrument's next tick.
    """

    latency: timedelta = timedelta(0)
    max_volume_share: float | None = None
    limit_fill_on_touch: bool = True
    auto_split_freeze: bool = False
    square_off_time: time = field(default_factory=_configured_square_off)
    square_off_charge: float = 0.0
    mis_margin: float = 0.2
    nrml_margin: float = 0.15
    ioc_window: timedelta | None = None

    def __post_init__(self) -> None:
        if self.latency < timedelta(0):
            raise ConfigError(f"SimConfig.latency={self.latency} must be >= 0")
        share = self.max_volume_share
        if share is not None and not 0 < share <= 1:
            raise ConfigError(f"SimConfig.max_volume_share={share} must be in (0, 1] or None")
        for name in ("mis_margin", "nrml_margin"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"SimConfig.{name}={value} must be in (0, 1]")
        if self.square_off_charge < 0:
            raise ConfigError("SimConfig.square_off_charge must be >= 0")
        when = self.square_off_time
        if not isinstance(when, time) or not SESSION_OPEN < when < SESSION_CLOSE:
            raise ConfigError(
                f"SimConfig.square_off_time={when!r} must be a time after the session open "
                f"{SESSION_OPEN:%H:%M} and before the close {SESSION_CLOSE:%H:%M} IST"
            )


@dataclass(slots=True)
class _Working:
    """Mutable matching state of one non-terminal order (the public Order stays frozen)."""

    order: Order
    instrument: Instrument
    after_tick: int  # may only fill on ticks with a larger tick number
    live_at: float  # epoch seconds when the order reaches the exchange
    live: bool
    triggered: bool
    blocked: float  # margin blocked for the remaining quantity
    brokerage: float = 0.0  # brokerage charged so far (per-order caps)
    extra_charge: float = 0.0  # square-off charge, added to the first fill
    value: float = 0.0  # Σ fill qty × price, for the average price


# Copies of the simulator's own records skip validation (velox.types.replacer): they are
# valid by construction; anything a user hands in goes through the real constructor. One
# writer per kind of change, with positional arguments: the simulator makes two per order.
_with_status = replacer(Order, "status")
_with_message = replacer(Order, "status", "status_message")
_accepted = replacer(
    Order,
    "status",
    "broker_order_id",
    "created_at",
    "status_message",
    "filled_qty",
    "average_price",
)
_filled = replacer(Order, "status", "status_message", "filled_qty", "average_price")
#: ``_new_fill(None, *every field)``: a fill built by the simulator.
_new_fill = replacer(Fill, *(f.name for f in fields(Fill)))


class SimBroker:
    """Simulated Indian broker: broker-style rejects, fills from ticks, exact charges.

    Implements :class:`velox.brokers.base.Broker` and :class:`~velox.brokers.base.SimulatedVenue`
    (it is handed the engine's ticks and clock). It is deterministic: time only moves with
    :meth:`on_tick` / :meth:`on_clock`, ids are counters, there is no randomness.

    Parameters
    ----------
    instruments
        Tradable instruments by id (``NSE:SBIN``) or a lookup callable raising ``KeyError``.
    initial_cash
        Opening cash in rupees.
    cost_model
        Charges per fill (``velox.costs.CostModel()`` when omitted).
    slippage
        Market/SL-M fill price adjustment (none when omitted).
    config
        Behaviour switches, see :class:`SimConfig`.

    Examples
    --------
    >>> from datetime import datetime
    >>> from velox.calendar import IST
    >>> from velox.types import Instrument, InstrumentKind, Order, Tick
    >>> sbin = Instrument("NSE:SBIN", "NSE", "SBIN", InstrumentKind.EQ)
    >>> class Free:  # a zero-cost model; the default is velox.costs.CostModel()
    ...     def fill_charges(self, *args, **kwargs):
    ...         return type("C", (), {"brokerage": 0.0, "total": 0.0})()
    >>> sim = SimBroker({sbin.id: sbin}, initial_cash=100_000, cost_model=Free())
    >>> sim.on_tick(Tick("NSE:SBIN", datetime(2024, 4, 1, 9, 15, tzinfo=IST), 100.5))
    >>> oid = sim.place_order(Order("c1", "NSE:SBIN", "BUY", 10, "LIMIT", limit_price=100.0))
    >>> sim.on_tick(Tick("NSE:SBIN", datetime(2024, 4, 1, 9, 16, tzinfo=IST), 99.95))
    >>> o = sim.order(oid)
    >>> o.status.value, o.average_price, sim.funds().cash
    ('FILLED', 99.95, 99000.5)
    """

    name = "sim"
    #: Everything Kite-style order entry offers, at SEBI's rate below which no algo id is needed.
    capabilities = Capabilities(max_orders_per_second=10.0)

    def __init__(
        self,
        instruments: Mapping[str, Instrument] | Callable[[str], Instrument],
        *,
        initial_cash: float,
        cost_model: ChargeModel | None = None,
        slippage: SlippageModel | None = None,
        config: SimConfig | None = None,
    ) -> None:
        if not (math.isfinite(initial_cash) and initial_cash >= 0):
            raise BrokerError(f"initial_cash={initial_cash!r} must be a finite amount >= 0")
        self._lookup = instruments.__getitem__ if isinstance(instruments, Mapping) else instruments
        self.cost_model = cost_model if cost_model is not None else CostModel()
        self.slippage = slippage if slippage is not None else NoSlippage()
        self._listener: BrokerListener | None = None
        self.initial_cash = float(initial_cash)
        self._cash = float(initial_cash)
        self._day_charges = 0.0
        self._orders: dict[str, Order] = {}  # broker id → latest Order, in placement order
        self._working: dict[str, dict[str, _Working]] = {}  # instrument → broker id → state
        self._blocked = 0.0
        self._book: dict[tuple[str, Product], Position] = {}
        self._holdings: dict[str, Position] = {}
        self._pending_cnc_sell: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._cum_volume: dict[str, int] = {}
        self._fills: list[Fill] = []
        self._order_seq = 0
        self._tick_no = 0
        self._now: datetime | None = None
        self._now_epoch = -math.inf
        self._day: date | None = None
        self._day_end = -math.inf  # epoch of the next IST midnight
        self._square_off_at = math.inf
        self._squared_off = False
        self._day_closed = False
        self._not_live = 0  # orders still inside their latency
        # Time can advance with no work at all until this epoch (the next day roll or square-off;
        # -inf while IOC windows must be checked on every step): see on_tick.
        self._quiet_until = -math.inf
        self._hours: tuple[tuple[float, float], ...] | None = None  # today's trading (epoch s)
        # Margin of each MIS/NRML position, in book order (updated by fills; None: rebuild).
        self._position_margins: dict[tuple[str, Product], float] | None = None
        self.config = config if config is not None else SimConfig()

    @property
    def config(self) -> SimConfig:
        """Return the behaviour switches (see :class:`SimConfig`)."""
        return self._config

    @config.setter
    def config(self, config: SimConfig) -> None:
        self._config = config
        self._latency = config.latency.total_seconds()
        window = config.ioc_window
        self._ioc_window = None if window is None else window.total_seconds()
        self._position_margins = None  # the margin rates may have changed
        self._reschedule()

    # ------------------------------------------------------------------ SimulatedVenue

    @staticmethod
    def watched(
        open_orders: Iterable[Order], positions: Mapping[tuple[str, Product], Position]
    ) -> set[str]:
        """Return the instruments whose ticks the simulator must see.

        Working orders match against ticks, and intraday/F&O positions need the price for the
        MIS square-off and margin; a delivery (CNC) holding needs nothing from the ticks, so a
        replay of a held CNC position skips handing them over (the engine still marks it).
        """
        watch = {o.instrument_id for o in open_orders}
        for (iid, product), pos in positions.items():
            if pos.qty and product is not Product.CNC:
                watch.add(iid)
        return watch

    # ------------------------------------------------------------------ Broker protocol

    def set_listener(self, listener: BrokerListener) -> None:
        """Register the receiver of order updates and fills (replaces any previous one)."""
        self._listener = listener

    def place_order(self, order: Order) -> str:
        """Accept ``order`` or reject it with a broker-style reason; return the broker order id.

        A rejected order still gets an id and a REJECTED postback (as at a real broker) before
        :class:`~velox.errors.OrderRejected` is raised. With ``auto_split_freeze`` an order above
        the freeze quantity becomes several orders whose ``client_id`` reads
        ``<client_id>#1``, ``#2``, … (same tag); the first one's id is returned.
        """
        if self._now is None:
            return self._reject(
                order,
                "The simulator has no market time yet: feed a tick (on_tick) or the clock "
                "(on_clock) before placing orders",
            )
        try:
            instrument = self._lookup(order.instrument_id)
        except KeyError:
            return self._reject(
                order,
                f"Invalid instrument {order.instrument_id}: not in the instrument master "
                "(check the EXCHANGE:SYMBOL id)",
            )
        reason = self._static_reason(order, instrument)
        if reason:
            return self._reject(order, reason)
        freeze = instrument.freeze_qty
        if freeze is not None and order.qty > freeze:
            if not self.config.auto_split_freeze:
                return self._reject(
                    order,
                    f"Quantity {order.qty} exceeds the exchange freeze quantity {freeze} for "
                    f"{instrument.id}; split the order or set SimConfig.auto_split_freeze=True",
                )
            _, reason = self._rms(order, instrument)  # all slices or none
            if reason:
                return self._reject(order, reason)
            chunk = max(instrument.lot_size, freeze // instrument.lot_size * instrument.lot_size)
            parts = [chunk] * (order.qty // chunk) + (
                [order.qty % chunk] if order.qty % chunk else []
            )
            children = [
                replace(order, client_id=f"{order.client_id}#{k}", qty=q)
                for k, q in enumerate(parts, 1)
            ]
            ids = [self._place_one(child, instrument) for child in children]
            return ids[0]
        return self._place_one(order, instrument)

    def modify_order(
        self,
        broker_order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        trigger_price: float | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        """Change an open order; it then waits for the next tick and loses time priority.

        Prices the new order type does not use are dropped (MARKET → no limit, no trigger). A
        change the order cannot take (lot, grid, funds, a completed order) raises
        :class:`~velox.errors.OrderRejected` and leaves the order as it was.
        """
        w = self._working_state(broker_order_id, "modified")
        old = w.order
        new_type = OrderType(order_type) if order_type is not None else old.order_type
        new_limit = limit_price if limit_price is not None else old.limit_price
        new_trigger = trigger_price if trigger_price is not None else old.trigger_price
        if new_type in _AT_MARKET:
            new_limit = None
        if new_type in (OrderType.MARKET, OrderType.LIMIT):
            new_trigger = None
        new_qty = old.qty if qty is None else qty
        if new_qty <= old.filled_qty:
            raise OrderRejected(
                f"New quantity {new_qty} must exceed the filled quantity {old.filled_qty}",
                client_id=old.client_id,
            )
        try:
            candidate = replace(
                old,
                qty=new_qty,
                order_type=new_type,
                limit_price=new_limit,
                trigger_price=new_trigger,
            )
        except ValueError as exc:
            raise OrderRejected(str(exc), client_id=old.client_id) from None
        reason = self._static_reason(candidate, w.instrument, check_trigger=not w.triggered)
        if reason:
            raise OrderRejected(reason, client_id=old.client_id)
        previous = w.blocked
        self._release(w, previous)
        blocked, reason = self._required_margin(candidate, w.instrument, candidate.remaining_qty)
        if reason is None and blocked > self._available() + _EPS:
            reason = self._funds_reason(blocked)
        if reason:
            self._block(w, previous)
            raise OrderRejected(reason, client_id=old.client_id)
        self._block(w, blocked)
        self._sell_reserve(old, -old.remaining_qty)
        self._sell_reserve(candidate, candidate.remaining_qty)
        triggered = w.triggered and new_type in _STOPS
        if new_type in _STOPS and not triggered:
            status = OrderStatus.TRIGGER_PENDING
        else:
            status = _PARTIAL if candidate.filled_qty else _OPEN
        if not w.live:
            status = OrderStatus.SUBMITTED
        w.after_tick = self._tick_no
        working = self._working[old.instrument_id]  # to the back of the time-priority queue
        working[broker_order_id] = working.pop(broker_order_id)
        w.triggered = triggered
        self._update(w, candidate.with_status(status, "modified"))

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel an open order (a completed, cancelled or rejected one raises OrderRejected)."""
        w = self._working_state(broker_order_id, "cancelled")
        self._finish(w, OrderStatus.CANCELLED, "Cancelled by user")

    def orders(self) -> list[Order]:
        """Return today's orders with their latest status, in placement order."""
        return list(self._orders.values())

    def order(self, broker_order_id: str) -> Order:
        """Return the latest state of one order."""
        try:
            return self._orders[broker_order_id]
        except KeyError:
            raise OrderRejected(f"Invalid order id {broker_order_id!r}") from None

    def positions(self) -> list[Position]:
        """Return today's net positions per instrument and product (NRML carried ones too)."""
        return list(self._book.values())

    def holdings(self) -> list[Position]:
        """Return delivery holdings carried from earlier sessions (less today's sales of them)."""
        return [p for p in self._holdings.values() if p.qty]

    def funds(self) -> Funds:
        """Return cash, margin in use, and today's realised P&L and charges."""
        realised = sum(p.realised_pnl for p in self._book.values())
        realised += sum(p.realised_pnl for p in self._holdings.values())
        return Funds(
            cash=self._cash,
            used_margin=self._used_margin(),
            realised_pnl=realised,
            charges=self._day_charges,
        )

    # ------------------------------------------------------------------ extras for engine/tests

    def __getstate__(self) -> dict[str, object]:
        """Return the picklable state: everything but the listener (re-register it after).

        Paper trading can snapshot the simulator (``pickle.dumps(sim)``) so a restarted engine
        finds the same orders, positions, holdings and cash the "broker" had.
        """
        return {k: v for k, v in self.__dict__.items() if k != "_listener"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._listener = None

    @property
    def now(self) -> datetime | None:
        """Return the simulator's current time (the latest tick or clock), or None."""
        return self._now

    def last_price(self, instrument_id: str) -> float | None:
        """Return the last traded price seen for ``instrument_id``, or None."""
        return self._last.get(instrument_id)

    def fills(self) -> list[Fill]:
        """Return every fill since the simulator started, in time order."""
        return list(self._fills)

    # ------------------------------------------------------------------ time and ticks

    def on_clock(self, now: datetime, epoch: float | None = None) -> None:
        """Advance simulated time to ``now`` without a price: latency, IOC expiry, square-off.

        ``epoch`` is ``now.timestamp()`` if the caller has it (the engine derives it from its
        integer clock, which is cheaper than asking the datetime).
        """
        self._advance(now, now.timestamp() if epoch is None else epoch)

    def on_tick(self, tick: Tick) -> None:
        """Advance time to the tick and match the instrument's working orders against it.

        Malformed ticks (NaN or non-positive price) and ticks of unknown instruments only move
        the clock.
        """
        self.on_quote(tick.instrument_id, tick.ts, tick.ltp, tick.volume)

    def on_quote(
        self,
        instrument_id: str,
        ts: datetime,
        price: float,
        volume: int | None = None,
        epoch: float | None = None,
    ) -> None:
        """Handle a tick given as its fields (what :meth:`on_tick` does with a :class:`Tick`).

        The engine feeds the simulator this way: most of its ticks exist only as numbers in a
        replay's columns, and a ``Tick`` object per tick would cost more than the matching.
        ``epoch`` is ``ts.timestamp()`` if the caller has it.
        """
        # Most ticks move the clock inside a quiet stretch and meet no working order, so that
        # path is inlined: a clock step, the last price, the day volume, one dict lookup.
        if epoch is None:
            epoch = ts.timestamp()
        if epoch > self._now_epoch:
            if epoch < self._quiet_until and not self._not_live:
                self._now, self._now_epoch = ts, epoch
            else:
                self._advance(ts, epoch)
        if price.__class__ is not float or not 0.0 < price < _INF:
            if not (isinstance(price, (int, float)) and math.isfinite(price) and price > 0):
                log.debug("ignoring malformed tick of %s at %s: price %r", instrument_id, ts, price)
                return
            price = float(price)
        self._tick_no += 1
        self._last[instrument_id] = price
        capacity = None
        if volume is not None and volume > 0:
            capacity = self._tick_capacity(instrument_id, volume)
        working = self._working.get(instrument_id)
        if not working:
            return
        tick_no = self._tick_no
        for w in list(working.values()):  # insertion order is time priority
            if w.after_tick >= tick_no or not w.live or w.order.status in TERMINAL_STATUSES:
                continue
            capacity = self._match(w, price, capacity)

    def end_of_day(self) -> None:
        """Close the session: expire open orders, flatten stray MIS, carry CNC to holdings.

        Called automatically by the first tick/clock of a new date. MIS positions still open
        (no tick came after the square-off order) are closed at their last traded price.
        Today's realised P&L and charges restart from zero; NRML positions carry over.
        """
        if self._day is None or self._day_closed:
            return
        self._day_closed = True
        for iid in list(self._working):
            for w in list(self._working[iid].values()):
                self._finish(w, OrderStatus.CANCELLED, "Order expired at the end of the session")
        for (iid, product), pos in list(self._book.items()):
            if product is _MIS and pos.qty:
                log.warning("MIS %s still open at end of day; closing at last price", iid)
                price = self._last.get(iid, pos.average_price)
                order = self._square_off_order(iid, pos)
                w = self._accept(order, self._lookup(iid), immediate=True)
                self._fill(w, order.qty, price)
        self._position_margins = None
        carried: dict[tuple[str, Product], Position] = {}
        for (iid, product), pos in self._book.items():
            if not pos.qty:
                continue
            if product is _CNC:
                held = self._holdings.get(iid)
                qty = pos.qty + (held.qty if held else 0)
                value = pos.qty * pos.average_price + (held.qty * held.average_price if held else 0)
                self._holdings[iid] = Position(iid, _CNC, qty, value / qty)
            else:
                carried[(iid, product)] = Position(iid, product, pos.qty, pos.average_price)
        self._holdings = {
            iid: Position(iid, _CNC, p.qty, p.average_price)
            for iid, p in self._holdings.items()
            if p.qty
        }
        self._book = carried
        self._pending_cnc_sell.clear()
        self._day_charges = 0.0
        self._cum_volume.clear()
        self._orders.clear()
        self._blocked = 0.0

    # ------------------------------------------------------------------ internals: time

    def _advance(self, ts: datetime, epoch: float) -> None:
        if epoch <= self._now_epoch:
            return  # time never runs backwards; a late tick still matches at its price
        if epoch >= self._day_end:
            self.end_of_day()
            self._start_day(ts)
        self._now, self._now_epoch = ts, epoch
        if self._not_live or self._ioc_window is not None:
            self._wake(epoch)
        if not self._squared_off and epoch >= self._square_off_at:
            self._square_off()

    def _reschedule(self) -> None:
        """Recompute :attr:`_quiet_until` after the day, the square-off or the config changed."""
        if self._ioc_window is not None:
            self._quiet_until = -math.inf
        elif self._squared_off:
            self._quiet_until = self._day_end
        else:
            self._quiet_until = min(self._day_end, self._square_off_at)

    def _wake(self, epoch: float) -> None:
        window = self._ioc_window
        for working in list(self._working.values()):
            for w in list(working.values()):
                if not w.live and epoch >= w.live_at:
                    w.live = True
                    self._not_live -= 1
                    self._update(w, _with_status(w.order, self._live_status(w.order)))
                if (
                    window is not None
                    and w.live
                    and w.order.validity is _IOC
                    and epoch >= w.live_at + window
                ):
                    self._finish(w, OrderStatus.CANCELLED, "IOC order cancelled: no match")

    def _start_day(self, ts: datetime) -> None:
        local = ts.astimezone(IST)
        self._day = local.date()
        midnight = datetime.combine(self._day, time(0), IST)
        self._day_end = (midnight + timedelta(days=1)).timestamp()
        # this session's square-off (special sessions: the same lead before their own close)
        cut = square_off_ns(np.array([int(midnight.timestamp()) * 1_000_000_000]),
                            self.config.square_off_time)  # fmt: skip
        self._square_off_at = int(cut[0]) / 1e9
        self._squared_off = False
        self._day_closed = False
        self._hours = None
        self._reschedule()

    def _square_off(self) -> None:
        self._squared_off = True
        self._reschedule()
        when = self._square_off_clock()
        for working in self._working.values():
            for w in list(working.values()):
                if w.order.product is _MIS:
                    self._finish(
                        w, OrderStatus.CANCELLED, f"Cancelled by the MIS square-off at {when}"
                    )
        for (iid, product), pos in list(self._book.items()):
            if product is _MIS and pos.qty:
                order = self._square_off_order(iid, pos)
                w = self._accept(order, self._lookup(iid), immediate=True)
                charge = self.config.square_off_charge
                w.extra_charge = charge * (1 + _GST)

    def _square_off_clock(self) -> str:
        """Return this session's square-off time as HH:MM IST (for messages)."""
        return datetime.fromtimestamp(self._square_off_at, IST).strftime("%H:%M")

    def _square_off_order(self, iid: str, pos: Position) -> Order:
        self._order_seq += 1
        return Order(
            client_id=f"SQUAREOFF-{self._day}-{self._order_seq}",
            instrument_id=iid,
            side=_SELL if pos.qty > 0 else _BUY,
            qty=abs(pos.qty),
            product=_MIS,
            tag="squareoff",
            strategy=pos.strategy,
        )

    # ------------------------------------------------------------------ internals: orders

    def _static_reason(
        self, order: Order, ins: Instrument, *, check_trigger: bool = True
    ) -> str | None:
        """Return why the exchange/RMS refuses ``order`` (None if it passes).

        ``check_trigger=False`` skips the trigger-versus-LTP rule, for a stop that has already
        triggered and is being modified as the limit order it now is.
        """
        kind, product, side = ins.kind, order.product, order.side
        if kind is _INDEX:
            return f"{ins.id} is an index and cannot be traded; trade its futures or options"
        derivative = kind in _DERIVATIVES
        if product is _CNC and derivative:
            return f"CNC is for equity delivery; use NRML or MIS for {ins.id}"
        if product is _NRML and not derivative:
            return f"NRML is for F&O; use CNC (delivery) or MIS (intraday) for {ins.id}"
        if order.qty % ins.lot_size:
            return (
                f"Quantity {order.qty} should be a multiple of the lot size {ins.lot_size} "
                f"for {ins.id}"
            )
        limit, trigger = order.limit_price, order.trigger_price
        if limit is not None or trigger is not None:
            for label, value in (("price", limit), ("trigger price", trigger)):
                if value is not None and not is_on_tick(value, ins.tick_size):
                    return (
                        f"Tick size for this script is {ins.tick_size:g}. Kindly enter {label} "
                        "in the multiple of tick size for this script (nearest "
                        f"{ins.snap_price(value)})"
                    )
        if order.validity is _IOC and order.order_type not in (
            OrderType.MARKET,
            OrderType.LIMIT,
        ):
            return "IOC validity is allowed only for MARKET and LIMIT orders; use DAY"
        if order.order_type is _SL:
            assert limit is not None and trigger is not None
            if side is _BUY and trigger > limit + _EPS:
                return "Trigger price for stoploss buy orders should be lower than the price"
            if side is _SELL and trigger < limit - _EPS:
                return "Trigger price for stoploss sell orders should be higher than the price"
        if trigger is not None and check_trigger:
            ltp = self._last.get(ins.id)
            if ltp is not None:
                if side is _BUY and trigger <= ltp:
                    return (
                        "Trigger price for stoploss buy orders should be higher than the last "
                        f"traded price {ltp:g}"
                    )
                if side is _SELL and trigger >= ltp:
                    return (
                        "Trigger price for stoploss sell orders should be lower than the last "
                        f"traded price {ltp:g}"
                    )
        if not self._market_open():
            return (
                "Markets are closed right now (NSE trades 09:15-15:30 IST); place the order "
                "during market hours"
            )
        if product is _MIS and self._now_epoch >= self._square_off_at:
            when = self._square_off_clock()
            return f"MIS orders are blocked after the square-off time {when}; use CNC or NRML"
        return None

    def _market_open(self) -> bool:
        """Return whether NSE is trading at the simulated time (``velox.calendar.is_open``).

        The calendar is asked once per simulated day for that day's trading intervals; every
        order then compares its time against them.
        """
        now = self._now
        assert now is not None and self._day is not None
        if now.utcoffset() is None:
            return is_open(now)  # raises: a naive clock cannot be placed in a session
        hours = self._hours
        if hours is None:
            hours = tuple((start / 1e9, end / 1e9) for start, end in trading_hours_ns(self._day))
            self._hours = hours
        epoch = self._now_epoch
        for start, end in hours:  # noqa: SIM110 (a loop: no generator frame per order)
            if start <= epoch < end:
                return True
        return False

    def _rms(self, order: Order, ins: Instrument) -> tuple[float, str | None]:
        """Return the margin ``order`` blocks and why the RMS refuses it (holdings, funds)."""
        blocked, reason = self._required_margin(order, ins, order.qty)
        if reason is None and order.side is _SELL and order.product is _CNC:
            free = self._free_cnc(ins.id)
            if order.qty > free:
                reason = (
                    f"Insufficient holdings to sell {order.qty} {ins.id} in CNC: {free} free "
                    "(short selling in delivery is not allowed; use MIS for an intraday short)"
                )
        if reason is None and blocked > self._available() + _EPS:
            reason = self._funds_reason(blocked)
        return blocked, reason

    def _place_one(self, order: Order, ins: Instrument) -> str:
        blocked, reason = self._rms(order, ins)
        if reason:
            return self._reject(order, reason)
        w = self._accept(order, ins)
        self._block(w, blocked)
        self._sell_reserve(order, order.qty)
        return w.order.broker_order_id  # type: ignore[return-value]

    def _accept(self, order: Order, ins: Instrument, *, immediate: bool = False) -> _Working:
        """Return the working state of a newly accepted order (``immediate``: skip latency,
        for the broker's own square-off orders)."""
        self._order_seq += 1
        broker_id = f"SIM{self._order_seq:09d}"
        live = immediate or self._latency <= 0
        # order, instrument, after_tick, live_at, live, triggered, blocked (positional: the
        # keyword call costs twice as much, once per order)
        w = _Working(order, ins, self._tick_no, self._now_epoch + self._latency, live, False, 0.0)
        status = self._live_status(order) if live else OrderStatus.SUBMITTED
        self._not_live += not live
        self._working.setdefault(ins.id, {})[broker_id] = w
        self._update(w, _accepted(order, status, broker_id, self._now, "", 0, 0.0))
        return w

    @staticmethod
    def _live_status(order: Order) -> OrderStatus:
        if order.filled_qty:
            return _PARTIAL
        if order.order_type in _STOPS:
            return OrderStatus.TRIGGER_PENDING
        return _OPEN

    def _reject(self, order: Order, reason: str) -> str:
        self._order_seq += 1
        broker_id = f"SIM{self._order_seq:09d}"
        rejected = replace(
            order,
            status=OrderStatus.REJECTED,
            status_message=reason,
            broker_order_id=broker_id,
            created_at=self._now,
        )
        self._orders[broker_id] = rejected
        log.info("rejected %s: %s", order.client_id, reason)
        if self._listener is not None:
            self._listener.on_order_update(rejected)
        raise OrderRejected(reason, client_id=order.client_id)

    def _working_state(self, broker_order_id: str, verb: str) -> _Working:
        order = self.order(broker_order_id)
        if order.is_terminal:
            raise OrderRejected(
                f"Order {broker_order_id} is already {order.status.value} and cannot be {verb}",
                client_id=order.client_id,
            )
        return self._working[order.instrument_id][broker_order_id]

    def _update(self, w: _Working, order: Order) -> None:
        w.order = order
        self._orders[order.broker_order_id] = order  # type: ignore[index]
        if self._listener is not None:
            self._listener.on_order_update(order)

    def _finish(self, w: _Working, status: OrderStatus, message: str) -> None:
        order = w.order
        self._not_live -= not w.live
        w.live = True
        self._release(w, w.blocked)
        self._sell_reserve(order, -order.remaining_qty)
        del self._working[order.instrument_id][order.broker_order_id]  # type: ignore[arg-type]
        self._update(w, _with_message(order, status, message))

    # ------------------------------------------------------------------ internals: matching

    def _tick_capacity(self, iid: str, volume: int | None) -> int | None:
        """Return how many units this tick may fill in total (None = unlimited)."""
        if volume is None or volume <= 0:
            return None
        previous = self._cum_volume.get(iid)
        self._cum_volume[iid] = volume
        share = self._config.max_volume_share
        if share is None:
            return None
        traded = volume if previous is None else max(0, volume - previous)
        return int(traded * share)

    def _match(self, w: _Working, price: float, capacity: int | None) -> int | None:
        order = w.order
        side = order.side
        kind = order.order_type
        if kind in _STOPS and not w.triggered:
            trigger = order.trigger_price
            assert trigger is not None
            hit = price >= trigger if side is _BUY else price <= trigger
            if not hit:
                return capacity
            w.triggered = True
            self._update(w, _with_message(order, _OPEN, "triggered"))
            order = w.order
        if kind in _AT_MARKET:
            fill_price = self.slippage.adjust(side, price, w.instrument.tick_size)
        else:
            limit = order.limit_price
            assert limit is not None
            if self._config.limit_fill_on_touch:
                ok = price <= limit + _EPS if side is _BUY else price >= limit - _EPS
            else:
                ok = price < limit - _EPS if side is _BUY else price > limit + _EPS
            fill_price = price if ok else None
        if fill_price is not None:
            qty = order.remaining_qty
            if capacity is not None:
                lot = w.instrument.lot_size
                qty = min(qty, capacity // lot * lot)
            if qty > 0:
                if capacity is not None:
                    capacity -= qty
                self._fill(w, qty, fill_price)
        if order.validity is _IOC and not w.order.is_terminal:
            self._finish(w, OrderStatus.CANCELLED, "IOC order: unfilled quantity cancelled")
        return capacity

    def _fill(self, w: _Working, qty: int, price: float) -> None:
        order = w.order
        ins = w.instrument
        now = self._now
        assert now is not None and self._day is not None
        product, side = order.product, order.side
        charges = self.cost_model.fill_charges(
            ins, product, side, qty, price, self._day, order_brokerage_so_far=w.brokerage
        )
        w.brokerage += charges.brokerage
        total = charges.total + w.extra_charge
        w.extra_charge = 0.0
        broker_id = order.broker_order_id
        filled = order.filled_qty + qty
        fill = _new_fill(
            None,
            f"{broker_id}-{filled}",  # fill_id
            order.client_id,
            ins.id,
            side,
            qty,
            price,
            now,  # ts
            product,
            broker_id,
            total,  # charges
            order.strategy,
        )
        if not 0.0 < price < _INF or not is_aware(now):
            fill.__post_init__()  # raises for a slippage model's bad price or a naive tick time
        self._release(w, w.blocked * qty / (order.qty - order.filled_qty))
        if product is _CNC and side is _SELL:
            self._sell_reserve(order, -qty)
        self._book_fill(fill, ins)
        self._fills.append(fill)
        self._day_charges += total
        self._cash -= total
        w.value += qty * price
        done = filled == order.qty
        updated = _filled(order, _FILLED if done else _PARTIAL, "", filled, w.value / filled)
        if self._listener is not None:
            self._listener.on_fill(fill)
        if done:
            del self._working[ins.id][broker_id]  # type: ignore[arg-type]
        self._update(w, updated)

    def _book_fill(self, fill: Fill, ins: Instrument) -> None:
        key = (fill.instrument_id, fill.product)
        pos = self._book.get(key) or Position(
            fill.instrument_id, fill.product, strategy=fill.strategy
        )
        if fill.product is not _CNC:
            before = pos.realised_pnl
            pos = apply_fill(pos, fill)
            self._cash += pos.realised_pnl - before
            self._book[key] = pos
            margins = self._position_margins
            if margins is not None:  # same key order as the book: a new key goes last in both
                margins[key] = self._exposure_margin(ins, fill.product, pos.qty, pos.average_price)
            return
        # Delivery moves the full trade value. A CNC sell first closes today's CNC buys (an
        # intraday round trip), then sells from holdings carried from earlier sessions.
        self._cash -= fill.side.sign * fill.qty * fill.price
        if fill.side is _BUY or pos.qty >= fill.qty:
            self._book[key] = apply_fill(pos, fill)
            return
        today = max(pos.qty, 0)
        if today:
            pos = apply_fill(pos, replace(fill, qty=today))
        self._book[key] = pos
        held = self._holdings[fill.instrument_id]
        rest = replace(fill, qty=fill.qty - today, charges=0.0 if today else fill.charges)
        self._holdings[fill.instrument_id] = apply_fill(held, rest)

    # ------------------------------------------------------------------ internals: money

    def _margin_rate(self, ins: Instrument, product: Product) -> float:
        if product is _CNC:
            return 1.0
        return self._config.mis_margin if product is _MIS else self._config.nrml_margin

    def _exposure_margin(
        self, ins: Instrument, product: Product, signed_qty: int, price: float
    ) -> float:
        """Return the margin a position of ``signed_qty`` at ``price`` needs (simplified)."""
        if not signed_qty:
            return 0.0
        if ins.kind in _OPTIONS:
            if signed_qty > 0:
                return signed_qty * price  # option buyers pay the full premium
            assert ins.strike is not None
            return -signed_qty * ins.strike * self._margin_rate(ins, product)
        return abs(signed_qty) * price * self._margin_rate(ins, product)

    def _required_margin(self, order: Order, ins: Instrument, qty: int) -> tuple[float, str | None]:
        """Return the margin ``qty`` more of ``order`` blocks, or why it cannot be valued.

        CNC sells block nothing (the shares are reserved instead).
        """
        if order.product is _CNC and order.side is _SELL:
            return 0.0, None
        price = order.limit_price or order.trigger_price or self._last.get(ins.id)
        if price is None:
            return 0.0, (
                f"No last traded price for {ins.id} yet, so a MARKET order cannot be valued; "
                "feed a tick of the instrument first"
            )
        if order.product is _CNC:
            return qty * price, None
        pos = self._book.get((ins.id, order.product))
        current = pos.qty if pos else 0
        after = current + (qty if order.side is _BUY else -qty)
        # Only the part that opens exposure needs margin: an exit is free, a reversal blocks
        # the new side's quantity (the old side's margin is released when it fills).
        if current == 0 or (after > 0) != (current > 0):
            opening = after
        else:
            opening = after - current if abs(after) > abs(current) else 0
        return self._exposure_margin(ins, order.product, opening, price), None

    def _funds_reason(self, required: float) -> str:
        return (
            f"Insufficient funds. Required margin is {required:.2f} but available margin is "
            f"{self._available():.2f}"
        )

    def _used_margin(self) -> float:
        margins = self._position_margins
        if margins is None:
            margins = self._position_margins = {
                (iid, product): self._exposure_margin(
                    self._lookup(iid), product, pos.qty, pos.average_price
                )
                for (iid, product), pos in self._book.items()
                if product is not _CNC
            }
        used = self._blocked
        for margin in margins.values():  # in book order, as a sum over the positions reads
            if margin:
                used += margin
        return used

    def _available(self) -> float:
        return self._cash - self._used_margin()

    def _block(self, w: _Working, amount: float) -> None:
        w.blocked += amount
        self._blocked += amount

    def _release(self, w: _Working, amount: float) -> None:
        w.blocked -= amount
        self._blocked -= amount
        if abs(self._blocked) < 1e-6 and not any(self._working.values()):
            self._blocked = 0.0  # wipe float dust once nothing is working

    def _free_cnc(self, iid: str) -> int:
        pos = self._book.get((iid, _CNC))
        held = self._holdings.get(iid)
        total = (pos.qty if pos else 0) + (held.qty if held else 0)
        return total - self._pending_cnc_sell.get(iid, 0)

    def _sell_reserve(self, order: Order, qty: int) -> None:
        if order.product is _CNC and order.side is _SELL and qty:
            iid = order.instrument_id
            self._pending_cnc_sell[iid] = self._pending_cnc_sell.get(iid, 0) + qty
