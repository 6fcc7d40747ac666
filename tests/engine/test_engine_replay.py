"""End-to-end event-driven replays on real NSE bars through the engine, OMS, risk and simulator."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
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


class Exits(Strategy):
    """Buys, then calls ``sys.exit(3)`` in the handler named ``where``."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    where: str = "on_bar"

    def on_start(self, ctx):  # noqa: ANN001, ANN201
        self.n = 0
        if self.where == "on_start":
            sys.exit(3)

    def on_bar(self, ctx, bar):  # noqa: ANN001, ANN201
        self.n += 1
        if self.n == 1:
            ctx.buy(3)
        if self.n == 3 and self.where == "on_bar":
            sys.exit(3)

    def on_fill(self, ctx, fill):  # noqa: ANN001, ANN201
        if self.where == "on_fill":
            sys.exit(3)

    def on_stop(self, ctx):  # noqa: ANN001, ANN201
        if self.where == "on_stop":
            sys.exit(3)


@pytest.mark.parametrize("where", ["on_start", "on_bar", "on_fill", "on_stop"])
def test_sys_exit_in_a_handler_stops_that_strategy_only(
    where: str, reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = {("NSE:RELIANCE", "1d"): reliance_1d.loc["2021"]}
    alone = _engine([SmaCross(fast=5, slow=20)], bars, master)[0].run()
    exits = Exits(where=where)
    exits.capital = 10_000.0
    engine, _ = _engine([SmaCross(fast=5, slow=20), exits], bars, master, 1_010_000)
    result = engine.run()  # returns: the SystemExit did not end the process (or pytest)
    assert engine.errors == {"Exits": "SystemExit: 3"}
    assert [s["error"] for s in result.strategies] == [None, "SystemExit: 3"]
    assert [a["kind"] for a in result.alerts if a["kind"] == "strategy_error"] == ["strategy_error"]
    sma = result.trades[result.trades["strategy"] == "SmaCross"]
    columns = ["entry_time", "qty", "entry_price", "exit_time"]
    pd.testing.assert_frame_equal(
        sma[columns].reset_index(drop=True), alone.trades[columns].reset_index(drop=True)
    )
    bought = 0 if where == "on_start" else 3
    assert engine.position_qty("Exits", "NSE:RELIANCE") == bought


class Interrupts(Strategy):
    """Buys, then receives Ctrl-C (a real SIGINT to this process) on its 10th bar."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"

    def on_start(self, ctx):  # noqa: ANN001, ANN201
        self.n = 0
        self.stopped = False

    def on_bar(self, ctx, bar):  # noqa: ANN001, ANN201
        self.n += 1
        if self.n == 1:
            ctx.buy(2)
        if self.n == 10:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the KeyboardInterrupt arrives here

    def on_stop(self, ctx):  # noqa: ANN001, ANN201
        self.stopped = True


def test_ctrl_c_stops_the_replay_and_hands_over_the_report_of_what_ran(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    from velox.errors import RunInterrupted

    bars = reliance_1d.loc["2021"]
    strategy = Interrupts()
    engine, _ = _engine([strategy], {("NSE:RELIANCE", "1d"): bars}, master)
    with pytest.raises(RunInterrupted) as info:
        engine.run()
    assert isinstance(info.value, KeyboardInterrupt)  # whatever ends on Ctrl-C still ends
    result = info.value.result
    assert strategy.stopped, "on_stop runs on Ctrl-C"
    assert len(result.fill_list) == 1 and result.fill_list[0].qty == 2
    assert result.stats["open_trades"] == 1
    # the equity curve ends at the interrupted bar's close event, not at the last bar
    last = pd.Timestamp(result.equity_ns[-1], tz="UTC")
    assert bars.index[9] < last < bars.index[11]
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("param", "needle"),
    [
        ("fast=0", "SmaCross.fast=0 is out of range: it must be >= 1 (default 10)"),
        ("fast=-10", "SmaCross.fast=-10 is out of range: it must be >= 1 (default 10)"),
        ("product=YOLO", "SmaCross.product='YOLO' is not a valid Product (default 'CNC'); "
         "valid: CNC, MIS, NRML"),
        ("capital=abc", "SmaCross.capital='abc': capital must be a number"),
        ("name=X", "SmaCross: 'name' cannot be set"),
        ("fsat=3", "SmaCross has no parameter 'fsat'; did you mean 'fast'?"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["replay", "paper"])
def test_cli_refuses_bad_parameters_before_the_run(
    verb: str, param: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no store: the parameters are refused before anything opens one (or spawns a simulator)
    monkeypatch.setenv("VELOX_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    out = CliRunner().invoke(
        _cli(), [verb, str(ROOT / "strategies/sma_cross.py"), "--param", param]
    )
    assert out.exit_code == 1
    assert out.output == f"error: {needle}" + out.output.split(needle, 1)[1]
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


@pytest.mark.parametrize(
    ("name", "body", "needle"),
    [
        ("missing.py", None, "missing.py does not exist"),
        ("syntax.py", "from velox.strategy import Strategy\nclass A(Strategy)\n",
         "syntax.py line 2: syntax error"),
        ("plain.py", "x = 1\n", "defines no subclass of velox.strategy.Strategy"),
        ("two.py", "from velox.strategy import Strategy\nclass A(Strategy): pass\n"
         "class B(Strategy): pass\n", "several strategies (A, B); pick one with FILE.py:ClassName"),
        ("imports.py", "import no_such_module_zz\n",
         "imports.py line 1 failed to import: ModuleNotFoundError"),
        ("exits.py", "import sys\nsys.exit(4)\n", "exits.py line 2 failed to import: SystemExit"),
        ("folder", "dir", "folder is a directory"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_strategy_files_in_one_line(
    name: str, body: str | None, needle: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    if body == "dir":
        path.mkdir()
    elif body is not None:
        path.write_text(body)
    out = CliRunner().invoke(_cli(), ["replay", str(path)])
    assert out.exit_code == 1, out.output
    assert out.output.startswith("error: strategy") and needle in out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output


_CRASHING = """
import sys
from velox.strategy import Strategy

class Crashing(Strategy):
    instruments = ("NSE:RELIANCE",)
    how: str = "exit"

    def on_bar(self, ctx, bar):
        if not ctx.position():
            ctx.buy(3)
        elif bar.ts.year >= 2019 and self.how == "exit":
            sys.exit(3)
        elif bar.ts.year >= 2019 and self.how == "raise":
            raise ZeroDivisionError("bug")
        elif bar.ts.year >= 2019 and self.how == "ctrl-c":
            import os, signal, time
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
"""


@pytest.mark.postgres
def test_cli_replay_reports_crashed_strategies_open_positions_and_ctrl_c(
    store, tmp_path: Path
) -> None:
    """The real CLI in a subprocess: the exit code a script sees, the report a user reads."""
    import subprocess

    from velox.data import import_bars

    import_bars(ROOT / "data/bars/RELIANCE_1d_2017_2022.csv.gz", "NSE:RELIANCE", "1d", store=store)
    strategy = tmp_path / "crashing.py"
    strategy.write_text(_CRASHING)
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "PYTHONPATH": str(ROOT)}

    def replay(how: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", "from velox.cli import main; main()", "replay", str(strategy),
             "--start", "2018-06-01", "--end", "2019-03-01", "--param", f"how={how}"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip

    for how, reason in (("exit", "SystemExit: 3"), ("raise", "ZeroDivisionError: bug")):
        out = replay(how)
        assert out.returncode == 1, out.stderr
        assert f"strategy: Crashing {{'how': '{how}'}}" in out.stdout
        assert f"(stopped: {reason})" in out.stdout
        assert "open position: NSE:RELIANCE qty +3 (Crashing, CNC, since 2018-06-04" in out.stdout
        assert f"error: every strategy failed: Crashing: {reason}" in out.stderr
        assert f"crashing.py line {13 if how == 'exit' else 15})" in out.stderr  # where it broke
        assert "Traceback" not in out.stderr + out.stdout
    ok = replay("none")
    assert ok.returncode == 0, ok.stderr
    assert "open position: NSE:RELIANCE qty +3" in ok.stdout and "error" not in ok.stderr
    stopped = replay("ctrl-c")
    assert stopped.returncode == 130, stopped.stderr
    assert (
        "final equity" in stopped.stdout and "open position: NSE:RELIANCE qty +3" in stopped.stdout
    )
    assert "interrupted (Ctrl-C): the report covers what ran" in stopped.stderr
    assert "Traceback" not in stopped.stderr


def test_report_of_a_partly_failed_run_names_the_failure_and_exits_1(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    """One CLI run holds one strategy; a run of several (velox.modes.replay, paper) reports the
    same way: each failure named, exit code 1 although one strategy ran to the end."""
    import click

    from velox.cli_engine import _report

    crashes = Crashes()
    crashes.capital = 10_000.0
    bars = {("NSE:RELIANCE", "1d"): reliance_1d.loc["2021"]}
    result = _engine([SmaCross(fast=5, slow=20), crashes], bars, master, 1_010_000)[0].run()
    show = click.Command("show", callback=lambda: _report(result, "replay", None, recorded=False))
    out = CliRunner().invoke(show, [])
    assert out.exit_code == 1
    assert "strategy: SmaCross" in out.output and "(stopped: ZeroDivisionError" in out.output
    assert "error: 1 of 2 strategies failed: Crashes: ZeroDivisionError: bug in strategy" in (
        out.output
    )
    assert "open position: NSE:RELIANCE qty +3 (Crashes, CNC, since 2021-01-" in out.output


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


def test_the_callback_budget_setting_reaches_velox_replay(reliance_1d: pd.DataFrame) -> None:
    """``callback_budget`` (velox.toml / VELOX_CALLBACK_BUDGET) is the budget velox.replay
    gives its engine: a hung strategy is stopped after it, not after the 5 s default."""
    import time

    import velox
    from velox import config
    from velox.config import load_settings

    config._cached = load_settings(env={"VELOX_CALLBACK_BUDGET": "0.4"})
    try:
        started = time.monotonic()
        result = velox.replay(Spins, bars=reliance_1d.loc["2021-01"])
        took = time.monotonic() - started
    finally:
        config.reset_settings()
    assert took < 3.0  # 0.4 s budget + its 0.1 s poll, well under the 5 s default
    (spins,) = result.strategies
    assert "StrategyTimeout" in spins["error"] and "0.4 s budget" in spins["error"]
