"""The replay fast path (``Engine(fast_forward=True)``) changes nothing but the speed.

Every replay here runs twice, with and without the compiled fast-forward over idle stretches,
and must produce the same audit trail row for row, the same equity curve bit for bit and the
same risk state; the loss guards must trip on the exact tick an independent recomputation from
the synthetic ticks and the audited fills finds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.engine.fast import FastForward
from velox.feeds import BarReplay, synthesize_ticks
from velox.oms import FILL_EVENT
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import Context, Strategy, load_strategy
from velox.types import Bar, Instrument

ROOT = Path(__file__).resolve().parents[2]
SmaCross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))


class EveryBar(Strategy):
    """An event strategy: on_bar on every close, alternating long and flat every 7 bars."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_start(self, ctx: Context) -> None:
        self.n = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n % 7 == 0:
            ctx.target_qty(0 if ctx.position() else 300)


def _replay(
    strategies: list[Strategy],
    bars: dict[tuple[str, str], pd.DataFrame],
    master: Callable[[str], Instrument],
    limits: RiskLimits,
    fast: bool,
    **options: object,
) -> Engine:
    engine = Engine(
        strategies,
        broker=SimBroker(master, initial_cash=1_000_000),
        feed=BarReplay(bars),
        instruments=master,
        risk=RiskEngine(limits),
        fast_forward=fast,
        **options,  # type: ignore[arg-type]
    )
    engine.run()
    return engine


def _same(
    make: Callable[[], list[Strategy]],
    bars: dict[tuple[str, str], pd.DataFrame],
    master: Callable[[str], Instrument],
    limits: RiskLimits,
    **options: object,
) -> Engine:
    fast = _replay(make(), bars, master, limits, True, **options)
    slow = _replay(make(), bars, master, limits, False, **options)
    rows = [[(r.client_id, r.ts, r.status, r.payload) for r in e.audit.rows] for e in (fast, slow)]
    assert rows[0] == rows[1]
    assert fast.equity_ns == slow.equity_ns
    assert fast.equity_values == slow.equity_values  # bit for bit, not approximately
    assert fast.risk.state == slow.risk.state
    assert (fast._risk_lo, fast._risk_hi) == (slow._risk_lo, slow._risk_hi)
    assert [(e.kind, e.ts, e.limit) for e in fast.risk_events] == [
        (e.kind, e.ts, e.limit) for e in slow.risk_events
    ]
    return fast


def _day_pnl(engine: Engine, bars: pd.DataFrame, day: str) -> pd.Series:
    """Return the day's P&L at each of its ticks, independently of the engine's bookkeeping:
    cash from the audited fills plus the position at the tick's price, less the same at the
    previous day's last tick."""
    ts, price, _ = synthesize_ticks(bars, "5m")
    stamps = (
        pd.DatetimeIndex(ts.astype("datetime64[ns]")).tz_localize("UTC").tz_convert("Asia/Kolkata")
    )
    fills = [r for r in engine.audit.rows if r.status == FILL_EVENT]

    def equity(k: int) -> float:
        cash, qty = 0.0, 0
        for f in fills:
            p = f.payload
            if f.ts <= stamps[k]:
                sign = 1 if p["side"] == "BUY" else -1
                cash -= sign * p["qty"] * p["price"] + p["charges"]
                qty += sign * p["qty"]
        return cash + qty * price[k]

    ticks = np.flatnonzero(stamps.strftime("%Y-%m-%d") == day)
    base = equity(ticks[0] - 1) if ticks[0] > 0 else 0.0  # the replay's first day starts flat
    return pd.Series([equity(k) - base for k in ticks], index=stamps[ticks])


