"""Vectorised backtests of a strategy's ``signals()``: the engine's rules, one compiled loop.

:func:`research` runs the very :class:`~velox.strategy.Strategy` class that ``velox.replay``,
paper and live run, but instead of the event loop it computes the target weights once and hands
them to :func:`velox.backtest._kernel.simulate`, which applies the engine's conventions:

* an order decided at a bar's close fills at the **next bar's open** (the engine's fill rule,
  ``velox.strategy``'s module docstring), through the slippage model;
* quantities as ``Context.target_weight`` sizes them: ``int(weight × strategy equity /
  close)`` rounded towards zero to whole lots, less the position, the strategy equity being its
  capital plus realised and unrealised P&L less charges;
* per-fill Indian charges exactly as ``velox.costs.CostModel`` computes them for the simulator
  (dated rates of the fill's date, STT and stamp duty on their side only, brokerage per order
  with its cap, GST), deducted from cash and equity;
* the simulator's funds, holdings and margin checks, and the **MIS square-off** at the
  configured time (``SimConfig.square_off_time``, default the ``mis_square_off`` setting).

The result, :class:`ResearchResult`, carries the same trades, fills, orders, equity curve and
statistics as the engine's :class:`~velox.engine.result.RunResult` (built by the same functions,
``trades_from_fills`` and ``summary_stats``, on first access) and the equivalent vectorbt
``Portfolio`` (:attr:`ResearchResult.portfolio`, built when first asked for). vectorbt is
imported only in this package, and only when a portfolio is built.

The risk engine's order throttle (``max_orders_per_second`` per exchange) is applied too.
Not modelled (the engine has them): the other pre-trade limits and the loss guards, order
latency, partial fills by volume, limit and stop orders, F&O instruments.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from velox.calendar import IST_NAME, IST_OFFSET_NS
from velox.errors import ConfigError, DataError, ValidationError
from velox.strategy import Strategy
from velox.types import Fill, Instrument, InstrumentKind, Order, OrderStatus, Product, Side

if TYPE_CHECKING:
    import holoviews as hv

    from velox.brokers.sim import SimConfig
    from velox.costs import CostModel, SlippageModel
    from velox.engine.result import RunResult, Trade
    from velox.risk import RiskLimits

__all__ = ["research", "ResearchResult", "Universe", "prepare", "panel", "strategy_weights",
           "parity", "ParityReport", "compare", "check_lookahead"]  # fmt: skip

log = logging.getLogger(__name__)

_DAY_NS = 86_400_000_000_000
_STATUS = (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.OPEN)
_REASONS = (
    "",
    "Insufficient funds (research: the simulator's RMS check)",
    "Insufficient holdings to sell in CNC (short selling in delivery is not allowed)",
    "MIS orders are blocked after the square-off time",
    "max_orders_per_second: the risk engine's order throttle refused it",
)

#: Keywords of :func:`research` that configure the run rather than the strategy.
RESEARCH_OPTIONS = frozenset(
    {"initial_cash", "cost_model", "slippage", "sim_config", "instrument_master", "store",
     "risk_limits"}
)  # fmt: skip


# -- inputs -------------------------------------------------------------------------------------


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
        from velox.calendar import timeframe_minutes

        n = len(self.index)
        out = np.empty(n, np.int64)
        if timeframe_minutes(self.timeframe) is not None:
            # an intraday bar's first tick is at its start
            out[:-1] = self.index[1:].tz_convert("UTC").as_unit("ns").asi8
        else:
            first = np.full(n, np.iinfo(np.int64).max, np.int64)
            for iid in self.instrument_ids:
                rows = self.rows[iid]
                first[rows] = np.minimum(first[rows], self.tick_times(iid, rows)[:, 0])
            out[:-1] = first[1:]
        out[-1] = max(
            int(self.tick_times(iid, self.rows[iid][-1:])[0, 3]) for iid in self.instrument_ids
        )
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
    whose first tick comes at or after it (an MIS order placed there is refused)."""
    from velox.feeds import synthesize_ticks

    offset = ((when.hour * 60 + when.minute) * 60 + when.second) * 1_000_000_000
    for j, iid in enumerate(universe.instrument_ids):
        frame = universe.frames[iid]
        ts, price, _ = synthesize_ticks(frame, universe.timeframe)
        day = (ts + IST_OFFSET_NS) // _DAY_NS
        due = ts >= day * _DAY_NS - IST_OFFSET_NS + offset
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
        row_day = (first_tick + IST_OFFSET_NS) // _DAY_NS
        universe.mis_blocked |= first_tick >= row_day * _DAY_NS - IST_OFFSET_NS + offset
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
    if strategy.cross_sectional:
        return _panel_weights(strategy, universe)
    if m == 1:
        iid = universe.instrument_ids[0]
        return _signal_values(strategy, universe.frames[iid]).reshape(-1, 1)
    out = np.full((n, m), np.nan)
    for j, iid in enumerate(universe.instrument_ids):
        out[universe.rows[iid], j] = _signal_values(strategy, universe.frames[iid])
    return out


