"""Supertrend trend-follower: long while the Supertrend says up-trend, flat in a down-trend.

Written twice on purpose, so each path shows its idiom and ``velox.parity`` proves they agree:

* :meth:`SupertrendFollow.signals` — the vectorised rule for ``velox.research`` and sweeps:
  ``weight`` where the batch ``velox.indicators.supertrend`` direction is up, 0 where down.
* :meth:`SupertrendFollow.on_bar` — the event-driven rule that ``velox.replay``, paper and live
  run: the streaming :class:`velox.indicators.streaming.Supertrend` (O(1) per bar, exactly the
  batch indicator) updated on every closed bar, trading towards ``weight`` × equity on an
  up-trend and flat on a down-trend.

Long-only, delivery (CNC).

Run it::

    velox replay strategies/supertrend.py --symbol NSE:TCS --timeframe 1d \
        --param window=10 --param multiplier=3
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from velox.indicators import supertrend
from velox.indicators.streaming import Supertrend
from velox.strategy import Bar, Context, Strategy, param


class SupertrendFollow(Strategy):
    """Hold ``weight`` × equity while Supertrend(``window``, ``multiplier``) points up."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    window: int = param(10, ge=1)
    multiplier: float = param(3.0, gt=0)
    weight: float = param(0.95, ge=0, le=1)

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        """Return ``weight`` in an up-trend, 0 in a down-trend, NaN in the ATR warm-up."""
        lines = supertrend(bars["high"], bars["low"], bars["close"], self.window,
                           self.multiplier)  # fmt: skip
        direction = np.asarray(lines.direction, dtype=np.float64)
        out = np.where(direction > 0, self.weight, 0.0)
        out[np.isnan(direction)] = np.nan
        return pd.Series(out, index=bars.index)

    def on_start(self, ctx: Context) -> None:
        """Create the streaming indicator."""
        self.indicator = Supertrend(window=self.window, multiplier=self.multiplier)

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        """Update the Supertrend with the closed bar; be long in an up-trend, flat otherwise.

        The decision compares the direction with the position (not with the previous
        direction), so an order the broker refused (a closed market) is retried next bar.
        """
        _, direction = self.indicator.update(bar)
        if direction != direction or ctx.open_orders():
            return
        if direction > 0 and ctx.position() == 0:
            ctx.target_weight(self.weight)
            ctx.log("up-trend from %s: buying", bar.ts.date())
        elif direction < 0 and ctx.position() > 0:
            ctx.target_qty(0)
            ctx.log("down-trend from %s: selling", bar.ts.date())
