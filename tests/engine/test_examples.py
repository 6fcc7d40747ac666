"""Every example strategy in strategies/ replayed on real NSE bars, checked independently.

Each test recomputes the strategy's trades without velox's indicators or engine (TA-Lib's RSI,
the batch Supertrend, a tick-by-tick re-enactment of the breakout on the synthetic tick path
with a pandas VWAP) and compares every trade, long and short: side, entry and exit times and
prices, and P&L.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.errors import ConfigError
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


def _check_long_only_round_trips(trades: pd.DataFrame, bars: pd.DataFrame) -> None:
    """Every trade of a long-only daily example: a BUY entered and left at a session's open
    (average prices: an order may fill in parts), one at a time, P&L = qty × (exit − entry)."""
    assert (trades["side"] == "BUY").all(), "a long-only strategy made a short trade"
    opens = bars["open"]
    for t in trades.itertuples():
        assert t.entry_price == pytest.approx(opens.loc[t.entry_time.normalize()], rel=1e-12)
        if pd.isna(t.exit_time):
            assert t.Index == len(trades) - 1, "only the last trade stays open"
            continue
        assert t.exit_price == pytest.approx(opens.loc[t.exit_time.normalize()], rel=1e-12)
        assert t.pnl == pytest.approx(t.qty * (t.exit_price - t.entry_price), rel=1e-12)
        assert t.net_pnl == pytest.approx(t.pnl - t.charges, rel=1e-12)
    entries, exits = trades["entry_time"].iloc[1:], trades["exit_time"].iloc[:-1]
    assert (entries.to_numpy() > exits.to_numpy()).all(), "trades overlap"


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
    assert trades["entry_time"].dt.date.tolist() == _next_sessions(bars.index, enter)
    assert trades["exit_time"].dropna().dt.date.tolist() == _next_sessions(bars.index, leave)
    _check_long_only_round_trips(trades, bars)


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
    assert trades["entry_time"].dt.date.tolist() == _next_sessions(bars.index, ups)
    assert trades["exit_time"].dropna().dt.date.tolist() == _next_sessions(bars.index, downs)
    _check_long_only_round_trips(trades, bars)


def _expected_breakouts(
    bars: pd.DataFrame, timeframe: str, range_bars: int, cutoff: str = "15:00"
) -> list[tuple]:
    """Return the opening-range breakout's trades re-enacted tick by tick, independently.

    The rules of ``strategies/orb_intraday.py`` on the synthetic tick path (four ticks per bar):
    the range is the first ``range_bars`` bars of the day; from the first tick after the range,
    and while the forming bar starts before ``cutoff``, the first tick above the range high at
    or above the session VWAP of the closed bars (typical price × volume, pandas) buys, the
    first below the low at or below it sells short; once a day. A long is stopped on a tick
    below the range low, a short above the high. An order fills at the next tick; the bar
    ending at or after ``cutoff`` squares off at the next bar's first tick. Returns (side,
    entry time, entry price, exit time, exit price) with None for a trade still open.
    """
    ts, price, _ = synthesize_ticks(bars, timeframe)
    times = pd.DatetimeIndex([from_ns(int(t)) for t in ts])
    length = pd.Timedelta(minutes=int(timeframe.rstrip("m")))
    cut = pd.Timestamp(cutoff).time()
    typical_volume = (bars["high"] + bars["low"] + bars["close"]) / 3 * bars["volume"]
    day_of = pd.Series(bars.index.date, index=bars.index)
    first_of_day = day_of.ne(day_of.shift()).to_numpy().nonzero()[0]
    trades: list[list] = []
    pending: str | None = None  # an order waiting for the next tick: "BUY", "SELL" or "exit"
    position, traded_days = 0, set()
    for k in range(len(ts)):
        b = k // 4  # ticks of bar b are 4b … 4b+3
        p = price[k]
        if pending is not None:  # the order sent on the previous tick fills here
            if pending == "exit":
                trades[-1][3:] = [times[k], p]
                position = 0
            else:
                trades.append([pending, times[k], p, None, None])
                position = 1 if pending == "BUY" else -1
            pending = None
        if k % 4 == 0 and k and position and (bars.index[b - 1] + length).time() >= cut:
            trades[-1][3:] = [times[k], p]  # sent at the bar's close: fills on this first tick
            position = 0
        first = first_of_day[first_of_day <= b][-1]
        if b - first < range_bars or bars.index[b].time() >= cut:
            continue
        opening = bars.iloc[first : first + range_bars]
        high, low = opening["high"].max(), opening["low"].min()
        vwap = typical_volume.iloc[first:b].sum() / bars["volume"].iloc[first:b].sum()
        day = bars.index[b].date()
        if position == 0 and day not in traded_days:
            if p > high and p >= vwap:
                pending = "BUY"
            elif p < low and p <= vwap:
                pending = "SELL"
            if pending:
                traded_days.add(day)
        elif position and ((p < low) if position > 0 else (p > high)):
            pending = "exit"
    return [tuple(t) for t in trades]


def _trade_rows(trades: pd.DataFrame) -> list[tuple]:
    return [
        (
            t.side,
            t.entry_time,
            t.entry_price,
            None if pd.isna(t.exit_time) else t.exit_time,
            None if pd.isna(t.exit_price) else t.exit_price,
        )
        for t in trades.itertuples()
    ]


def test_opening_range_breakout_trades_long_and_short_breaks_and_is_flat_each_evening(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_5m
    result, engine = _run(OpeningRangeBreakout(range_bars=3), bars, master)
    trades = result.trades
    expected = _expected_breakouts(bars, "5m", range_bars=3)
    assert _trade_rows(trades) == expected
    sides = trades["side"].value_counts()
    assert sides["BUY"] >= 5 and sides["SELL"] >= 5, "both directions are exercised"
    stopped = trades["exit_time"].dt.strftime("%H:%M") != "15:00"
    assert stopped.sum() >= 2, "some trades are stopped out before the exit time"
    for t in trades.itertuples():
        assert t.product == "MIS"
        sign = 1 if t.side == "BUY" else -1
        if not pd.isna(t.exit_time):
            assert t.exit_time.date() == t.entry_time.date()
            assert t.pnl == pytest.approx(sign * t.qty * (t.exit_price - t.entry_price), rel=1e-9)
    days = trades["entry_time"].dt.date
    assert days.is_unique, "at most one entry per day"
    last_day = bars.index[-1].date()
    assert trades["exit_time"].isna().sum() == (days.iloc[-1] == last_day)
    assert engine.oms.position_qty(None, "NSE:RELIANCE") == 0 or days.iloc[-1] == last_day


def test_opening_range_breakout_exits_on_its_own_timeframe(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    """On 15-minute bars the 14:45 bar ends at 15:00, so the exit fills at 15:00 (a 5-minute
    bar length hard-coded in the strategy would hold until the broker's 15:15 square-off)."""
    ohlcv = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    bars = reliance_5m.resample("15min").agg(ohlcv).dropna()  # 09:15 is on the 15-min grid
    result, _ = _run(OpeningRangeBreakout(range_bars=1, timeframe="15m"), bars, master)
    trades = result.trades
    assert _trade_rows(trades) == _expected_breakouts(bars, "15m", range_bars=1)
    exits = trades["exit_time"].dropna().dt.strftime("%H:%M")
    assert (exits == "15:00").sum() >= 10 and (exits <= "15:00").all()
    with pytest.raises(ConfigError, match="intraday"):
        OpeningRangeBreakout(timeframe="1d")


def test_examples_import_only_the_strategy_api() -> None:
    """Strategies talk only to velox.strategy (Context, Strategy and the types they hand out)
    and velox.indicators: no brokers, store, engine or velox.types."""
    import ast

    for path in sorted((ROOT / "strategies").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in imported if m and m.split(".")[0] == "velox"}
        assert ours, path.name
        allowed = {
            m for m in ours if m == "velox.strategy" or m.split(".")[:2] == ["velox", "indicators"]
        }
        assert ours == allowed, f"{path.name} imports {sorted(ours - allowed)}"