def panel(universe: Universe) -> pd.DataFrame:
    """Return every instrument's bars side by side on the universe's rows: columns
    ``(field, instrument)``, so ``panel["close"]`` has one column per instrument (NaN where an
    instrument has no bar). What a cross-sectional strategy's ``signals`` receives."""
    fields = ["open", "high", "low", "close", "volume"]
    parts = {}
    for iid in universe.instrument_ids:
        frame = universe.frames[iid]
        have = [f for f in fields if f in frame.columns]
        parts[iid] = frame[have].astype("float64").reindex(universe.index)
    out = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1)
    out.columns.names = ["field", "instrument"]
    return out[[f for f in fields if f in out.columns.get_level_values(0)]]


def _panel_weights(strategy: Strategy, universe: Universe) -> np.ndarray:
    bars = panel(universe)
    values = strategy.signals(bars)
    if not isinstance(values, pd.DataFrame):
        raise ValidationError(
            f"{strategy.name} is cross-sectional: signals(panel) must return a DataFrame of "
            f"weights (one column per instrument), not {type(values).__name__}"
        )
    unknown = sorted(set(values.columns) - set(universe.instrument_ids))
    if unknown:
        raise ValidationError(
            f"{strategy.name}.signals returned weights for {unknown[:5]}, which it does not "
            f"trade (its instruments: {', '.join(universe.instrument_ids[:5])} …)"
        )
    if len(values) != len(bars) or not values.index.equals(bars.index):
        raise ValidationError(
            f"{strategy.name}.signals returned {len(values)} rows for {len(bars)} bar times; "
            "return one row per row of the panel (same index)"
        )
    out = values.reindex(columns=list(universe.instrument_ids)).to_numpy(np.float64)
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


# -- the result ---------------------------------------------------------------------------------


