"""`velox kill` reaches a running paper engine through the store's commands: cancel, square off,
refuse, audit, and answer the operator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from velox.brokers.sim import SimBroker
from velox.errors import RiskBreach
from velox.modes import paper
from velox.strategy import Context, Strategy
from velox.types import Bar, OrderType


class Holder(Strategy):
    """Holds 20 shares and a resting limit order; after being flattened keeps trying to buy."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_start(self, ctx: Context) -> None:
        self.refused: list[RiskBreach] = []
        self.held = threading.Event()

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if ctx.position():
            self.held.set()
            if not ctx.open_orders():
                price = ctx.instrument().snap_price(bar.close * 0.98, "down")
                ctx.buy(5, order_type=OrderType.LIMIT, limit_price=price)
            return
        try:
            if not ctx.open_orders():
                ctx.buy(20)
        except RiskBreach as breach:
            self.refused.append(breach)


@pytest.mark.postgres
def test_velox_kill_stops_a_running_paper_engine(
    store, serve_simulator: Callable[..., tuple[SimBroker, Path]], operator_cli: click.Group
) -> None:
    sim, sock = serve_simulator("sim", speed=2500)
    strategy = Holder()
    outputs: list[object] = []

    def operator() -> None:  # the operator types `velox kill --account A1` once we hold
        strategy_ready = getattr(strategy, "held", None)
        while strategy_ready is None:
            time.sleep(0.01)
            strategy_ready = getattr(strategy, "held", None)
        strategy_ready.wait(30)
        outputs.append(
            CliRunner().invoke(operator_cli, ["kill", "--account", "A1", "--reason", "test drill"])
        )

    threading.Thread(target=operator, daemon=True).start()
    result = paper(strategy, run_id="K1", store=store, socket_path=sock, account="A1")
    kills = [e for e in result.risk_events if e["kind"] == "kill"]
    assert len(kills) == 1 and kills[0]["limit"] == "manual"
    assert "test drill" in kills[0]["message"] and kills[0]["mode"] == "paper"
    assert strategy.refused and all(b.limit == "kill_switch" for b in strategy.refused)
    assert sum(p.qty for p in sim.positions() + sim.holdings()) == 0
    assert all(o.is_terminal for o in sim.orders())
    events = store.read_order_events()
    assert (events["status"] == "RISK_KILL").sum() == 1
    (out,) = outputs
    assert out.exit_code == 0, out.output  # type: ignore[attr-defined]
    assert "K1: engaged" in out.output  # type: ignore[attr-defined]
    (command,) = store.commands().itertuples()
    assert command.verb == "kill" and tuple(command.targets) == ("K1",)
    (answer,) = store.command_results(command.id).itertuples()
    assert answer.status == "done" and answer.result["engaged"] is True
    commands = events[events["status"] == "COMMAND"]
    assert commands["payload"].map(lambda p: p["verb"]).tolist() == ["kill"]
    assert store.run("K1")["status"] == "finished"
    kinds = store.alerts(run_id="K1")["kind"].tolist()
    assert "kill_switch" in kinds
