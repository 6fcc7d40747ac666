"""RSI mean reversion: buy an oversold dip, sell once the bounce has come back to neutral.

A vectorisable strategy: :meth:`RsiReversion.signals` holds ``weight`` from the bar where
Wilder's RSI(``window``) closes below ``entry`` until the bar where it closes above ``exit``, and
0 otherwise; the default ``on_bar`` trades when that target changes (at the next bar's open).
The position state is carried forward bar by bar, so the signal at a bar depends only on bars up
to it (it passes ``velox.strategy.lookahead_violations``). Long-only, delivery (CNC).

Run it::

    velox replay strategies/rsi_reversion.py --symbol NSE:INFY --timeframe 1d \
        --param entry=30 --param exit=55
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from velox.indicators import rsi
from velox.strategy import Strategy, param


class RsiReversion(Strategy):
    """Long ``weight`` × equity from RSI < ``entry`` until RSI > ``exit``; flat otherwise."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    window: int = param(14, ge=1)
    entry: float = param(30.0, ge=0, le=100)
    exit: float = param(55.0, ge=0, le=100)
    weight: float = param(0.95, ge=0, le=1)

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        """Return the target weight per bar (NaN until the RSI has warmed up)."""
        values = rsi(bars["close"].to_numpy(dtype=np.float64), self.window)
        out = np.full(len(values), np.nan)
        holding = False
        for i, value in enumerate(values):
            if value != value:
                continue
            if not holding and value < self.entry:
                holding = True
            elif holding and value > self.exit:
                holding = False
            out[i] = self.weight if holding else 0.0
        return pd.Series(out, index=bars.index)
