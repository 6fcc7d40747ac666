"""Reconciliation on the engine's timer: a position the OMS never ordered halts new orders.

Issue 5: "reconciliation against the broker's orders/positions at start and on a timer — a
mismatch raises an alert and halts new orders, never silently 'fixes'". The mismatch here is an
order placed at the broker (as from the broker's own terminal) whose postbacks never reach the
engine (a dropped websocket); when they do arrive, the order is adopted as external and audited.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from velox.brokers.base import BrokerListener
from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.errors import RiskBreach
from velox.feeds import BarReplay
from velox.oms import FILL_EVENT
from velox.strategy import Context, Strategy
from velox.types import Bar, Fill, Instrument, Order, Product, Side

OUT_OF_BAND_BAR = 5


class LossyLink(SimBroker):
    """A simulator whose postbacks for some client ids are lost on the way to the engine."""

    lost: frozenset[str] = frozenset()

    def set_listener(self, listener: BrokerListener) -> None:
        lost = self.lost

        class Dropping:
            def on_order_update(self, order: Order) -> None:
                if order.client_id not in lost:
                    listener.on_order_update(order)

            def on_fill(self, fill: Fill) -> None:
                if fill.client_id not in lost:
                    listener.on_fill(fill)

        super().set_listener(Dropping())


def _run(
    sim: SimBroker, bars: pd.DataFrame, master: Callable[[str], Instrument]
) -> tuple[Engine, Strategy]:

    class Trader(Strategy):
        """Buys 1 share on each bar; at bar 5 someone buys 7 shares directly at the broker."""

        instruments = ("NSE:RELIANCE",)
        timeframe = "5m"
        product = Product.MIS

        def on_start(self, ctx: Context) -> None:
            self.bars = 0
            self.accepted: list[int] = []
            self.refused: list[tuple[int, RiskBreach]] = []

        def on_bar(self, ctx: Context, bar: Bar) -> None:
            self.bars += 1
            if self.bars == OUT_OF_BAND_BAR:
                manual = Order(
                    client_id="manual-1",
                    instrument_id="NSE:RELIANCE",
                    side=Side.BUY,
                    qty=7,
                    product=Product.MIS,
                    tag="terminal",
                )
                sim.place_order(manual)
            try:
                ctx.buy(1)
                self.accepted.append(self.bars)
            except RiskBreach as breach:
                self.refused.append((self.bars, breach))

    strategy = Trader()
    engine = Engine(
        [strategy],
        broker=sim,
        feed=BarReplay({("NSE:RELIANCE", "5m"): bars}),
        instruments=master,
        reconcile_every=300.0,  # one 5-minute bar of engine time
    )
    engine.run()
    return engine, strategy


def test_a_position_the_engine_never_heard_of_halts_new_orders(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    sim = LossyLink(master, initial_cash=1_000_000)
    sim.lost = frozenset({"manual-1"})
    engine, strategy = _run(sim, reliance_5m.iloc[:30], master)

    # the strategy kept running; orders went through until the timer saw the mismatch
    assert engine.errors == {} and strategy.bars == 30
    assert strategy.accepted[:OUT_OF_BAND_BAR] == list(range(1, OUT_OF_BAND_BAR + 1))
    assert strategy.refused, "orders after the mismatch must be refused"
    first_refused = strategy.refused[0][0]
    assert OUT_OF_BAND_BAR < first_refused <= OUT_OF_BAND_BAR + 2
    assert all(bars < first_refused for bars in strategy.accepted)
    assert [bars for bars, _ in strategy.refused] == list(range(first_refused, 31))
    assert {breach.limit for _, breach in strategy.refused} == {"reconciliation"}

    # an alert naming the instrument, audited, and the OMS did not adopt the broker's position
    (alert,) = [a for a in engine.alerts if a.kind == "reconciliation"]
    assert "NSE:RELIANCE" in alert.message and alert.severity == "critical"
    alerts = [r for r in engine.audit.rows if r.status == "RISK_ALERT"]
    assert len(alerts) == 1
    assert [e.limit for e in engine.risk_events if e.kind == "alert"] == ["reconciliation"]
    ours = engine.account_position_qty("NSE:RELIANCE")
    broker = sum(p.qty for p in sim.positions() if p.instrument_id == "NSE:RELIANCE")
    assert ours == len(strategy.accepted)
    assert broker == ours + 7
    assert engine.reconcile() != []  # still a mismatch: nothing was silently "fixed"


def test_an_order_from_another_terminal_is_adopted_as_external_and_audited(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    sim = SimBroker(master, initial_cash=1_000_000)
    engine, strategy = _run(sim, reliance_5m.iloc[:30], master)

    # its postbacks arrived: booked for the account (not for the strategy), audited as external
    assert strategy.refused == [] and len(strategy.accepted) == 30
    assert engine.alerts == [] and engine.reconcile() == []
    filled = 29  # the order of the last bar has no next bar to fill at
    assert engine.account_position_qty("NSE:RELIANCE") == filled + 7
    assert engine.oms.position_qty("Trader", "NSE:RELIANCE") == filled
    manual = [r for r in engine.audit.rows if r.client_id == "manual-1"]
    assert manual[0].payload["external"] is True and manual[0].payload["tag"] == "terminal"
    assert FILL_EVENT in [r.status for r in manual] and manual[-1].status == "FILLED"