@dataclass(eq=False)
class ResearchResult:
    """The result of :func:`research`: the engine's DataFrames and statistics, and vectorbt.

    :attr:`stats`, :attr:`trades`, :attr:`orders`, :attr:`fills`, :attr:`equity` and
    :attr:`drawdown` are those of :class:`velox.engine.result.RunResult` (the same columns,
    built by the same functions from the same kind of records), made on first access so a
    plain backtest pays only for the compiled simulation. :attr:`portfolio` is the vectorbt
    ``Portfolio`` of the same orders (fill prices, exact charges as fixed fees), built when
    first asked for. :attr:`final_equity` and :attr:`charges` come straight from the kernel.

    Examples
    --------
    >>> import velox
    >>> res = velox.research("strategies/sma_cross.py", "NSE:RELIANCE", timeframe="1d",
    ...                      fast=10, slow=30)                         # doctest: +SKIP
    >>> res.stats["sharpe"], res.trades.head()                         # doctest: +SKIP
    >>> res.portfolio.stats()                                          # doctest: +SKIP
    >>> res.plot()                                                     # doctest: +SKIP
    """

    strategy: Strategy
    universe: Universe
    weights: np.ndarray
    fill_records: np.ndarray
    order_records: np.ndarray
    equity_values_array: np.ndarray
    run_id: str = "research"
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    # -- figures straight from the kernel ---------------------------------------------------

    @property
    def final_equity(self) -> float:
        """Return the account equity at the last close (rupees)."""
        values = self.equity_values_array
        return float(values[-1]) if len(values) else self.universe.initial_cash

    @property
    def charges(self) -> float:
        """Return the charges paid over every fill (rupees, summed in fill order)."""
        total = 0.0
        for value in self.fill_records[:, 6].tolist():
            total += value
        return total

    # -- the engine's result ------------------------------------------------------------------

    @property
    def run_result(self) -> RunResult:
        """Return the equivalent :class:`~velox.engine.result.RunResult` (built once)."""
        cached = self._cache.get("run")
        if cached is None:
            cached = self._build_run()
            self._cache["run"] = cached
        return cached  # type: ignore[return-value]

    def _build_run(self) -> RunResult:
        from velox.engine.core import strategy_record
        from velox.engine.result import result_from_records

        u = self.universe
        fills = self._fill_objects()
        orders = self._orders(fills)
        record = {**strategy_record(self.strategy), "error": None}
        stamps = u.close_event_ns()
        return result_from_records(
            mode="research", run_id=self.run_id, strategies=[record],
            initial_cash=u.initial_cash, orders=orders, fills=fills,
            equity_ns=stamps.tolist(), equity_values=self.equity_values_array.tolist(),
            bars={(iid, u.timeframe): u.frames[iid] for iid in u.instrument_ids},
        )  # fmt: skip

    def _fill_times(self) -> np.ndarray:
        u = self.universe
        rec = self.fill_records
        out = np.empty(len(rec), np.int64)
        cols = rec[:, 2].astype(np.int64)
        rows = rec[:, 0].astype(np.int64)
        ticks = rec[:, 1].astype(np.int64)
        for j, iid in enumerate(u.instrument_ids):
            mine = np.flatnonzero(cols == j)
            if len(mine):
                times = u.tick_times(iid, rows[mine])
                out[mine] = times[np.arange(len(mine)), ticks[mine]]
        return out

    def _fill_objects(self) -> list[Fill]:
        cached = self._cache.get("fills")
        if cached is None:
            cached = self._cache["fills"] = self._fills()
        return cached  # type: ignore[return-value]

    def _fills(self) -> list[Fill]:
        from velox.engine._time import dt as ist_datetime

        u = self.universe
        rec = self.fill_records
        times = self._fill_times().tolist()
        product = u.product
        out = []
        name = self.strategy.name
        for k, (row, _q, col, side, qty, price, charges, *_rest, oid) in enumerate(rec.tolist()):
            del row
            ts = ist_datetime(times[k])
            out.append(
                Fill(
                    fill_id=f"VEC{int(oid) + 1:09d}-{int(qty)}",
                    client_id=self._client_id(int(oid)),
                    instrument_id=u.instrument_ids[int(col)],
                    side=Side.BUY if side > 0 else Side.SELL,
                    qty=int(qty),
                    price=price,
                    ts=ts,
                    product=product,
                    broker_order_id=f"VEC{int(oid) + 1:09d}",
                    charges=charges,
                    strategy=name,
                )
            )
        return out

    def _client_id(self, oid: int) -> str:
        if self.order_records[oid, 6]:
            return f"SQUAREOFF-{oid + 1}"
        return f"{self.run_id}-{oid + 1}"

    def _orders(self, fills: list[Fill]) -> list[Order]:
        from velox.engine._time import dt as ist_datetime

        u = self.universe
        by_order = {f.broker_order_id: f for f in fills}
        stamps = None
        out = []
        for oid, (row, col, side, qty, status, reason, squareoff, _fr) in enumerate(
            self.order_records.tolist()
        ):
            broker_id = f"VEC{oid + 1:09d}"
            fill = by_order.get(broker_id)
            if fill is not None:
                created = fill.ts
            else:
                if stamps is None:
                    stamps = u.close_event_ns()
                created = ist_datetime(int(stamps[int(row)]))
            st = _STATUS[int(status)]
            out.append(
                Order(
                    client_id=self._client_id(oid),
                    instrument_id=u.instrument_ids[int(col)],
                    side=Side.BUY if side > 0 else Side.SELL,
                    qty=int(qty),
                    product=u.product,
                    tag="squareoff" if squareoff else self._client_id(oid),
                    strategy=self.strategy.name,
                    status=st,
                    broker_order_id=broker_id,
                    filled_qty=int(qty) if fill is not None else 0,
                    average_price=fill.price if fill is not None else 0.0,
                    status_message=_REASONS[int(reason)],
                    created_at=created,
                )
            )
        return out

    @property
    def stats(self) -> dict[str, float | int]:
        """Return :func:`velox.engine.result.summary_stats` of the run (as ``RunResult.stats``).

        Computed from the fills' trades and the equity curve without building the DataFrames
        (the same function on the same values as :attr:`run_result`'s).
        """
        run = self._cache.get("run")
        if run is not None:
            return run.stats  # type: ignore[attr-defined]
        cached = self._cache.get("stats")
        if cached is None:
            from velox.engine.result import summary_stats

            charges = 0.0
            for fill in self._fill_objects():  # in booking order, as result_from_records sums
                charges += fill.charges
            cached = self._cache["stats"] = summary_stats(
                self.universe.close_event_ns(), self.equity_values_array,
                self.universe.initial_cash, self.trade_list, charges,
            )  # fmt: skip
        return cached  # type: ignore[return-value]

    @property
    def trades(self) -> pd.DataFrame:
        """Return the round trips (``RunResult.trades`` columns)."""
        return self.run_result.trades

    @property
    def orders(self) -> pd.DataFrame:
        """Return every order (``RunResult.orders`` columns); refused ones say why."""
        return self.run_result.orders

    @property
    def fills(self) -> pd.DataFrame:
        """Return every fill with its exact charges (``RunResult.fills`` columns)."""
        return self.run_result.fills

    @property
    def equity(self) -> pd.Series:
        """Return the account equity sampled at every close event, as the engine samples it."""
        return self.run_result.equity

    @property
    def drawdown(self) -> pd.Series:
        """Return the drawdown at every equity sample (a positive fraction)."""
        return self.run_result.drawdown

    @property
    def trade_list(self) -> list[Trade]:
        """Return the :class:`~velox.engine.result.Trade` records (``trades_from_fills``)."""
        run = self._cache.get("run")
        if run is not None:
            return run.trade_list  # type: ignore[attr-defined]
        cached = self._cache.get("trades")
        if cached is None:
            from velox.engine.result import trades_from_fills

            cached = self._cache["trades"] = trades_from_fills(self._fill_objects())
        return cached  # type: ignore[return-value]

    @property
    def fill_list(self) -> list[Fill]:
        """Return the :class:`~velox.types.Fill` records."""
        return self._fill_objects()

    def charge_breakdown(self) -> pd.DataFrame:
        """Return each fill's charges split as a contract note splits them (unrounded)."""
        from velox.backtest._kernel import FILL_FIELDS

        frame = pd.DataFrame(self.fill_records, columns=list(FILL_FIELDS))
        out = frame[["brokerage", "stt", "exchange", "sebi", "stamp", "gst", "charges"]]
        out.index = pd.DatetimeIndex(
            pd.to_datetime(self._fill_times(), utc=True), name="ts"
        ).tz_convert(IST_NAME)
        return out.rename(columns={"charges": "total"})

    def monthly_returns(self) -> pd.DataFrame:
        """Return month-end to month-end returns of the equity curve (years × months)."""
        equity = self.equity
        if not len(equity):
            return pd.DataFrame()
        local = equity.tz_convert(IST_NAME).tz_localize(None)
        month_end = local.resample("ME").last().dropna()
        start = pd.Series([self.universe.initial_cash])
        returns = pd.concat([start, month_end.reset_index(drop=True)]).pct_change().iloc[1:]
        returns.index = month_end.index
        table = pd.DataFrame(
            {"year": returns.index.year, "month": returns.index.month, "return": returns.values}
        )
        return table.pivot(index="year", columns="month", values="return")

    # -- vectorbt -----------------------------------------------------------------------------

    @property
    def portfolio(self) -> Any:
        """Return the vectorbt ``Portfolio`` of this backtest's orders (built once).

        ``Portfolio.from_orders`` with each fill's signed quantity at its bar, its fill price
        and its exact charges as ``fixed_fees``, the initial cash, one cash pool for all
        instruments, closes forward-filled for valuation, indexed by IST wall-clock bar start
        (no zone: vectorbt is far slower on a tz-aware index). vectorbt refuses a buy it cannot pay
        for in full (it shrinks it), where the simulator lets charges take cash below zero;
        a warning says when that changed the portfolio's value.
        """
        cached = self._cache.get("portfolio")
        if cached is None:
            cached = self._build_portfolio()
            self._cache["portfolio"] = cached
        return cached

    def _build_portfolio(self) -> Any:
        import vectorbt as vbt

        u = self.universe
        n, m = u.opens.shape
        size = np.full((n, m), np.nan)
        price = np.full((n, m), np.nan)
        fees = np.zeros((n, m))
        rec = self.fill_records
        rows, cols = rec[:, 0].astype(np.int64), rec[:, 2].astype(np.int64)
        signed = rec[:, 3] * rec[:, 4]
        value = np.zeros((n, m))
        net = np.zeros((n, m))
        np.add.at(net, (rows, cols), signed)
        np.add.at(value, (rows, cols), signed * rec[:, 5])
        np.add.at(fees, (rows, cols), rec[:, 6])
        hit = np.zeros((n, m), np.bool_)
        hit[rows, cols] = True
        size[hit] = net[hit]
        with np.errstate(invalid="ignore", divide="ignore"):
            price[hit] = value[hit] / net[hit]
        if (hit & (net == 0)).any():
            log.warning("fills that net to zero within one bar are left out of the portfolio")
        # IST wall-clock times without a zone: vectorbt is ~100× slower on a tz-aware index
        wall = u.index.tz_convert(IST_NAME).tz_localize(None)
        close = pd.DataFrame(u.closes, index=wall, columns=list(u.instrument_ids)).ffill()
        frame = pd.DataFrame
        portfolio = vbt.Portfolio.from_orders(
            close, frame(size, wall, close.columns), price=frame(price, wall, close.columns),
            fixed_fees=frame(fees, wall, close.columns), init_cash=u.initial_cash,
            cash_sharing=True, group_by=True if m > 1 else None, freq=_freq(u.timeframe),
        )  # fmt: skip
        final = float(np.asarray(portfolio.value()).reshape(n, -1)[-1].sum())
        if not math.isclose(final, self.final_equity, rel_tol=1e-9, abs_tol=1e-6):
            log.warning(
                "the vectorbt portfolio ends at %.2f, the backtest at %.2f: vectorbt shrank a "
                "buy that cash (after charges) could not pay in full",
                final, self.final_equity,
            )  # fmt: skip
        return portfolio

    # -- display ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        u = self.universe
        return (
            f"ResearchResult({self.strategy.name} on {', '.join(u.instrument_ids)} "
            f"{u.timeframe}, {len(u.index):,} bars, {len(self.fill_records):,} fills, "
            f"final equity {self.final_equity:,.2f})"
        )

    def _repr_html_(self) -> str:
        """Return the engine result's HTML summary, titled as a vectorised backtest."""
        body = self.run_result._repr_html_()
        return body.replace("<b>RunResult</b> research run", "<b>ResearchResult</b> vectorised run")

    def plot(self) -> hv.Layout:
        """Return price with entries and exits per instrument, equity, drawdown and a heatmap
        of monthly returns (holoviews / hvplot, imported here)."""
        import holoviews as hv
        import hvplot.pandas  # noqa: F401  (registers .hvplot)

        layout = self.run_result.plot()
        table = self.monthly_returns()
        if table.empty:
            return layout
        long = table.stack().rename("return").reset_index()
        long["month"] = long["month"].astype(int)
        heat = long.hvplot.heatmap(
            x="month", y="year", C="return", cmap="RdYlGn", title="monthly returns",
            height=220, responsive=True, colorbar=True,
        )  # fmt: skip
        return hv.Layout([*layout, heat]).cols(1)


