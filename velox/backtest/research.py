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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from velox.backtest.result import ResearchResult
from velox.backtest.universe import Universe, panel, prepare, strategy_weights
from velox.errors import ConfigError, DataError, ValidationError
from velox.strategy import Strategy, is_cross_sectional
from velox.types import Fill

if TYPE_CHECKING:
    from velox.engine.result import RunResult

__all__ = ["research", "ResearchResult", "Universe", "prepare", "panel", "strategy_weights",
           "parity", "ParityReport", "compare", "check_lookahead"]  # fmt: skip

log = logging.getLogger(__name__)

RESEARCH_OPTIONS = frozenset(
    {"initial_cash", "cost_model", "slippage", "sim_config", "instrument_master", "store",
     "risk_limits"}
)  # fmt: skip


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
    checkpoints: Sequence[int] | None = None,
    **params: Any,
) -> list[int]:
    """Return the cut points where ``signals(bars)[:t] != signals(bars[:t])`` (empty: causal).

    Wraps :func:`velox.strategy.lookahead_violations`. ``bars`` is one instrument's frame, or a
    mapping of instrument id → frame (each checked; a cross-sectional strategy is checked on
    their :func:`panel`). With ``raise_error`` (default) a violation raises
    :class:`~velox.errors.ValidationError` as :func:`velox.strategy.assert_no_lookahead` does.

    An event-driven strategy (no ``signals()``) is checked through the engine instead: its
    ``velox.replay`` on the bars cut before row ``t`` must make exactly the fills the replay of
    all the bars makes before row ``t``'s start (a strategy that peeks at later bars trades
    differently once they are gone), at ``checkpoints`` (default five cuts spread over the
    bars; each is a replay). Only fills before the cut are compared, so a peek at the very next
    bar (an order decided at the last close before the cut fills at the cut's open) is not
    seen; peeks of two bars or more are. Its ``bars`` may be keyed as :func:`velox.replay`
    takes them, ``(instrument id, timeframe)`` → frame, with feeds it trades besides its own
    instruments (an index strategy's option contracts), and the run options of
    :func:`research` (``instrument_master``, ``initial_cash`` …) are taken by name for the
    replays.

    Examples
    --------
    >>> import velox
    >>> velox.check_lookahead("strategies/sma_cross.py", df)          # doctest: +SKIP
    []
    """
    import velox
    from velox.strategy import assert_no_lookahead, lookahead_violations

    options = {k: params.pop(k) for k in list(params) if k in RESEARCH_OPTIONS}
    symbols = None
    # keys (instrument id, timeframe) are velox.replay's explicit form: the strategy keeps its
    # own instruments and the other bars are feeds it may trade (option contracts)
    if (isinstance(bars, Mapping) and not isinstance(strategy_or_path, Strategy)
            and all(isinstance(k, str) for k in bars)):  # fmt: skip
        symbols = tuple(bars)
    strategy = velox._build_strategy(strategy_or_path, symbols, None, dict(params), options)
    if not strategy.vectorised:
        bad = _replay_lookahead(strategy, bars, checkpoints, options)
        if bad and raise_error:
            raise ValidationError(
                f"{strategy.name} looks ahead: its replay on the bars cut at row t trades "
                f"differently before t than its replay on all of them, at t={bad[:5]}; use only "
                "bars up to the current one (ctx.history, the bar handed to on_bar/on_tick)"
            )
        return bad
    if isinstance(bars, Mapping):
        if not is_cross_sectional(strategy):
            bad_at: list[int] = []
            for frame in bars.values():
                bad_at += check_lookahead(strategy, frame, raise_error=raise_error,
                                          checkpoints=checkpoints)  # fmt: skip
            return sorted(set(bad_at))
        bars = panel(prepare(strategy, bars, **options))
    if raise_error:
        if checkpoints is None:
            assert_no_lookahead(strategy, bars)
            return []
        bad = lookahead_violations(strategy, bars, checkpoints=checkpoints)
        if bad:
            raise ValidationError(
                f"{strategy.name}.signals looks ahead: signals(bars)[:t] != signals(bars[:t]) "
                f"at t={bad[:5]}; it must use only rows up to t (no shift(-k), no centred windows)"
            )
        return []
    return lookahead_violations(strategy, bars, checkpoints=checkpoints)


def _replay_lookahead(
    strategy: Strategy,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame],
    checkpoints: Sequence[int] | None,
    options: Mapping[str, Any],
) -> list[int]:
    """Return the cuts ``t`` (rows of the union of bar times) where the replay of the bars
    before row ``t`` fills differently, before row ``t``'s start, from the replay of all.

    ``options`` are :func:`velox.replay`'s run options (``instrument_master``,
    ``initial_cash`` …). A cut that leaves one of the strategy's own instruments without bars
    is skipped; other bars (option contracts listed later) are left out of it when empty."""
    import velox

    frames = dict(bars) if isinstance(bars, Mapping) else {strategy.instruments[0]: bars}
    index = pd.DatetimeIndex(next(iter(frames.values())).index)
    for frame in list(frames.values())[1:]:
        index = index.union(frame.index)
    n = len(index)
    cuts = list(checkpoints) if checkpoints is not None else [n * k // 6 for k in range(1, 6)]
    own = set(strategy.instruments)

    def fills(frames_: Mapping[str, pd.DataFrame]) -> list[tuple[object, ...]]:
        run = velox.replay(strategy, bars=dict(frames_), **options)
        return [(f.ts, f.instrument_id, f.side.value, f.qty, f.price) for f in run.fill_list]

    full = fills(frames)
    bad = []
    for t in cuts:
        if not 0 < t < n:
            continue
        edge = index[t]
        cut = {key: f[f.index < edge] for key, f in frames.items()}
        if any(f.empty and (key if isinstance(key, str) else key[0]) in own
               for key, f in cut.items()):  # fmt: skip
            continue
        cut = {key: f for key, f in cut.items() if not f.empty}
        if fills(cut) != [f for f in full if f[0] < edge]:
            bad.append(t)
    return bad
