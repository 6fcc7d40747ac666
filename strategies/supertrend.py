"""Supertrend trend-follower: long while the Supertrend says up-trend, flat in a down-trend.

An event-driven strategy using the streaming :class:`velox.indicators.streaming.Supertrend`
(O(1) per bar, exactly the batch ``velox.indicators.supertrend``): on every closed bar it updates
the indicator and, when the direction flips, trades towards ``weight`` × equity (up) or flat
(down). Long-only, delivery (CNC).

Run it::

    velox replay strategies/supertrend.py --symbol NSE:TCS --timeframe 1d \
        --param window=10 --param multiplier=3
"""

from __future__ import annotations

from velox.indicators.streaming import Supertrend
from velox.strategy import Bar, Context, Strategy, param


class SupertrendFollow(Strategy):
    """Hold ``weight`` × equity while Supertrend(``window``, ``multiplier``) points up."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    window: int = param(10, ge=1)
    multiplier: float = param(3.0, gt=0)
    weight: float = param(0.95, ge=0, le=1)

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