def _freq(timeframe: str) -> str:
    from velox.calendar import timeframe_minutes

    minutes = timeframe_minutes(timeframe)
    return "1D" if minutes is None else f"{minutes}min"


# -- the entry points ---------------------------------------------------------------------------


def research(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    bars_or_symbols: pd.DataFrame | Mapping[str, pd.DataFrame] | str | Sequence[str] | None = None,
    timeframe: str | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    **params: Any,
) -> ResearchResult:
    """Return a vectorised backtest of a strategy's ``signals()`` with the engine's rules.

    See :func:`velox.research` (this function) and the module docstring for the conventions.
    """
    import velox

    options = {k: params.pop(k) for k in list(params) if k in RESEARCH_OPTIONS}
    symbols: str | Sequence[str] | None = None
    bars: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None
    if isinstance(bars_or_symbols, (pd.DataFrame, Mapping)):
        bars = bars_or_symbols
        if isinstance(bars, Mapping) and not isinstance(strategy_or_path, Strategy):
            # a mapping says which instruments it holds: they are the strategy's instruments
            symbols = tuple(dict.fromkeys(k if isinstance(k, str) else k[0] for k in bars))
    elif bars_or_symbols is not None:
        symbols = bars_or_symbols  # type: ignore[assignment]
    strategy = velox._build_strategy(strategy_or_path, symbols, timeframe, params, options)
    if not strategy.vectorised:
        raise ConfigError(
            f"{strategy.name} has no signals(): velox.research backtests vectorisable strategies "
            "(override signals(bars) → target weights); run event-driven ones with velox.replay"
        )
    if strategy.timeframes:
        raise ConfigError(
            f"{strategy.name} subscribes to extra timeframes {strategy.timeframes}; "
            "velox.research runs one timeframe: use velox.replay"
        )
    frames = _frames(strategy, symbols, bars, start, end, options.pop("store", None))
    universe = prepare(strategy, frames, **options)
    weights = strategy_weights(strategy, universe)
    fills, orders, equity = universe.run(weights, strategy.capital)
    return ResearchResult(strategy, universe, weights, fills, orders, equity)


