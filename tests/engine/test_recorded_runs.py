"""A replay with ``record=True`` is stored as a run and ``load_run`` rebuilds the same result.

The reference is the in-memory :class:`RunResult` of the very replay that was recorded: every
DataFrame and statistic rebuilt from the store must equal it. Runs on both PostgreSQL
deployments, with a strategy that goes long and short intraday (MIS, square-off included) and
trips the risk engine, so every kind of record is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from velox.errors import ConfigError, DataError, RiskBreach
from velox.modes import load_run, replay
from velox.risk import RiskLimits
from velox.strategy import Context, Strategy
from velox.types import Bar, Instrument, Product

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


class Flipper(Strategy):
    """Alternates between long and short 10 shares every ``every`` bars; every 7th bar also
    tries an order above the risk engine's size limit (refused: a breach event)."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS
    every: int = 6

    def on_start(self, ctx: Context) -> None:
        self.n = 0
        self.refused = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n % self.every == 0:
            ctx.target_qty(10 if (self.n // self.every) % 2 else -10)
        if self.n % 7 == 0:
            try:
                ctx.buy(500)
            except RiskBreach:
                self.refused += 1


def _days(bars: pd.DataFrame, n: int) -> pd.DataFrame:
    sessions = sorted(set(bars.index.tz_convert("Asia/Kolkata").date))[:n]
    return bars[bars.index.tz_convert("Asia/Kolkata").date <= sessions[-1]]


def test_recorded_replay_loads_back_equal(
    store, reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = {("NSE:RELIANCE", "5m"): _days(reliance_5m, 4)}
    strategy = Flipper()
    limits = RiskLimits(max_order_qty=100)
    result = replay(strategy, bars=bars, store=store, record=True, risk_limits=limits,
                    instruments=master)  # fmt: skip

    # the run did what the test needs: long and short trades, square-offs, refusals
    sides = set(result.trades["side"])
    assert len(sides) == 2 and len(result.trade_list) >= 6
    assert strategy.refused >= 3
    assert any(e["kind"] == "breach" for e in result.risk_events)
    assert result.run_id == "R1"

    loaded = load_run(result.run_id, store=store)
    assert loaded.run_id == result.run_id and loaded.mode == "replay"
    pd.testing.assert_frame_equal(loaded.trades, result.trades)
    pd.testing.assert_frame_equal(loaded.orders, result.orders)
    pd.testing.assert_frame_equal(loaded.fills, result.fills)
    pd.testing.assert_series_equal(loaded.equity, result.equity)
    assert loaded.stats == pytest.approx(result.stats, nan_ok=True)
    assert loaded.risk_events == result.risk_events
    assert loaded.strategies == result.strategies
    assert loaded.alerts == []  # a replay pages nobody

    run = store.run(result.run_id)
    assert run["status"] == "finished" and run["mode"] == "replay"
    assert run["summary"]["orders"] == len(result.order_list)
    assert run["summary"]["total_return"] == pytest.approx(result.stats["total_return"])
    # the positions table holds the flat book the MIS square-off left
    positions = store.run_positions(result.run_id)
    assert set(positions["qty"]) == {0}

    # the next recorded run gets the next id; naming a recorded one is refused, nothing lost
    second = replay(Flipper(every=9), bars=bars, store=store, record=True, instruments=master)
    assert second.run_id == "R2"
    with pytest.raises(ConfigError, match="R1 is recorded already"):
        replay(Flipper(), bars=bars, store=store, record=True, run_id="R1", instruments=master)
    pd.testing.assert_frame_equal(load_run("R1", store=store).trades, result.trades)


def test_unrecorded_replay_writes_nothing(
    store, reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = {("NSE:RELIANCE", "5m"): _days(reliance_5m, 2)}
    result = replay(Flipper(), bars=bars, store=store, instruments=master)
    assert len(result.trade_list) > 0
    assert store.runs().empty
    with pytest.raises(DataError, match="R1"):
        load_run("R1", store=store)


def test_failed_recorded_replay_is_marked_failed(
    store, reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    class Crash(Strategy):
        instruments = ("NSE:RELIANCE",)
        timeframe = "5m"

        def on_bar(self, ctx: Context, bar: Bar) -> None:
            raise RuntimeError("boom")

    bars = {("NSE:RELIANCE", "5m"): _days(reliance_5m, 1)}
    result = replay(Crash(), bars=bars, store=store, record=True, instruments=master)
    # a strategy error stops the strategy, not the run: finished, with the error summarised
    run = store.run(result.run_id)
    assert run["status"] == "finished"
    assert "boom" in run["summary"]["errors"]["Crash"]
    assert "boom" in str(load_run(result.run_id, store=store).strategies[0]["error"])


@pytest.mark.usefixtures("reliance_in_store")
def test_cli_replay_record_runs_list_and_show(store, operator_cli: click.Group) -> None:
    cli = operator_cli
    runner = CliRunner()
    args = ["replay", str(ROOT / "strategies/sma_cross.py"), "--symbol", "NSE:RELIANCE",
            "--timeframe", "5m", "--start", "2025-05-01", "--end", "2025-06-30",
            "--param", "fast=5", "--param", "slow=20"]  # fmt: skip
    out = runner.invoke(cli, [*args, "--record", "--run", "SMA1"])
    assert out.exit_code == 0, out.output
    assert "recorded: velox runs show SMA1" in out.output
    # --run without --record is refused, naming the fix
    refused = runner.invoke(cli, [*args, "--run", "SMA2"])
    assert refused.exit_code != 0 and "--record" in refused.output

    import velox

    runs = velox.runs()
    assert list(runs["run_id"]) == ["SMA1"]
    stored = store.run("SMA1")["summary"]
    assert runs["total_return"].iloc[0] == pytest.approx(stored["total_return"])
    trades = velox.load_run("SMA1").trades
    closed = trades["exit_time"].notna().sum()  # stats count closed round trips
    assert runs["trades"].iloc[0] == closed > 0

    listed = runner.invoke(cli, ["runs", "list"])
    assert listed.exit_code == 0, listed.output
    (row,) = [line for line in listed.output.splitlines() if line.strip().startswith("SMA1")]
    assert "replay" in row and "finished" in row and f"{stored['total_return']:.2%}" in row

    shown = runner.invoke(cli, ["runs", "show", "SMA1", "--trades", "3"])
    assert shown.exit_code == 0, shown.output
    assert "run SMA1: replay finished" in shown.output
    last_exit = trades["exit_time"].dropna().iloc[-1]
    assert str(last_exit)[:16] in shown.output

    unknown = runner.invoke(cli, ["runs", "show", "NOPE"])
    assert unknown.exit_code == 1 and "NOPE" in unknown.output
