"""The engine squares MIS positions off itself (``VELOX_MIS_SQUARE_OFF``), not only the
simulator: at the first tick at or after the configured IST time on a regular session, and on a
special session (Muhurat trading 2021-11-04, 18:15-19:15 IST) the same lead before that
session's close. Replays of the bundled real NIFTY 1-minute bars, traded as an equity."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import time

import pandas as pd
import pytest

from tests.engine.conftest import read_bars
from velox.brokers.sim import SimBroker, SimConfig
from velox.calendar import IST
from velox.config import reset_settings
from velox.engine import Engine
from velox.feeds import BarReplay
from velox.strategy import Context, Strategy
from velox.types import Bar, Instrument, InstrumentKind, Product

IID = "NSE:NIFTY"


@pytest.fixture(scope="module")
def nifty_1m() -> pd.DataFrame:
    return read_bars("NIFTY_1m_2021_2022.csv.gz", "1m")


@pytest.fixture
def lookup(master: Callable[[str], Instrument]) -> Callable[[str], Instrument]:
    """The index's prices traded as an equity (the index itself takes no orders)."""
    index = master(IID)
    tradable = dataclasses.replace(index, kind=InstrumentKind.EQ, tick_size=0.05, segment="NSE")
    return lambda iid: tradable if iid == IID else master(iid)


class BuyAndHoldMIS(Strategy):
    """Buys 10 MIS at the session's first close and never sells."""

    instruments = (IID,)
    timeframe = "1m"
    product = "MIS"

    def on_start(self, ctx: Context) -> None:
        self.bought = False

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if not self.bought:
            self.bought = True
            ctx.buy(10)


def _replay(day_bars: pd.DataFrame, lookup, monkeypatch, setting, broker_time):  # noqa: ANN001, ANN202
    if setting is None:
        monkeypatch.delenv("VELOX_MIS_SQUARE_OFF", raising=False)
    else:
        monkeypatch.setenv("VELOX_MIS_SQUARE_OFF", setting)
    reset_settings()
    try:
        config = SimConfig() if broker_time is None else SimConfig(square_off_time=broker_time)
        sim = SimBroker(lookup, initial_cash=10_000_000, config=config)
        engine = Engine(
            [BuyAndHoldMIS()], broker=sim, feed=BarReplay({(IID, "1m"): day_bars}),
            instruments=lookup, initial_cash=10_000_000,
        )  # fmt: skip
        result = engine.run()
    finally:
        reset_settings()
    return engine, sim, result


@pytest.mark.parametrize(
    ("day", "setting", "expected"),
    [
        ("2022-03-15", "14:50", time(14, 50)),  # regular session: the configured clock time
        ("2021-11-04", "14:50", time(18, 35)),  # Muhurat: 40 min before its 19:15 close
        ("2021-11-04", None, time(19, 0)),  # Muhurat, default 15:15: 15 min before 19:15
    ],
)
def test_the_engine_squares_off_mis_at_the_sessions_square_off(
    nifty_1m: pd.DataFrame, lookup, monkeypatch: pytest.MonkeyPatch, day: str,  # noqa: ANN001
    setting: str | None, expected: time,
) -> None:  # fmt: skip
    bars = nifty_1m.loc[day]
    # the broker's own square-off comes later (Zerodha: 15:20), so this one is the engine's
    engine, sim, result = _replay(bars, lookup, monkeypatch, setting, time(15, 20))
    assert engine.errors == {}
    exits = [o for o in sim.orders() if o.side.value == "SELL"]
    (exit_order,) = exits
    assert exit_order.client_id.startswith("R1-")  # the engine's own order, not the broker's
    assert exit_order.product is Product.MIS and exit_order.qty == 10
    placed = exit_order.created_at.astimezone(IST)
    # the first tick at or after the square-off: the open of the bar that starts then
    assert placed.time() == expected and placed.date() == pd.Timestamp(day).date()
    (exit_fill,) = [f for f in sim.fills() if f.client_id == exit_order.client_id]
    bar = bars.loc[pd.Timestamp(f"{day} {expected}", tz=IST)]
    second_tick = bar["high"] if bar["close"] >= bar["open"] else bar["low"]
    assert exit_fill.price == second_tick  # filled at the next price, 15 s into that bar
    assert exit_fill.ts.astimezone(IST).time() == time(expected.hour, expected.minute, 15)
    close = bars.index[-1] + pd.Timedelta(minutes=1)
    assert exit_fill.ts < close  # before the calendar close of that session
    assert sum(p.qty for p in sim.positions()) == 0 and result.stats["open_trades"] == 0