def _frames(
    strategy: Strategy,
    symbols: str | Sequence[str] | None,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame] | None,
    start: date | datetime | str | None,
    end: date | datetime | str | None,
    store: Any,
) -> dict[str, pd.DataFrame]:
    import velox

    if bars is not None:
        checked = velox._bar_frames(strategy, symbols, bars, start, end)
        return {iid: frame for (iid, tf), frame in checked.items() if tf == strategy.timeframe}
    from velox.feeds.bar_replay import _missing_bars

    if store is None:
        from velox.store import open_store

        store = open_store(create=False)
    out = {}
    for iid in strategy.instruments:
        frame = store.read_bars(iid, strategy.timeframe, start, end)
        if frame.empty:
            raise DataError(_missing_bars(store, iid, strategy.timeframe, start, end))
        out[iid] = frame
    return out


# -- parity with the engine and causality -------------------------------------------------------


@dataclass
class ParityReport:
    """How a vectorised backtest compares with the engine's replay of the same strategy.

    ``ok`` when the fills agree (time, instrument, side, quantity, price; charges within
    ``charge_tolerance`` rupees), so do the trades and the orders (time, instrument, side,
    quantity, final status: filled, refused, left working; square-offs), and the equity is
    within ``equity_tolerance`` (a fraction, 0.01 % by default) at every sample.
    """

    research: ResearchResult
    replay: RunResult
    fills_equal: bool
    trades_equal: bool
    charges_equal: bool
    orders_equal: bool
    max_charge_difference: float
    max_equity_difference: float
    equity_tolerance: float
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        """Return True when trades, fills and charges agree and equity is within tolerance."""
        return (
            self.fills_equal
            and self.trades_equal
            and self.charges_equal
            and self.orders_equal
            and self.max_equity_difference <= self.equity_tolerance
        )

    def __repr__(self) -> str:
        head = "parity OK" if self.ok else "parity FAILED"
        fills = len(self.research.fill_records)
        text = (
            f"{head}: {fills} fills, {len(self.research.trade_list)} trades; charges differ by at "
            f"most ₹{self.max_charge_difference:.2e}; equity by {self.max_equity_difference:.2e}"
        )
        return text + "".join(f"\n  {m}" for m in self.mismatches[:10])

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(repr(self))}</pre>"


