"""The inputs of a vectorised backtest: a universe of bars as arrays, and a strategy's weights.

:func:`prepare` turns bars (instrument id → DataFrame at the strategy's timeframe) into a
:class:`Universe`: opens and closes as (rows × instruments) arrays on the union of the bar
times, the dated charge rates of every row's date, brokerage rules, lot and tick sizes, the MIS
square-off ticks and the order throttle — everything :func:`velox.backtest._kernel.simulate`
needs but the weights. :func:`strategy_weights` computes the weights the way the engine does
(``signals()`` of each instrument's own bars), or of a :func:`panel` for a cross-sectional
strategy. A sweep prepares once and calls :meth:`Universe.run` per combination.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from velox.calendar import IST_OFFSET_NS
from velox.errors import ConfigError, DataError, ValidationError
from velox.strategy import Strategy, is_cross_sectional
from velox.types import Instrument, InstrumentKind, Product

if TYPE_CHECKING:
    from velox.brokers.sim import SimConfig
    from velox.costs import CostModel, SlippageModel
    from velox.risk import RiskLimits

__all__ = ["Universe", "prepare", "strategy_weights", "panel"]

log = logging.getLogger(__name__)

_DAY_NS = 86_400_000_000_000


@dataclass(eq=False)
class Universe:
    """The prepared inputs of a vectorised backtest, reusable across parameter combinations.

    Everything :func:`velox.backtest._kernel.simulate` needs except the weights: prices as
    (rows × instruments) arrays on the union of the bar times, the dated charge rates of each
    row's date, brokerage, lot and tick sizes, the square-off ticks. A sweep prepares it once
    (:func:`prepare`) and calls :meth:`run` with each combination's weights.
    """

    instrument_ids: tuple[str, ...]
    timeframe: str
    index: pd.DatetimeIndex
    frames: dict[str, pd.DataFrame]
    rows: dict[str, np.ndarray]  # instrument → its bars' rows in ``index``
    opens: np.ndarray
    closes: np.ndarray
    tick_prices: np.ndarray
    day: np.ndarray
    rates: np.ndarray
    broker: np.ndarray
    lot: np.ndarray
    tick: np.ndarray
    pow10: np.ndarray
    mis: np.ndarray
    slip_kind: int
    slip_amount: float
    initial_cash: float
    mis_margin: float
    square_off_charge: float
    square_tick: np.ndarray
    mis_blocked: np.ndarray
    product: Product
    instruments: dict[str, Instrument]
    exchange_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    throttle_allowed: int = 0
    throttle_window: int = 0
    _close_ns: np.ndarray | None = field(default=None, repr=False)

    def run(self, weights: np.ndarray, capital: float | None = None) -> tuple[np.ndarray, ...]:
        """Return the kernel's (fills, orders, equity) for ``weights`` (rows × instruments).

        ``capital`` is the strategy's (default the initial cash). No Python runs per bar.
        """
        from velox.backtest._kernel import simulate

        weights = np.ascontiguousarray(weights, dtype=np.float64)
        if weights.shape != self.opens.shape:
            raise ValidationError(
                f"weights have shape {weights.shape}; the universe is {self.opens.shape} "
                "(rows × instruments)"
            )
        n, m = weights.shape
        squares = int(np.count_nonzero(self.square_tick >= 0)) if self.mis.any() else 0
        most = n * m + squares + 1  # one order per close event and column, plus square-offs
        # Room for the orders the weights' changes ask for (refusals retried bar after bar may
        # need more: then the kernel says so and runs again with room for the most possible)
        changes = int(np.count_nonzero(weights[1:] != weights[:-1])) + m  # NaNs count too
        capacity = min(most, 2 * changes + squares + 64)
        while True:
            fills, orders, equity, _, n_orders = simulate(
                self.opens, self.closes, self.tick_prices, weights, self.day, self.rates,
                self.broker, self.lot, self.tick, self.pow10, self.mis, self.slip_kind,
                self.slip_amount, float(capital if capital else self.initial_cash),
                self.initial_cash, self.mis_margin, self.square_off_charge, self.square_tick,
                self.mis_blocked, self.close_event_ns(), self.exchange_id,
                self.throttle_allowed, self.throttle_window, capacity,
            )  # fmt: skip
            if n_orders >= 0:
                return fills, orders, equity
            capacity = most

    # -- times of the synthetic ticks (the engine's replay: four per bar) --------------------

    def tick_times(self, instrument_id: str, rows: np.ndarray) -> np.ndarray:
        """Return the four synthetic tick times (UTC ns) of the instrument's bars at ``rows``
        (rows of :attr:`index`), as ``velox.feeds.synthesize_ticks`` places them."""
        from velox.feeds import synthesize_ticks

        frame = self.frames[instrument_id]
        local = np.searchsorted(self.rows[instrument_id], rows)
        part = frame.iloc[local]
        ts, _, _ = synthesize_ticks(part, self.timeframe)
        return ts.reshape(-1, 4)

    def close_event_ns(self) -> np.ndarray:
        """Return when each row's close event happens: the next row's first tick, the last
        row's at the last tick (where the engine samples its equity curve)."""
        if self._close_ns is None:
            self._close_ns = self._close_event_ns()
        return self._close_ns

    def _close_event_ns(self) -> np.ndarray:
        # A bar's synthetic ticks depend only on its start and the timeframe (and the calendar
        # for daily bars), not on the instrument: every instrument with a bar in a row has the
        # same first tick, and those of the last row the same last tick.
        from velox.calendar import timeframe_minutes, trading_spans_ns

        n = len(self.index)
        out = np.empty(n, np.int64)
        start = np.asarray(self.index.tz_convert("UTC").as_unit("ns").asi8, np.int64)
        if timeframe_minutes(self.timeframe) is not None:
            out[:-1] = start[1:]  # an intraday bar's first tick is at its start
        else:
            ist_day = (start + IST_OFFSET_NS) // _DAY_NS * _DAY_NS - IST_OFFSET_NS
            out[:-1] = np.asarray(trading_spans_ns(ist_day[1:])[0], np.int64)  # session opens
        last = next(i for i in self.instrument_ids if self.rows[i][-1] == n - 1)
        out[-1] = int(self.tick_times(last, self.rows[last][-1:])[0, 3])
        return out


