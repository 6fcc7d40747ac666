"""Daily replays across NSE's special sessions: orders decided at a close fill at the next open.

Diwali Muhurat trading 2021-11-04 ran 18:15-19:15 IST (NSE circular); an order decided at the
2021-11-03 close must fill at that evening's open, as an after-market order would, not be
refused at 09:15 while the exchange is closed.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.feeds import BarReplay
from velox.strategy import Context, Strategy
from velox.types import Bar, Instrument


class BuyOn(Strategy):
    """Buys 10 shares at the close of one given session."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    day = "2021-11-03"

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if str(bar.ts.date()) == self.day:
            ctx.buy(10)


def test_an_order_at_the_close_before_muhurat_fills_at_the_muhurat_open(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_1d.loc["2021-10-25":"2021-11-12"]
    sim = SimBroker(master, initial_cash=1_000_000)
    engine = Engine(
        [BuyOn()], broker=sim, feed=BarReplay({("NSE:RELIANCE", "1d"): bars}), instruments=master
    )
    engine.run()
    assert engine.errors == {}
    [fill] = sim.fills()
    assert fill.ts.strftime("%Y-%m-%d %H:%M") == "2021-11-04 18:15"
    assert fill.price == bars.loc["2021-11-04", "open"]
    assert fill.qty == 10
    assert [r.status for r in engine.audit.rows if r.status == "REJECTED"] == []
