"""Opening-range breakout, intraday (MIS): trade the first break of the morning's range.

An event-driven strategy on intraday bars (5-minute by default; any intraday timeframe). The
opening range is the high and low of the first ``range_bars`` bars of each session (09:15–09:30
with three 5m bars). After
that, on every tick (``on_tick`` sees the forming candle) a price above the range high buys and a
price below the range low sells short, once per day, sized ``weight`` × equity, product MIS. A
long is filtered by the session VWAP (streaming :class:`velox.indicators.streaming.VWAP`,
committed on closed bars): only above it; a short only below it. The position is stopped out
when price crosses back through the *other* side of the range, and squared off by the
strategy on the first bar closing at or after ``exit_time`` (before the broker's 15:15 MIS
square-off). Orders placed on a tick fill on a later tick: no look-ahead.

Run it::

    velox replay strategies/orb_intraday.py --symbol NSE:RELIANCE --timeframe 5m
"""

from __future__ import annotations

from datetime import time, timedelta

from velox.indicators.streaming import VWAP
from velox.strategy import (
    Bar,
    ConfigError,
    Context,
    Product,
    Strategy,
    param,
    timeframe_minutes,
)


class OpeningRangeBreakout(Strategy):
    """Buy above / short below the first ``range_bars`` bars' range, MIS, flat by ``exit_time``."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS
    range_bars: int = param(3, ge=1)
    weight: float = param(1.0, gt=0)
    exit_time: str = "15:00"

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        minutes = timeframe_minutes(self.timeframe)
        if minutes is None:
            raise ConfigError(
                f"OpeningRangeBreakout trades intraday bars, not {self.timeframe!r} ones: "
                "use an intraday timeframe such as 5m"
            )
        self.bar_length = timedelta(minutes=minutes)
        try:
            self.cutoff = time.fromisoformat(self.exit_time)
        except ValueError:
            raise ConfigError(
                f"OpeningRangeBreakout.exit_time={self.exit_time!r} is not a time: use HH:MM "
                "IST, e.g. 15:00"
            ) from None

    def on_start(self, ctx: Context) -> None:
        """Reset the per-day state and create the session VWAP."""
        self.vwap = VWAP()
        self.vwap_value = float("nan")
        self.day = None
        self.bars_today = 0
        self.high = self.low = float("nan")
        self.traded = False
        self.stop = float("nan")

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        """Build the opening range; square off at the exit time."""
        day = bar.ts.date()
        if day != self.day:
            self.day, self.bars_today, self.traded = day, 0, False
            self.high, self.low = bar.high, bar.low
        self.bars_today += 1
        if self.bars_today <= self.range_bars:
            self.high, self.low = max(self.high, bar.high), min(self.low, bar.low)
        self.vwap_value = self.vwap.update(bar)
        end = (bar.ts + self.bar_length).time()  # the bar's end, on the strategy's timeframe
        if end >= self.cutoff and ctx.position():
            ctx.cancel_all()
            ctx.target_qty(0)
            ctx.log("exit time: flat %s", day)

    def on_tick(self, ctx: Context, bar: Bar) -> None:
        """Enter on the first break of the range; stop out on the opposite side."""
        if bar.ts.date() != self.day or self.bars_today < self.range_bars:
            return
        if bar.ts.time() >= self.cutoff:
            return
        price = bar.close
        position = ctx.position()
        if position == 0 and not self.traded and not ctx.open_orders():
            qty = int(self.weight * ctx.equity / price)
            vwap = self.vwap_value
            if price > self.high and not price < vwap:
                ctx.buy(qty)
                self.traded, self.stop = True, self.low
            elif price < self.low and not price > vwap:
                ctx.sell(qty)
                self.traded, self.stop = True, self.high
        elif position and not ctx.open_orders():
            stopped = price < self.stop if position > 0 else price > self.stop
            if stopped:
                ctx.target_qty(0)
