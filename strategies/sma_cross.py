"""SMA crossover: hold the instrument while the fast moving average is above the slow one.

A vectorisable strategy: :meth:`SmaCross.signals` maps the bar history to a target weight
(``weight`` while ``SMA(fast) > SMA(slow)``, else 0), and the default ``on_bar`` trades towards
it whenever it changes, so orders go out at a bar's close and fill at the next bar's open.
Long-only and delivery (CNC) by default, so it runs on any NSE stock.

Run it::

    velox replay strategies/sma_cross.py --symbol NSE:RELIANCE --timeframe 1d \
        --param fast=10 --param slow=30 --json sma.json
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from velox.indicators import sma
from velox.strategy import Strategy, param


class SmaCross(Strategy):
    """Long ``weight`` × equity while SMA(``fast``) > SMA(``slow``) of the close, else flat."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    fast: int = param(10, ge=1)
    slow: int = param(30, ge=1)
    weight: float = param(0.95, ge=0, le=1)

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        """Return ``weight`` where the fast SMA is above the slow one, 0 below, NaN in warm-up."""
        close = bars["close"].to_numpy(dtype=np.float64)
        fast, slow = sma(close, self.fast), sma(close, self.slow)
        out = np.where(fast > slow, self.weight, 0.0)
        out[np.isnan(slow) | np.isnan(fast)] = np.nan
        return pd.Series(out, index=bars.index)
