"""The run result: DataFrames of trades, orders, fills and equity; statistics; HTML; plots.

Statistics are checked against formulas written out here in plain numpy/pandas on hand-built
and random equity curves and trade lists; the frames against the engine's and the simulator's
own records.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from velox.brokers.sim import SimBroker
from velox.calendar import IST
from velox.engine import Engine, RunResult
from velox.engine.result import Trade, summary_stats, trades_from_fills
from velox.errors import ConfigError, RiskBreach
from velox.feeds import BarReplay
from velox.strategy import Context, Strategy
from velox.types import Bar, Fill, Instrument, OrderType, Product, Side

IST_NAME = "Asia/Kolkata"


class Scripted(Strategy):
    """Buys 10 on its 2nd bar; on the 3rd sends a limit buy at half the price (refused by the
    5% price band); on the 4th a DAY limit buy 4% below the close (unfilled, it expires with the
    session); sells 10 on the 8th."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"

    def on_start(self, ctx: Context) -> None:
        self.n = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n == 2:
            ctx.buy(10)
        elif self.n == 3:
            with contextlib.suppress(RiskBreach):
                ctx.buy(5, order_type=OrderType.LIMIT, limit_price=float(round(bar.close / 2)))
        elif self.n == 4:
            ctx.buy(5, order_type=OrderType.LIMIT, limit_price=float(round(bar.close * 0.96)))
        elif self.n == 8:
            ctx.sell(10)


class Never(Strategy):
    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"


