"""THE event loop: feed → clock → broker → OMS → strategy → risk → broker, for every mode.

One :class:`Engine` runs replay, paper and live alike; they differ only in the objects handed to
it: the market source (a :class:`velox.feeds.BarReplay` of stored bars, or any
:class:`~velox.brokers.base.MarketData` tick source), the broker (``SimBroker`` or a real one),
the clock and the audit log. There is no ``if paper:``.

Threading: one thread (the caller of :meth:`Engine.run`, or the engine thread of
:meth:`Engine.start`) owns strategy, OMS and risk state. Broker postbacks and live feed ticks
only put events on the engine's queue; the owner drains it between events, so a replay is
deterministic and single-threaded.

Per event, in order (see ``docs/engine.md``):

1. bars that closed at or before the event's time reach ``on_bar`` (orders they place go to the
   broker before this event's tick, so they fill at the first price *after* the bar);
2. the tick reaches the broker when the simulator needs it (the instrument has working orders
   or an intraday/F&O position), else it is kept and handed over just before the next order;
3. postbacks are drained: fills update positions, strategies see ``on_fill``/``on_order``;
4. positions are marked to market and the day's P&L goes to the risk engine, which may trip the
   kill switch: then, within this event, every open order is cancelled, every position gets a
   market square-off order, and every later order is refused;
5. strategies that asked for ticks see the forming candle in ``on_tick``.

MIS positions are squared off by the engine at each session's square-off
(:func:`velox.calendar.square_off_ns`: the ``mis_square_off`` setting on a regular session, the
same lead before the close on a special one): at the first event at or after it, MIS orders
are cancelled and MIS positions closed at market, unless the venue (a simulator due at the same
time) has done so already.

Strategy exceptions are caught and logged; they stop that strategy (optionally flattening its
positions), never the engine.

The engine's lock (:attr:`Engine.lock`) serialises everything that changes OMS, risk or broker
state. The engine thread holds it while it runs, and lets go of it only while a strategy
callback runs (a strategy's order takes it back inside :meth:`Engine.submit`) and while the
tick loop waits for the next event: so the kill thread (:class:`velox.engine.commands.
KillThread`) can cancel, square off and halt while a strategy hangs, even inside C code.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from velox._gc import collect_if_due, gc_paused, idle_gc
from velox.brokers.base import (
    Broker,
    ConnectionEvent,
    ConnectionState,
    MarketData,
    simulated_venue,
)
from velox.calendar import IST, IST_OFFSET_NS, square_off_ns
from velox.engine._time import _US
from velox.engine._time import DAY_NS as _DAY_NS
from velox.engine._time import EPOCH_IST as _EPOCH_IST
from velox.engine._time import dt as _dt
from velox.engine._time import epoch as _epoch
from velox.engine._time import ns as _ns
from velox.engine.commands import CommandSource
from velox.engine.journal import Alert, RunJournal
from velox.engine.watchdog import DEFAULT_CALLBACK_BUDGET, CallbackWatchdog
from velox.errors import (
    AuthExpired,
    BrokerError,
    ConfigError,
    DataError,
    OrderRejected,
    RiskBreach,
    RunInterrupted,
    UnknownInstrument,
    ValidationError,
    VeloxError,
)
from velox.feeds.bar_replay import BarReplay, index_ns
from velox.feeds.clock import Clock
from velox.monitoring import log_mode, set_log_context
from velox.oms import OMS, RISK_SUFFIX, AuditLog, MemoryAuditLog, split_at_freeze
from velox.risk import RiskEngine, RiskEvent, default_risk_limits
from velox.strategy import BasketLeg, Context, Strategy, apply_signal, is_cross_sectional
from velox.types import (
    TERMINAL_STATUSES,
    Bar,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Tick,
    Validity,
    replacer,
)

if TYPE_CHECKING:
    import pandas as pd

    from velox.engine.result import RunResult
    from velox.monitoring import EngineMetrics
    from velox.store.commands import Command

__all__ = ["Engine", "MODES", "name_uniquely", "strategy_record"]

log = logging.getLogger(__name__)

MODES = ("replay", "paper", "live")
#: How a halt for an expired broker session reads (it starts with this).
_SESSION_EXPIRED = "broker session expired"

# Bars built here come from validated stored bars or from the aggregator's checked ticks;
# Bar.__post_init__ would re-check them and costs more than the rest of the event.
# ``_make_bar(None, instrument_id, timeframe, ts, open, high, low, close, volume, closed)``
_make_bar = replacer(Bar, *(f.name for f in fields(Bar)))
#: ``_new_order(None, client_id=…, …every field by name)``: an Order whose validation the
#: caller runs
_new_order = replacer(Order, *(f.name for f in fields(Order)))


class _Listener:
    """The broker's postback receiver: enqueue and return (called from any thread).

    ``on_order_update`` and ``on_fill`` are the enqueuing function itself (no method in
    between): the simulator calls them three times per order.
    """

    __slots__ = ("on_order_update", "on_fill", "on_connection")

    def __init__(self, put: Callable[[object], None]) -> None:
        self.on_order_update: Callable[[Order], None] = put
        self.on_fill: Callable[[Fill], None] = put
        #: the broker's own order-update socket going down / back (a ConnectionListener)
        self.on_connection: Callable[[ConnectionEvent], None] = put


@dataclass(slots=True)
class _Runner:
    """One strategy inside the engine."""

    strategy: Strategy
    ctx: Context
    capital: float
    wants_ticks: bool
    plain: bool  # uses Strategy.on_bar (the default that applies signals)
    wants_fills: bool  # overrides on_fill / on_order (the base ones do nothing: not called)
    wants_orders: bool
    alive: bool = True
    error: str | None = None
    #: Stopped by an operator's ``stop-strategy`` (a ``start-strategy`` may resume it), not
    #: by an error of its own.
    operator_stop: bool = False
    signals: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    arrays: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # the same, numpy


@dataclass(slots=True)
class _Sub:
    """Closed-bar bookkeeping of one (instrument, timeframe)."""

    runners: list[_Runner]
    history: deque[Bar]
    count: int = 0
    starts: list[int] | None = None  # bar starts, UTC epoch ns (BarReplay)
    ohlcv: tuple[list[float], ...] | None = None
    frame: pd.DataFrame | None = None  # the replayed bars (history reads rows from it)
    watchers: list[BarWatcher] = field(default_factory=list)


class BarWatcher(Protocol):
    """What watches closed candles beside the strategies (users' alert rules:
    :class:`velox.alerts.rules.RuleWatcher`): it trades nothing and owns no capital."""

    @property
    def keys(self) -> Sequence[tuple[str, str]]:
        """The (instrument, timeframe) pairs whose closed bars it needs."""
        ...

    def on_bar(self, bar: Bar) -> None:
        """Take one closed bar (on the engine thread, after the strategies saw it)."""
        ...


class Engine:
    """Return the engine that runs strategies against a market source and a broker.

    Parameters
    ----------
    strategies
        Strategy instances (each needs a unique ``name``; duplicates get ``#2``, ``#3``).
    broker
        Any :class:`velox.brokers.base.Broker`. A
        :class:`~velox.brokers.base.SimulatedVenue` (the simulator) is also handed the ticks
        of the instruments it watches, as described in the module docstring, and the engine's
        time before each order.
    feed
        The market: a :class:`velox.feeds.BarReplay` (stored bars: the engine replays their
        ticks and close events in its bar loop, with a compiled fast path), or any other
        :class:`~velox.brokers.base.MarketData` (a live feed, a paper simulator's stream, a
        tick replay), whose ticks the engine's tick loop turns into candles with
        ``CandleAggregator``. The two loops give the same trades on the same ticks (tested).
    clock
        The tick loop's clock for timers and quiet-candle closes when no tick arrives (a
        ``WallClock`` live); a ``BarReplay`` brings its own.
    instruments
        Instrument lookup: a mapping or a callable raising ``KeyError`` for unknown ids.
    mode
        ``"replay"``, ``"paper"`` or ``"live"``: only labels logs, audit rows and the result.
    initial_cash
        Account cash in rupees (strategies share it unless they set ``capital``).
    audit
        Where order transitions go before they are acted on (in-memory by default).
    run_id
        Client-id prefix; a restarted paper run passes the same id to resume.
    risk
        The account's :class:`velox.risk.RiskEngine` (default limits when omitted).
    reconcile_every
        Seconds of engine time between reconciliations with the broker (also at start).
    commands
        Operator commands (:class:`velox.engine.commands.StoreCommands`: the store's
        ``commands`` table), polled about every 0.25 s of wall time and at once when the
        source wakes the engine; each is taken, executed and answered exactly once.
    journal
        Where the run's state goes as it changes (:class:`velox.engine.journal.RunJournal`:
        the store's ``RunRecorder``): every order state, fill, position, risk event and alert
        at once, the equity curve in slices on the timers and whole at the end.
    flatten_on_error
        Square off a strategy's positions when it raises.
    restore
        Rebuild orders, fills and positions from the audit log before starting (restart).
    fast_forward
        In a bar replay, replay stretches that nothing reacts to in one compiled call. The
        result is the same event for event. ``None`` (default): only for replays of at least
        100,000 ticks, where it pays for loading the compiled kernel (≈ 0.3 s per process).
    callback_budget
        Seconds one strategy callback may run; a callback that overruns (an endless loop, a
        long sleep) is interrupted and that strategy stopped with a ``StrategyTimeout``
        error, the others go on (:mod:`velox.engine.watchdog`). ``None``: no watchdog.
    watchers
        :class:`BarWatcher` objects handed every closed bar of their ``keys`` after the
        strategies (users' alert rules); a bar replay with watchers runs without fast-forward.
    metrics
        A :class:`velox.monitoring.EngineMetrics` to time tick → order latency into; the
        other metrics are read from the engine when scraped (``None``: nothing timed).
    mis_square_off
        The square-off time (IST) of a regular session; default the ``mis_square_off``
        setting (``VELOX_MIS_SQUARE_OFF``, 15:15). Special sessions follow their own close.
    """

    def __init__(
        self,
        strategies: Sequence[Strategy],
        *,
        broker: Broker,
        feed: MarketData,
        instruments: Mapping[str, Instrument] | Callable[[str], Instrument],
        mode: str = "replay",
        initial_cash: float = 1_000_000.0,
        audit: AuditLog | None = None,
        run_id: str = "R1",
        risk: RiskEngine | None = None,
        reconcile_every: float | None = 900.0,
        commands: CommandSource | None = None,
        journal: RunJournal | None = None,
        flatten_on_error: bool = False,
        restore: bool = False,
        fast_forward: bool | None = None,
        clock: Clock | None = None,
        callback_budget: float | None = DEFAULT_CALLBACK_BUDGET,
        venues: Mapping[str, Broker] | None = None,
        watchers: Sequence[BarWatcher] = (),
        metrics: EngineMetrics | None = None,
        mis_square_off: time | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValidationError(f"mode={mode!r}; use one of {', '.join(MODES)}")
        if not (math.isfinite(initial_cash) and initial_cash > 0):
            raise ValidationError(f"initial_cash={initial_cash!r} must be a positive amount")
        self.mode = mode
        #: Held by whichever thread changes OMS, risk or broker state (module docstring).
        self.lock = threading.RLock()
        # While the kill thread acts (holding the lock), strategy callbacks its fills and order
        # updates cause are kept here and run on the engine thread (a strategy is never called
        # from two threads at once: its hung callback may still be running).
        self._deferring = False
        self._deferred: deque[tuple[_Runner, Callable[..., object], tuple[object, ...]]] = deque()
        # Marks read by the watchdog (velox/engine/watchdog.py): which strategy's callback
        # runs now and a counter bumped per callback, plain stores that cost ~nothing.
        self.callback_budget = callback_budget
        self._callback_runner: _Runner | None = None
        self._callback_seq = 0
        self.broker = broker
        # the brokers a deployment may switch between (``switch-mode``): "live" sends orders to
        # the broker, "dry-run" to the simulated exchange on the same live data
        self.venues: dict[str, Broker] = dict(venues or {})
        self.venues.setdefault(_venue_of(mode), broker)
        self.feed = feed
        self.clock = feed.clock if isinstance(feed, BarReplay) else clock
        self._lookup = instruments.__getitem__ if isinstance(instruments, Mapping) else instruments
        self._instruments: dict[str, Instrument] = {}
        self.initial_cash = float(initial_cash)
        self.audit: AuditLog = audit if audit is not None else MemoryAuditLog(mode)
        self.oms = OMS(self.audit, run_id=run_id)
        self.run_id = run_id
        self.risk = risk if risk is not None else RiskEngine(default_risk_limits())
        self._watch_equity = self.risk.guard.active
        self.reconcile_every_ns = None if reconcile_every is None else int(reconcile_every * 1e9)
        self.commands = commands
        self.journal = journal
        self._journal_sent = 0  # equity samples handed to the journal
        self._next_beat = 0.0
        if journal is not None:
            self.oms.on_order = self._journal_order
            self.oms.on_fill_booked = self._journal_fill
        self.flatten_on_error = flatten_on_error
        self._restore = restore
        self._fast = fast_forward
        # Postbacks land on a deque (append/popleft are atomic: safe from broker threads);
        # market events on a queue the threaded loop blocks on; a postback wakes it up.
        self._postbacks: deque[object] = deque()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Until a threaded loop runs, a postback only needs appending (see _run_ticks).
        self._listener = _Listener(self._postbacks.append)
        self.broker.set_listener(self._listener)
        self.venue = simulated_venue(broker)
        self._broker_quote = None if self.venue is None else self.venue.on_quote
        self._broker_clock = None if self.venue is None else self.venue.on_clock
        self._runners: list[_Runner] = []
        self._by_name: dict[str, _Runner] = {}
        name_uniquely(strategies)
        fixed = [float(s.capital) for s in strategies if s.capital]
        shared = len(strategies) - len(fixed)
        share = (self.initial_cash - sum(fixed)) / shared if shared else 0.0
        if shared and share <= 0:
            raise ValidationError(
                f"strategies' capital adds up to {sum(fixed):,.0f}, leaving nothing of "
                f"initial_cash={self.initial_cash:,.0f} for the {shared} without capital"
            )
        for strategy in strategies:
            runner = _Runner(
                strategy=strategy,
                ctx=Context(self, strategy),
                capital=float(strategy.capital) if strategy.capital else share,
                wants_ticks=type(strategy).on_tick is not Strategy.on_tick,
                plain=type(strategy).on_bar is Strategy.on_bar,
                wants_fills=type(strategy).on_fill is not Strategy.on_fill,
                wants_orders=type(strategy).on_order is not Strategy.on_order,
            )
            self._runners.append(runner)
            self._by_name[strategy.name] = runner
        self._subs: dict[tuple[str, str], _Sub] = {}
        self._last: dict[str, float] = {}
        # instrument → its latest tick the simulator has not seen: (ns, price, volume), or in
        # a bar replay the tick's position in the replay (read when needed, see _catch_up)
        self._unseen: dict[str, tuple[int, float, float] | int] = {}
        self._replayed: BarReplay | None = None
        self._watch: set[str] = set()  # instruments whose ticks the broker must see
        self._upnl: dict[str, float] = {}
        self._mtm: dict[str, tuple[int, float]] = {}  # instrument → (net qty, Σ qty·avg)
        self._unrealised = 0.0
        self._now_ns = 0
        self._dt_ns = -1
        self._dt_value = _EPOCH_IST
        self._day = -1
        self._base = (0.0, 0.0, 0.0)  # realised, unrealised, charges at the day's start
        self._risk_hi = 0.0
        self._risk_lo = 0.0
        self._next_reconcile = 0
        self._next_timer = 0
        self._next_poll = 0.0
        self._halted: str | None = None
        # baskets still being entered: name → client ids, and client id → basket name (a
        # broker's later reject of one leg rolls the basket back, see _roll_back)
        self._baskets: dict[str, list[str]] = {}
        self._basket_of: dict[str, str] = {}
        if mis_square_off is None:
            from velox.config import get_settings

            mis_square_off = get_settings().square_off_time
        self.mis_square_off = mis_square_off
        self._mis_cut_ns = _NEVER  # this session's square-off (set by _new_day)
        self._mis_done = True  # squared off this session already (or no session yet)
        # the square-off timer runs only on a session with an MIS order or position (armed by
        # the first MIS order sent): days without MIS keep the fast loop's stretches whole
        self._mis_armed = False
        self._disconnected: set[str] = set()  # market-data sources that reported a disconnect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.risk_events: list[RiskEvent] = []
        self.alerts: list[Alert] = []
        self.equity_ns: list[int] = []
        self.equity_values: list[float] = []
        self.errors: dict[str, str] = {}
        self.started_at: datetime | None = None
        self._aggregator = None
        self._started = False
        self._view = _View(self)
        self.watchers = list(watchers)
        #: Ticks handled (read by velox.monitoring when scraped: an int add costs nothing).
        self.ticks_seen = 0
        # tick → order latency: the tick's arrival (perf_counter) and the histogram's observe
        self._tick_t0 = 0.0
        self._latency = None if metrics is None else metrics.tick_to_order.observe

    # -- EngineServices (what Context calls) ------------------------------------------------

    def now(self) -> datetime:
        """Return the engine's current time (the last event's time) as an IST datetime."""
        ns = self._now_ns
        if ns != self._dt_ns:
            self._dt_ns, self._dt_value = ns, _dt(ns)
        return self._dt_value

    def history(self, instrument_id: str, timeframe: str, n: int | None) -> pd.DataFrame:
        """Return the last ``n`` closed bars of a subscription as a DataFrame."""
        import pandas as pd

        sub = self._subs.get((instrument_id, timeframe))
        if sub is None:
            raise ValidationError(
                f"no {timeframe} bars of {instrument_id} are subscribed: add it to the "
                "strategy's instruments/timeframes"
            )
        if sub.frame is not None:  # a replay keeps row numbers, not Bar objects
            keep = min(sub.count, sub.history.maxlen or sub.count)
            if n is not None:
                keep = min(keep, max(n, 0))
            frame = sub.frame.iloc[sub.count - keep : sub.count]
            out = frame[["open", "high", "low", "close"]].astype("float64")
            out["volume"] = frame.get("volume", 0.0)
            out.index.name = "ts"
            return out
        bars = list(sub.history)
        if n is not None:
            bars = bars[-n:] if n > 0 else []
        index = pd.DatetimeIndex([b.ts for b in bars], name="ts")
        if len(index):
            index = index.tz_convert("Asia/Kolkata")
        return pd.DataFrame(
            {
                "open": [b.open for b in bars],
                "high": [b.high for b in bars],
                "low": [b.low for b in bars],
                "close": [b.close for b in bars],
                "volume": [b.volume for b in bars],
            },
            index=index,
            dtype="float64",
        )

    def signal(self, strategy: Strategy, instrument_id: str, timeframe: str) -> float:
        """Return the strategy's latest signal for the subscription (NaN before any)."""
        sub = self._subs.get((instrument_id, timeframe))
        if sub is None or sub.count == 0:
            return math.nan
        runner = self._by_name[strategy.name]
        pre = runner.signals.get((instrument_id, timeframe))
        if pre is not None:
            return float(pre[sub.count - 1])
        frame = self.history(instrument_id, timeframe, None)
        values = np.asarray(strategy.signals(frame), dtype=np.float64)
        return float(values[-1]) if len(values) else math.nan

    def position_qty(self, strategy: str, instrument_id: str) -> int:
        """Return a strategy's signed net quantity in an instrument."""
        return self.oms.position_qty(strategy, instrument_id)

    def strategy_equity(self, strategy: str) -> float:
        """Return a strategy's capital + realised + unrealised − charges."""
        runner = self._by_name[strategy]
        book = self.oms.books.get(strategy)
        if book is None:
            return runner.capital
        return runner.capital + book.realised - book.charges + book.unrealised(self._last)

    def last_price(self, instrument_id: str) -> float | None:
        """Return the last traded price seen by the engine."""
        return self._last.get(instrument_id)

    def instrument(self, instrument_id: str) -> Instrument:
        """Return the instrument, raising :class:`UnknownInstrument` with the id if unknown."""
        ins = self._instruments.get(instrument_id)
        if ins is None:
            try:
                ins = self._lookup(instrument_id)
            except UnknownInstrument:
                raise
            except KeyError:
                raise UnknownInstrument(
                    f"unknown instrument {instrument_id!r}: not in the instrument master "
                    "(ids read EXCHANGE:SYMBOL, e.g. NSE:RELIANCE)"
                ) from None
            self._instruments[instrument_id] = ins
        return ins

    def open_orders(
        self, strategy: str | None = None, instrument_id: str | None = None
    ) -> list[Order]:
        """Return working orders (of one strategy / instrument when given)."""
        return self.oms.open_orders(strategy, instrument_id)

    def order(self, client_id: str) -> Order:
        """Return the latest state of an order by client id."""
        return self.oms.orders[client_id]

    # AccountView for the risk engine ------------------------------------------------------

    def positions(self) -> dict[str, int]:
        """Return the account's signed net quantity per instrument (non-zero only)."""
        return {k: v for k, v in self.oms.account.net.items() if v}

    def account_position_qty(self, instrument_id: str) -> int:
        """Return the account's signed net quantity in an instrument."""
        return self.oms.account.net.get(instrument_id, 0)

    # -- orders ---------------------------------------------------------------------------

    def submit(
        self,
        strategy: str,
        instrument_id: str,
        side: Side,
        qty: int,
        order_type: OrderType | str,
        limit_price: float | None,
        trigger_price: float | None,
        product: Product | str,
        validity: Validity | str,
        tag: str,
    ) -> str:
        """Create, risk-check and send a strategy's order; return its client id.

        Raises :class:`ValidationError`/:class:`UnknownInstrument` for a malformed order and
        :class:`RiskBreach` when a limit (or a halt) refuses it; both are audited. Called from
        strategy callbacks, so it takes the engine's lock (a kill may be in progress).
        """
        with self.lock:
            return self._submit(
                strategy, instrument_id, side, qty, order_type, limit_price, trigger_price,
                product, validity, tag,
            )  # fmt: skip

    def _submit(
        self,
        strategy: str,
        instrument_id: str,
        side: Side,
        qty: int,
        order_type: OrderType | str,
        limit_price: float | None,
        trigger_price: float | None,
        product: Product | str,
        validity: Validity | str,
        tag: str,
    ) -> str:
        runner = self._by_name[strategy]
        if not runner.alive:
            raise ValidationError(f"strategy {strategy} is stopped ({runner.error}); no orders")
        iid = str(instrument_id)
        ins = self.instrument(iid)
        # Built once, with its client id and creation time, and validated as Order(...) does
        # (the fields, then Order.__post_init__): the OMS then tracks this very object, and
        # an order refused here takes no client id.
        cid = self.oms.peek_client_id()
        order = _new_order(
            None, client_id=cid, instrument_id=iid, side=side, qty=qty, order_type=order_type,
            product=product, validity=validity, limit_price=limit_price,
            trigger_price=trigger_price, tag=tag or cid, strategy=strategy,
            status=OrderStatus.NEW, broker_order_id=None, filled_qty=0, average_price=0.0,
            status_message="", created_at=self.now(),
        )  # fmt: skip
        order.__post_init__()
        order.check_against(ins)
        if order.product is Product.CNC and ins.kind.is_derivative:
            raise ValidationError(f"{iid} is a derivative: use product NRML or MIS, not CNC")
        return self._send(order, flatten=False)

    def _send(
        self, order: Order, *, flatten: bool, tracked: bool = False, checked: bool = False
    ) -> str:
        """Track (unless ``tracked``), risk-check (unless ``checked``: a basket's orders were
        checked together) and send a NEW order built with the OMS's next client id."""
        now = self.now()
        oms = self.oms
        if not tracked:
            oms.track(order)
        cid = order.client_id
        if not checked:
            try:
                if self._halted is not None and not flatten:
                    raise RiskBreach("reconciliation", f"trading halted: {self._halted}")
                view = self._view
                view.now = now
                self.risk.check_order(order, view, flatten=flatten)
            except RiskBreach as breach:
                self._drain_risk()
                oms.transition(
                    cid, OrderStatus.REJECTED, now, str(breach), audit={"limit": breach.limit}
                )
                raise
        iid = order.instrument_id
        self._catch_up(iid)
        order = oms.submit(cid, now)
        if order.product is Product.MIS and not self._mis_armed:
            self._arm_mis()
        self.risk.record_sent(order, now)
        self._watch.add(iid)
        reason = None
        try:
            self.broker.place_order(order)
            if self._latency is not None and self._tick_t0:
                self._latency(_time.perf_counter() - self._tick_t0)
        except OrderRejected as exc:
            reason = exc.reason
        except VeloxError as exc:  # a broker failure rejects this order, not the engine
            reason = f"broker error: {exc}"
            if isinstance(exc, AuthExpired):
                self._session_expired(exc)
        if reason is not None:
            log.info("[%s] broker rejected %s: %s", self.mode, cid, reason)
            self._drain()
            if not oms.orders[cid].is_terminal:
                self._rejected(oms.transition(cid, OrderStatus.REJECTED, now, reason))
        return cid

    def submit_basket(
        self, strategy: str, legs: Sequence[BasketLeg], product: Product | str, tag: str
    ) -> list[str]:
        """Risk-check a basket as one, then send its orders leg by leg; return their client ids.

        All or nothing: every leg is validated and split at its freeze quantity, bought legs
        ordered first (a broker's margin then sees the hedge), and the whole basket goes
        through :meth:`velox.risk.RiskEngine.check_basket`; a breach refuses every order
        (audited) and raises :class:`RiskBreach`. No broker places a basket atomically, so
        the orders go out one by one; a broker reject rolls the basket back
        (:meth:`_roll_back`). The basket is audited (a ``BASKET`` row) before any order.
        """
        with self.lock:
            return self._submit_basket(strategy, legs, product, tag)

    def _submit_basket(
        self, strategy: str, legs: Sequence[BasketLeg], product: Product | str, tag: str
    ) -> list[str]:
        runner = self._by_name[strategy]
        if not runner.alive:
            raise ValidationError(f"strategy {strategy} is stopped ({runner.error}); no orders")
        if not legs:
            raise ValidationError("basket([]) has no legs: give at least one BasketLeg")
        oms = self.oms
        now = self.now()
        sides = []
        for leg in legs:
            if not isinstance(leg, BasketLeg):
                raise ValidationError(f"basket leg {leg!r} must be a BasketLeg")
            try:
                sides.append(Side(str(leg.side).upper()))
            except ValueError:
                raise ValidationError(f"basket leg side={leg.side!r}: use BUY or SELL") from None
        order_of = sorted(range(len(legs)), key=lambda k: sides[k] is not Side.BUY)
        name = tag or f"{oms.prefix}{oms.seq + 1}"
        orders: list[Order] = []
        for k in order_of:  # built and validated before any takes a client id
            leg = legs[k]
            iid = str(leg.instrument_id)
            ins = self.instrument(iid)
            qty = leg.qty
            whole = isinstance(qty, int) and qty > 0 and qty % ins.lot_size == 0
            for part in split_at_freeze(qty, ins.lot_size, ins.freeze_qty) if whole else [qty]:
                cid = f"{oms.prefix}{oms.seq + 1 + len(orders)}"
                order = _new_order(
                    None, client_id=cid, instrument_id=iid, side=sides[k], qty=part,
                    order_type=leg.order_type, product=leg.product or product,
                    validity=Validity.DAY, limit_price=leg.limit_price, trigger_price=None,
                    tag=name, strategy=strategy, status=OrderStatus.NEW, broker_order_id=None,
                    filled_qty=0, average_price=0.0, status_message="", created_at=now,
                )  # fmt: skip
                order.__post_init__()
                order.check_against(ins)
                if order.product is Product.CNC and ins.kind.is_derivative:
                    raise ValidationError(
                        f"{iid} is a derivative: use product NRML or MIS, not CNC"
                    )
                orders.append(order)
        cids = [o.client_id for o in orders]
        self.audit.append(
            f"{oms.prefix}{RISK_SUFFIX}", now, "BASKET",
            {"basket": name, "strategy": strategy, "orders": cids,
             "legs": [[o.instrument_id, o.side.value, o.qty] for o in orders]},
        )  # fmt: skip
        for order in orders:
            oms.track(order)
        try:
            if self._halted is not None:
                raise RiskBreach("reconciliation", f"trading halted: {self._halted}")
            view = self._view
            view.now = now
            self.risk.check_basket(orders, view)
        except RiskBreach as breach:
            self._drain_risk()
            for cid in cids:
                oms.transition(
                    cid, OrderStatus.REJECTED, now, f"basket {name} refused: {breach}",
                    audit={"limit": breach.limit, "basket": name},
                )  # fmt: skip
            raise
        self._baskets[name] = cids
        for cid in cids:
            self._basket_of[cid] = name
        for order in orders:
            self._send(order, flatten=False, tracked=True, checked=True)
            sent = oms.orders[order.client_id]
            if sent.status is OrderStatus.REJECTED:
                self._roll_back(name, f"leg {sent.client_id} rejected: {sent.status_message}")
                break
            if name not in self._baskets:  # rolled back while sending (a postback's reject)
                break
        return cids

    def _roll_back(self, name: str, reason: str) -> None:
        """Undo a basket one of whose orders the broker rejected, and alert.

        Its orders not yet sent are refused, its working ones cancelled, and what its fills
        opened is squared off at market (split at the freeze quantity); fills that reduced a
        position (an exit basket's) are left alone, since undoing them would reopen it.
        """
        cids = self._baskets.pop(name, None)
        if cids is None:
            return
        oms = self.oms
        now = self.now()
        for cid in cids:
            self._basket_of.pop(cid, None)
            if oms.orders[cid].status is OrderStatus.NEW:
                oms.transition(cid, OrderStatus.REJECTED, now, f"basket {name} rolled back: "
                               f"{reason}", audit={"basket": name})  # fmt: skip
        for cid in cids:
            working = oms.open.get(cid)
            if working is not None:
                self._cancel(working)
        self._drain()
        strategy = oms.orders[cids[0]].strategy
        opened: dict[tuple[str, Product], int] = {}
        for cid in cids:
            order = oms.orders[cid]
            if order.filled_qty:
                key = (order.instrument_id, order.product)
                opened[key] = opened.get(key, 0) + order.side.sign * order.filled_qty
        undone = []
        for (iid, product), qty in opened.items():
            held = oms.position_qty(strategy, iid)
            if not qty or not held or (held > 0) != (qty > 0):
                continue
            ins = self.instrument(iid)
            side = Side.SELL if qty > 0 else Side.BUY
            for part in split_at_freeze(min(abs(qty), abs(held)), ins.lot_size, ins.freeze_qty):
                cid = oms.peek_client_id()
                order = Order(
                    client_id=cid, instrument_id=iid, side=side, qty=part,
                    order_type=OrderType.MARKET, product=product, strategy=strategy,
                    tag=f"{name}-rollback", created_at=now,
                )  # fmt: skip
                try:
                    self._send(order, flatten=True)
                    undone.append(cid)
                except RiskBreach as exc:
                    log.error("[%s] rollback of %s refused: %s", self.mode, iid, exc)
        self._drain()
        log.error("[%s] basket %s rolled back: %s", self.mode, name, reason)
        self.audit.append(
            f"{oms.prefix}{RISK_SUFFIX}", now, "BASKET_ROLLBACK",
            {"basket": name, "reason": reason, "orders": cids, "square_off": undone},
        )  # fmt: skip
        self._alert(
            "order_rejected", "critical",
            f"basket {name} of {strategy} rolled back: {reason}; "
            f"{len(undone)} square-off order(s) sent",
            about=f"basket:{name}", payload={"basket": name, "orders": cids, "square_off": undone},
        )  # fmt: skip

    def cancel(self, strategy: str, client_id: str) -> None:
        """Cancel one of ``strategy``'s working orders."""
        with self.lock:  # called from strategy callbacks, like submit
            order = self.oms.open.get(client_id)
            if order is None or order.strategy != strategy:
                raise ValidationError(f"{strategy} has no working order {client_id!r}")
            self._cancel(order)

    def _cancel(self, order: Order) -> None:
        self._drain()  # learn broker ids of orders placed during this event
        order = self.oms.open.get(order.client_id, order)
        if order.broker_order_id is None or order.is_terminal:
            return
        self.audit.append(
            order.client_id,
            self.now(),
            "CANCEL_REQUESTED",
            {"broker_order_id": order.broker_order_id},
        )
        try:
            self.broker.cancel_order(order.broker_order_id)
        except OrderRejected as exc:
            log.info("[%s] cancel of %s refused: %s", self.mode, order.client_id, exc.reason)
        except AuthExpired as exc:
            self._session_expired(exc)
        except BrokerError as exc:  # the order stays working; the operator is told
            log.error("[%s] cancel of %s failed: %s", self.mode, order.client_id, exc)
            self._alert("order_rejected", "critical", f"cancel of {order.client_id} failed: "
                        f"{exc}", about=f"cancel:{order.client_id}")  # fmt: skip

    def _catch_up(self, iid: str) -> None:
        """Bring the simulator to the engine's state before an order: the instrument's latest
        unseen tick (its last price), then the current time (a new session's first order must
        not be expired by the previous session's close)."""
        pending = self._unseen.pop(iid, None)
        if pending is not None and self._broker_quote is not None:
            if pending.__class__ is int:  # a position in the bar replay
                feed = self._replayed
                assert feed is not None
                pending = (
                    feed.ts_ns.item(pending),
                    feed.price.item(pending),
                    feed.volume.item(pending),
                )
            ns, price, volume = pending  # type: ignore[misc]
            size = None if volume != volume else int(volume)
            self._broker_quote(iid, _dt(ns), price, size, _epoch(ns))
        if self._broker_clock is not None:
            self._broker_clock(self.now(), _epoch(self._now_ns))

    # -- postbacks ------------------------------------------------------------------------

    def _postback_arrived(self, event: object) -> None:
        """Enqueue a postback and wake the threaded loop (the listener's function there)."""
        self._postbacks.append(event)
        self._queue.put(_WAKE)

    def _drain(self) -> None:
        """Handle every queued postback now, in arrival order."""
        if self._deferred and not self._deferring:
            self._run_deferred()
        postbacks = self._postbacks
        if not postbacks:
            return
        now = self.now()  # postbacks are handled within the current event
        moved = False  # whether working orders or positions changed (the watch follows them)
        while postbacks:
            event = postbacks.popleft()
            if isinstance(event, Fill):
                if event.ts > now:
                    # a venue in another process filled it at a tick the engine has not seen
                    # yet (its postbacks come before that tick): the market is at the fill's
                    # time, and its audit row says so
                    self._now_ns = _ns(event.ts)
                    now = self.now()
                self._fill_arrived(event, now)
                moved = True
            elif isinstance(event, Order):
                moved = self._order_arrived(event, now) or moved
            elif isinstance(event, ConnectionEvent):  # the broker's order-update socket
                self._connection_changed(event)
        if moved:
            self._refresh_watch()

    def _run_deferred(self) -> None:
        """Run, on the engine thread, the callbacks the kill thread held back (in order)."""
        deferred = self._deferred
        while deferred:
            runner, handler, args = deferred.popleft()
            if runner.alive:
                self._call(runner, handler, *args)

    def _fill_arrived(self, event: Fill, now: datetime) -> None:
        booked = self.oms.on_fill(event, now)
        if not booked:
            return
        self._rebase(event.instrument_id)
        for fill in booked:
            runner = self._by_name.get(fill.strategy)
            if runner is not None and runner.alive and runner.wants_fills:
                self._call(runner, runner.strategy.on_fill, fill)

    def _order_arrived(self, event: Order, now: datetime) -> bool:
        """Apply a broker order update; return True if the working orders changed."""
        adopted = event.client_id not in self.oms.orders  # an order the OMS did not create
        order = self.oms.on_order_update(event, now)
        if order is None:
            return False
        finished = order.status in TERMINAL_STATUSES
        if order.status is OrderStatus.REJECTED:
            self._rejected(order)
        if finished and self._basket_of:
            self._basket_finished(order)
        runner = self._by_name.get(order.strategy)
        if runner is not None and runner.alive:
            if finished:
                runner.ctx.order_finished(order)
            if runner.wants_orders:
                self._call(runner, runner.strategy.on_order, order)
        return finished or adopted

    def _basket_finished(self, order: Order) -> None:
        """Roll back a basket whose order the broker rejected after taking it; forget a basket
        once all its orders are finished."""
        name = self._basket_of.get(order.client_id)
        if name is None:
            return
        if order.status is OrderStatus.REJECTED:
            self._roll_back(name, f"leg {order.client_id} rejected: {order.status_message}")
            return
        cids = self._baskets[name]
        orders = self.oms.orders
        if all(orders[cid].status in TERMINAL_STATUSES for cid in cids):
            del self._baskets[name]
            for cid in cids:
                self._basket_of.pop(cid, None)

    def _refresh_watch(self) -> None:
        if self.venue is not None:
            self._watch = self.venue.watched(self.oms.open.values(), self.oms.account.positions)

    # -- marking to market and risk -------------------------------------------------------

    def _rebase(self, iid: str) -> None:
        """Recompute an instrument's (net qty, cost basis) after a fill, then mark it."""
        qty, basis = 0, 0.0
        for (pid, _), pos in self.oms.account.positions.items():
            if pid == iid and pos.qty:
                qty += pos.qty
                basis += pos.qty * pos.average_price
        if qty or basis:
            self._mtm[iid] = (qty, basis)
        else:
            self._mtm.pop(iid, None)
        self._mark(iid)

    def _mark(self, iid: str) -> None:
        """Mark an instrument to its last price and report the day's P&L to risk.

        The account's unrealised P&L is the sum over held instruments, recomputed rather than
        adjusted by differences: no rounding drift, and a value the compiled fast path
        (``velox.engine.fast``) reproduces bit for bit.
        """
        entry = self._mtm.get(iid)
        upnl = self._upnl
        if entry is None:
            upnl.pop(iid, None)
        else:
            price = self._last.get(iid)
            upnl[iid] = 0.0 if price is None else entry[0] * price - entry[1]
        self._unrealised = sum(upnl.values(), 0.0)
        self._check_equity()

    def _check_equity(self) -> None:
        if not self._watch_equity:
            return
        acct = self.oms.account
        r0, u0, c0 = self._base
        realised, unrealised, charges = acct.realised - r0, self._unrealised - u0, acct.charges - c0
        pnl = realised + unrealised - charges
        # Only a new high or a new low since the last report can trip a guard (the limits are
        # monotone in the P&L for a given peak), so the rest are not reported: exact, cheaper.
        if self._risk_lo <= pnl <= self._risk_hi:
            return
        if pnl > self._risk_hi:
            self._risk_hi = self._risk_lo = pnl
        else:
            self._risk_lo = pnl
        event = self.risk.on_equity(self.now(), realised, unrealised, charges)
        if event is not None:
            self._kill_now(event)

    def _new_day(self, day: int) -> None:
        self._day = day
        acct = self.oms.account
        self._base = (acct.realised, self._unrealised, acct.charges)
        self._risk_hi = self._risk_lo = 0.0
        self.risk.new_day(date(1970, 1, 1) + timedelta(days=day))
        midnight = np.array([day * _DAY_NS - IST_OFFSET_NS], dtype=np.int64)
        self._mis_cut_ns = int(square_off_ns(midnight, self.mis_square_off)[0])
        self._mis_done = self._mis_armed = False
        if any(self._mis_exposure()):  # carried over from an earlier session
            self._arm_mis()

    def _mis_exposure(self) -> tuple[list[Order], set[str]]:
        """Return the working MIS orders and the instruments with an MIS position."""
        open_mis = [o for o in self.oms.open.values() if o.product is Product.MIS]
        held = {iid for (iid, product), pos in self.oms.account.positions.items()
                if product is Product.MIS and pos.qty}  # fmt: skip
        return open_mis, held

    def _arm_mis(self) -> None:
        """Arm this session's MIS square-off (an MIS order was sent or is carried over); an
        order sent after the square-off time is squared off at the next timer."""
        if not self._mis_done:
            self._mis_armed = True
            self._next_timer = min(self._next_timer, self._mis_cut_ns)

    def _square_off_mis(self) -> None:
        """Cancel MIS orders and close MIS positions at this session's square-off.

        A simulated venue is brought to the engine's time first: if it squares off at the same
        instant it does so itself, and the engine then finds nothing left to close (never a
        second, position-reversing order).
        """
        self._mis_done = True
        self._drain()
        open_mis, held = self._mis_exposure()
        if not open_mis and not held:
            return
        for iid in sorted(held | {o.instrument_id for o in open_mis}):
            self._catch_up(iid)
        self._drain()
        for order in [o for o in self.oms.open.values() if o.product is Product.MIS]:
            self._cancel(order)
        self._drain()
        when = _dt(self._mis_cut_ns).strftime("%H:%M")
        self._square_off(None, reason=f"MIS square-off at {when}", product=Product.MIS)

    def engage_kill(self, reason: str, *, limit: str = "manual") -> None:
        """Engage the kill switch now (engine thread only): cancel, square off, halt."""
        event = self.risk.engage_kill(reason, self.now(), limit=limit)
        self._kill_now(event)

    def reset_kill(self, admin: str) -> None:
        """Release the kill switch on an admin's request (engine thread only; audited)."""
        self.risk.reset_kill(admin, self.now())
        self._drain_risk()

    def switch_venue(self, wanted: str, *, issued_by: str) -> tuple[bool, dict[str, object]]:
        """Send this deployment's orders to its ``"live"`` broker or its ``"dry-run"``
        simulator from now on (engine thread only; the ``switch-mode`` command).

        Only a flat book switches: a working order or a position at one venue would be orphaned
        at the other (the OMS books one venue's fills), so those refuse with the fix (flatten
        first). The switch is audited before it is made and every later audit row, risk event
        and report carries the new mode.
        """
        current = _venue_of(self.mode)
        if wanted == current:
            return True, {"mode": current, "detail": "already in this mode"}
        target = self.venues.get(wanted)
        if target is None:
            how = ("it was not started with a live broker and --confirm-live" if wanted == "live"
                   else "it has no simulated exchange to switch to")  # fmt: skip
            error = f"this {self.mode} engine cannot switch to {wanted}: {how}"
            return False, {"mode": current, "error": error}
        self._drain()
        working = sorted(self.oms.open)
        held = {k: v for k, v in self.oms.account.net.items() if v}
        if working or held:
            what = []
            if working:
                what.append(f"{len(working)} working order(s) ({', '.join(working[:5])})")
            if held:
                what.append("positions " + ", ".join(f"{k} {v:+d}" for k, v in held.items()))
            return False, {
                "mode": current,
                "error": f"cannot switch {current} → {wanted} with {' and '.join(what)} at the "
                f"{current} venue: flatten first (the flatten command), then switch",
            }
        new_mode = "live" if wanted == "live" else "paper"
        self.audit.append(
            f"{self.oms.prefix}{RISK_SUFFIX}", self.now(), "MODE",
            {"from": self.mode, "to": new_mode, "venue": target.name, "issued_by": issued_by},
        )  # fmt: skip
        log.warning("[%s] switching to %s (%s) on %s's command", self.mode, new_mode,
                    target.name, issued_by)  # fmt: skip
        self._use_venue(new_mode, target)
        self._watch = set()
        self._next_reconcile = 0  # reconcile with the new venue at the next timer
        return True, {"mode": wanted, "venue": target.name}

    def _use_venue(self, mode: str, target: Broker) -> None:
        """Make ``target`` (``mode``'s venue) the engine's broker: a switch, or one restored."""
        self.broker = target
        target.set_listener(self._listener)
        self.venue = simulated_venue(target)
        self._broker_quote = None if self.venue is None else self.venue.on_quote
        self._broker_clock = None if self.venue is None else self.venue.on_clock
        self.mode = mode
        self.audit.mode = mode
        self._log_context()

    def _log_context(self) -> None:
        """Label this process's log lines with the run (``VELOX_LOG_FORMAT=json`` shows it)."""
        set_log_context(mode=log_mode(self.mode), account=self.risk.account, run=self.run_id)

    def release_halt(self) -> str | None:
        """Lift a reconciliation halt (engine thread only); return what had halted trading."""
        halted, self._halted = self._halted, None
        if halted is not None:
            log.warning("[%s] reconciliation halt released: %s", self.mode, halted)
        return halted

    def stop_strategy(self, name: str, *, reason: str) -> tuple[bool, dict[str, object]]:
        """Stop one strategy: cancel its working orders, call ``on_stop``; keep positions."""
        runner = self._by_name.get(name)
        if runner is None:
            return False, {"error": f"no strategy {name!r} in this run "
                           f"(it runs {', '.join(self._by_name) or 'none'})"}  # fmt: skip
        if not runner.alive:
            return True, {"strategy": name, "detail": f"already stopped ({runner.error})"}
        cancelled = [o.client_id for o in self.oms.open_orders(name)]
        for order in self.oms.open_orders(name):
            self._cancel(order)
        runner.alive = False
        runner.error = reason
        runner.operator_stop = True
        log.warning("[%s] strategy %s stopped: %s", self.mode, name, reason)
        try:
            runner.strategy.on_stop(runner.ctx)
        except STRATEGY_ERRORS:  # it is being stopped anyway
            log.exception("[%s] %s.on_stop failed", self.mode, name)
        self._drain()
        return True, {"strategy": name, "cancelled": cancelled}

    def start_strategy(self, name: str, *, reason: str) -> tuple[bool, dict[str, object]]:
        """Resume a strategy an operator stopped: it gets ``on_start`` and events again.

        A strategy stopped by its own error is not resumed: its state is whatever the failing
        handler left, so it takes a new run (with the bug fixed) to trade it again.
        """
        runner = self._by_name.get(name)
        if runner is None:
            return False, {"error": f"no strategy {name!r} in this run "
                           f"(it runs {', '.join(self._by_name) or 'none'})"}  # fmt: skip
        if runner.alive:
            return True, {"strategy": name, "detail": "already running"}
        if not runner.operator_stop:
            return False, {"error": f"strategy {name} stopped after an error ({runner.error}); "
                           "it cannot be started again in this run: fix it and start a new "
                           "run"}  # fmt: skip
        runner.alive, runner.error, runner.operator_stop = True, None, False
        log.warning("[%s] strategy %s started again: %s", self.mode, name, reason)
        self._call(runner, runner.strategy.on_start)
        self._drain()
        result: dict[str, object] = {"strategy": name, "running": runner.alive}
        if self.risk.killed:
            result["detail"] = "the kill switch is engaged: its orders are refused until reset"
        return runner.alive, result

    def flatten(self, strategy: str | None, *, reason: str) -> tuple[list[str], list[str]]:
        """Cancel working orders and square off positions (of one strategy, or all) without
        engaging the kill switch; return the cancelled and the square-off client ids."""
        if strategy is not None and strategy not in self._by_name:
            raise ValidationError(f"no strategy {strategy!r} in this run")
        working = self.oms.open_orders(strategy)
        for order in working:
            self._cancel(order)
        self._drain()
        before = set(self.oms.orders)
        self._square_off(strategy, reason=reason)
        return [o.client_id for o in working], [c for c in self.oms.orders if c not in before]

    def cancel_working(self, client_id: str) -> None:
        """Cancel any working order of the run by client id (an operator's cancel)."""
        order = self.oms.open.get(client_id)
        if order is None:
            raise ValidationError(f"order {client_id!r} is not working")
        self._cancel(order)
        self._drain()

    def submit_manual(self, order: Order) -> str:
        """Risk-check and send an operator's order that carries its own client id."""
        ins = self.instrument(order.instrument_id)
        order.check_against(ins)
        self.oms.track(order, given_id=True)
        return self._send(order, flatten=False, tracked=True)

    def _kill_now(self, event: RiskEvent) -> None:
        log.critical("[%s] kill switch: %s (%s)", self.mode, event.message, event.limit)
        self._drain_risk()
        self._drain()
        for order in list(self.oms.open.values()):
            self._cancel(order)
        self._drain()
        self._square_off(None, reason=f"kill switch ({event.limit})")

    def _square_off(
        self, strategy: str | None, *, reason: str, product: Product | None = None
    ) -> None:
        """Send market orders closing the account's (or one strategy's) positions (of one
        ``product`` when given)."""
        only = product
        for (iid, product), pos in list(self.oms.account.positions.items()):
            if not pos.qty or (only is not None and product is not only):
                continue
            owners = [
                (name, book.positions[(iid, product)].qty)
                for name, book in self.oms.books.items()
                if (iid, product) in book.positions and book.positions[(iid, product)].qty
            ]
            if strategy is not None:
                owners = [(n, q) for n, q in owners if n == strategy]
                if not owners:
                    continue
                qty = owners[0][1]
                owner = strategy
            else:
                qty = pos.qty
                owner = owners[0][0] if len(owners) == 1 else ""
            side = Side.SELL if qty > 0 else Side.BUY
            cid = self.oms.peek_client_id()
            order = Order(
                client_id=cid,
                instrument_id=iid,
                side=side,
                qty=abs(qty),
                order_type=OrderType.MARKET,
                product=product,
                strategy=owner,
                tag=cid,
                created_at=self.now(),
            )
            try:
                self._send(order, flatten=True)
                log.warning(
                    "[%s] square-off %s %s %d %s: %s",
                    self.mode,
                    cid,
                    side.value,
                    abs(qty),
                    iid,
                    reason,
                )
            except RiskBreach as exc:
                log.error("[%s] square-off of %s refused: %s", self.mode, iid, exc)
        self._drain()

    def _drain_risk(self) -> None:
        for event in self.risk.drain_events():
            self._risk_event(event)
            if event.kind == "kill":
                self._alert("kill_switch", "critical", f"kill switch engaged: {event.message}",
                            about="kill", payload={"limit": event.limit})  # fmt: skip
            elif event.kind == "reset":
                self._alert("kill_switch", "info", f"kill switch reset: {event.message}",
                            about="reset", payload={"limit": event.limit})  # fmt: skip
            else:
                self._alert("risk_breach", "warning", f"{event.limit}: {event.message}",
                            about=event.limit, payload={"limit": event.limit})  # fmt: skip

    def _risk_event(self, event: RiskEvent) -> None:
        """Keep, audit and journal one risk event."""
        self.risk_events.append(event)
        payload = event.to_dict()
        self.audit.append(
            f"{self.oms.prefix}{RISK_SUFFIX}", event.ts, f"RISK_{event.kind.upper()}", payload
        )
        if self.journal is not None:
            self.journal.risk_event(
                ts=event.ts, kind=event.kind, limit=event.limit, message=event.message,
                account=event.account,
            )  # fmt: skip

    # -- alerts and the run journal -------------------------------------------------------

    def _alert(
        self,
        kind: str,
        severity: str,
        message: str,
        *,
        about: str = "",
        payload: Mapping[str, object] | None = None,
    ) -> None:
        """Raise an alert: kept in :attr:`alerts` and stored for delivery by the journal.

        Repeats of one condition share a de-duplication key (run, kind, ``about``), so an
        undelivered alert counts them instead of flooding the channel.
        """
        alert = Alert(
            self.now(), kind, severity, message, dedup_key=f"{self.run_id}:{kind}:{about}",
            account=self.risk.account, payload=dict(payload or {}),
        )  # fmt: skip
        self.alerts.append(alert)
        if self.journal is not None:
            self.journal.alert(alert)

    def _rejected(self, order: Order) -> None:
        self._alert(
            "order_rejected", "warning",
            f"order {order.client_id} {order.side.value} {order.qty} {order.instrument_id} "
            f"rejected: {order.status_message}",
            about=order.instrument_id,
            payload={"client_id": order.client_id, "strategy": order.strategy},
        )  # fmt: skip

    def _journal_order(self, order: Order) -> None:
        self.journal.order(order, self._now_ns or None)  # type: ignore[union-attr]

    def _journal_fill(self, fill: Fill) -> None:
        """Journal a booked fill and the strategy's and account's positions after it."""
        journal = self.journal
        assert journal is not None
        journal.fill(fill)
        key = (fill.instrument_id, fill.product)
        account = self.risk.account
        for owner, book in ((fill.strategy, self.oms.books.get(fill.strategy)),
                            ("", self.oms.account)):  # fmt: skip
            if book is not self.oms.account and not owner:
                continue  # strategy "" is the account's row; its own part is inside it
            pos = None if book is None else book.positions.get(key)
            if pos is not None:
                journal.position(
                    account=account, strategy=owner, instrument_id=fill.instrument_id,
                    product=fill.product, qty=pos.qty, average_price=pos.average_price,
                    realised_pnl=pos.realised_pnl, charges=pos.charges, ts=fill.ts,
                )  # fmt: skip

    def _journal_equity(self, *, final: bool) -> None:
        """Hand the journal the equity samples it has not seen; the last one only at the end
        (a close at the same instant may still replace it)."""
        end = len(self.equity_ns) if final else len(self.equity_ns) - 1
        start = self._journal_sent
        if end > start:
            self.journal.equity_many(self.equity_ns[start:end], self.equity_values[start:end])  # type: ignore[union-attr]
            self._journal_sent = end

    # -- reconciliation and commands ------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Compare the OMS with the broker; on a mismatch alert, audit and halt new orders."""
        broker = self.broker
        for _ in range(2):
            # Ask first, then drain: every postback the broker sent before answering is then
            # booked, so a fill racing the question is not mistaken for a mismatch; one retry
            # covers a fill between the three answers. What persists is real.
            try:
                orders, positions, holdings = broker.orders(), broker.positions(), broker.holdings()
            except AuthExpired as exc:
                self._session_expired(exc)
                return []
            except BrokerError as exc:  # a network blip: the next reconcile asks again
                log.error("[%s] cannot reconcile with %s: %s", self.mode, broker.name, exc)
                return []
            self._drain()
            problems = self.oms.reconcile(orders, positions, holdings)
            if not problems:
                break
        if problems:
            message = "; ".join(problems)
            if self._halted is None:
                log.error(
                    "[%s] reconciliation mismatch, halting new orders: %s", self.mode, message
                )
                self._halted = message
                event = RiskEvent(self.now(), "alert", "reconciliation", message, self.risk.account)
                self._risk_event(event)
                self._alert(
                    "reconciliation", "critical",
                    f"reconciliation mismatch, new orders halted: {message}",
                    payload={"problems": list(problems)},
                )  # fmt: skip
        return problems

    def _session_expired(self, exc: AuthExpired) -> None:
        """Halt new orders and alert once when the broker session expires (never a crash loop:
        the engine keeps marking, the operator logs in again and releases the halt)."""
        if self._halted is not None and self._halted.startswith(_SESSION_EXPIRED):
            return
        message = f"{_SESSION_EXPIRED} at {self.broker.name}: {exc}"
        log.critical("[%s] %s; new orders halted until reset-kill", self.mode, message)
        self._halted = message
        self._alert("session_expired", "critical", f"{message}; new orders halted",
                    about=self.broker.name, payload={"broker": self.broker.name})  # fmt: skip

    def _timers(self) -> None:
        ns = self._now_ns
        # next engine time worth a look: the reconcile deadline, or soon when polling commands
        self._next_timer = ns + (_POLL_NS if self.commands is not None else _NEVER)
        if self.reconcile_every_ns is not None:
            if ns >= self._next_reconcile:
                self._next_reconcile = ns + self.reconcile_every_ns
                self.reconcile()
            self._next_timer = min(self._next_timer, self._next_reconcile)
        if self._mis_armed and not self._mis_done:
            if ns >= self._mis_cut_ns:
                self._square_off_mis()
            else:
                self._next_timer = min(self._next_timer, self._mis_cut_ns)
        # commands act at the engine's time once it has seen the market (orders need a price)
        if self.commands is not None and self._last:
            wall = _time.monotonic()
            if wall >= self._next_poll:
                self._next_poll = wall + 0.25
                for command in self.commands.poll():
                    self.execute_command(command)
        if self.journal is not None:
            wall = _time.monotonic()
            if wall >= self._next_beat:
                self._next_beat = wall + 1.0
                self._journal_equity(final=False)
                self.journal.heartbeat()

    def ready_for_commands(self) -> bool:
        """Return whether commands may act: the run has started and seen a price (orders and
        their audit rows need the market's time)."""
        return self._started and bool(self._last)

    def execute_command(self, command: Command) -> None:
        """Take, audit, execute and answer one operator command (exactly once: see
        :mod:`velox.engine.commands`). The caller holds :attr:`lock` (the engine thread does
        while it runs; the kill thread takes it)."""
        from velox.engine.commands import execute

        source = self.commands
        assert source is not None
        try:
            if not source.take(command):
                return  # finished already (by this engine before a restart)
        except VeloxError as exc:  # the store is away: the next poll tries again
            log.error("[%s] cannot take command %s: %s", self.mode, command.id, exc)
            return
        self.audit.append(
            f"{self.oms.prefix}{RISK_SUFFIX}", self.now(), "COMMAND",
            {"id": command.id, "verb": command.verb, "issued_by": command.issued_by,
             "strategy": command.strategy, "args": dict(command.args)},
        )  # fmt: skip
        log.warning("[%s] command %s %s from %s", self.mode, command.id, command.verb,
                    command.issued_by)  # fmt: skip
        ok, result = execute(self, command)
        try:
            source.finish(command, ok=ok, result=result)
        except VeloxError as exc:  # taken, not finished: it comes back and is repeated safely
            log.error("[%s] cannot answer command %s: %s", self.mode, command.id, exc)

    # -- strategies -----------------------------------------------------------------------

    def _call(self, runner: _Runner, handler: Callable[..., object], *args: object) -> None:
        """Run one strategy callback without the engine's lock (the kill thread may act while
        it runs; its orders take the lock in :meth:`submit`)."""
        if self._deferring:  # on the kill thread: the engine thread calls it later
            self._deferred.append((runner, handler, args))
            return
        self._callback_seq += 1
        self._callback_runner = runner
        lock = self.lock
        lock.release()
        try:
            handler(runner.ctx, *args)
        except STRATEGY_ERRORS as exc:  # a strategy bug must never take the engine down
            error: BaseException | None = exc
        else:
            error = None
        finally:
            lock.acquire()
        self._callback_runner = None
        if error is not None:
            self._raised(runner, error)

    def _raised(self, runner: _Runner, exc: BaseException) -> None:
        """Handle an exception from a strategy's handler (see :meth:`_call`)."""
        if isinstance(exc, RiskBreach):
            # An order refused by a limit is not a bug in the strategy: it stays alive.
            log.warning("[%s] %s: order refused: %s", self.mode, runner.strategy.name, exc)
        else:
            self._fail(runner, exc)

    def _fail(self, runner: _Runner, exc: BaseException) -> None:
        name = runner.strategy.name
        runner.alive = False
        runner.error = f"{type(exc).__name__}: {exc}"
        self.errors[name] = runner.error
        log.error("[%s] strategy %s stopped: %s%s", self.mode, name, runner.error, _where(exc))
        log.debug("[%s] strategy %s traceback", self.mode, name, exc_info=exc)
        self._alert("strategy_error", "critical", f"strategy {name} stopped: {runner.error}",
                    about=name, payload={"strategy": name})  # fmt: skip
        if self.flatten_on_error:
            for order in self.oms.open_orders(name):
                self._cancel(order)
            self._square_off(name, reason=f"strategy {name} failed")
        try:
            runner.strategy.on_stop(runner.ctx)
        except STRATEGY_ERRORS:  # already failing; keep the first error
            log.exception("[%s] %s.on_stop failed too", self.mode, name)

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self.started_at = datetime.now(IST)
        self._log_context()
        if self.clock is not None and not isinstance(self.feed, BarReplay):
            # what happens before the first tick (a restart's catch-up and reconciliation, an
            # on_start order) happens at the market's time, not at 1970-01-01
            self._now_ns = max(self._now_ns, int(self.clock.now_ns()))
        if self._restore:
            self._restore_state()
        for runner in self._runners:
            strategy = runner.strategy
            try:
                if not strategy.instruments:
                    raise ValidationError(
                        f"{strategy.name} trades no instrument: set `instruments` or --symbol"
                    )
                for iid in strategy.instruments:
                    self.instrument(iid)
            except VeloxError as exc:
                self._fail(runner, exc)
                continue
            for iid in strategy.instruments:
                for tf in strategy.all_timeframes:
                    sub = self._subs.get((iid, tf))
                    if sub is None:
                        sub = self._subs[(iid, tf)] = _Sub([], deque(maxlen=strategy.lookback))
                    elif sub.history.maxlen < strategy.lookback:  # type: ignore[operator]
                        sub.history = deque(sub.history, maxlen=strategy.lookback)
                    sub.runners.append(runner)
                    bars = self.feed.bars(iid, tf) if isinstance(self.feed, BarReplay) else None
                    if strategy.vectorised and is_cross_sectional(strategy):
                        continue  # one panel for all its instruments, below
                    if strategy.vectorised and bars is not None:
                        # signals are causal (tested by velox.strategy.lookahead_violations), so
                        # computing them once over the whole replay equals computing them per bar
                        try:
                            values = np.asarray(strategy.signals(bars), dtype=np.float64)
                        except STRATEGY_ERRORS as exc:
                            self._fail(runner, exc)
                            break
                        if len(values) != len(bars):
                            self._fail(runner, ValidationError(
                                f"{strategy.name}.signals returned {len(values)} values for "
                                f"{len(bars)} bars"))  # fmt: skip
                            break
                        runner.signals[(iid, tf)] = values.tolist()
                        runner.arrays[(iid, tf)] = values
            if strategy.vectorised and is_cross_sectional(strategy) and runner.alive:
                self._cross_sectional_signals(runner)
        for watcher in self.watchers:
            for key in watcher.keys:
                sub = self._subs.get(key)
                if sub is None:
                    sub = self._subs[key] = _Sub([], deque(maxlen=1))
                sub.watchers.append(watcher)
        if isinstance(self.feed, BarReplay):
            for key, sub in self._subs.items():
                frame = self.feed.bars(*key)
                if frame is not None:
                    sub.frame = frame
                    sub.starts = index_ns(frame).tolist()
                    if not sub.watchers and all(
                        r.plain and key in r.arrays and not r.wants_ticks for r in sub.runners
                    ):
                        continue  # only precomputed signals: no Bar is ever built for this key
                    vol = frame["volume"] if "volume" in frame else np.zeros(len(frame))
                    sub.ohlcv = tuple(
                        np.asarray(col, dtype=np.float64).tolist()
                        for col in (frame["open"], frame["high"], frame["low"], frame["close"], vol)
                    )
        if self.reconcile_every_ns is not None:
            self.reconcile()
        for runner in self._runners:
            if runner.alive:
                self._call(runner, runner.strategy.on_start)
        self._drain()

    def _cross_sectional_signals(self, runner: _Runner) -> None:
        """Precompute a cross-sectional strategy's weights over the whole replay, once.

        Its ``signals`` ranks instruments against each other, so it gets every instrument's
        bars at once (:func:`velox.strategy.bar_panel`, the panel ``velox.research`` builds);
        each instrument's column, at that instrument's own bars, becomes its precomputed signal,
        applied at its bar closes like any vectorisable strategy's (causal signals: computing
        them once equals computing them per bar). Paper and live engines see bars one
        instrument at a time and do not run such strategies.
        """
        from velox.strategy import bar_panel, panel_weights

        strategy = runner.strategy
        tf = strategy.timeframe
        if not isinstance(self.feed, BarReplay):
            self._fail(runner, ConfigError(
                f"{strategy.name} is cross-sectional (its signals rank instruments against each "
                f"other): it runs in velox.replay and velox.research, not in a {self.mode} engine"
            ))  # fmt: skip
            return
        frames = {iid: self.feed.bars(iid, tf) for iid in strategy.instruments}
        missing = sorted(iid for iid, frame in frames.items() if frame is None)
        if missing:
            self._fail(runner, DataError(
                f"{strategy.name} is cross-sectional and needs {tf} bars of every instrument; "
                f"the replay has none of {', '.join(missing[:5])}"
            ))  # fmt: skip
            return
        panel = bar_panel(frames)  # type: ignore[arg-type]
        try:
            table = panel_weights(strategy, panel, strategy.signals(panel))
        except STRATEGY_ERRORS as exc:
            self._fail(runner, exc)
            return
        for iid, frame in frames.items():
            rows = panel.index.get_indexer(frame.index)  # type: ignore[union-attr]
            values = np.ascontiguousarray(table[iid].to_numpy(np.float64)[rows])
            runner.signals[(iid, tf)] = values.tolist()
            runner.arrays[(iid, tf)] = values

    def _restore_state(self) -> None:
        events = self.audit.events(self.oms.prefix)
        if events:  # the engine's time goes on from where the crashed run had got to
            self._now_ns = max(self._now_ns, max(_ns(e.ts) for e in events))
        risk_rows = self.oms.restore(events)
        killed = None
        switched = self.mode
        for row in risk_rows:
            if row.status == "MODE":  # switched before the restart: go on where it was
                switched = str(row.payload.get("to"))
            elif row.status == "RISK_KILL":
                killed = row
            elif row.status == "RISK_RESET":
                killed = None
        if switched != self.mode:
            target = self.venues.get(_venue_of(switched))
            if target is None:
                log.error("[%s] the run had switched to %s before the restart and this engine "
                          "has no %s venue: it stays %s", self.mode, switched,
                          _venue_of(switched), self.mode)  # fmt: skip
            else:
                log.warning("[%s] the run had switched to %s before the restart: resuming %s",
                            self.mode, switched, switched)  # fmt: skip
                self._use_venue(switched, target)
        if killed is not None and not self.risk.killed:
            self.risk.engage_kill(
                f"still engaged after restart: {killed.payload.get('message')}",
                killed.ts,
                limit=str(killed.payload.get("limit") or "manual"),
            )
            self.risk.drain_events()
        log.info(
            "[%s] restored run %s: %d orders (%d working), %d fills, next client id %s-%d",
            self.mode, self.run_id, len(self.oms.orders), len(self.oms.open), len(self.oms.fills),
            self.run_id, self.oms.seq + 1,
        )  # fmt: skip
        for (iid, _), pos in self.oms.account.positions.items():
            if pos.qty:
                self._watch.add(iid)
        self._catch_up_fills()

    def _catch_up_fills(self) -> None:
        """Book what the broker did while the engine was down (then reconcile).

        Every fill of the account not booked yet, whoever originated it (this run's orders,
        the broker's MIS square-off, another terminal: see ``OMS.on_fill``), is booked at its
        own market time; orders the engine did not know are adopted and known working orders
        take their status at the broker, at the engine's time (the latest market time known).
        """
        oms = self.oms
        missed = [f for f in self.broker.fills() if f.fill_id not in oms.fill_ids]
        for fill in sorted(missed, key=lambda f: f.ts):
            self._now_ns = max(self._now_ns, _ns(fill.ts))
            oms.on_fill(fill, fill.ts)
        known = oms.orders
        now = self.now()
        for order in self.broker.orders():
            mine = known.get(order.client_id)
            if mine is None or (not mine.is_terminal and order.status is not mine.status):
                oms.on_order_update(order, now)
        self._refresh_watch()

    # -- event handlers -------------------------------------------------------------------

    def _close(self, sub: _Sub, bar: Bar) -> None:
        sub.history.append(bar)
        sub.count += 1
        for runner in sub.runners:
            if runner.alive:
                self._call(runner, runner.strategy.on_bar, bar)
        self._drain()
        for watcher in sub.watchers:
            watcher.on_bar(bar)

    def _sample_equity(self) -> None:
        ns = self._now_ns
        acct = self.oms.account
        value = self.initial_cash + acct.realised - acct.charges + self._unrealised
        if self.equity_ns and self.equity_ns[-1] == ns:
            self.equity_values[-1] = value
        else:
            self.equity_ns.append(ns)
            self.equity_values.append(value)

    def _price(self, iid: str, ns: int, price: float, volume: float, tick: Tick | None) -> None:
        """Handle one tick's price: broker, postbacks, mark-to-market, risk, timers."""
        self._now_ns = ns
        day = (ns + IST_OFFSET_NS) // _DAY_NS
        if day != self._day:
            self._new_day(day)
        self._last[iid] = price
        if iid in self._watch and self._broker_quote is not None:
            self._unseen.pop(iid, None)
            if tick is None:
                size = None if volume != volume else int(volume)
                self._broker_quote(iid, self.now(), price, size, _epoch(ns))
            else:
                self._broker_quote(iid, tick.ts, price, tick.volume)
            self._drain()
        else:
            self._unseen[iid] = (ns, price, volume)
        if iid in self._upnl:
            self._mark(iid)
        if ns >= self._next_timer:
            self._timers()

    def _on_tick(self, tick: Tick) -> None:
        """Handle a live or replayed tick: candles, price, forming candle."""
        self.ticks_seen += 1
        if self._latency is not None:
            self._tick_t0 = _time.perf_counter()
        self._drain()  # postbacks that arrived before this tick were produced before it
        agg = self._aggregator
        ns = _ns(tick.ts)  # velox.feeds.to_ns
        if ns < self._now_ns:
            ns = self._now_ns  # a late tick does not move time backwards
        bars = agg.on_clock(ns) + agg.on_tick(tick)
        forming = []
        closed = False
        for bar in bars:
            if bar.closed:
                sub = self._subs.get((bar.instrument_id, bar.timeframe))
                if sub is not None:
                    self._now_ns = ns
                    self._close(sub, bar)
                    closed = True
            else:
                forming.append(bar)
        if closed:  # equity at the close, before this tick moves the marks (as in a replay)
            self._sample_equity()
        if math.isfinite(tick.ltp) and tick.ltp > 0:
            volume = math.nan if tick.volume is None else float(tick.volume)
            self._price(tick.instrument_id, ns, float(tick.ltp), volume, tick)
            if self.journal is not None:
                self.journal.quote(tick, ns)
        for bar in forming:
            sub = self._subs.get((bar.instrument_id, bar.timeframe))
            if sub is not None:
                for runner in sub.runners:
                    if runner.alive and runner.wants_ticks:
                        self._call(runner, runner.strategy.on_tick, bar)
        self._drain()
        self._tick_t0 = 0.0  # an order placed between ticks (a command) has no tick to time

    # -- run loops ------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run the feed to its end on this thread and return the result (replay, or paper)."""
        from velox.engine.commands import KillThread

        self.lock.acquire()  # held by this thread except inside callbacks and idle waits
        watchdog = None  # unwinds a strategy callback that overruns callback_budget
        if self.callback_budget is not None:
            watchdog = CallbackWatchdog(self, self.callback_budget)
            watchdog.start()
        killer = None  # acts on kill commands even while a strategy hangs
        if self.commands is not None:
            killer = KillThread(self, self.commands)
            killer.start()
        try:
            return self._run()
        finally:
            if killer is not None:
                killer.stop()
            if watchdog is not None:
                watchdog.stop()
            self.lock.release()

    def _run(self) -> RunResult:
        self._start()
        replay = isinstance(self.feed, BarReplay)
        # A bar replay and its result only make acyclic objects: the cyclic GC is paused until
        # the result is built (velox._gc says why).
        with gc_paused() if replay else contextlib.nullcontext():
            interrupted = False
            try:
                if replay:
                    self._run_bars(self.feed)  # type: ignore[arg-type]
                else:
                    self._run_ticks()
            except KeyboardInterrupt:  # Ctrl-C: stop here and report what ran
                interrupted = True
                log.warning("[%s] interrupted: stopping and reporting what ran", self.mode)
            finally:
                self._finish()
            if interrupted:
                raise RunInterrupted(self.result())
            return self.result()

    def start(self) -> None:
        """Run on a background engine thread (live feeds push ticks onto the queue)."""
        self._thread = threading.Thread(target=self.run, name="velox-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the engine to stop after the current event (any thread)."""
        self._stop.set()
        self.feed.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the engine thread started by :meth:`start`."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_ticks(self) -> None:
        from velox.feeds import CandleAggregator

        tfs = sorted({tf for _, tf in self._subs}, key=list(_TF_ORDER).index) or ["1m"]
        self._aggregator = CandleAggregator(
            tfs, emit_forming=any(r.wants_ticks for r in self._runners)
        )
        done = object()

        def pump() -> None:
            try:
                self.feed.run(self._queue.put)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a dying feed ends the run, loudly
                log.exception("[%s] feed failed", self.mode)
            finally:
                self._queue.put(done)

        listener = self._listener
        listener.on_order_update = listener.on_fill = self._postback_arrived
        listener.on_connection = self._postback_arrived
        if self.commands is not None:  # a command for this run wakes the loop at once
            self.commands.attach(lambda: self._queue.put(_CHECK))
        threading.Thread(target=pump, name="velox-feed", daemon=True).start()
        with idle_gc():  # collections between ticks, not inside one (velox._gc says why)
            self._tick_loop(self._queue.get, self._queue.empty, done)
        for bar in self._aggregator.flush():
            sub = self._subs.get((bar.instrument_id, bar.timeframe))
            if sub is not None:
                self._close(sub, bar)

    def _tick_loop(
        self, get: Callable[..., object], empty: Callable[[], bool], done: object
    ) -> None:
        """Handle queued events until the feed is done or the engine is asked to stop."""
        event = _CHECK
        while not self._stop.is_set():
            collect_if_due(busy=not empty(), quiet=event is None)
            self.lock.release()  # waiting: the kill thread may act meanwhile
            try:
                event = get(timeout=0.25)
            except queue.Empty:
                event = None
            finally:
                self.lock.acquire()
            if event is done:
                break
            if isinstance(event, Tick):
                self._on_tick(event)
                continue
            self._drain()
            if isinstance(event, ConnectionEvent):
                self._connection_changed(event)
            elif event is _CHECK:
                self._next_poll = 0.0  # look at the commands now
            if event is None or event is _CHECK:  # idle: close quiet candles, run the timers
                if self.clock is not None:
                    self._now_ns = max(self._now_ns, int(self.clock.now_ns()))
                    for bar in self._aggregator.on_clock(self._now_ns):
                        sub = self._subs.get((bar.instrument_id, bar.timeframe))
                        if sub is not None:
                            self._close(sub, bar)
                self._timers()

    def _run_bars(self, feed: BarReplay) -> None:
        """Replay a :class:`BarReplay`: close events and ticks in order, skipping idle stretches.

        Each position ``k`` of the tick stream is one event: the bars that close there
        (``_close_event``), then tick ``k`` (``_price``, then ``on_tick`` subscribers). Where no
        order is working, no intraday position needs the simulator, nobody wants ticks and the
        next bars' closes change no target, :class:`velox.engine.fast.FastForward` replays the
        whole stretch in one compiled call (equity samples, marks, risk watermarks) and hands
        back the event at which Python must act again: a close that reacts, a new day, a timer,
        or a tick whose P&L report trips a loss guard. The result is the same, event for event.
        """
        self._replayed = feed
        self._replay(feed)

    def _replay(self, feed: BarReplay) -> None:
        """Run the event loop of :meth:`_run_bars`."""
        ids = feed.instrument_ids
        close_pos = feed.close_positions.tolist()
        close_key = feed.close_key.tolist()
        close_row = feed.close_row.tolist()
        subs = [self._subs.get(key) for key in feed.close_keys]
        keys = feed.close_keys
        advance = feed.clock.advance_to
        tick_subs = self._tick_subscribers()
        close_event = self._close_event
        columns = (feed.ts_ns, feed.symbol, feed.price, feed.volume)
        forward = None
        fast = self._fast if self._fast is not None else len(feed) >= _FAST_MIN_TICKS
        if fast and not tick_subs and not self.watchers:
            from velox.engine.fast import FastForward

            forward = FastForward(self, feed, subs, close_pos)
            # Most ticks never reach Python then: read single values from the arrays (the
            # lists of four million ticks would cost more to build than all reads together).
            ts, symbol, price, volume = (c.item for c in columns)
        else:
            ts, symbol, price, volume = (c.tolist().__getitem__ for c in columns)
            if tick_subs:
                fh, fl = feed.forming_high.tolist(), feed.forming_low.tolist()
        n, nc = len(feed), len(close_pos)
        cp = 0
        k = 0
        stop = self._stop
        while k < n:
            if stop.is_set():
                self.ticks_seen = k
                return
            ns = ts(k)
            advance(ns)
            self._now_ns = ns
            while cp < nc and close_pos[cp] == k:
                close_event(subs[close_key[cp]], keys[close_key[cp]], close_row[cp])
                cp += 1
            if (
                forward is not None
                and not self._watch
                and not self._postbacks
                and (ns + IST_OFFSET_NS) // _DAY_NS == self._day
            ):
                j, cp = forward.bars(k, cp) if forward.every_close else forward.run(k, cp)
                if j > k:
                    k = j
                    continue
            iid = ids[symbol(k)]
            p = price(k)
            self._price(iid, ns, p, volume(k), None)
            runners = tick_subs.get(iid) if tick_subs else None
            if runners:
                for tf, sub, wanting in runners:
                    row = sub.count  # the forming bar is the next one to close
                    if sub.ohlcv is None or row >= len(sub.starts):  # type: ignore[arg-type]
                        continue
                    o = sub.ohlcv[0][row]
                    start = _dt(sub.starts[row])  # type: ignore[index]
                    bar = _make_bar(None, iid, tf, start, o, fh[k], fl[k], p, 0.0, False)
                    for runner in wanting:
                        if runner.alive:
                            self._call(runner, runner.strategy.on_tick, bar)
                self._drain()
            k += 1
        while cp < nc:
            close_event(subs[close_key[cp]], keys[close_key[cp]], close_row[cp])
            cp += 1
        self.ticks_seen = n

    def _close_event(self, sub: _Sub | None, key: tuple[str, str], row: int) -> None:
        """Close a replayed bar; its Bar object is only built if a handler will see it."""
        if sub is None:
            return
        sub.count += 1
        bar = None
        for runner in sub.runners:
            if not runner.alive:
                continue
            if runner.plain:
                pre = runner.signals.get(key)
                if pre is not None:  # Strategy.on_bar with the signal precomputed
                    self._call(runner, apply_signal, pre[row], key[0])
                    continue
            if bar is None:
                o, h, lo, c, v = sub.ohlcv  # type: ignore[misc]
                start = _EPOCH_IST + _US * (sub.starts[row] // 1000)  # type: ignore[index]  # _dt
                bar = _make_bar(
                    None, key[0], key[1], start, o[row], h[row], lo[row], c[row], v[row], True
                )
            self._callback_seq += 1  # self._call inlined: one call per bar and strategy
            self._callback_runner = runner
            lock = self.lock
            lock.release()
            try:
                runner.strategy.on_bar(runner.ctx, bar)
            except STRATEGY_ERRORS as exc:  # a strategy bug must never take the engine down
                error: BaseException | None = exc
            else:
                error = None
            finally:
                lock.acquire()
            self._callback_runner = None
            if error is not None:
                self._raised(runner, error)
        if self._postbacks:
            self._drain()
        if sub.watchers:
            if bar is None:
                o, h, lo, c, v = sub.ohlcv  # type: ignore[misc]
                start = _EPOCH_IST + _US * (sub.starts[row] // 1000)  # type: ignore[index]
                bar = _make_bar(
                    None, key[0], key[1], start, o[row], h[row], lo[row], c[row], v[row], True
                )
            for watcher in sub.watchers:
                watcher.on_bar(bar)
        # equity sample (inlined _sample_equity)
        acct = self.oms.account
        value = self.initial_cash + acct.realised - acct.charges + self._unrealised
        ns = self._now_ns
        equity_ns = self.equity_ns
        if equity_ns and equity_ns[-1] == ns:
            self.equity_values[-1] = value
        else:
            equity_ns.append(ns)
            self.equity_values.append(value)

    def _connection_changed(self, event: ConnectionEvent) -> None:
        """Alert on a market-data disconnect, and when the connection is back."""
        source = event.source
        if event.state is ConnectionState.DISCONNECTED:
            self._disconnected.add(source)
            log.error("[%s] %s disconnected: %s", self.mode, source, event.detail)
            self._alert("broker_disconnect", "warning", f"{source} market data disconnected"
                        f"{': ' + event.detail if event.detail else ''}", about=source,
                        payload={"source": source, "state": event.state.value})  # fmt: skip
        elif event.state is ConnectionState.CONNECTED and source in self._disconnected:
            self._disconnected.discard(source)
            log.warning("[%s] %s reconnected", self.mode, source)
            # order updates pushed during the gap were lost with the connection: book what the
            # broker did meanwhile (fills once each by id, statuses) before anything else
            self._drain()
            try:
                self._catch_up_fills()
            except AuthExpired as exc:
                self._session_expired(exc)
            except BrokerError as exc:  # the next reconciliation asks again
                log.error("[%s] cannot catch up with %s after the gap: %s", self.mode,
                          self.broker.name, exc)  # fmt: skip
            self._alert("broker_disconnect", "info", f"{source} market data reconnected",
                        about=f"{source}:reconnected",
                        payload={"source": source, "state": event.state.value})  # fmt: skip

    def _tick_subscribers(self) -> dict[str, list[tuple[str, _Sub, list[_Runner]]]]:
        out: dict[str, list[tuple[str, _Sub, list[_Runner]]]] = {}
        for (iid, tf), sub in self._subs.items():
            wanting = [r for r in sub.runners if r.wants_ticks and tf == r.strategy.timeframe]
            if wanting:
                out.setdefault(iid, []).append((tf, sub, wanting))
        return out

    def _finish(self) -> None:
        self._drain()
        for runner in self._runners:
            if runner.alive:
                self._call(runner, runner.strategy.on_stop)
        self._drain()
        for iid in list(self._upnl):
            self._mark(iid)
        if self._now_ns:
            self._sample_equity()
        self._drain_risk()
        if self.journal is not None:
            self._journal_equity(final=True)
            self.journal.heartbeat()

    # -- results --------------------------------------------------------------------------

    def strategy_records(self) -> list[dict[str, object]]:
        """Return each strategy as a JSON-ready dict: name, class, params, instruments,
        timeframe and the error that stopped it (None while it runs)."""
        return [{**strategy_record(r.strategy), "error": r.error} for r in self._runners]

    def result(self) -> RunResult:
        """Return the run's trades, equity curve, risk events and summary statistics."""
        from velox.engine.result import build_result

        return build_result(self)


def _where(exc: BaseException) -> str:
    """Return `` (at FILE line N)``: the innermost frame of ``exc``'s traceback outside the
    velox package (the strategy's own line), or "" when there is none."""
    package = str(Path(__file__).resolve().parents[1])
    tb, where = exc.__traceback__, ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(package):
            where = f" (at {filename} line {tb.tb_lineno})"
        tb = tb.tb_next
    return where


#: What a strategy handler may raise that stops that strategy, not the engine: ``SystemExit``
#: too (``sys.exit(3)`` in a callback is a bug in the strategy, not a request to end the run).
#: KeyboardInterrupt is left to end the run (see :class:`~velox.errors.RunInterrupted`).
STRATEGY_ERRORS = (Exception, SystemExit)

_TF_ORDER = ("1m", "3m", "5m", "10m", "15m", "30m", "1h", "1d")
_WAKE = object()  # wakes the threaded loop when a postback arrives
_CHECK = object()  # wakes it to look at its commands (the command source was notified)
_NEVER = 2**62
_FAST_MIN_TICKS = 100_000  # replays shorter than this skip the compiled fast-forward
_POLL_NS = 50_000_000  # look for operator commands at least every 50 ms of engine time


def _venue_of(mode: str) -> str:
    """Return the ``switch-mode`` name of an engine mode: live, or dry-run (paper, replay)."""
    return "live" if mode == "live" else "dry-run"


def name_uniquely(strategies: Sequence[Strategy]) -> None:
    """Rename repeated strategy names ``name#2``, ``name#3`` … in place (idempotent)."""
    seen: dict[str, int] = {}
    for strategy in strategies:
        n = seen[strategy.name] = seen.get(strategy.name, 0) + 1
        if n > 1:
            strategy.name = f"{strategy.name}#{n}"


def strategy_record(strategy: Strategy) -> dict[str, object]:
    """Return a strategy as JSON-ready values: name, class, params, instruments, timeframe."""
    return {
        "name": strategy.name,
        "class": type(strategy).__name__,
        "params": {k: _plain(v) for k, v in strategy.params().items()},
        "instruments": list(strategy.instruments),
        "timeframe": strategy.timeframe,
    }


def _plain(value: object) -> object:
    """Return a strategy parameter as a JSON value (tuples as lists, anything else as text)."""
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return str(value)


class _View:
    """The :class:`velox.risk.AccountView` the risk engine reads (account-level).

    One per engine; ``now`` is set to the engine's time before each check.
    """

    __slots__ = ("_engine", "now")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.now = _EPOCH_IST

    def position_qty(self, instrument_id: str) -> int:
        return self._engine.account_position_qty(instrument_id)

    def positions(self) -> Mapping[str, int]:
        return self._engine.positions()

    def open_orders(self) -> Sequence[Order]:
        return list(self._engine.oms.open.values())

    def last_price(self, instrument_id: str) -> float | None:
        return self._engine.last_price(instrument_id)

    def instrument(self, instrument_id: str) -> Instrument:
        return self._engine.instrument(instrument_id)
