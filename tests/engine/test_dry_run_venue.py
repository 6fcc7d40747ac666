"""The dry-run venue of live data (the simulator server in its own process, fed the engine's
ticks over its socket: ``PaperVenue``) trades exactly like the in-process simulator.

The same strategy on the same real NSE ticks through the engine's live tick loop, once against
an in-process ``SimBroker`` and once against ``PaperVenue``: the same fills, at the same prices
and times, and the server's account equals the engine's book.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from velox.brokers.base import simulated_venue
from velox.brokers.sim import SimBroker
from velox.brokers.sim.paper import PaperConnection, PaperVenue, SimServer
from velox.engine import Engine
from velox.feeds import BarReplay
from velox.feeds.clock import WallClock
from velox.strategy import Context, Strategy
from velox.types import Bar, Instrument, OrderType, Product


class Churn(Strategy):
    """Buys 4 at market every third bar, sells them two bars later with a limit at the close."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS

    def on_start(self, ctx: Context) -> None:
        self.bars = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.bars += 1
        if self.bars % 3 == 0:
            ctx.buy(4)
        elif self.bars % 3 == 2 and ctx.position() > 0:
            ctx.sell(4, order_type=OrderType.LIMIT, limit_price=bar.close)


def _run(broker: SimBroker | PaperVenue, bars: pd.DataFrame, master) -> Engine:  # noqa: ANN001
    engine = Engine(
        [Churn()], broker=broker, instruments=master, mode="paper", reconcile_every=None,
        feed=BarReplay({("NSE:RELIANCE", "5m"): bars}).ticks(WallClock(speed=6000.0)),
    )  # fmt: skip
    engine.run()
    return engine


def test_dry_run_venue_fills_like_the_in_process_simulator(
    tmp_path: Path, reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_5m.loc["2025-05-20"].iloc[:40]
    local = _run(SimBroker(master, initial_cash=1e6), bars, master)

    server_sim = SimBroker(master, initial_cash=1e6)
    server = SimServer(server_sim, None, tmp_path / "dry.sock", speed=1.0)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    assert server.ready.wait(10), "the simulator server did not start"
    link = PaperConnection(tmp_path / "dry.sock")
    venue = PaperVenue(link)
    assert simulated_venue(venue) is venue  # the engine hands it ticks and its clock
    remote = _run(venue, bars, master)
    fills = venue.fills()  # a round trip: every notify before it has been handled
    venue.shutdown()
    thread.join(10)
    link.close()

    def key(fill) -> tuple:  # noqa: ANN001
        return fill.client_id, fill.side.value, fill.qty, fill.price, fill.ts

    expected = sorted(map(key, local.oms.fills))
    assert len(expected) >= 10, "the strategy should have traded through the morning"
    assert sorted(map(key, remote.oms.fills)) == expected
    assert sorted(map(key, fills)) == expected  # the server's own record of the account
    assert not thread.is_alive(), "shutdown ends the server"
