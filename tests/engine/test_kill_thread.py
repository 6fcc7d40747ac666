"""The kill switch does not need the engine thread: a strategy blocked inside C code (a
``socket.recv`` that never returns, ``time.sleep``) cannot be interrupted by the watchdog's
asynchronous exception, yet ``velox kill`` is taken, acted on (open orders cancelled, position
flat at the broker, kill_switch alert stored) and answered within seconds by the kill thread;
and a replay whose strategy blocks in C code ends with an error instead of hanging."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from velox.brokers.sim import SimBroker
from velox.config import reset_settings
from velox.errors import RiskBreach
from velox.strategy import Context, Strategy
from velox.types import Bar, OrderType


class BlocksInC(Strategy):
    """Buys 20 shares, rests a limit buy, then blocks in ``recv`` on a socket nobody writes
    to until the test says so; afterwards it keeps trying to buy."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_start(self, ctx: Context) -> None:
        self.blocked = threading.Event()
        self.refused: list[RiskBreach] = []
        self.reader, self.writer = socket.socketpair()

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if not ctx.position():
            if not ctx.open_orders():
                try:
                    ctx.buy(20)
                except RiskBreach as breach:  # after the kill
                    self.refused.append(breach)
            return
        if not ctx.open_orders():
            price = ctx.instrument().snap_price(bar.close * 0.98, "down")
            try:
                ctx.buy(5, order_type=OrderType.LIMIT, limit_price=price)
            except RiskBreach as breach:
                self.refused.append(breach)
            return
        if not self.blocked.is_set():
            self.blocked.set()
            self.reader.recv(1)  # blocks inside C: no asynchronous exception reaches it


@pytest.mark.postgres
def test_velox_kill_acts_while_the_strategy_blocks_inside_c_code(
    store,
    serve_simulator: Callable[..., tuple[SimBroker, Path]],
    operator_cli: click.Group,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from velox.modes import paper

    monkeypatch.setenv("VELOX_CALLBACK_BUDGET", "3600")  # no watchdog help: the kill alone
    reset_settings()
    sim, sock = serve_simulator("hung", speed=400)
    strategy = BlocksInC()
    results = []
    engine = threading.Thread(
        target=lambda: results.append(
            paper(strategy, run_id="KH", store=store, socket_path=sock, account="A1")
        ),
        daemon=True,
    )
    engine.start()
    while getattr(strategy, "blocked", None) is None:
        time.sleep(0.01)
    assert strategy.blocked.wait(60)
    time.sleep(0.5)  # it is inside recv now
    assert any(o.qty == 5 and not o.is_terminal for o in sim.orders())  # the resting limit
    assert sum(p.qty for p in sim.positions() + sim.holdings()) == 20

    started = time.monotonic()
    out = CliRunner().invoke(operator_cli, ["kill", "--reason", "drill", "--wait", "10"])
    answered = time.monotonic() - started
    assert out.exit_code == 0, out.output
    assert "KH: engaged" in out.output
    assert answered < 5.0
    # at the broker: nothing working, nothing held (the square-off filled at the next tick)
    deadline = time.monotonic() + 5
    while sum(p.qty for p in sim.positions() + sim.holdings()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(p.qty for p in sim.positions() + sim.holdings()) == 0
    assert all(o.is_terminal for o in sim.orders())
    cancelled = [o for o in sim.orders() if o.qty == 5]
    assert [o.status.value for o in cancelled] == ["CANCELLED"]
    # audited before acted on: the command, the kill and the cancel request, in that order
    events = store.read_order_events()
    order = events["status"].tolist()
    assert order.index("COMMAND") < order.index("RISK_KILL") < order.index("CANCEL_REQUESTED")
    deadline = time.monotonic() + 5
    while "kill_switch" not in store.alerts(run_id="KH")["kind"].tolist():
        assert time.monotonic() < deadline, "no kill_switch alert stored"
        time.sleep(0.1)
    assert engine.is_alive() and strategy.blocked.is_set()  # still blocked all along

    strategy.writer.send(b"x")  # the strategy wakes up: its next orders are refused
    engine.join(120)
    assert not engine.is_alive()
    (result,) = results
    assert [e["kind"] for e in result.risk_events].count("kill") == 1
    assert strategy.refused and all(b.limit == "kill_switch" for b in strategy.refused)
    assert sum(p.qty for p in sim.positions() + sim.holdings()) == 0
    sent_after_kill = [o for o in sim.orders() if o.side.value == "BUY" and o.qty == 20]
    assert len(sent_after_kill) == 1  # only the first entry ever reached the broker


class SleepsInC(Strategy):
    """Sleeps an hour in on_bar at its third bar (``time.sleep`` waits inside C)."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"

    def on_start(self, ctx: Context) -> None:
        self.n = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n == 3:
            time.sleep(3600)


class ReadsForever(SleepsInC):
    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n == 3:
            reader, self.writer = socket.socketpair()
            reader.recv(1)


@pytest.mark.parametrize("hangs", [SleepsInC, ReadsForever])
def test_a_replay_whose_strategy_blocks_in_c_code_ends_with_an_error(
    reliance_1d: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, hangs: type[Strategy]
) -> None:
    import velox

    assert threading.current_thread() is threading.main_thread()  # as in `velox replay`
    monkeypatch.setenv("VELOX_CALLBACK_BUDGET", "0.4")
    reset_settings()
    try:
        started = time.monotonic()
        result = velox.replay(hangs, bars=reliance_1d.loc["2021-01"])
        took = time.monotonic() - started
    finally:
        reset_settings()
    assert took < 5.0
    (record,) = result.strategies
    assert "StrategyTimeout" in record["error"] and "0.4 s budget" in record["error"]