@pytest.mark.parametrize(
    ("make", "limits"),
    [
        (lambda: SmaCross(fast=5, slow=20, timeframe="5m"), RiskLimits(daily_loss_limit=15_000)),
        (lambda: SmaCross(fast=5, slow=20, timeframe="5m"), RiskLimits(max_drawdown=15_000)),
        # an event strategy: its bars are stepped one by one (FastForward.bars)
        (EveryBar, RiskLimits(daily_loss_limit=5_000)),
        (EveryBar, RiskLimits(max_drawdown=5_000)),
    ],
)
def test_loss_guard_trips_on_the_exact_tick_inside_a_skipped_stretch(
    reliance_5m: pd.DataFrame,
    master: Callable[[str], Instrument],
    make: Callable[[], Strategy],
    limits: RiskLimits,
) -> None:
    bars = {("NSE:RELIANCE", "5m"): reliance_5m}
    engine = _same(lambda: [make()], bars, master, limits)
    kill = next(e for e in engine.risk_events if e.kind == "kill")
    pnl = _day_pnl(engine, reliance_5m, str(kill.ts.date()))
    before, at = pnl.loc[: kill.ts].iloc[:-1], pnl.loc[kill.ts]
    assert kill.ts.minute % 5 or kill.ts.second, "the kill tick is inside a bar, not at a close"
    if limits.daily_loss_limit is not None:
        limit = limits.daily_loss_limit
        assert kill.limit == "daily_loss_limit"
        assert at == pytest.approx(-limit, rel=0.15) and at <= -limit
        assert (before > -limit).all()
    else:
        limit = limits.max_drawdown
        assert kill.limit == "max_drawdown"
        peak = np.maximum.accumulate(np.r_[0.0, pnl.to_numpy()])[1:]
        drawdown = pd.Series(peak, index=pnl.index) - pnl
        assert drawdown.loc[kill.ts] >= limit
        assert (drawdown.loc[: kill.ts].iloc[:-1] < limit).all()
    # the kill sequence ran in that event: the position's square-off was sent at the kill tick
    assert any(r.ts == kill.ts and r.status == "SUBMITTED" for r in engine.audit.rows)
    assert engine.account_position_qty("NSE:RELIANCE") == 0


@pytest.mark.parametrize(
    "limits",
    [RiskLimits(), RiskLimits(daily_loss_limit=4_000), RiskLimits(max_drawdown=6_000)],
)
def test_fast_path_equals_the_event_by_event_path(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument], limits: RiskLimits
) -> None:
    single = {("NSE:RELIANCE", "5m"): reliance_5m}
    _same(lambda: [SmaCross(fast=5, slow=20, timeframe="5m")], single, master, limits)
    _same(lambda: [EveryBar()], single, master, limits)
    # two instruments on one clock, two timeframes, two strategies sharing the cash
    other = reliance_5m.copy()
    other[["open", "high", "low", "close"]] = (other[["open", "high", "low", "close"]] * 0.5).round(
        1
    )
    hourly = (
        reliance_5m.resample("1h", offset="15min")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna()
    )
    several = {
        ("NSE:RELIANCE", "5m"): reliance_5m,
        ("NSE:SBIN", "5m"): other,
        ("NSE:RELIANCE", "1h"): hourly,
    }
    _same(
        lambda: [
            SmaCross(fast=5, slow=20, timeframe="5m", instruments=("NSE:SBIN",)),
            SmaCross(fast=3, slow=8, timeframe="1h"),
        ],
        several,
        master,
        limits,
    )


def test_bar_stepping_over_whole_days_equals_the_event_by_event_path(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    """Without timers an event strategy's bars run a day at a time in one loop, where the
    loss guards' reports of many bars are merged before the risk engine hears them."""
    single = {("NSE:RELIANCE", "5m"): reliance_5m}

    class Holder(Strategy):
        instruments = ("NSE:RELIANCE",)
        timeframe = "5m"

        def on_bar(self, ctx: Context, bar: Bar) -> None:
            if bar.ts.hour == 9 and bar.ts.minute == 15:  # held on odd days, flat on even
                ctx.target_qty(300 if bar.ts.day % 2 else 0)

    limits = RiskLimits(daily_loss_limit=60_000, max_drawdown=60_000)
    for make in (EveryBar, Holder):
        engine = _same(lambda m=make: [m()], single, master, limits, reconcile_every=None)
        assert engine.risk.state.peak_equity > 0 and engine.oms.fills


def test_bars_that_do_not_bound_their_ticks_are_marked_tick_by_tick(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    """Bar stepping marks a bar from its high and low only when they bound its ticks; stored
    bars with a high below the close (no validation on this path) must fall back, exactly."""
    broken = reliance_5m.copy()
    rows = broken.index[::7]
    broken.loc[rows, "high"] = broken.loc[rows, ["open", "close"]].min(axis=1)

    def bounded(frame: pd.DataFrame) -> bool:
        feed = BarReplay({("NSE:RELIANCE", "5m"): frame})
        engine = Engine([EveryBar()], broker=SimBroker(master, initial_cash=1_000_000),
                        feed=feed, instruments=master)  # fmt: skip
        with engine.lock:  # as Engine.run holds it (callbacks let go of it)
            engine._start()
        subs = [engine._subs.get(key) for key in feed.close_keys]
        return FastForward(engine, feed, subs, feed.close_positions.tolist()).bar_ticks

    assert bounded(reliance_5m) and not bounded(broken)
    for limits in (RiskLimits(daily_loss_limit=4_000), RiskLimits(max_drawdown=6_000)):
        _same(lambda: [EveryBar()], {("NSE:RELIANCE", "5m"): broken}, master, limits)
