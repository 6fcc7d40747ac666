"""``velox.research`` reproduces a backtesting.py SMA crossover on real daily data, trade for trade.

backtesting.py (kernc) runs the same rule with its own engine on the bundled RELIANCE daily bars
2017–2022; the conventions that make the two agree are written in ``docs/research.md``
("Matching backtesting.py"): fills at the next open (its default ``trade_on_close=False``), no
charges (``commission=0`` / ``velox.testing.zero_cost_model()``), the position taken while the
fast mean is above the slow one (a state, as ``signals()`` gives it, not only on the crossing
bar), and whole units sized at the close from the equity at the close, ``int(0.95 × equity /
close)`` (Velox's ``target_weight``; backtesting.py's fractional ``size`` would size at the next
open instead, so its integer ``size`` is given).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import velox
from velox.testing import zero_cost_model

ROOT = Path(__file__).resolve().parents[2]


def _bars(name: str, timeframe: str) -> pd.DataFrame:
    from velox.data import read_bar_file, validate_bars

    frame, _ = validate_bars(read_bar_file(ROOT / "data" / "bars" / name), timeframe=timeframe,
                             source=name)  # fmt: skip
    return frame


@pytest.mark.parametrize("stock", ["RELIANCE", "INFY", "TCS"])
def test_research_reproduces_backtesting_py_sma_cross(stock: str) -> None:
    import backtesting

    bars = _bars(f"{stock}_1d_2017_2022.csv.gz", "1d")

    def sma(values: np.ndarray, n: int) -> np.ndarray:
        return pd.Series(values).rolling(n).mean().to_numpy()

    class Cross(backtesting.Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 30)

        def next(self) -> None:
            fast, slow = self.fast[-1], self.slow[-1]
            if fast != fast or slow != slow:
                return
            if fast > slow and not self.position:
                self.buy(size=int(0.95 * self.equity / self.data.Close[-1]))
            elif fast <= slow and self.position:
                self.position.close()

    frame = bars.rename(columns=str.capitalize)
    frame.index = frame.index.tz_localize(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = backtesting.Backtest(
            frame, Cross, cash=1_000_000, commission=0, finalize_trades=True
        ).run()
    theirs = stats._trades.reset_index(drop=True)
    res = velox.research(str(ROOT / "strategies/sma_cross.py"), {f"NSE:{stock}": bars},
                         cost_model=zero_cost_model(), fast=10, slow=30, weight=0.95)  # fmt: skip
    ours = res.trades
    done = ours[ours["exit_time"].notna()].reset_index(drop=True)
    assert len(theirs) >= 10
    # backtesting.py closes the last open trade at the last close (finalize_trades)
    assert len(theirs) == len(ours)
    assert done["qty"].tolist() == theirs["Size"].tolist()[: len(done)]
    assert done["entry_time"].dt.date.tolist() == theirs["EntryTime"].dt.date.tolist()[: len(done)]
    assert done["exit_time"].dt.date.tolist() == theirs["ExitTime"].dt.date.tolist()[: len(done)]
    # average prices (value / quantity): equal but for the last bit
    for ours_col, theirs_col in (("entry_price", "EntryPrice"), ("exit_price", "ExitPrice")):
        expected = theirs[theirs_col].to_numpy()[: len(done)]
        assert done[ours_col].to_numpy() == pytest.approx(expected, rel=1e-12)
    assert done["pnl"].to_numpy() == pytest.approx(theirs["PnL"].to_numpy()[: len(done)], abs=1e-6)
    assert res.final_equity == pytest.approx(stats["Equity Final [$]"], rel=1e-12)
    assert res.stats["charges"] == 0.0
