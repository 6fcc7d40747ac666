"""End-to-end event-driven replays on real NSE bars through the engine, OMS, risk and simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.feeds import BarReplay, CandleAggregator
from velox.oms import FILL_EVENT
from velox.strategy import Strategy, load_strategy
from velox.types import Instrument, OrderType, Product

ROOT = Path(__file__).resolve().parents[2]
SmaCross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))


def _engine(
    strategies: list[Strategy],
    bars: dict[tuple[str, str], pd.DataFrame],
    master: Callable[[str], Instrument],
    initial_cash: float = 1_000_000,
    **kwargs: object,
) -> tuple[Engine, SimBroker]:
    sim = SimBroker(master, initial_cash=initial_cash)
    engine = Engine(
        strategies,
        broker=sim,
        feed=BarReplay(bars),
        instruments=master,
        initial_cash=initial_cash,
        **kwargs,
    )
    return engine, sim


def _expected_crossings(bars: pd.DataFrame, fast: int, slow: int) -> tuple[list, list]:
    """Return (entry days, exit days): the session after the fast SMA crosses the slow one.

    Independent of velox.indicators: pandas rolling means.
    """
    close = bars["close"]
    above = close.rolling(fast).mean() > close.rolling(slow).mean()
    valid = close.rolling(slow).mean().notna()
    state = above.where(valid)
    entries, exits, holding = [], [], False
    days = list(bars.index)
    for i, value in enumerate(state):
        if pd.isna(value) or i + 1 >= len(days):
            continue
        if value and not holding:
            entries.append(days[i + 1].date())
            holding = True
        elif not value and holding:
            exits.append(days[i + 1].date())
            holding = False
    return entries, exits


def test_sma_cross_replay_matches_an_independent_crossover_and_the_broker(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_1d.loc["2019-01-01":"2021-10-29"]  # before the 2021 Muhurat session
    engine, sim = _engine([SmaCross(fast=10, slow=30)], {("NSE:RELIANCE", "1d"): bars}, master)
    result = engine.run()
    entries, exits = _expected_crossings(bars, 10, 30)
    trades = result.trades
    assert len(trades) >= 10
    assert (trades["side"] == "BUY").all(), "long-only: no short trade"
    assert trades["entry_time"].dt.date.tolist() == entries
    assert trades["exit_time"].dropna().dt.date.tolist() == exits
    opens = {ts.date(): price for ts, price in bars["open"].items()}
    for t in trades.itertuples():  # orders placed at a close fill at the next session's open
        assert t.entry_time.strftime("%H:%M") == "09:15"
        assert t.entry_price == opens[t.entry_time.date()]
        if not pd.isna(t.exit_time):
            assert t.exit_price == opens[t.exit_time.date()]
    # first entry: 0.95 of the cash at the previous close, whole shares
    first = bars.index.get_loc(trades["entry_time"].iloc[0].normalize())
    assert trades["qty"].iloc[0] == int(0.95 * 1_000_000 / bars["close"].iloc[first - 1])
    # positions come from fills and equal the simulator's; equity agrees with its cash ledger
    ours = engine.oms.account_positions()
    theirs = {
        (p.instrument_id, p.product): p.qty for p in sim.positions() + sim.holdings() if p.qty
    }
    assert ours == theirs
    last_close = bars["close"].iloc[-1]
    held = sum(p.qty for p in sim.positions() + sim.holdings())
    assert result.stats["final_equity"] == pytest.approx(sim.funds().cash + held * last_close)
    assert result.stats["charges"] == pytest.approx(sum(f.charges for f in sim.fills()))
    assert engine.reconcile() == []
    # the audit trail of every order is the full lifecycle, in order
    by_order: dict[str, list[str]] = {}
    for row in engine.audit.rows:
        by_order.setdefault(row.client_id, []).append(row.status)
    for statuses in by_order.values():
        assert statuses == ["NEW", "RISK_CHECKED", "SUBMITTED", "OPEN", FILL_EVENT, "FILLED"]


def test_replay_is_deterministic(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = {("NSE:RELIANCE", "1d"): reliance_1d.loc["2020"]}
    rows = []
    for _ in range(2):
        engine, _ = _engine([SmaCross(fast=5, slow=20)], bars, master)
        engine.run()
        rows.append([(r.client_id, r.ts, r.status, r.payload) for r in engine.audit.rows])
    assert rows[0] == rows[1] and len(rows[0]) > 20


def test_bar_replay_closes_each_bar_when_the_aggregator_would(reliance_5m: pd.DataFrame) -> None:
    frame = reliance_5m.iloc[:300]
    other = frame * 1.0  # a second instrument on the same clock, shifted prices
    other[["open", "high", "low", "close"]] *= 0.5
    bars = {("NSE:RELIANCE", "5m"): frame, ("NSE:SBIN", "5m"): other}
    replay = BarReplay(bars)
    feed = BarReplay({("NSE:RELIANCE", "5m"): frame, ("NSE:SBIN", "5m"): other})
    agg = CandleAggregator(["5m"], emit_forming=False)
    seen = []
    for k, tick in enumerate(feed):
        closed = agg.on_clock(tick.ts) + agg.on_tick(tick)
        seen += [(k, b.instrument_id, b.ts, b.close) for b in closed]
    seen += [(len(feed), b.instrument_id, b.ts, b.close) for b in agg.flush()]
    ours = []
    for pos, key, row in zip(
        replay.close_positions, replay.close_key, replay.close_row, strict=True
    ):
        iid, _ = replay.close_keys[key]
        source = bars[(iid, "5m")]
        ours.append((int(pos), iid, source.index[row], source["close"].iloc[row]))
    assert sorted(ours) == sorted(seen)
    assert len(ours) == 600
    assert np.array_equal(replay.ts_ns, feed.arrays().ts_ns)


class OffGrid(Strategy):
    """Sends a limit order off the tick grid on its 5th bar: an invalid order."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"

    def on_start(self, ctx):  # noqa: ANN001, ANN201
        self.n = 0

    def on_bar(self, ctx, bar):  # noqa: ANN001, ANN201
        self.n += 1
        if self.n == 5:
            ctx.buy(1, order_type=OrderType.LIMIT, limit_price=bar.close + 0.01)