def parity(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    bars_or_symbols: pd.DataFrame | Mapping[str, pd.DataFrame] | str | Sequence[str] | None = None,
    timeframe: str | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    *,
    equity_tolerance: float = 1e-4,
    charge_tolerance: float = 1e-6,
    **params: Any,
) -> ParityReport:
    """Return a :class:`ParityReport` of :func:`research` against :func:`velox.replay`.

    Both run the same strategy on the same bars with the same cash, charges, slippage and
    square-off settings. Fills must agree in time, instrument, side, quantity and price,
    their charges within ``charge_tolerance`` rupees, trades and orders likewise (orders by
    time, instrument, side, quantity and final status), and the equity curves
    within ``equity_tolerance`` (relative, 0.01 % by default) at every sample.

    Examples
    --------
    >>> import velox
    >>> velox.parity("strategies/sma_cross.py", df, fast=10, slow=30).ok   # doctest: +SKIP
    True
    """
    import velox

    res = research(strategy_or_path, bars_or_symbols, timeframe, start, end, **params)
    replay_kwargs = {k: v for k, v in params.items() if k not in RESEARCH_OPTIONS}
    for key in ("initial_cash", "cost_model", "sim_config", "slippage", "store", "risk_limits"):
        if key in params:
            replay_kwargs[key] = params[key]
    if "instrument_master" in params:
        replay_kwargs["instrument_master"] = params["instrument_master"]
    symbols = None
    bars = None
    if isinstance(bars_or_symbols, (pd.DataFrame, Mapping)):
        bars = bars_or_symbols
        if isinstance(bars_or_symbols, pd.DataFrame):
            symbols = res.universe.instrument_ids[0]
    elif bars_or_symbols is not None:
        symbols = bars_or_symbols  # type: ignore[assignment]
    if isinstance(strategy_or_path, Strategy):
        spec: object = strategy_or_path
    else:
        spec = type(res.strategy)
        replay_kwargs.update(res.strategy.params())
        if symbols is None:
            symbols = res.strategy.instruments  # type: ignore[assignment]
        if timeframe is None:
            timeframe = res.strategy.timeframe
    rep = velox.replay(spec, symbols=symbols if not isinstance(spec, Strategy) else None,
                       timeframe=None if isinstance(spec, Strategy) else timeframe,
                       start=start, end=end, bars=bars, **replay_kwargs)  # fmt: skip
    return compare(res, rep, equity_tolerance=equity_tolerance, charge_tolerance=charge_tolerance)


