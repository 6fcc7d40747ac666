"""One `velox kill` (no --account) reaches every running paper engine, also one whose strategy
hangs in on_bar; an engine that is down is reported as "no answer" (exit 1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from velox.brokers.sim import SimBroker
from velox.modes import paper
from velox.strategy import Context, Strategy
from velox.types import Bar, OrderType


class Holds(Strategy):
    """Buys 20 shares, then keeps a resting limit order; ``hang``: then spins in on_bar."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    hang = False

    def on_start(self, ctx: Context) -> None:
        self.held = threading.Event()

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if not ctx.position():
            if not ctx.open_orders():
                ctx.buy(20)
            return
        if not ctx.open_orders():
            price = ctx.instrument().snap_price(bar.close * 0.98, "down")
            ctx.buy(5, order_type=OrderType.LIMIT, limit_price=price)
            return
        self.held.set()
        while self.hang:  # an endless loop in pure Python
            pass


class Hangs(Holds):
    hang = True


@pytest.mark.postgres
def test_one_kill_engages_every_engine_even_with_a_hung_strategy(
    store, serve_simulator: Callable[..., tuple[SimBroker, Path]], operator_cli: click.Group
) -> None:
    engines = {"KA": (Holds(), "A1"), "KB": (Hangs(), "B2")}
    sims, results = {}, {}
    threads = []
    for run_id, (strategy, account) in engines.items():
        sims[run_id], sock = serve_simulator(run_id, speed=500)

        def run(run_id=run_id, strategy=strategy, account=account, sock=sock) -> None:  # noqa: ANN001
            results[run_id] = paper(
                strategy, run_id=run_id, store=store, socket_path=sock, account=account
            )

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
    for strategy, _ in engines.values():
        while getattr(strategy, "held", None) is None:
            time.sleep(0.01)
        assert strategy.held.wait(60)
    out = CliRunner().invoke(operator_cli, ["kill", "--reason", "drill"])
    for thread in threads:
        thread.join(120)
    assert out.exit_code == 0, out.output
    assert "KA: engaged" in out.output and "KB: engaged" in out.output
    for run_id, sim in sims.items():
        assert sum(p.qty for p in sim.positions() + sim.holdings()) == 0, run_id
        assert all(o.is_terminal for o in sim.orders()), run_id
        kills = [e for e in results[run_id].risk_events if e["kind"] == "kill"]
        assert len(kills) == 1, run_id
    (hung,) = results["KB"].strategies
    assert "StrategyTimeout" in str(hung["error"])  # the watchdog unwound it
    assert not results["KA"].strategies[0]["error"]

    # An engine that is down (its run still says running) does not answer: exit 1.
    store.create_run(mode="paper", account="C3", initial_cash=1e6, run_id="KC")
    down = CliRunner().invoke(operator_cli, ["kill", "--wait", "1"])
    assert down.exit_code == 1
    assert "KC: no answer" in down.output