class Crashes(Strategy):
    """Raises in its 3rd on_bar after buying: a strategy bug."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    product = Product.CNC

    def on_start(self, ctx):  # noqa: ANN001, ANN201
        self.n = 0

    def on_bar(self, ctx, bar):  # noqa: ANN001, ANN201
        self.n += 1
        if self.n == 1:
            ctx.buy(3)
        if self.n == 3:
            raise ZeroDivisionError("bug in strategy")


class Nowhere(Strategy):
    instruments = ("NSE:NOSUCHSTOCK",)
    timeframe = "1d"


def test_bad_strategies_are_stopped_and_the_others_keep_trading(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = {("NSE:RELIANCE", "1d"): reliance_1d.loc["2021"]}
    solo, _ = _engine([SmaCross(fast=5, slow=20)], bars, master)
    alone = solo.run()
    strategies = [SmaCross(fast=5, slow=20), OffGrid(), Crashes(), Nowhere()]
    for s in strategies[1:]:
        s.capital = 10_000.0  # the rest (1,000,000) is SmaCross's, as in the solo run
    engine, sim = _engine(strategies, bars, master, 1_030_000, flatten_on_error=True)
    mixed = engine.run()
    errors = engine.errors
    assert "off the tick grid" in errors["OffGrid"] and "ValidationError" in errors["OffGrid"]
    assert errors["Crashes"] == "ZeroDivisionError: bug in strategy"
    assert "unknown instrument 'NSE:NOSUCHSTOCK'" in errors["Nowhere"]
    assert "SmaCross" not in errors
    columns = ["entry_time", "qty", "entry_price", "exit_time"]
    sma = mixed.trades[mixed.trades["strategy"] == "SmaCross"]
    assert len(sma) > 2
    pd.testing.assert_frame_equal(
        sma[columns].reset_index(drop=True), alone.trades[columns].reset_index(drop=True)
    )
    # Crashes was flattened after failing (flatten_on_error): bought 3, sold 3
    crash = mixed.trades[mixed.trades["strategy"] == "Crashes"]
    assert len(crash) == 1 and crash["qty"].iloc[0] == 3 and crash["exit_time"].notna().all()
    assert engine.position_qty("Crashes", "NSE:RELIANCE") == 0


def _cli():  # noqa: ANN202
    from velox.cli import _VeloxGroup
    from velox.cli_engine import register

    group = _VeloxGroup(name="velox")
    register(group)
    return group


@pytest.mark.postgres
def test_cli_replay_on_stored_bars_writes_the_json_report(
    store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox.config import reset_settings
    from velox.data import import_bars

    import_bars(ROOT / "data/bars/RELIANCE_1d_2017_2022.csv.gz", "NSE:RELIANCE", "1d", store=store)
    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    reset_settings()
    try:
        report = tmp_path / "r.json"
        out = CliRunner().invoke(
            _cli(),
            ["replay", str(ROOT / "strategies/sma_cross.py"), "--symbol", "NSE:RELIANCE",
             "--timeframe", "1d", "--start", "2019-01-01", "--end", "2021-12-31",
             "--param", "fast=10", "--param", "slow=30", "--json", str(report)],
        )  # fmt: skip
        assert out.exit_code == 0, out.output
        assert "mode: replay" in out.output
        data = json.loads(report.read_text())
        assert data["mode"] == "replay"
        assert data["strategies"][0]["params"] == {"fast": 10, "slow": 30, "weight": 0.95}
        entries, _ = _expected_crossings(store.read_bars("NSE:RELIANCE", "1d", "2019-01-01",
                                                         "2021-12-31"), 10, 30)  # fmt: skip
        assert [t["entry_time"][:10] for t in data["trades"]] == [str(d) for d in entries]
        first = data["trades"][0]
        assert set(first) >= {"entry_time", "exit_time", "side", "qty", "entry_price",
                              "exit_price", "charges"}  # fmt: skip
        assert set(data["stats"]) >= {"total_return", "max_drawdown", "sharpe", "trades",
                                      "win_rate", "charges"}  # fmt: skip
        assert data["equity_curve"][0][0].startswith("2019-")
        bad = CliRunner().invoke(_cli(), ["replay", str(ROOT / "strategies/sma_cross.py"),
                                          "--symbol", "NSE:RELIANCEE"])  # fmt: skip
        assert bad.exit_code == 1 and "did you mean NSE:RELIANCE" in bad.output
        typed = CliRunner().invoke(_cli(), ["replay", str(ROOT / "strategies/sma_cross.py"),
                                            "--param", "fast=quick"])  # fmt: skip
        assert typed.exit_code == 1 and "SmaCross.fast='quick' is not a valid int" in typed.output
    finally:
        reset_settings()


def test_cli_live_refuses_without_confirmation_and_is_not_wired() -> None:
    out = CliRunner().invoke(_cli(), ["live", "strategies/sma_cross.py", "--broker", "kite"])
    assert out.exit_code == 1 and "--confirm-live" in out.output
    out = CliRunner().invoke(
        _cli(), ["live", "strategies/sma_cross.py", "--broker", "kite", "--confirm-live"]
    )
    assert out.exit_code == 1 and "not wired yet" in out.output


def test_a_finished_replay_is_freed_when_dropped(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    import gc
    import weakref

    for fast in (False, True):  # the Python path and the compiled fast-forward
        engine, sim = _engine([SmaCross(fast=5, slow=20)], {("NSE:RELIANCE", "1d"): reliance_1d},
                              master, fast_forward=fast)  # fmt: skip
        engine.run()
        ref = weakref.ref(engine)
        del engine, sim
        gc.collect()
        assert ref() is None, "the engine (a reference cycle with its contexts) must be collectable"
        assert gc.isenabled()


def test_engine_clock_conversions_agree_with_datetime() -> None:
    """The engine hands the simulator ``_epoch(ns)`` instead of ``_dt(ns).timestamp()``: the
    same float, bit for bit, or replays would depend on which one a path used."""
    from velox.engine._time import dt as _dt
    from velox.engine._time import epoch as _epoch
    from velox.engine._time import ns as _ns
    from velox.feeds import to_ns

    rng = np.random.default_rng(7)
    stamps = [0, 999, 1_000, 1_700_000_000_123_456_789, *rng.integers(0, 4 * 10**18, 20_000)]
    for ns in map(int, stamps):
        assert _epoch(ns) == _dt(ns).timestamp()
        assert _dt(ns).utcoffset() == pd.Timedelta(hours=5, minutes=30)
        assert _dt(ns) == pd.Timestamp(ns // 1000 * 1000, tz="UTC")
        assert _ns(_dt(ns)) == to_ns(_dt(ns)) == ns // 1000 * 1000


class Spins(Strategy):
    """Hangs in its 3rd on_bar: an endless loop (pure Python bytecode)."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"

    def on_start(self, ctx):  # noqa: ANN001, ANN201
        self.n = 0

    def on_bar(self, ctx, bar):  # noqa: ANN001, ANN201
        self.n += 1
        if self.n == 3:
            while True:
                pass


def test_a_hung_strategy_is_stopped_by_the_watchdog_and_the_others_go_on(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    import time

    bars = {("NSE:RELIANCE", "1d"): reliance_1d.loc["2021"]}
    alone = _engine([SmaCross(fast=5, slow=20)], bars, master)[0].run()
    spins = Spins()
    spins.capital = 10_000.0
    engine, _ = _engine(
        [SmaCross(fast=5, slow=20), spins], bars, master, 1_010_000, callback_budget=0.5
    )
    started = time.monotonic()
    mixed = engine.run()
    assert time.monotonic() - started < 10
    assert "StrategyTimeout" in engine.errors["Spins"] and "0.5 s budget" in engine.errors["Spins"]
    assert spins.n == 3  # stopped: no bar after the hung one reached it
    assert "SmaCross" not in engine.errors
    sma = mixed.trades[mixed.trades["strategy"] == "SmaCross"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        sma[["entry_time", "qty", "entry_price"]],
        alone.trades[["entry_time", "qty", "entry_price"]].reset_index(drop=True),
    )