def compare(
    res: ResearchResult,
    rep: RunResult,
    *,
    equity_tolerance: float = 1e-4,
    charge_tolerance: float = 1e-6,
) -> ParityReport:
    """Return the :class:`ParityReport` of a research result against an engine result."""
    mismatches: list[str] = []

    def key(f: Fill) -> tuple[object, ...]:
        return (f.ts, f.instrument_id, f.side.value, f.qty, f.price)

    mine, theirs = res.fill_list, rep.fill_list
    fills_equal = len(mine) == len(theirs)
    max_charge = 0.0
    for k, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        if key(a) != key(b):
            fills_equal = False
            mismatches.append(f"fill {k}: research {key(a)} vs replay {key(b)}")
        max_charge = max(max_charge, abs(a.charges - b.charges))
    if len(mine) != len(theirs):
        mismatches.append(f"{len(mine)} research fills vs {len(theirs)} replay fills")
    columns = ["entry_time", "exit_time", "instrument_id", "side", "qty", "entry_price",
               "exit_price"]  # fmt: skip
    a, b = res.trades[columns], rep.trades[columns]
    trades_equal = len(a) == len(b) and a.reset_index(drop=True).equals(b.reset_index(drop=True))
    if not trades_equal:
        mismatches.append(f"trades differ ({len(a)} research, {len(b)} replay)")
    charges_equal = fills_equal and max_charge <= charge_tolerance

    def order_keys(frame: pd.DataFrame) -> list[tuple[object, ...]]:
        cols = ["created_at", "instrument_id", "side", "qty", "status"]
        squareoff = (frame["tag"] == "squareoff").tolist()
        rows = frame[cols].itertuples(index=False)
        return sorted((*row, flag) for row, flag in zip(rows, squareoff, strict=True))

    mine_orders, their_orders = order_keys(res.orders), order_keys(rep.orders)
    orders_equal = mine_orders == their_orders
    if not orders_equal:
        extra = sorted(set(mine_orders) ^ set(their_orders))[:3]
        mismatches.append(
            f"orders differ ({len(mine_orders)} research, {len(their_orders)} replay), e.g. {extra}"
        )
    e1 = res.equity
    e2 = rep.equity
    if len(e1) == len(e2) and (e1.index == e2.index).all():
        diff = float(np.max(np.abs(e1.to_numpy() / e2.to_numpy() - 1.0))) if len(e1) else 0.0
    else:
        joined = pd.concat([e1.rename("a"), e2.rename("b")], axis=1).ffill().dropna()
        diff = float(np.max(np.abs(joined["a"] / joined["b"] - 1.0))) if len(joined) else 0.0
        mismatches.append(f"equity sampled {len(e1)} times in research, {len(e2)} in replay")
    return ParityReport(res, rep, fills_equal, trades_equal, charges_equal, orders_equal,
                        max_charge, diff, equity_tolerance, mismatches)  # fmt: skip


