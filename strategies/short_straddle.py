"""Short ATM straddle, intraday: sell the weekly CE and PE at 09:20, combined stop, out by 15:15.

An event-driven, multi-leg strategy on the index's 1-minute bars. When the bar ending at
``entry`` closes, ``ctx.option`` picks the strike nearest the index (the listed step, as
``velox.options.chain`` does) on the next weekly expiry, and it sells ``lots`` lots of its call
and put as **one basket** (:meth:`velox.strategy.Context.basket`: one risk check for both legs, each
split at the freeze quantity). At every later bar close it marks the basket at the options'
last prices; when the gross loss reaches ``stop_loss`` rupees, or at the bar ending at
``exit``, it buys both legs back as one basket. Product NRML, so the engine's 15:15 MIS
square-off does not interfere. The same rules as ``velox.fno.backtest_basket(straddle("sell"),
..., entry="09:20", exit="15:15", stop_loss=...)``, which the tests hold it to.

The options must be in the replay: ``velox.fno.option_feed`` lists each session's contracts
with model-priced (or stored) bars and their instrument rows::

    import pandas as pd, velox
    from velox.fno import option_feed
    from velox.strategy import load_strategy

    nifty = pd.read_csv("data/bars/NIFTY_1m_2021_2022.csv.gz", index_col=0, parse_dates=True)
    feed = option_feed(nifty, start="2022-06-13", end="2022-06-17", freeze_qty=1_800)
    ShortStraddle = load_strategy("strategies/short_straddle.py")
    week = nifty.loc["2022-06-13":"2022-06-17"]
    result = velox.replay(ShortStraddle(), bars={("NSE:NIFTY", "1m"): week, **feed.bars},
                          instrument_master=feed.lookup())
"""

from __future__ import annotations

from datetime import date, time, timedelta

from velox.strategy import (
    Bar,
    BasketLeg,
    ConfigError,
    Context,
    Fill,
    Product,
    Strategy,
    param,
    timeframe_minutes,
)


class ShortStraddle(Strategy):
    """Sell the ATM weekly straddle at ``entry``; buy it back at ``stop_loss`` or ``exit``."""

    instruments = ("NSE:NIFTY",)
    timeframe = "1m"
    product = Product.NRML
    lookback = 5
    underlying: str = "NIFTY"
    lots: int = param(1, ge=1)
    entry: str = "09:20"
    exit: str = "15:15"
    stop_loss: float = param(3_000.0, gt=0)

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        minutes = timeframe_minutes(self.timeframe)
        if minutes is None:
            raise ConfigError(f"ShortStraddle needs intraday bars, not {self.timeframe!r}")
        self.bar_length = timedelta(minutes=minutes)
        try:
            self.entry_time = time.fromisoformat(self.entry)
            self.exit_time = time.fromisoformat(self.exit)
        except ValueError:
            raise ConfigError(
                f"ShortStraddle entry={self.entry!r}/exit={self.exit!r} must be HH:MM (IST)"
            ) from None
        if self.exit_time <= self.entry_time:
            raise ConfigError(f"ShortStraddle exit={self.exit} must be after entry={self.entry}")

    def on_start(self, ctx: Context) -> None:
        """Start flat: no basket, no day seen."""
        self.day: date | None = None
        self.legs: list[str] = []  # the open basket's contracts
        self.cost: dict[str, float] = {}  # signed rupees paid per contract (sold: negative)

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        """Keep each contract's signed cost, to mark the basket."""
        signed = fill.side.sign * fill.qty * fill.price
        self.cost[fill.instrument_id] = self.cost.get(fill.instrument_id, 0.0) + signed

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        """Enter at the entry bar's close; mark, stop or exit at every later close."""
        if bar.instrument_id != self.instruments[0] or bar.timeframe != self.timeframe:
            return
        end = bar.ts + self.bar_length
        if end.date() != self.day:
            self.day = end.date()
            if not self.legs:
                self.cost.clear()
            if end.time() > self.entry_time:  # joined after the entry: no basket today
                return
        if end.time() == self.entry_time and not self.legs:
            self.enter(ctx, bar)
        elif self.legs and (end.time() >= self.exit_time or self.pnl(ctx) <= -self.stop_loss):
            self.leave(ctx)

    def enter(self, ctx: Context, bar: Bar) -> None:
        """Sell the ATM call and put of the next weekly expiry as one basket."""
        legs = []
        for kind in ("CE", "PE"):
            iid = ctx.option(self.underlying, kind, spot=bar.close)  # ATM, next weekly
            legs.append(BasketLeg(iid, "SELL", self.lots * ctx.instrument(iid).lot_size))
        self.legs = [leg.instrument_id for leg in legs]
        self.place(ctx, legs, f"straddle-{self.day}")

    def leave(self, ctx: Context) -> None:
        """Buy back whatever the basket still holds, as one basket."""
        legs = []
        for iid in self.legs:
            held = ctx.position(iid)
            if held:
                legs.append(BasketLeg(iid, "BUY" if held < 0 else "SELL", abs(held)))
        self.legs = []
        if legs:
            self.place(ctx, legs, f"exit-{self.day}")

    def place(self, ctx: Context, legs: list[BasketLeg], tag: str) -> None:
        """Send ``legs`` as one basket (all or nothing through the risk engine)."""
        ctx.basket(legs, tag=tag)

    def pnl(self, ctx: Context) -> float:
        """Return the open basket's gross mark-to-market P&L at the legs' last prices."""
        total = 0.0
        for iid in self.legs:
            price = ctx.last_price(iid)
            if price is not None:
                total += ctx.position(iid) * price - self.cost.get(iid, 0.0)
        return total
