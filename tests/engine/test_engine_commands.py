"""Operator commands from the store reach a running engine, each executed and answered once, and
every kind of engine event becomes a stored alert.

The engine runs the tick loop that paper and live use (real NSE 5-minute bars replayed as ticks,
paced by a wall clock) against the simulated broker, with the store's commands and a
``RunRecorder`` journal, on both PostgreSQL deployments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pandas as pd
import pytest

from tests.engine.conftest import command_answer
from velox.brokers.base import BrokerListener, ConnectionEvent, ConnectionState
from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.engine.commands import StoreCommands
from velox.engine.core import strategy_record
from velox.errors import RiskBreach
from velox.feeds import BarReplay
from velox.feeds.clock import WallClock
from velox.risk import RiskEngine, RiskLimits
from velox.store import RunRecorder
from velox.strategy import Context, Strategy
from velox.types import Bar, Fill, Instrument, Order, OrderStatus, OrderType, Product, Side

pytestmark = pytest.mark.postgres


class Holder(Strategy):
    """Buys 10 shares once, then keeps one resting limit buy 3% below the market."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS

    def on_start(self, ctx: Context) -> None:
        self.bought = False
        self.refused: list[RiskBreach] = []

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if not self.bought:
            ctx.buy(10)
            self.bought = True
        if not [o for o in ctx.open_orders() if o.order_type is OrderType.LIMIT]:
            price = ctx.instrument().snap_price(bar.close * 0.97, "down")
            try:
                ctx.buy(5, order_type=OrderType.LIMIT, limit_price=price)
            except RiskBreach as breach:
                self.refused.append(breach)


class Idle(Strategy):
    """Trades nothing; an operator stops it."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_start(self, ctx: Context) -> None:
        self.stopped = False
        self.starts = getattr(self, "starts", 0) + 1

    def on_stop(self, ctx: Context) -> None:
        self.stopped = True


def test_every_verb_reaches_a_running_engine_once(
    store, reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    day = reliance_5m.loc["2025-05-20"]
    holder, idle = Holder(), Idle()
    run_id = store.create_run(
        mode="paper",
        account="A1",
        initial_cash=1e6,
        run_id="C1",
        strategies=[strategy_record(holder), strategy_record(idle)],
    )
    sim = SimBroker(master, initial_cash=1_000_000)
    commands = StoreCommands(store, run_id)
    engine = Engine(
        [holder, idle], broker=sim,
        feed=BarReplay({("NSE:RELIANCE", "5m"): day}).ticks(WallClock(speed=1500.0)),
        instruments=master, mode="paper", run_id=run_id, commands=commands,
        risk=RiskEngine(RiskLimits(), account="A1"), reconcile_every=None,
    )  # fmt: skip
    answers: dict[str, tuple[str, dict]] = {}
    ids: dict[str, int] = {}
    problems: list[BaseException] = []
    stopped_then: list[bool] = []

    def operator() -> None:
        try:
            deadline = time.monotonic() + 15
            while not (engine.oms.account.net.get("NSE:RELIANCE") and engine.oms.open):
                assert time.monotonic() < deadline, "the strategy never held and rested an order"
                time.sleep(0.02)
            resting = next(iter(engine.oms.open))
            steps = [
                ("order", {"args": {"instrument_id": "NSE:RELIANCE", "side": "BUY", "qty": 2,
                                    "product": "MIS"}}),
                ("cancel-order", {"args": {"client_id": resting}}),
                ("stop-strategy", {"strategy": "Idle"}),
                ("start-strategy", {"strategy": "Idle"}),
                ("switch-mode", {"args": {"mode": "live"}}),
                ("flatten", {"strategy": "Holder"}),
                ("kill", {"args": {"reason": "drill"}}),
                ("reset-kill", {}),
            ]  # fmt: skip
            for verb, extra in steps:
                command = store.issue_command(verb, issued_by="ops", account="A1", **extra)
                assert command.targets == (run_id,)
                ids[verb] = command.id
                answers[verb] = command_answer(store, command.id)
                if verb in ("stop-strategy", "start-strategy"):
                    stopped_then.append((idle.stopped, idle.starts))
                if verb == "cancel-order":
                    answers["cancelled"] = (engine.oms.orders[resting].status.value, {})
                if verb == "flatten":
                    time.sleep(0.3)  # the square-off fills on the next ticks
                    answers["after flatten"] = (
                        str(engine.oms.position_qty("Holder", "NSE:RELIANCE")),
                        {},
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            problems.append(exc)
        finally:
            engine.stop()

    threading.Thread(target=operator, daemon=True).start()
    engine.run()
    commands.close()
    assert not problems, problems

    status, result = answers["order"]
    cid = f"{run_id}-C{ids['order']}"
    assert status == "done" and result["client_id"] == cid
    assert engine.oms.orders[cid].status is OrderStatus.FILLED
    assert [o.client_id for o in sim.orders()].count(cid) == 1
    assert answers["cancel-order"][0] == "done" and answers["cancelled"][0] == "CANCELLED"
    assert answers["stop-strategy"][0] == "done"
    # stopped: on_stop ran; started again: on_start ran a second time (it resets `stopped`)
    assert stopped_then == [(True, 1), (False, 2)]
    status, result = answers["start-strategy"]
    assert status == "done" and result["running"] is True
    status, result = answers["switch-mode"]
    assert status == "failed" and "not started with a live broker" in result["error"]
    assert answers["flatten"][0] == "done" and answers["after flatten"][0] == "0"
    status, result = answers["kill"]
    assert status == "done" and result["engaged"] is True
    assert any(e.kind == "kill" and "drill" in e.message for e in engine.risk_events)
    status, result = answers["reset-kill"]
    assert status == "done" and result["reset"] is True and not engine.risk.killed
    # exactly once: one "taken" per command, nothing left for this run, and a repeat refused
    events = store.command_events()
    taken = events[events["status"] == "taken"]["command_id"].tolist()
    assert sorted(taken) == sorted(ids.values())
    assert store.pending_commands(run_id) == []
    assert store.take_command(ids["kill"], run_id) is False
    audited = [r.payload["verb"] for r in engine.audit.rows if r.status == "COMMAND"]
    assert audited == [verb for verb, _ in sorted(ids.items(), key=lambda kv: kv[1])]


class LossyLink(SimBroker):
    """A simulator whose postbacks for some client ids never reach the engine."""

    lost: frozenset[str] = frozenset({"manual-1"})

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


class FlakyFeed:
    """A tick feed whose connection drops after 30 ticks and comes back after 40."""

    name = "flaky"

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner = inner

    def subscribe(self, *args: object, **kwargs: object) -> None: ...

    def unsubscribe(self, *args: object, **kwargs: object) -> None: ...

    def stop(self) -> None:
        self.inner.stop()

    def run(self, callback: Callable[[object], object]) -> None:
        count = 0

        def relay(tick: object) -> None:
            nonlocal count
            count += 1
            if count in (30, 40):
                state = ConnectionState.DISCONNECTED if count == 30 else ConnectionState.CONNECTED
                callback(ConnectionEvent("flaky", state, tick.ts, "socket closed"))  # type: ignore[attr-defined]
            callback(tick)

        self.inner.run(relay)


class Eventful(Strategy):
    """Walks the engine through every alert: a broker reject, a risk breach, a fill that trips
    the daily loss limit, an order placed behind the engine's back, then a crash."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS

    def on_start(self, ctx: Context) -> None:
        self.n = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n == 1:
            ctx.buy(4_000)  # ≈ ₹56 lakh with ₹10 lakh: the broker's RMS rejects it
        elif self.n == 2:
            ctx.buy(6_000)  # above max_order_qty: the risk engine refuses it
        elif self.n == 3:
            ctx.buy(10)  # its charges alone break the ₹0.01 daily loss limit: kill switch
            self.sim.place_order(Order(client_id="manual-1", instrument_id="NSE:RELIANCE",
                                       side=Side.BUY, qty=7, product=Product.MIS,
                                       tag="terminal"))  # fmt: skip
        elif self.n == 8:
            raise ZeroDivisionError("model blew up")


