"""velox.analytics against independent computations: plain Python loops and numpy on known
curves, scipy's regression for beta, and a real recorded replay for stats and charges."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from velox import analytics as va
from velox.calendar import IST_NAME
from velox.store import RunRecorder

pytestmark = pytest.mark.postgres


def _curve(values: list[float], start: str = "2025-06-02") -> pd.Series:
    days = pd.bdate_range(start, periods=len(values), tz=IST_NAME) + pd.Timedelta(hours=15)
    return pd.Series(values, index=days, dtype="float64")


# -- pure functions --------------------------------------------------------------------------------


def test_drawdown_periods_on_a_known_curve() -> None:
    # peak 110 (day 1) → trough 88 (day 3) → back to 110 on day 5; peak 120 (day 6) → 108, open
    curve = _curve([100, 110, 99, 88, 100, 110, 120, 108, 114])
    periods = va.drawdown_periods(curve, top=None)
    assert len(periods) == 2
    first = periods.iloc[0]
    assert first["depth"] == pytest.approx(88 / 110 - 1)
    assert first["peak"] == curve.index[1] and first["trough"] == curve.index[3]
    assert first["recovery"] == curve.index[5] and bool(first["recovered"])
    assert first["days"] == (curve.index[5] - curve.index[1]).days
    assert first["recovery_days"] == (curve.index[5] - curve.index[3]).days
    second = periods.iloc[1]
    assert second["depth"] == pytest.approx(108 / 120 - 1)
    assert pd.isna(second["recovery"]) and not bool(second["recovered"])
    assert second["days"] == (curve.index[-1] - curve.index[6]).days
    # the series: each value against the running maximum, by a plain loop
    peak, expected = -math.inf, []
    for v in curve:
        peak = max(peak, v)
        expected.append(v / peak - 1)
    assert va.drawdown(curve).tolist() == pytest.approx(expected)


def test_monthly_and_yearly_returns_compound_daily_ones() -> None:
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2024-11-01", "2025-02-28", tz=IST_NAME)
    returns = pd.Series(rng.normal(0.0005, 0.01, len(days)), index=days)
    table = va.monthly_table(returns)
    for (year, month), group in returns.groupby([returns.index.year, returns.index.month]):
        product = 1.0
        for r in group:
            product *= 1 + r
        assert table.loc[year, month] == pytest.approx(product - 1)
    for year, group in returns.groupby(returns.index.year):
        assert table.loc[year, "year"] == pytest.approx(np.prod(1 + group.to_numpy()) - 1)
    assert math.isnan(table.loc[2024, 1])  # no January 2024 in the data


def test_rolling_sharpe_and_volatility() -> None:
    rng = np.random.default_rng(5)
    r = pd.Series(rng.normal(0.001, 0.02, 120), index=pd.bdate_range("2025-01-01", periods=120))
    window = 20
    sharpe, vol = va.rolling_sharpe(r, window), va.rolling_volatility(r, window)
    for end in (window - 1, 57, 119):
        piece = r.to_numpy()[end - window + 1 : end + 1]
        assert vol.iloc[end] == pytest.approx(np.std(piece, ddof=1) * math.sqrt(252))
        assert sharpe.iloc[end] == pytest.approx(
            piece.mean() / np.std(piece, ddof=1) * math.sqrt(252)
        )
    assert sharpe.iloc[: window - 1].isna().all()


def test_benchmark_stats_against_scipy_regression() -> None:
    rng = np.random.default_rng(11)
    days = pd.bdate_range("2025-01-01", periods=200)
    bench = pd.Series(rng.normal(0.0004, 0.011, 200), index=days)
    mine = 0.0002 + 1.3 * bench + rng.normal(0, 0.004, 200)
    mine = mine.iloc[5:]  # the days both have
    out = va.benchmark_stats(mine, bench)
    fit = sps.linregress(bench.iloc[5:].to_numpy(), mine.to_numpy())
    assert out["beta"] == pytest.approx(fit.slope)
    assert out["alpha"] == pytest.approx(fit.intercept * 252)
    assert out["correlation"] == pytest.approx(fit.rvalue)
    active = mine.to_numpy() - bench.iloc[5:].to_numpy()
    assert out["tracking_error"] == pytest.approx(active.std(ddof=1) * math.sqrt(252))
    assert out["information_ratio"] == pytest.approx(active.mean() * 252 / out["tracking_error"])
    assert out["days"] == 195


def test_combined_runs_are_time_weighted() -> None:
    # run A: 100 → 110 → 121 (10 % a day); run B starts on day 2 with 50 and loses 10 % on day 3
    a = _curve([100.0, 110.0, 121.0])
    b = _curve([50.0, 45.0], start=str(a.index[1].date()))
    equity, returns = va.combine([a, b], [100.0, 50.0])
    assert equity.tolist() == [100.0, 160.0, 166.0]
    # day 1: 0 % on A's initial cash; day 2: A +10 on 100, B's first day 0 on 50 → 10/150;
    # day 3: A +11 on 110, B −5 on 50 → 6/160. B's 50 is a flow, not a gain.
    assert returns.tolist() == pytest.approx([0.0, 10 / 150, 6 / 160])


def test_holdings_weights_sum_to_one_with_cash() -> None:
    positions = pd.DataFrame({
        "strategy": ["", "s1", "", ""], "instrument_id": ["NSE:A", "NSE:A", "NSE:B", "NSE:C"],
        "qty": [10, 10, -4, 0],
    })  # fmt: skip
    out = va.holdings(positions, {"NSE:A": 100.0, "NSE:B": 50.0}, 2_000.0)
    rows = out.set_index("instrument_id")
    assert rows.loc["NSE:A", "value"] == 1_000.0  # the strategy row is not counted again
    assert rows.loc["NSE:B", "value"] == -200.0 and "NSE:C" not in rows.index
    assert rows.loc["cash", "value"] == 1_200.0
    assert out["weight"].sum() == pytest.approx(1.0)


# -- from the store ----------------------------------------------------------------------------


def _record(store, run_id: str, account: str, cash: float, values: list[float], first: str):
    store.create_run(mode="paper", account=account, initial_cash=cash, run_id=run_id)
    t0 = datetime.fromisoformat(first).replace(hour=9, minute=50, tzinfo=UTC)
    with RunRecorder(store, run_id) as rec:
        for k, v in enumerate(values):
            for minute, frac in ((0, 0.5), (30, 1.0)):  # two samples a day: the last one counts
                ts = t0 + timedelta(days=k, minutes=minute)
                rec.equity(int(ts.timestamp() * 1e9), cash + (v - cash) * frac)
    store.finish_run(run_id, status="finished", summary={})


def test_account_performance_from_recorded_runs(store) -> None:
    _record(store, "AN1", "INV1", 1_000.0, [1_000.0, 1_050.0, 1_020.0, 1_100.0], "2025-06-02")
    _record(store, "AN2", "INV1", 500.0, [510.0, 490.0], "2025-06-04")
    _record(store, "AN3", "OTHER", 9_999.0, [1.0], "2025-06-02")
    perf = va.Performance.of_account(store, "INV1")
    assert set(perf.run_ids) == {"AN1", "AN2"}
    assert perf.equity.tolist() == [1_000.0, 1_050.0, 1_530.0, 1_590.0]
    # by hand: day 3 A −30 on 1050, B +10 on its 500 → −20/1550; day 4 A +80, B −20 on 1530
    assert perf.returns.tolist() == pytest.approx([0.0, 0.05, -20 / 1_550, 60 / 1_530])
    assert perf.stats()["total_return"] == pytest.approx(1.05 * (1530 / 1550) * (1590 / 1530) - 1)
    window = perf.between("2025-06-03", "2025-06-04")
    assert window.equity.index.strftime("%Y-%m-%d").tolist() == ["2025-06-03", "2025-06-04"]
    with pytest.raises(Exception, match="'NOBODY' has no recorded run"):
        va.Performance.of_account(store, "NOBODY")


def test_real_replay_stats_charges_and_benchmark(store) -> None:
    from velox.data import read_bar_file, validate_bars
    from velox.modes import default_instruments, replay
    from velox.strategy import load_strategy

    reliance_5m, _ = validate_bars(read_bar_file("data/bars/RELIANCE_5m_2025.csv"), timeframe="5m")
    master = default_instruments()
    days = sorted(set(reliance_5m.index.tz_convert(IST_NAME).date))[:12]
    bars = reliance_5m[reliance_5m.index.tz_convert(IST_NAME).date <= days[-1]]
    strategy = load_strategy("strategies/sma_cross.py")(fast=3, slow=8)
    strategy.timeframe = "5m"  # CNC across days: buy and sell sides, overnight holds
    result = replay(strategy, bars={("NSE:RELIANCE", "5m"): bars}, store=store, record=True,
                    instruments=master)  # fmt: skip
    perf = va.Performance.of_run(store, result.run_id)
    stats = perf.stats()
    # the same figures as the engine's own result of that replay
    for key in ("total_return", "max_drawdown", "trades", "win_rate", "charges"):
        assert stats[key] == pytest.approx(result.stats[key], nan_ok=True), key
    # exposure by hand: the share of the curve's samples with a trade open (entry ≤ t < exit)
    trades = result.trades
    far = pd.Timestamp.max.tz_localize("UTC")
    spans = [
        (e, far if pd.isna(x) else x)
        for e, x in zip(trades["entry_time"], trades["exit_time"], strict=True)
    ]
    samples = perf.growth().index
    open_at = [any(e <= t < x for e, x in spans) for t in samples]
    assert stats["exposure"] == pytest.approx(sum(open_at) / len(samples))
    assert 0 < stats["exposure"] < 1
    # charges by kind add up to what the simulator charged fill by fill
    kinds = perf.charges_by_kind()
    assert kinds["total"] == pytest.approx(result.fills["charges"].sum(), abs=1e-6)
    assert kinds["stt"] > 0 and kinds["stamp"] > 0
    # turnover by hand: traded value over mean daily equity, annualised
    fills = store.run_fills(result.run_id)
    daily = result.equity.groupby(result.equity.index.tz_convert(IST_NAME).date).last()
    traded = (fills["qty"] * fills["price"]).sum()
    assert stats["turnover"] == pytest.approx(traded / daily.mean() * 252 / len(daily))
    # NIFTY from the bundled daily file, compared on the run's days
    nifty = pd.read_csv("data/bars/NIFTY_1d_2024_2026.csv")
    bench = perf.benchmark_returns()
    day = bench.index[1]
    closes = nifty.set_index(pd.to_datetime(nifty["timestamp"]).dt.date)["close"]
    prev = closes[closes.index < day.date()].iloc[-1]
    assert bench.iloc[1] == pytest.approx(closes[day.date()] / prev - 1)
    assert perf.benchmark()["days"] == len(perf.returns)
    figures = perf.plots()
    assert set(figures) == {"growth", "drawdown", "monthly", "rolling_sharpe", "allocation"}
    import holoviews as hv

    growth = figures["growth"].dframe()
    assert growth.iloc[:, 1].to_numpy() == pytest.approx(perf.growth().to_numpy())
    hv.render(hv.Layout(list(figures.values())), backend="bokeh")  # every figure draws


def test_recorded_run_figures_equal_independent_pandas(store) -> None:
    """Each figure of a real recorded replay against pandas on the store's raw rows (the equity
    samples, fills and positions) and the bundled NIFTY CSV; no velox.analytics function or
    velox.engine statistic is used on the expected side."""
    from velox.data import read_bar_file, validate_bars
    from velox.modes import default_instruments, replay
    from velox.strategy import load_strategy

    bars, _ = validate_bars(read_bar_file("data/bars/RELIANCE_5m_2025.csv"), timeframe="5m")
    strategy = load_strategy("strategies/sma_cross.py")(fast=5, slow=20)
    strategy.timeframe = "5m"  # CNC: buys and sells over six weeks, a position open at the end
    result = replay(strategy, bars={("NSE:RELIANCE", "5m"): bars}, store=store, record=True,
                    instruments=default_instruments())  # fmt: skip
    perf = va.Performance.of_run(store, result.run_id)
    stats = perf.stats()
    ann = math.sqrt(252)

    # daily equity and returns: the last sample of each IST date, the first against the cash
    raw = store.run_equity(result.run_id)["equity"]
    initial = float(store.run(result.run_id)["initial_cash"])
    daily = raw.groupby(raw.index.tz_convert(IST_NAME).date).last()
    previous = daily.shift(1)
    previous.iloc[0] = initial
    rets = daily / previous - 1
    assert len(rets) >= 25  # six weeks of sessions
    assert [d.date() for d in perf.returns.index] == list(daily.index)
    assert perf.equity.to_numpy() == pytest.approx(daily.to_numpy())
    assert perf.returns.to_numpy() == pytest.approx(rets.to_numpy())

    # the standard table
    final, n = float(daily.iloc[-1]), len(rets)
    assert stats["final_equity"] == pytest.approx(final)
    assert stats["total_return"] == pytest.approx(final / initial - 1)
    cagr = (final / initial) ** (252 / n) - 1
    assert stats["cagr"] == pytest.approx(cagr)
    assert stats["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * ann)
    downside = math.sqrt((rets.clip(upper=0) ** 2).mean())
    assert stats["sortino"] == pytest.approx(rets.mean() / downside * ann)
    path = pd.concat([pd.Series([initial]), daily.reset_index(drop=True)])
    max_dd = float((1 - path / path.cummax()).max())
    assert max_dd > 0
    assert stats["max_drawdown"] == pytest.approx(max_dd)
    assert stats["calmar"] == pytest.approx(cagr / max_dd)
    closed = result.trades[result.trades["exit_time"].notna()]
    net = closed["net_pnl"]
    assert stats["trades"] == len(closed) > 10
    assert stats["win_rate"] == pytest.approx((net > 0).mean())
    assert stats["profit_factor"] == pytest.approx(net[net > 0].sum() / -net[net < 0].sum())
    fills = store.run_fills(result.run_id)
    assert stats["charges"] == pytest.approx(fills["charges"].sum())

    # drawdown: the growth of 1 rupee against its running peak, and the deepest period
    grown = daily / initial
    dd = grown / grown.cummax() - 1
    assert perf.drawdown().to_numpy() == pytest.approx(dd.to_numpy())
    deepest = perf.drawdown_periods().iloc[0]
    trough = dd.idxmin()
    peak = grown[:trough][grown[:trough] == grown[:trough].max()].index[-1]
    back = grown[trough:][grown[trough:] >= grown[peak]]
    assert deepest["depth"] == pytest.approx(dd.min())
    assert deepest["trough"].date() == trough and deepest["peak"].date() == peak
    if back.empty:
        assert pd.isna(deepest["recovery"])
        assert deepest["days"] == (grown.index[-1] - peak).days
    else:
        assert deepest["recovery"].date() == back.index[0]
        assert deepest["days"] == (back.index[0] - peak).days

    # monthly and yearly returns, compounded from the daily ones
    when = pd.to_datetime(pd.Series(rets.index, index=rets.index))
    monthly = (1 + rets).groupby([when.dt.year, when.dt.month]).prod() - 1
    assert len(monthly) >= 2
    table = perf.monthly_table()
    for (year, month), value in monthly.items():
        assert table.loc[year, month] == pytest.approx(value)
    yearly = (1 + rets).groupby(when.dt.year).prod() - 1
    for year, value in yearly.items():
        assert table.loc[year, "year"] == pytest.approx(value)

    # rolling Sharpe and volatility over the report's window, each window by numpy
    window = perf.sharpe_window()
    sharpe, vol = perf.rolling_sharpe(window), perf.rolling_volatility(window)
    values = rets.to_numpy()
    for end in range(window - 1, n):
        piece = values[end - window + 1 : end + 1]
        assert vol.iloc[end] == pytest.approx(piece.std(ddof=1) * ann)
        assert sharpe.iloc[end] == pytest.approx(piece.mean() / piece.std(ddof=1) * ann)

    # against NIFTY 50: close-to-close returns from the bundled daily CSV, on the run's days
    nifty = pd.read_csv("data/bars/NIFTY_1d_2024_2026.csv")
    closes = pd.Series(nifty["close"].to_numpy(),
                       index=pd.to_datetime(nifty["timestamp"].str[:10]).dt.date)  # fmt: skip
    both = pd.concat([rets.rename("r"), closes.pct_change().rename("b")], axis=1, join="inner")
    assert len(both) == n  # NIFTY has a close on every session of the run
    slope, intercept = np.polyfit(both["b"], both["r"], 1)
    active = both["r"] - both["b"]
    bench = perf.benchmark()
    assert bench["days"] == n
    assert bench["beta"] == pytest.approx(slope)
    assert bench["alpha"] == pytest.approx(intercept * 252)
    assert bench["tracking_error"] == pytest.approx(active.std(ddof=1) * ann)
    assert bench["information_ratio"] == pytest.approx(active.mean() * ann / active.std(ddof=1))
    assert bench["correlation"] == pytest.approx(both["r"].corr(both["b"]))

    # turnover: traded value over mean daily equity, annualised
    traded = (fills["qty"] * fills["price"]).sum()
    assert stats["turnover"] == pytest.approx(traded / daily.mean() * 252 / n)

    # charges by kind (equity delivery, 2025): STT 0.1 % of each side, stamp 0.015 % of buys,
    # SEBI ₹10 a crore, no brokerage, GST 18 % of brokerage + exchange + SEBI
    value = fills["qty"] * fills["price"]
    buys = value[fills["side"] == "BUY"].sum()
    assert set(fills["product"]) == {"CNC"} and buys < value.sum()
    kinds = perf.charges_by_kind()
    assert kinds["brokerage"] == 0
    assert kinds["stt"] == pytest.approx(0.001 * value.sum())
    assert kinds["stamp"] == pytest.approx(0.00015 * buys)
    assert kinds["sebi"] == pytest.approx(10 / 1e7 * value.sum())
    assert kinds["gst"] == pytest.approx(0.18 * (kinds["brokerage"] + kinds["exchange"]
                                                 + kinds["sebi"]))  # fmt: skip
    assert kinds["total"] == pytest.approx(fills["charges"].sum())

    # holdings: the account's open position at its last fill price (a replay has no live
    # quote), the rest of the final equity in cash
    positions = store.run_positions(result.run_id)
    account = positions[(positions["strategy"] == "") & (positions["qty"] != 0)]
    assert len(account) == 1
    iid, qty = account["instrument_id"].iloc[0], int(account["qty"].iloc[0])
    last_price = fills[fills["instrument_id"] == iid].sort_values("ts")["price"].iloc[-1]
    held = perf.holdings().set_index("instrument_id")
    assert held.loc[iid, "value"] == pytest.approx(qty * last_price)
    assert held.loc["cash", "value"] == pytest.approx(final - qty * last_price)
    assert held.loc[iid, "weight"] == pytest.approx(qty * last_price / final)
