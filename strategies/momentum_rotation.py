"""Monthly momentum rotation: hold the ``top`` NIFTY-50 stocks with the best past return.

A cross-sectional strategy: :meth:`MomentumRotation.signals` is declared to return a
DataFrame of weights (``-> pd.DataFrame``), which makes it cross-sectional without a flag
(``velox.strategy.is_cross_sectional``): it gets every stock's daily bars at once (a panel,
``bars["close"]`` one column per stock) and returns a DataFrame of target weights, one column
per stock, all drawing on one cash pool. On the first
session of each month it ranks the stocks by their return over the last ``window`` sessions
(close over the close ``window`` sessions earlier, known at that close) and holds the ``top``
best, ``weight / top`` of equity each; the weights stay until the next month's ranking (so an
order the broker refuses — a buy waiting for the cash of a sale that fills at the same open —
is retried the next session). Long-only, delivery (CNC).

Backtest it vectorised with ``velox.research`` or event by event with ``velox.replay`` (the
same fills, checked by ``velox.parity``); paper and live engines, which see bars one
instrument at a time, refuse cross-sectional strategies::

    import velox
    res = velox.research("strategies/momentum_rotation.py", bars)  # {instrument id: DataFrame}
    velox.parity("strategies/momentum_rotation.py", bars).ok        # True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from velox.strategy import Strategy, param

#: The bundled NIFTY-50 stocks with daily bars 2017–2022 (HDFC, merged into HDFC Bank in 2023,
#: is not in today's instrument master).
NIFTY_STOCKS = (
    "ADANIPORTS", "ASIANPAINT", "AXISBANK", "BAJAJ-AUTO", "BAJAJFINSV", "BAJFINANCE",
    "BHARTIARTL", "BPCL", "BRITANNIA", "CIPLA", "COALINDIA", "DIVISLAB", "DRREDDY", "EICHERMOT",
    "GRASIM", "HCLTECH", "HDFCBANK", "HDFCLIFE", "HEROMOTOCO", "HINDALCO", "HINDUNILVR",
    "ICICIBANK", "INDUSINDBK", "INFY", "IOC", "JSWSTEEL", "KOTAKBANK", "M&M", "NESTLEIND", "NTPC",
    "ONGC", "POWERGRID", "RELIANCE", "SBILIFE", "SBIN", "SHREECEM", "SUNPHARMA", "TATACONSUM",
    "TATAMOTORS", "TCS", "TECHM", "TITAN", "ULTRACEMCO", "UPL",
)  # fmt: skip


class MomentumRotation(Strategy):
    """Hold the ``top`` stocks by ``window``-session return, re-ranked on each month's first
    session, ``weight / top`` of equity each."""

    instruments = tuple(f"NSE:{s}" for s in NIFTY_STOCKS)
    timeframe = "1d"
    window: int = param(126, ge=1)
    top: int = param(5, ge=1)
    weight: float = param(0.95, gt=0, le=1)

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Return the target weight of every stock at every session (NaN until the first
        ranking)."""
        close = bars["close"]
        momentum = close / close.shift(self.window) - 1.0
        local = close.index.tz_convert("Asia/Kolkata") if close.index.tz else close.index
        month = local.year * 12 + local.month
        first = np.r_[True, month[1:] != month[:-1]]  # first session of a month: causal
        rank = momentum.rank(axis=1, ascending=False, method="first")
        chosen = (rank <= self.top) & momentum.notna()
        weights = chosen.astype(float) * (self.weight / self.top)
        weights[~first | momentum.notna().sum(axis=1).lt(self.top).to_numpy()] = np.nan
        return weights.ffill()
