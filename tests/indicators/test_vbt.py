"""The vectorbt bridge: parameter sweeps give the batch functions' values, column by column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

import velox.indicators as vi
from velox.backtest import vbt as vxv


def test_rsi_sweep_over_windows(daily: dict[str, pd.DataFrame]) -> None:
    close = daily["RELIANCE"].close
    out = vxv.RSI.run(close, window=[7, 14, 21])
    assert out.rsi.shape == (len(close), 3)
    for j, window in enumerate([7, 14, 21]):
        np.testing.assert_allclose(out.rsi.iloc[:, j], talib.RSI(close.to_numpy(), window))


def test_sweep_broadcasts_over_symbols_and_params(daily: dict[str, pd.DataFrame]) -> None:
    closes = pd.DataFrame({s: daily[s].close for s in ("INFY", "HDFCBANK")})
    out = vxv.MACD.run(closes, fast_window=[8, 12], slow_window=26, signal_window=9)
    assert out.signal.shape == (len(closes), 4)  # 2 parameter sets × 2 symbols
    expected = vi.macd(closes["HDFCBANK"].to_numpy(), 8, 26, 9).signal
    np.testing.assert_allclose(out.signal.iloc[:, 1], expected)


def test_multi_input_indicator(daily: dict[str, pd.DataFrame]) -> None:
    frame = daily["ADANIPORTS"]
    out = vxv.SUPERTREND.run(frame.high, frame.low, frame.close, window=[7, 10], multiplier=3.0)
    ref = vi.supertrend(frame.high.to_numpy(), frame.low.to_numpy(), frame.close.to_numpy(), 7)
    np.testing.assert_allclose(out.supertrend.iloc[:, 0], ref.supertrend)
    np.testing.assert_allclose(out.direction.iloc[:, 0], ref.direction)