def check_lookahead(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    raise_error: bool = True,
    **params: Any,
) -> list[int]:
    """Return the cut points where ``signals(bars)[:t] != signals(bars[:t])`` (empty: causal).

    Wraps :func:`velox.strategy.lookahead_violations`. ``bars`` is one instrument's frame, or a
    mapping of instrument id → frame (each checked; a cross-sectional strategy is checked on
    their :func:`panel`). With ``raise_error`` (default) a violation raises
    :class:`~velox.errors.ValidationError` as :func:`velox.strategy.assert_no_lookahead` does.

    Examples
    --------
    >>> import velox
    >>> velox.check_lookahead("strategies/sma_cross.py", df)          # doctest: +SKIP
    []
    """
    import velox
    from velox.strategy import assert_no_lookahead, lookahead_violations

    symbols = None
    if isinstance(bars, Mapping) and not isinstance(strategy_or_path, Strategy):
        symbols = tuple(bars)
    strategy = velox._build_strategy(strategy_or_path, symbols, None, dict(params), {})
    if not strategy.vectorised:
        raise ConfigError(f"{strategy.name} has no signals() to check")
    if isinstance(bars, Mapping):
        if not strategy.cross_sectional:
            bad_at: list[int] = []
            for frame in bars.values():
                bad_at += check_lookahead(strategy, frame, raise_error=raise_error)
            return sorted(set(bad_at))
        bars = panel(prepare(strategy, bars))
    if raise_error:
        assert_no_lookahead(strategy, bars)
        return []
    return lookahead_violations(strategy, bars)