def _segment(instrument: Instrument, product: Product) -> str:
    from velox.costs import CostModel

    if instrument.kind is not InstrumentKind.EQ:
        raise ConfigError(
            f"{instrument.id} is {instrument.kind.value}: velox.research backtests equity (CNC, "
            "MIS) only so far; use velox.replay for F&O"
        )
    return CostModel.segment_for(instrument, product)


def _boundaries(schedule: object) -> list[date]:
    """Return every effective-from date in a charge schedule's tables (rates change only there)."""
    found: set[date] = set()

    def walk(value: object) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, tuple):
            if len(value) == 2 and isinstance(value[0], date):
                found.add(value[0])
            for v in value:
                walk(v)

    from dataclasses import fields as dc_fields

    for f in dc_fields(schedule):  # type: ignore[arg-type]
        walk(getattr(schedule, f.name))
    return sorted(found)


def _rates(cost_model: CostModel, segments: Sequence[tuple[str, str]], days: np.ndarray
           ) -> np.ndarray:  # fmt: skip
    """Return (days × columns × 8) float rates, as ``CostModel._rates`` gives them, picked once
    per stretch between the schedule's effective dates."""
    bounds = np.array([d.toordinal() for d in _boundaries(cost_model.schedule)], np.int64)
    ordinals = days + date(1970, 1, 1).toordinal()
    stretch = np.searchsorted(bounds, ordinals, side="right")
    out = np.empty((len(days), len(segments), 8))
    firsts = np.r_[0, np.flatnonzero(np.diff(stretch)) + 1]
    ends = np.r_[firsts[1:], len(days)]
    for a, b in zip(firsts.tolist(), ends.tolist(), strict=True):
        trade_date = date.fromordinal(int(ordinals[a]))
        for j, (segment, exchange) in enumerate(segments):
            out[a:b, j, :] = cost_model._rates(segment, exchange, trade_date)
    return out