def test_every_engine_event_kind_is_a_stored_alert(
    store, reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    day = reliance_5m.loc["2025-05-20"]
    run_id = store.create_run(mode="paper", account="A2", initial_cash=1e6, run_id="E1")
    sim = LossyLink(master, initial_cash=1_000_000)
    strategy = Eventful()
    strategy.sim = sim  # type: ignore[attr-defined]
    recorder = RunRecorder(store, run_id)
    limits = RiskLimits(max_order_qty=5_000, daily_loss_limit=0.01)
    engine = Engine(
        [strategy], broker=sim, feed=FlakyFeed(BarReplay({("NSE:RELIANCE", "5m"): day}).ticks()),
        instruments=master, mode="paper", run_id=run_id, journal=recorder,
        risk=RiskEngine(limits, account="A2"), reconcile_every=600.0,
    )  # fmt: skip
    result = engine.run()
    recorder.close()

    alerts = store.alerts(run_id=run_id)
    by_kind = {kind: group for kind, group in alerts.groupby("kind")}
    expected = {"order_rejected": "warning", "risk_breach": "warning", "kill_switch": "critical",
                "reconciliation": "critical", "strategy_error": "critical"}  # fmt: skip
    for kind, severity in expected.items():
        assert kind in by_kind, f"no {kind} alert: {sorted(by_kind)}"
        assert severity in set(by_kind[kind]["severity"])
    assert "4000" in by_kind["order_rejected"]["message"].iloc[0]
    assert "max_order_qty" in " ".join(by_kind["risk_breach"]["message"])
    assert "ZeroDivisionError" in by_kind["strategy_error"]["message"].iloc[0]
    assert "NSE:RELIANCE" in by_kind["reconciliation"]["message"].iloc[0]
    disconnects = by_kind["broker_disconnect"].sort_values("id")
    assert disconnects["severity"].tolist() == ["warning", "info"]
    assert "disconnected" in disconnects["message"].iloc[0]
    assert "reconnected" in disconnects["message"].iloc[1]
    assert set(alerts["account"]) == {"A2"}
    # the same alerts the result reports, and the risk events recorded beside them
    assert sorted(a["kind"] for a in result.alerts) == sorted(
        k for k, n in zip(alerts["kind"], alerts["occurrences"], strict=True) for _ in range(n)
    )
    recorded = store.run_risk_events(run_id)
    assert len(recorded) == len(result.risk_events)
    assert {"kill", "breach", "alert"} <= set(recorded["kind"])
    # a strategy stopped by its own error is not started again by an operator
    ok, answer = engine.start_strategy(strategy.name, reason="ops")
    assert not ok and "stopped after an error (ZeroDivisionError" in answer["error"]
