"""Every example strategy in strategies/ replayed on real NSE bars, checked independently."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.feeds import BarReplay, from_ns, synthesize_ticks
from velox.indicators import supertrend
from velox.strategy import load_strategy, lookahead_violations
from velox.types import Instrument

ROOT = Path(__file__).resolve().parents[2]
SmaCross = load_strategy(str(ROOT / "strategies/sma_cross.py"))
RsiReversion = load_strategy(str(ROOT / "strategies/rsi_reversion.py"))
SupertrendFollow = load_strategy(str(ROOT / "strategies/supertrend.py"))
OpeningRangeBreakout = load_strategy(str(ROOT / "strategies/orb_intraday.py"))


def _run(strategy, bars: pd.DataFrame, master: Callable[[str], Instrument]):  # noqa: ANN001, ANN202
    sim = SimBroker(master, initial_cash=1_000_000)
    feed = BarReplay({("NSE:RELIANCE", strategy.timeframe): bars})
    engine = Engine([strategy], broker=sim, feed=feed, instruments=master)
    result = engine.run()
    assert engine.errors == {}
    assert engine.reconcile() == []
    return result, engine


def _next_sessions(index: pd.DatetimeIndex, flags: list[int]) -> list:
    """Return the date of the bar after each flagged one: an order decided at a daily close
    fills at the next session's open, a Muhurat evening's 18:15 included."""
    return [index[i + 1].date() for i in flags if i + 1 < len(index)]


@pytest.mark.parametrize("cls", [SmaCross, RsiReversion])
def test_vectorisable_examples_pass_the_lookahead_check(cls, reliance_1d: pd.DataFrame) -> None:  # noqa: ANN001
    assert lookahead_violations(cls(), reliance_1d.iloc[:600]) == []


def test_rsi_reversion_enters_after_oversold_and_exits_after_recovery(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_1d.loc[:"2021-10-29"]
    result, _ = _run(RsiReversion(entry=30, exit=55), bars, master)
    value = talib.RSI(bars["close"].to_numpy(), timeperiod=14)  # independent reference
    enter, leave, holding = [], [], False
    for i, v in enumerate(value):
        if np.isnan(v):
            continue
        if not holding and v < 30:
            enter.append(i)
            holding = True
        elif holding and v > 55:
            leave.append(i)
            holding = False
    trades = result.trades
    assert len(trades) >= 4
    assert [t.entry_time.date() for t in trades] == _next_sessions(bars.index, enter)
    assert [t.exit_time.date() for t in trades if t.exit_time] == _next_sessions(bars.index, leave)


def test_supertrend_trades_each_direction_flip_with_streaming_indicator(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_1d  # includes Muhurat sessions (Diwali 2017-10-19, 2021-11-04)
    result, _ = _run(SupertrendFollow(window=10, multiplier=3.0), bars, master)
    line = supertrend(bars["high"], bars["low"], bars["close"], window=10, multiplier=3.0)
    direction = line.direction.to_numpy()
    ups, downs, previous = [], [], 0.0
    for i, d in enumerate(direction):
        if np.isnan(d) or d == previous:
            continue
        if d > 0:
            ups.append(i)
        elif previous > 0:
            downs.append(i)
        previous = d
    trades = result.trades
    assert len(trades) >= 10
    assert [t.entry_time.date() for t in trades] == _next_sessions(bars.index, ups)
    assert [t.exit_time.date() for t in trades if t.exit_time] == _next_sessions(bars.index, downs)


def test_opening_range_breakout_trades_intraday_breaks_and_is_flat_each_evening(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_5m
    result, engine = _run(OpeningRangeBreakout(range_bars=3), bars, master)
    ts, price, _ = synthesize_ticks(bars, "5m")
    ticks = pd.Series(price, index=pd.DatetimeIndex([from_ns(int(t)) for t in ts]))
    trades = result.trades
    assert len(trades) >= 10
    days = [t.entry_time.date() for t in trades]
    assert len(days) == len(set(days)), "at most one entry per day"
    last_day = bars.index[-1].date()
    for t in trades:
        assert t.product == "MIS"
        day = str(t.entry_time.date())
        session = bars.loc[day]
        high, low = session["high"].iloc[:3].max(), session["low"].iloc[:3].min()
        assert t.entry_time.time() >= pd.Timestamp("09:30").time()
        # the fill is the tick right after the tick that broke the range (next-tick fills)
        day_ticks = ticks.loc[day]
        k = day_ticks.index.get_loc(t.entry_time)
        trigger = day_ticks.iloc[k - 1]
        assert trigger > high if t.side == "BUY" else trigger < low
        assert t.entry_price == day_ticks.iloc[k]
        earlier = day_ticks.iloc[: k - 1].loc[f"{day} 09:30" :]
        assert not ((earlier > high) & (t.side == "BUY")).any() or t.side == "SELL"
        if t.exit_time is not None:
            assert t.exit_time.date() == t.entry_time.date()
            assert t.exit_time.time() <= pd.Timestamp("15:15").time()
        else:
            assert t.entry_time.date() == last_day
    assert engine.oms.position_qty(None, "NSE:RELIANCE") == 0 or days[-1] == last_day