def _brokerage(cost_model: CostModel, segment: str) -> tuple[float, float, float, float]:
    from velox.costs import BrokeragePlan

    plan = cost_model.plan
    if not isinstance(plan, BrokeragePlan):
        raise ConfigError(
            f"velox.research computes brokerage from a velox.costs.BrokeragePlan; "
            f"{type(plan).__name__} is another model: express it as a BrokeragePlan of "
            "BrokerageRule(flat, percent, cap) per segment"
        )
    rule = plan._rule(segment)
    cap = plan.order_cap(segment)
    return (
        float(rule.flat),
        float(rule.percent),
        math.inf if rule.cap is None else float(rule.cap),
        math.inf if cap is None else float(cap),
    )


def _slippage(model: SlippageModel | None) -> tuple[int, float]:
    from velox.costs import BpsSlippage, NoSlippage, TickSlippage

    if model is None or type(model) is NoSlippage:
        return 0, 0.0
    if type(model) is TickSlippage:
        return 1, float(model.ticks)
    if type(model) is BpsSlippage:
        return 2, float(model.bps)
    raise ConfigError(
        f"velox.research models NoSlippage, TickSlippage and BpsSlippage from velox.costs, not "
        f"{type(model).__name__}"
    )


def prepare(
    strategy: Strategy,
    frames: Mapping[str, pd.DataFrame],
    *,
    initial_cash: float = 1_000_000.0,
    cost_model: CostModel | None = None,
    slippage: SlippageModel | None = None,
    sim_config: SimConfig | None = None,
    instrument_master: Mapping[str, Instrument] | Any = None,
    risk_limits: RiskLimits | None = None,
) -> Universe:
    """Return the :class:`Universe` of ``frames`` (instrument id → bars at the strategy's
    timeframe) for ``strategy``'s product, with the charge, slippage and square-off settings
    and the order throttle of ``risk_limits`` (default: the engine's, ``velox.toml``'s
    ``[risk]`` table or the built-in limits; research applies no other limit)."""
    from velox.brokers.sim import SimConfig
    from velox.costs import CostModel
    from velox.types import _decimals

    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ValidationError(f"initial_cash={initial_cash!r} must be a positive amount")
    cost_model = cost_model if cost_model is not None else CostModel()
    if not isinstance(cost_model, CostModel):
        raise ConfigError(
            f"velox.research needs a velox.costs.CostModel, not {type(cost_model).__name__}"
        )
    config = sim_config if sim_config is not None else SimConfig()
    product = Product(strategy.product)
    if product is Product.NRML:
        raise ConfigError(
            "velox.research backtests CNC and MIS products; use velox.replay for NRML"
        )
    if product is Product.MIS and strategy.timeframe == "1d":
        raise ConfigError(
            f"{strategy.name} trades MIS on daily bars: intraday positions are squared off within "
            "the session, which daily bars cannot show; use an intraday timeframe"
        )
    lookup = _lookup(instrument_master)
    ids = tuple(sorted(frames))
    instruments = {iid: lookup(iid) for iid in ids}
    tf = strategy.timeframe
    if len(ids) == 1:
        frame = frames[ids[0]]
        index = pd.DatetimeIndex(frame.index)
        rows = {ids[0]: np.arange(len(frame))}
        opens = frame["open"].to_numpy(np.float64).reshape(-1, 1)
        closes = frame["close"].to_numpy(np.float64).reshape(-1, 1)
    else:
        index = frames[ids[0]].index
        for iid in ids[1:]:
            index = index.union(frames[iid].index)
        index = pd.DatetimeIndex(index)
        opens = np.full((len(index), len(ids)), np.nan)
        closes = np.full((len(index), len(ids)), np.nan)
        rows = {}
        for j, iid in enumerate(ids):
            frame = frames[iid]
            r = index.get_indexer(frame.index)
            rows[iid] = r
            opens[r, j] = frame["open"].to_numpy(np.float64)
            closes[r, j] = frame["close"].to_numpy(np.float64)
    if not index.is_monotonic_increasing or not index.is_unique:
        raise DataError("bars must be sorted by time with one bar per time")
    if index.tz is None:
        raise DataError("bars must be indexed by tz-aware bar start times")
    ns = np.asarray(index.tz_convert("UTC").as_unit("ns").asi8, np.int64)
    ist_day = (ns + IST_OFFSET_NS) // _DAY_NS
    change = np.r_[0, np.flatnonzero(np.diff(ist_day)) + 1]
    day = np.cumsum(np.r_[0, np.diff(ist_day) != 0]).astype(np.int64)
    unique_days = ist_day[change]
    segments = [(_segment(instruments[i], product), _exchange(instruments[i])) for i in ids]
    rates = _rates(cost_model, segments, unique_days)
    broker = np.array([_brokerage(cost_model, s) for s, _ in segments], np.float64)
    lot = np.array([instruments[i].lot_size for i in ids], np.int64)
    tick = np.array([instruments[i].tick_size for i in ids], np.float64)
    pow10 = np.array([10.0 ** _decimals(t) if t > 0 else 1.0 for t in tick], np.float64)
    mis = np.full(len(ids), product is Product.MIS)
    slip_kind, slip_amount = _slippage(slippage)
    n, m = opens.shape
    square_tick = np.full((n, m), -1, np.int8)
    tick_prices = np.zeros((n, m))
    mis_blocked = np.zeros(n + 1, np.bool_)
    universe = Universe(
        instrument_ids=ids, timeframe=tf, index=index, frames=dict(frames), rows=rows,
        opens=np.ascontiguousarray(opens), closes=np.ascontiguousarray(closes),
        tick_prices=tick_prices, day=day, rates=rates, broker=broker, lot=lot, tick=tick,
        pow10=pow10, mis=mis, slip_kind=slip_kind, slip_amount=slip_amount,
        initial_cash=float(initial_cash), mis_margin=float(config.mis_margin),
        square_off_charge=float(config.square_off_charge) * 1.18, square_tick=square_tick,
        mis_blocked=mis_blocked, product=product, instruments=instruments,
    )  # fmt: skip
    if product is Product.MIS:
        _square_off(universe, config.square_off_time)
    _throttle(universe, risk_limits)
    return universe


