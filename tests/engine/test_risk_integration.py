"""Risk inside the engine: the daily-loss kill switch on a real replay, breaches audited."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.errors import RiskBreach
from velox.feeds import BarReplay, from_ns, synthesize_ticks
from velox.oms import FILL_EVENT
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import Context, Strategy
from velox.types import Bar, Instrument, OrderType, Product

DAY = "2025-05-22"  # RELIANCE fell ₹25.9 from the open that day
LIMIT = 3_000.0
QTY = 500


class BuyTheOpen(Strategy):
    """Buys 500 MIS at the first bar of DAY with a resting limit below; keeps trying to trade."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS

    def on_start(self, ctx: Context) -> None:
        self.refusals: list[tuple[object, RiskBreach]] = []
        self.bought = False

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if str(bar.ts.date()) != DAY:
            return
        if not self.bought:
            self.bought = True
            ctx.buy(QTY)
            limit = ctx.instrument().snap_price(bar.close * 0.98, "down")
            ctx.buy(10, order_type=OrderType.LIMIT, limit_price=limit)
            return
        if ctx.position():
            return
        try:  # flat again: only after the kill switch squared us off
            ctx.buy(1)
        except RiskBreach as breach:
            self.refusals.append((ctx.now, breach))


@pytest.fixture
def killed(reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]):  # noqa: ANN201
    bars = reliance_5m.loc["2025-05-21":"2025-05-23"]
    strategy = BuyTheOpen()
    sim = SimBroker(master, initial_cash=1_000_000)
    engine = Engine(
        [strategy],
        broker=sim,
        feed=BarReplay({("NSE:RELIANCE", "5m"): bars}),
        instruments=master,
        risk=RiskEngine(RiskLimits(daily_loss_limit=LIMIT), account="T1"),
    )
    result = engine.run()
    return engine, sim, strategy, result, bars


def test_daily_loss_limit_kills_cancels_flattens_and_refuses_in_one_event(killed) -> None:  # noqa: ANN001
    engine, sim, strategy, result, bars = killed
    rows = engine.audit.rows
    kill = next(r for r in rows if r.status == "RISK_KILL")
    assert kill.payload["limit"] == "daily_loss_limit"
    assert [e["limit"] for e in result.risk_events if e["kind"] == "kill"] == ["daily_loss_limit"]
    # the trip is exact: the day's P&L at the kill tick is at or below -LIMIT, and the tick
    # before was above it (independent recomputation from the synthetic ticks and the fill)
    ts, price, _ = synthesize_ticks(bars, "5m")
    ticks = pd.Series(price, index=pd.DatetimeIndex([from_ns(int(t)) for t in ts]))
    entry = next(r for r in rows if r.status == FILL_EVENT and r.payload["qty"] == QTY)
    cost = entry.payload["price"]
    charges = entry.payload["charges"]
    k = ticks.index.get_loc(kill.ts)
    assert QTY * (ticks.iloc[k] - cost) - charges <= -LIMIT
    assert QTY * (ticks.iloc[k - 1] - cost) - charges > -LIMIT
    # within the same event: the resting order cancelled and the square-off sent
    same = [r for r in rows if r.ts == kill.ts]
    statuses = [(r.client_id, r.status) for r in same]
    resting = next(r.client_id for r in rows if r.status == "NEW" and r.payload["qty"] == 10)
    assert (resting, "CANCEL_REQUESTED") in statuses and (resting, "CANCELLED") in statuses
    square = [r for r in same if r.status == "NEW" and r.payload["side"] == "SELL"]
    assert len(square) == 1 and square[0].payload["qty"] == QTY
    assert (square[0].client_id, "SUBMITTED") in statuses
    # flat at the next tick: the square-off fills on the tick after the kill tick
    fill = next(r for r in rows if r.client_id == square[0].client_id and r.status == FILL_EVENT)
    assert fill.ts == ticks.index[k + 1]
    assert fill.payload["price"] == ticks.iloc[k + 1]
    assert engine.account_position_qty("NSE:RELIANCE") == 0
    assert all(p.qty == 0 for p in sim.positions())
    # every later order is refused, naming the limit, and audited as REJECTED
    assert len(strategy.refusals) > 10
    for when, breach in strategy.refusals:
        assert when > kill.ts
        assert breach.limit == "kill_switch" and "daily_loss_limit" in str(breach)
    rejected = [r for r in rows if r.status == "REJECTED"]
    assert len(rejected) == len(strategy.refusals)
    assert all(r.payload["limit"] == "kill_switch" for r in rejected)
    breaches = [r for r in rows if r.status == "RISK_BREACH"]
    assert len(breaches) == len(strategy.refusals)
    assert engine.risk.killed and engine.oms.open_orders() == []


def test_pre_trade_breach_refuses_the_order_and_the_strategy_keeps_running(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    class TooBig(Strategy):
        instruments = ("NSE:RELIANCE",)
        timeframe = "5m"
        product = Product.MIS

        def on_start(self, ctx: Context) -> None:
            self.bars = 0

        def on_bar(self, ctx: Context, bar: Bar) -> None:
            self.bars += 1
            if self.bars in (2, 4):
                ctx.buy(100 if self.bars == 2 else 10)  # 100 is over max_order_qty

    strategy = TooBig()
    engine = Engine(
        [strategy],
        broker=SimBroker(master, initial_cash=1_000_000),
        feed=BarReplay({("NSE:RELIANCE", "5m"): reliance_5m.iloc[:20]}),
        instruments=master,
        risk=RiskEngine(RiskLimits(max_order_qty=50)),
    )
    engine.run()
    assert engine.errors == {} and strategy.bars == 20  # refused, not stopped
    rejected = [r for r in engine.audit.rows if r.status == "REJECTED"]
    assert [r.payload["limit"] for r in rejected] == ["max_order_qty"]
    assert engine.account_position_qty("NSE:RELIANCE") == 10


def test_manual_kill_flattens_and_halts(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    class Holder(Strategy):
        instruments = ("NSE:RELIANCE",)
        timeframe = "5m"
        product = Product.MIS

        def on_bar(self, ctx: Context, bar: Bar) -> None:
            if ctx.position() == 0 and not ctx.open_orders():
                ctx.buy(20)

    engine = Engine(
        [Holder()],
        broker=SimBroker(master, initial_cash=1_000_000),
        feed=BarReplay({("NSE:RELIANCE", "5m"): reliance_5m.iloc[:30]}),
        instruments=master,
    )
    original = engine._close_event

    def close_then_kill(sub, key, row) -> None:  # noqa: ANN001
        original(sub, key, row)
        if sub.count == 10:
            engine.engage_kill("operator test", limit="manual")

    engine._close_event = close_then_kill  # type: ignore[method-assign]
    engine.run()
    kinds = [e.limit for e in engine.risk_events if e.kind == "kill"]
    assert kinds == ["manual"]
    assert engine.account_position_qty("NSE:RELIANCE") == 0
    refused = [r for r in engine.audit.rows if r.status == "REJECTED"]
    assert refused and all(r.payload["limit"] == "kill_switch" for r in refused)