def test_with_the_broker_due_at_the_same_time_one_square_off_closes_the_position(
    nifty_1m: pd.DataFrame,
    lookup,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """The simulator squares off at the setting too: the engine catches it up first and finds
    nothing left to close (never a second, position-reversing order)."""
    engine, sim, _ = _replay(nifty_1m.loc["2021-11-04"], lookup, monkeypatch, "15:00", None)
    sells = [o for o in sim.orders() if o.side.value == "SELL"]
    assert len(sells) == 1 and sells[0].created_at.astimezone(IST).time() == time(18, 45)
    assert sum(p.qty for p in sim.positions()) == 0
    assert [o.status.value for o in engine.oms.orders.values()].count("REJECTED") == 0


class BuyMISLate(BuyAndHoldMIS):
    """Buys 10 MIS at the first close at or after 15:00 IST: past the engine's square-off."""

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if not self.bought and bar.ts.astimezone(IST).time() >= time(15, 0):
            self.bought = True
            ctx.buy(10)


class HoldCNC(BuyAndHoldMIS):
    product = "CNC"


def test_an_mis_order_sent_after_the_square_off_is_squared_off_at_once(
    nifty_1m: pd.DataFrame,
    lookup,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """The session's first MIS order arms the square-off; one sent after its time (14:50) is
    closed by the engine at the next tick, not left to the broker's 15:20 or carried over."""
    monkeypatch.setenv("VELOX_MIS_SQUARE_OFF", "14:50")
    reset_settings()
    try:
        sim = SimBroker(
            lookup, initial_cash=10_000_000, config=SimConfig(square_off_time=time(15, 20))
        )
        engine = Engine(
            [BuyMISLate()], broker=sim, feed=BarReplay({(IID, "1m"): nifty_1m.loc["2022-03-15"]}),
            instruments=lookup, initial_cash=10_000_000,
        )  # fmt: skip
        engine.run()
    finally:
        reset_settings()
    (buy,) = [o for o in sim.orders() if o.side.value == "BUY"]
    (sell,) = [o for o in sim.orders() if o.side.value == "SELL"]
    assert sell.client_id.startswith("R1-") and sell.qty == 10  # the engine's, not the broker's
    placed = sell.created_at.astimezone(IST).time()
    assert time(15, 0) <= placed < time(15, 20)
    assert sell.created_at >= buy.created_at
    assert sum(p.qty for p in sim.positions()) == 0


@pytest.mark.parametrize(("strategy", "runs"), [(BuyAndHoldMIS, 3), (HoldCNC, 0)])
def test_the_square_off_runs_only_on_sessions_with_mis(
    nifty_1m: pd.DataFrame,
    lookup,
    monkeypatch: pytest.MonkeyPatch,
    strategy,
    runs: int,  # noqa: ANN001
) -> None:
    """Three sessions: an MIS holder is squared off on each; a CNC holder never arms the timer
    (so a replay without MIS keeps its fast-loop stretches whole)."""
    calls: list[int] = []
    real = Engine._square_off_mis

    def spy(self: Engine) -> None:
        calls.append(self._now_ns)
        real(self)

    monkeypatch.setattr(Engine, "_square_off_mis", spy)

    class EachDay(strategy):  # buys again each session
        def on_bar(self, ctx: Context, bar: Bar) -> None:
            day = bar.ts.astimezone(IST).date()
            if getattr(self, "day", None) != day:
                self.day = day
                ctx.buy(10)

    bars = nifty_1m.loc["2022-03-14":"2022-03-16"]
    sim = SimBroker(lookup, initial_cash=10_000_000)
    engine = Engine(
        [EachDay()], broker=sim, feed=BarReplay({(IID, "1m"): bars}), instruments=lookup,
        initial_cash=10_000_000,
    )  # fmt: skip
    engine.run()
    assert engine.errors == {}
    assert len(calls) == runs