def _throttle(universe: Universe, limits: RiskLimits | None) -> None:
    from velox.risk import _throttle_window, default_risk_limits

    limits = limits if limits is not None else default_risk_limits()
    allowed, window = _throttle_window(limits.max_orders_per_second)
    universe.throttle_allowed = int(allowed)
    universe.throttle_window = int(window.total_seconds() * 1e9)
    venues = {"NSE": 0, "BSE": 1}
    universe.exchange_id = np.array(
        [venues.get(_exchange(universe.instruments[i]), 2) for i in universe.instrument_ids],
        np.int64,
    )
    ignored = [
        name
        for name in ("max_order_qty", "max_order_notional", "max_position_qty",
                     "max_gross_exposure", "max_open_orders", "allowed_instruments",
                     "daily_loss_limit", "max_drawdown")
        if getattr(limits, name) is not None
    ]  # fmt: skip
    if ignored:
        log.warning(
            "velox.research applies only the order throttle of the risk limits; %s are not "
            "modelled (velox.replay applies them)", ", ".join(ignored),
        )  # fmt: skip


def _square_off(universe: Universe, when: time) -> None:
    """Mark each day's first tick at or after the square-off time, per instrument, and the rows
    whose first tick comes at or after it (an MIS order placed there is refused). Each session's
    square-off is the engine's and the simulator's (:func:`velox.calendar.square_off_ns`:
    special sessions follow their own close)."""
    from velox.calendar import square_off_ns
    from velox.feeds import synthesize_ticks

    def cut(days: np.ndarray) -> np.ndarray:
        """Square-off instant (UTC ns) of each IST day number."""
        unique, inverse = np.unique(days, return_inverse=True)
        return square_off_ns(unique * _DAY_NS - IST_OFFSET_NS, when)[inverse]

    for j, iid in enumerate(universe.instrument_ids):
        frame = universe.frames[iid]
        ts, price, _ = synthesize_ticks(frame, universe.timeframe)
        day = (ts + IST_OFFSET_NS) // _DAY_NS
        due = ts >= cut(day)
        hits = np.flatnonzero(due)
        if len(hits):
            first = hits[np.r_[True, day[hits][1:] != day[hits][:-1]]]
            rows = universe.rows[iid][first // 4]
            universe.square_tick[rows, j] = first % 4
            universe.tick_prices[rows, j] = price[first]
        missing = np.setdiff1d(np.unique(day), day[hits])
        if len(missing):
            log.warning(
                "%s: %d session(s) have no bar at or after the %s square-off (first %s); an MIS "
                "position left open there is carried, where the simulator closes it at the "
                "next session's start", iid, len(missing), when.strftime("%H:%M"),
                date(1970, 1, 1) + timedelta(days=int(missing[0])),
            )  # fmt: skip
        # placement times: each row's first tick, and after the last row its last tick
        first_tick = np.full(len(universe.index) + 1, np.iinfo(np.int64).max, np.int64)
        first_tick[universe.rows[iid]] = ts[::4]
        first_tick[-1] = ts[-1]
        placed = first_tick != np.iinfo(np.int64).max
        blocked = np.zeros(len(first_tick), dtype=bool)
        blocked[placed] = first_tick[placed] >= cut((first_tick[placed] + IST_OFFSET_NS) // _DAY_NS)
        universe.mis_blocked |= blocked
    # a row no instrument has a bar in cannot be a placement time
    universe.mis_blocked[:-1] &= ~np.isnan(universe.opens).all(axis=1)


def _exchange(instrument: Instrument) -> str:
    from velox.costs import _VENUE_TO_EXCHANGE

    return _VENUE_TO_EXCHANGE.get(instrument.exchange, instrument.exchange)


def _lookup(master: object) -> Any:
    if master is None:
        from velox.instruments import load_bundled_master

        return _bundled(load_bundled_master)
    if isinstance(master, Mapping):
        return master.__getitem__
    if callable(master):
        return master
    raise ConfigError("instrument_master= must be a mapping or a lookup function")


_BUNDLED: list[Any] = []


def _bundled(load: Any) -> Any:
    if not _BUNDLED:
        _BUNDLED.append(load().get)
    return _BUNDLED[0]


# -- weights ------------------------------------------------------------------------------------


def strategy_weights(strategy: Strategy, universe: Universe) -> np.ndarray:
    """Return the strategy's target weights (rows × instruments): ``signals()`` of each
    instrument's own bars, as the engine computes them, placed on the universe's rows."""
    n, m = universe.opens.shape
    if is_cross_sectional(strategy):
        return _panel_weights(strategy, universe)
    if m == 1:
        iid = universe.instrument_ids[0]
        return _signal_values(strategy, universe.frames[iid]).reshape(-1, 1)
    out = np.full((n, m), np.nan)
    for j, iid in enumerate(universe.instrument_ids):
        out[universe.rows[iid], j] = _signal_values(strategy, universe.frames[iid])
    return out


def panel(universe: Universe) -> pd.DataFrame:
    """Return every instrument's bars side by side on the universe's rows: what a
    cross-sectional strategy's ``signals`` receives (:func:`velox.strategy.bar_panel`, the
    panel the engine's replay builds too)."""
    from velox.strategy import bar_panel

    return bar_panel({iid: universe.frames[iid] for iid in universe.instrument_ids})


def _panel_weights(strategy: Strategy, universe: Universe) -> np.ndarray:
    from velox.strategy import panel_weights

    bars = panel(universe)
    table = panel_weights(strategy, bars, strategy.signals(bars))
    # a copy: pandas may hand out a read-only view of the strategy's own frame
    out = table.reindex(columns=list(universe.instrument_ids)).to_numpy(np.float64, copy=True)
    # no opinion where an instrument has no bar (the engine would have no close event there)
    out[np.isnan(universe.closes)] = np.nan
    return np.ascontiguousarray(out)


def _signal_values(strategy: Strategy, frame: pd.DataFrame) -> np.ndarray:
    values = strategy.signals(frame)
    if isinstance(values, pd.DataFrame):
        raise ValidationError(
            f"{strategy.name}.signals returned a DataFrame for one instrument's bars; return one "
            "weight per bar (a Series)"
        )
    out = np.asarray(values, dtype=np.float64)
    if out.shape != (len(frame),):
        raise ValidationError(
            f"{strategy.name}.signals returned {out.shape} values for {len(frame)} bars; return "
            "one weight per bar"
        )
    return out