@pytest.fixture(scope="module")
def scripted(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> tuple[RunResult, Engine, SimBroker, pd.DataFrame]:
    bars = reliance_1d.loc["2021-01-01":"2021-03-31"]
    sim = SimBroker(master, initial_cash=1_000_000)
    engine = Engine([Scripted()], broker=sim, feed=BarReplay({("NSE:RELIANCE", "1d"): bars}),
                    instruments=master)  # fmt: skip
    result = engine.run()
    assert engine.errors == {}
    return result, engine, sim, bars


# -- DataFrames ----------------------------------------------------------------------------------


def test_trades_frame_has_ist_times_and_the_round_trips(scripted) -> None:  # noqa: ANN001
    result, _, _, bars = scripted
    trades = result.trades
    assert list(trades.columns[:9]) == ["entry_time", "exit_time", "instrument_id", "side", "qty",
                                        "entry_price", "exit_price", "pnl", "charges"]  # fmt: skip
    assert {"strategy", "product", "net_pnl"} <= set(trades.columns)
    assert (
        str(trades["entry_time"].dt.tz) == IST_NAME and str(trades["exit_time"].dt.tz) == IST_NAME
    )
    assert len(trades) == 1
    t = trades.iloc[0]
    # decided at the 2nd and 8th closes: filled at the 3rd and 9th sessions' opens, 09:15 IST
    assert t["entry_time"] == bars.index[2] + pd.Timedelta("9h15min")
    assert t["exit_time"] == bars.index[8] + pd.Timedelta("9h15min")
    assert (t["side"], t["qty"], t["product"]) == ("BUY", 10, "CNC")
    assert (t["entry_price"], t["exit_price"]) == (bars["open"].iloc[2], bars["open"].iloc[8])
    assert t["pnl"] == pytest.approx(10 * (bars["open"].iloc[8] - bars["open"].iloc[2]))
    assert t["net_pnl"] == pytest.approx(t["pnl"] - t["charges"]) and t["charges"] > 0
    assert result.trades is trades, "built once, then cached"


def test_orders_frame_is_one_row_per_order_in_its_final_state(scripted) -> None:  # noqa: ANN001
    result, engine, sim, bars = scripted
    orders = result.orders
    assert list(orders.columns[:14]) == [
        "client_id", "strategy", "instrument_id", "side", "qty", "order_type", "product",
        "limit_price", "trigger_price", "status", "filled_qty", "average_price",
        "status_message", "created_at",
    ]  # fmt: skip
    assert orders["client_id"].tolist() == ["R1-1", "R1-2", "R1-3", "R1-4"]
    assert orders["status"].tolist() == ["FILLED", "REJECTED", "CANCELLED", "FILLED"]
    assert orders["order_type"].tolist() == ["MARKET", "LIMIT", "LIMIT", "MARKET"]
    assert orders["side"].tolist() == ["BUY", "BUY", "BUY", "SELL"]
    assert orders["filled_qty"].tolist() == [10, 0, 0, 10]
    assert "price_band_pct" in orders["status_message"].iloc[1]
    assert orders["limit_price"].iloc[1] == round(bars["close"].iloc[2] / 2)
    assert orders["limit_price"].iloc[2] == round(bars["close"].iloc[3] * 0.96)
    assert orders["limit_price"].isna().tolist() == [True, False, False, True]
    assert orders["trigger_price"].isna().all()
    assert str(orders["created_at"].dt.tz) == IST_NAME
    # a daily bar closes on the next session's first tick: the 2nd bar's order is created then
    assert orders["created_at"].iloc[0] == bars.index[2] + pd.Timedelta("9h15min")
    assert orders["average_price"].iloc[0] == bars["open"].iloc[2]
    # the audit trail's last row of each order is its final state
    ids = set(orders["client_id"])
    last = {row.client_id: row.status for row in engine.audit.rows if row.client_id in ids}
    assert last == dict(zip(orders["client_id"], orders["status"], strict=True))
    # the simulator's order book (the day's orders, like a broker's) agrees on what it lists
    broker = {o.client_id: (o.status.value, o.filled_qty, o.average_price) for o in sim.orders()}
    ours = {r.client_id: (r.status, r.filled_qty, r.average_price) for r in orders.itertuples()}
    assert broker and all(ours[cid] == state for cid, state in broker.items())


def test_fills_frame_holds_every_fill_field(scripted) -> None:  # noqa: ANN001
    from dataclasses import fields

    result, _, sim, _ = scripted
    frame = result.fills
    assert {f.name for f in fields(Fill)} == set(frame.columns)
    assert str(frame["ts"].dt.tz) == IST_NAME
    theirs = sorted((f.fill_id, f.client_id, f.side.value, f.qty, f.price, f.charges)
                    for f in sim.fills())  # fmt: skip
    ours = sorted(frame[["fill_id", "client_id", "side", "qty", "price", "charges"]]
                  .itertuples(index=False, name=None))  # fmt: skip
    assert ours == theirs and len(ours) == 2


def test_equity_is_the_engines_curve_bit_for_bit(scripted) -> None:  # noqa: ANN001
    result, engine, _, bars = scripted
    equity = result.equity
    assert isinstance(equity, pd.Series) and str(equity.index.tz) == IST_NAME
    assert equity.index.as_unit("ns").asi8.tolist() == engine.equity_ns == result.equity_ns
    assert equity.to_numpy().tobytes() == np.asarray(engine.equity_values).tobytes()
    assert result.equity_values == engine.equity_values
    assert len(equity) == len(bars)  # one sample per bar close
    peak = pd.concat([pd.Series([1_000_000.0]), equity.reset_index(drop=True)]).cummax().iloc[1:]
    expected = (peak.to_numpy() - equity.to_numpy()) / peak.to_numpy()
    np.testing.assert_allclose(result.drawdown.to_numpy(), expected, rtol=0, atol=1e-15)
    assert result.drawdown.max() == result.stats["max_drawdown"]


def test_a_run_without_trades_gives_empty_typed_frames(
    reliance_1d: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    bars = reliance_1d.loc["2021-01"]
    engine = Engine([Never()], broker=SimBroker(master, initial_cash=1_000_000),
                    feed=BarReplay({("NSE:RELIANCE", "1d"): bars}), instruments=master)  # fmt: skip
    result = engine.run()
    assert result.trades.empty and result.orders.empty and result.fills.empty
    assert "entry_time" in result.trades.columns and "client_id" in result.orders.columns
    assert str(result.trades["entry_time"].dt.tz) == IST_NAME
    assert (result.equity == 1_000_000.0).all() and len(result.equity) == len(bars)
    assert result.stats["exposure"] == 0.0 and math.isnan(result.stats["win_rate"])
    assert "0 trades" in result._repr_html_()
    assert len(result.plot()) == 3  # price (no markers), equity, drawdown


def test_to_dict_is_the_json_report(scripted) -> None:  # noqa: ANN001
    result, _, _, _ = scripted
    data = json.loads(result.to_json())
    assert data["orders"] == 4
    assert data["trades"] == [json.loads(json.dumps(t.to_dict())) for t in result.trade_list]
    assert len(data["equity_curve"]) == len(result.equity_ns)
    assert data["stats"]["profit_factor"] in (None, data["stats"]["profit_factor"])
    assert set(data["stats"]) == set(result.stats)


# -- statistics against independent formulas -----------------------------------------------------


def _random_run(seed: int) -> tuple[list[int], list[float], list[Trade], float]:
    """Return a hand-built run: 60 sessions of 6 samples each and 15 random trades."""
    rng = np.random.default_rng(seed)
    day0 = datetime(2024, 1, 1, 9, 15, tzinfo=IST)
    times = [day0 + timedelta(days=d, minutes=60 * k) for d in range(60) for k in range(6)]
    stamps = [int(pd.Timestamp(t).value) for t in times]
    values = list(1_000_000 * np.exp(np.cumsum(rng.normal(0.0002, 0.004, len(times)))))
    trades = []
    for _ in range(15):
        i, j = sorted(rng.choice(len(times), 2, replace=False))
        qty = int(rng.integers(1, 100))
        entry, exit_ = float(rng.uniform(90, 110)), float(rng.uniform(90, 110))
        side = "BUY" if rng.random() < 0.5 else "SELL"
        sign = 1 if side == "BUY" else -1
        # some entries/exits exactly on a sample time, some between two samples
        shift = timedelta(minutes=int(rng.integers(0, 2)) * 7)
        trades.append(Trade("S", "NSE:X", "MIS", side, qty, times[i] + shift, entry,
                            times[j] + shift, exit_, sign * qty * (exit_ - entry),
                            float(rng.uniform(0, 30))))  # fmt: skip
    trades.append(Trade("S", "NSE:X", "MIS", "BUY", 5, times[-3], 100.0))  # still open
    return stamps, values, trades, 1_000_000.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summary_stats_match_independent_formulas(seed: int) -> None:
    stamps, values, trades, initial = _random_run(seed)
    stats = summary_stats(stamps, values, initial, trades, charges=123.0)
    curve = pd.Series(values, index=pd.to_datetime(stamps, utc=True).tz_convert(IST_NAME))
    eod = curve.groupby(curve.index.date).last()
    daily = pd.concat([pd.Series([initial]), eod.reset_index(drop=True)])
    r = daily.pct_change().dropna().to_numpy()
    assert len(r) == 60
    assert stats["total_return"] == pytest.approx(values[-1] / initial - 1, rel=1e-12)
    years = len(r) / 252
    assert stats["cagr"] == pytest.approx((values[-1] / initial) ** (1 / years) - 1, rel=1e-9)
    assert stats["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * 252**0.5, rel=1e-9)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
    assert stats["sortino"] == pytest.approx(r.mean() / downside * 252**0.5, rel=1e-9)
    full = pd.Series([initial, *values])
    max_dd = float(((full.cummax() - full) / full.cummax()).max())
    assert stats["max_drawdown"] == pytest.approx(max_dd, rel=1e-12)
    assert stats["calmar"] == pytest.approx(stats["cagr"] / max_dd, rel=1e-9)
    closed = [t for t in trades if t.exit_time is not None]
    net = [t.pnl - t.charges for t in closed]
    wins, losses = [x for x in net if x > 0], [x for x in net if x < 0]
    assert stats["trades"] == 15 and stats["open_trades"] == 1
    assert stats["win_rate"] == len(wins) / 15
    assert stats["profit_factor"] == pytest.approx(sum(wins) / -sum(losses), rel=1e-12)
    assert stats["avg_trade"] == pytest.approx(sum(net) / 15, rel=1e-12)
    per_rupee = [(t.pnl - t.charges) / (t.qty * t.entry_price) for t in closed]
    assert stats["expectancy"] == pytest.approx(sum(per_rupee) / 15, rel=1e-12)
    held = 0
    for ts in pd.to_datetime(stamps, utc=True):
        held += any(
            t.entry_time <= ts and (t.exit_time is None or ts < t.exit_time) for t in trades
        )
    assert stats["exposure"] == held / len(stamps)
    assert 0 < stats["exposure"] < 1
    assert stats["charges"] == 123.0 and stats["final_equity"] == values[-1]


def test_summary_stats_edge_cases() -> None:
    t0 = datetime(2024, 4, 1, 10, 0, tzinfo=IST)
    day = 86_400_000_000_000
    ns0 = int(pd.Timestamp(t0).value)
    empty = summary_stats([], [], 1000.0, [], 0.0)
    assert empty["final_equity"] == 1000.0 and empty["total_return"] == 0.0
    assert all(math.isnan(empty[k]) for k in ("cagr", "sharpe", "sortino", "exposure", "calmar"))
    assert math.isnan(empty["win_rate"]) and math.isnan(empty["profit_factor"])
    # a winner and a break-even trade (not a win): no loser, so the profit factor is infinite;
    # rising equity: no downside, no drawdown
    win = Trade("S", "NSE:X", "CNC", "BUY", 1, t0, 100.0, t0 + timedelta(days=1), 110.0, 10.0, 1.0)
    even = Trade("S", "NSE:X", "CNC", "SELL", 1, t0, 100.0, t0 + timedelta(days=1), 99.0, 1.0, 1.0)
    rising = summary_stats([ns0, ns0 + day, ns0 + 2 * day], [1010.0, 1030.0, 1040.0], 1000.0,
                           [win, even], 2.0)  # fmt: skip
    assert rising["profit_factor"] == math.inf and rising["win_rate"] == 0.5
    assert rising["avg_trade"] == 4.5 and rising["expectancy"] == pytest.approx(0.045)
    assert math.isnan(rising["sortino"]) and rising["max_drawdown"] == 0.0
    assert math.isnan(rising["calmar"]) and rising["sharpe"] > 0
    assert rising["exposure"] == pytest.approx(1 / 3)  # open at the 1st sample, shut at the 2nd
    # equity wiped out
    ruined = summary_stats([ns0], [-5.0], 1000.0, [], 0.0)
    assert ruined["cagr"] == -1.0 and ruined["total_return"] == pytest.approx(-1.005)


def test_real_run_stats_agree_with_the_fills(scripted) -> None:  # noqa: ANN001
    result, engine, sim, _ = scripted
    assert result.stats["charges"] == pytest.approx(sum(f.charges for f in sim.fills()), rel=1e-12)
    assert result.stats["trades"] == int(result.trades["exit_time"].notna().sum())
    assert result.stats["avg_trade"] == pytest.approx(result.trades["net_pnl"].mean())
    held = result.trades.iloc[0]
    inside = (result.equity.index >= held["entry_time"]) & (result.equity.index < held["exit_time"])
    assert result.stats["exposure"] == inside.mean() and inside.sum() == 6


def test_trades_from_fills_splits_a_reversal() -> None:
    t = datetime(2024, 4, 1, 10, 0, tzinfo=IST)
    fills = [
        Fill("a", "c1", "NSE:SBIN", Side.BUY, 10, 100.0, t, Product.MIS, charges=2.0),
        Fill("b", "c2", "NSE:SBIN", Side.SELL, 15, 104.0, t + timedelta(minutes=5), Product.MIS,
             charges=3.0),
        Fill("c", "c3", "NSE:SBIN", Side.BUY, 5, 101.0, t + timedelta(minutes=9), Product.MIS,
             charges=1.0),
    ]  # fmt: skip
    first, second = trades_from_fills(fills)
    assert (first.side, first.qty, first.exit_price, first.pnl) == ("BUY", 10, 104.0, 40.0)
    assert first.charges == pytest.approx(2.0 + 3.0 * 10 / 15)
    assert (second.side, second.qty, second.entry_price, second.exit_price) == ("SELL", 5, 104.0,
                                                                                 101.0)  # fmt: skip
    assert second.pnl == pytest.approx(15.0) and second.charges == pytest.approx(1.0 + 1.0)


# -- notebook display ---------------------------------------------------------------------------


def test_repr_html_summarises_the_run(scripted) -> None:  # noqa: ANN001
    result, _, _, _ = scripted
    page = result._repr_html_()
    assert "replay" in page and "R1" in page and "Scripted" in page
    assert "1 trades" in page and "4 orders" in page
    for label in ("total return", "max drawdown", "Sharpe", "Sortino", "CAGR", "profit factor",
                  "exposure", "charges paid"):  # fmt: skip
        assert label in page
    last = result.trades.iloc[-1]
    assert str(last["entry_time"].date()) in page and f"{last['net_pnl']:,.2f}" in page
    assert f"{result.stats['total_return']:.2%}" in page
    assert "Scripted" in repr(result) and "trades=1" in repr(result)


def test_plot_is_price_equity_drawdown_and_renders_with_bokeh(scripted) -> None:  # noqa: ANN001
    import holoviews as hv
    from bokeh.models import GridPlot

    result, _, _, bars = scripted
    layout = result.plot()
    assert isinstance(layout, hv.Layout) and len(layout) == 3
    price, equity, drawdown = layout
    close, longs, shorts, exits = price
    assert close.data.shape[0] == len(bars)
    assert len(longs) == 1 and len(shorts) == 0 and len(exits) == 1
    assert longs.iloc[0, 1] == result.trades["entry_price"].iloc[0]
    # IST wall time on screen: the 09:15 fill is drawn at 09:15
    assert pd.Timestamp(longs.iloc[0, 0]).strftime("%H:%M") == "09:15"
    assert len(equity) == len(result.equity_ns) and len(drawdown) == len(result.equity_ns)
    figure = hv.render(layout, backend="bokeh")
    assert isinstance(figure, GridPlot) and len(figure.children) == 3


def test_plot_takes_bars_when_the_result_has_none(scripted) -> None:  # noqa: ANN001
    result, _, _, bars = scripted
    bare = RunResult(result.mode, result.run_id, result.strategies, result.stats,
                     result.trade_list, result.order_list, result.fill_list, result.equity_ns,
                     result.equity_values)  # fmt: skip
    assert len(bare.plot()) == 2  # no bars: equity and drawdown only
    assert len(bare.plot(bars=bars)) == 3
    assert len(bare.plot(bars={"NSE:RELIANCE": bars})) == 3
    two = RunResult(result.mode, result.run_id,
                    [{**result.strategies[0], "instruments": ["NSE:RELIANCE", "NSE:SBIN"]}],
                    result.stats, result.trade_list)  # fmt: skip
    with pytest.raises(ConfigError, match="mapping"):
        two.plot(bars=bars)


def test_docstring_examples_run() -> None:
    import doctest

    import velox.engine.result

    outcome = doctest.testmod(velox.engine.result, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert outcome.attempted >= 4 and outcome.failed == 0
