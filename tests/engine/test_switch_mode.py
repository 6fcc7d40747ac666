"""``switch-mode`` moves a running deployment between its live broker and its dry-run simulator:
only with a flat book, audited before it acts, every later row stamped with the new mode, and a
restarted engine resumes the mode the run had switched to.

The two venues are two simulated exchanges (the engine's side of the switch is what is tested
here; tests/brokers/kite drive it through the Kite SDK against the Kite simulator). Real NSE
5-minute bars replayed as ticks, the store's commands and audit log, both PostgreSQL servers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pandas as pd
import pytest

from tests.engine.conftest import command_answer
from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.engine.commands import StoreCommands
from velox.engine.core import strategy_record
from velox.feeds import BarReplay
from velox.feeds.clock import WallClock
from velox.oms import FILL_EVENT, StoreAuditLog
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import Context, Strategy
from velox.types import Bar, Instrument, Product

pytestmark = pytest.mark.postgres


class RoundTrip(Strategy):
    """Buys 10 on the first bar and sells them on the third; buys 5 again from bar 12 on."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS

    def on_start(self, ctx: Context) -> None:
        self.bars = 0
        self.again = False

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.bars += 1
        if self.bars == 1:
            ctx.buy(10)
        elif self.bars == 3:
            ctx.sell(10)
        elif self.bars >= 12 and not self.again:
            ctx.buy(5)
            self.again = True


class Quiet(Strategy):
    """Trades nothing (the restarted engine's strategy)."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"


def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_switch_needs_a_flat_book_and_moves_later_orders_to_the_other_venue(
    store, reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    day = reliance_5m.loc["2025-05-20"]
    strategy = RoundTrip()
    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6, run_id="S1",
                              strategies=[strategy_record(strategy)])  # fmt: skip
    dry, live = SimBroker(master, initial_cash=1e6), SimBroker(master, initial_cash=1e6)
    commands = StoreCommands(store, run_id)
    engine = Engine(
        [strategy], broker=dry, venues={"live": live},
        feed=BarReplay({("NSE:RELIANCE", "5m"): day}).ticks(WallClock(speed=3000.0)),
        instruments=master, mode="paper", run_id=run_id, commands=commands,
        audit=StoreAuditLog(store, "paper", run_id=run_id),
        risk=RiskEngine(RiskLimits(), account="A1"), reconcile_every=None,
    )  # fmt: skip
    answers: list[tuple[str, dict]] = []
    problems: list[BaseException] = []

    def operator() -> None:
        try:
            net = engine.oms.account.net
            _until(lambda: net.get("NSE:RELIANCE", 0) == 10, "the strategy never bought")
            held = store.issue_command("switch-mode", issued_by="ops", run_id=run_id,
                                       args={"mode": "live"})  # fmt: skip
            answers.append(command_answer(store, held.id))
            _until(lambda: strategy.bars >= 4 and not net.get("NSE:RELIANCE"), "never flat")
            flat = store.issue_command("switch-mode", issued_by="ops", run_id=run_id,
                                       args={"mode": "live"})  # fmt: skip
            answers.append(command_answer(store, flat.id))
            _until(lambda: bool(live.fills()), "no order reached the live venue")
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            problems.append(exc)
        finally:
            engine.stop()

    threading.Thread(target=operator, daemon=True).start()
    engine.run()
    commands.close()
    assert not problems, problems

    (refused, error), (switched, result) = answers
    assert refused == "failed" and "flatten first" in error["error"], error
    assert "NSE:RELIANCE +10" in error["error"]
    assert switched == "done" and result == {"mode": "live", "venue": live.name}
    assert engine.mode == "live"
    # the round trip went to the dry-run venue, the later buy to the live one, each once
    assert [(o.side.value, o.qty) for o in dry.orders()] == [("BUY", 10), ("SELL", 10)]
    assert [(o.side.value, o.qty) for o in live.orders()] == [("BUY", 5)]
    assert sum(p.qty for p in live.positions()) == 5 == engine.oms.account.net["NSE:RELIANCE"]
    # audited before acting: the MODE row (written in the old mode) precedes every live row
    events = store.read_order_events(run_id=run_id)
    (mode_row,) = events.index[events["status"] == "MODE"]
    assert events.loc[mode_row, "mode"] == "paper"
    assert events.loc[mode_row, "payload"] == {"from": "paper", "to": "live", "venue": live.name,
                                               "issued_by": "ops"}  # fmt: skip
    after = events.loc[mode_row + 1 :]
    before = events.loc[: mode_row - 1]
    assert before["mode"].eq("paper").all() and after["mode"].eq("live").all()
    live_cids = {o.client_id for o in live.orders()}
    assert set(after.loc[after["status"] == FILL_EVENT, "client_id"]) == live_cids

    # a restart of the run goes on in the mode it had switched to, with the same book
    restarted = Engine(
        [Quiet()], broker=SimBroker(master, initial_cash=1e6), venues={"live": live},
        feed=BarReplay({("NSE:RELIANCE", "5m"): day.iloc[20:23]}).ticks(WallClock(speed=3000.0)),
        instruments=master, mode="paper", run_id=run_id,
        audit=StoreAuditLog(store, "paper", run_id=run_id), restore=True,
        risk=RiskEngine(RiskLimits(), account="A1"), reconcile_every=None,
    )  # fmt: skip
    restarted.run()
    assert restarted.mode == "live"
    assert restarted.oms.account.net["NSE:RELIANCE"] == 5
    assert restarted.oms.seq == engine.oms.seq  # ids go on from both modes' orders
