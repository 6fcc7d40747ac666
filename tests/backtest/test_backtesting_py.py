"""Velox reproduces a backtesting.py SMA-cross backtest on real daily data (RELIANCE 2017–2022).

The conventions that make the two agree (docs/research.md, "Matching backtesting.py"):

* the signal is a state, not an event: long while SMA(fast) > SMA(slow) of the close, flat
  otherwise, which in backtesting.py is ``buy()`` when flat and above, ``position.close()``
  when long and below (its ``crossover()`` helper would skip a first trend already in place
  when the slow average becomes available);
* an order decided at a bar's close fills at the next bar's open (backtesting.py's default,
  ``trade_on_close=False``; Velox's only convention);
* backtesting.py first calls ``next()`` one bar after every indicator has a value (so that
  ``crossover()`` can look one bar back); Velox decides from the first bar with a signal. A
  trend already in place when the slow average appears is entered one bar later there: that
  first trade is checked for exactly this difference, the others must be identical;
* no charges on either side (``commission=0``; Velox's ``ZeroCost``), and a last trade still
  open is closed at the last close (``finalize_trades=True``; Velox leaves it open, so only
  closed trades are compared).

Sizes differ by construction: backtesting.py sizes ``buy(size=0.95)`` at the fill price
(95 % of equity at the next open), Velox at the decision close (``Context.target_weight``).
So trades are compared by time and price, and per-trade returns, which do not depend on size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]

backtesting = pytest.importorskip("backtesting")


class _Free:
    brokerage = 0.0
    total = 0.0


class ZeroCost:
    """No charges, like backtesting.py's ``commission=0``."""

    def fill_charges(self, *args: object, **kwargs: object) -> _Free:
        return _Free()


def _bars() -> pd.DataFrame:
    from velox.data import read_bar_file, validate_bars

    path = ROOT / "data/bars/RELIANCE_1d_2017_2022.csv.gz"
    bars, _ = validate_bars(read_bar_file(path), timeframe="1d", source=path.name)
    return bars


def _backtesting_trades(bars: pd.DataFrame, fast: int, slow: int) -> pd.DataFrame:
    from backtesting import Backtest, Strategy

    def sma(values: np.ndarray, n: int) -> np.ndarray:
        return pd.Series(values).rolling(n).mean().to_numpy()

    class Cross(Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, fast)
            self.slow = self.I(sma, self.data.Close, slow)

        def next(self) -> None:
            above = self.fast[-1] > self.slow[-1]
            if above and not self.position:
                self.buy(size=0.95)
            elif not above and self.position:
                self.position.close()

    frame = bars.rename(columns=str.capitalize)
    frame.index = frame.index.tz_localize(None)  # IST wall times, as backtesting.py wants
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(frame, Cross, cash=1_000_000, commission=0, finalize_trades=True).run()
    trades = stats._trades
    trades = trades[trades["ExitTime"] < frame.index[-1]]  # closed by the strategy itself
    return pd.DataFrame(
        {
            "entry_time": pd.DatetimeIndex(trades["EntryTime"]).tz_localize("Asia/Kolkata"),
            "exit_time": pd.DatetimeIndex(trades["ExitTime"]).tz_localize("Asia/Kolkata"),
            "entry_price": trades["EntryPrice"].to_numpy(),
            "exit_price": trades["ExitPrice"].to_numpy(),
        }
    )


@pytest.mark.parametrize(("fast", "slow"), [(10, 30), (20, 50)])
def test_sma_cross_reproduces_backtesting_py_trades(fast: int, slow: int) -> None:
    import velox

    bars = _bars()
    expected = _backtesting_trades(bars, fast, slow)
    assert len(expected) > 10  # a real test: many round trips over six years
    res = velox.replay(
        ROOT / "strategies/sma_cross.py", bars=bars, fast=fast, slow=slow, cost_model=ZeroCost()
    )
    got = res.trades
    got = got[got["exit_time"].notna()].reset_index(drop=True)
    # velox stamps fills at the open tick of the bar; backtesting.py at the bar's date
    day = got["entry_time"].dt.tz_convert("Asia/Kolkata").dt.normalize()
    exit_day = got["exit_time"].dt.tz_convert("Asia/Kolkata").dt.normalize()
    assert len(got) == len(expected)
    if day[0] != expected["entry_time"][0]:  # the warm-up convention (module docstring)
        assert day[0] == bars.index[slow] and expected["entry_time"][0] == bars.index[slow + 1]
        assert exit_day[0] == expected["exit_time"][0]
        got, expected = got.iloc[1:], expected.iloc[1:]
        day, exit_day = day.iloc[1:], exit_day.iloc[1:]
    assert list(day) == list(expected["entry_time"].dt.normalize())
    assert list(exit_day) == list(expected["exit_time"].dt.normalize())
    entry, exit_ = got["entry_price"].to_numpy(), got["exit_price"].to_numpy()
    np.testing.assert_allclose(entry, expected["entry_price"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(exit_, expected["exit_price"], rtol=0, atol=1e-9)
    # per-trade returns are independent of the sizing difference
    np.testing.assert_allclose(
        exit_ / entry, (expected["exit_price"] / expected["entry_price"]).to_numpy(), rtol=1e-12
    )
