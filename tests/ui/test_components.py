"""The console components' arithmetic and their Bokeh updates, against independent references
(TA-Lib for the EMA, pandas for P&L and change %, hand-worked Indian digit grouping)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from velox.ui.base import grouped, money
from velox.ui.chart import CandleChart
from velox.ui.controls import on_tick_grid
from velox.ui.desk import Desk
from velox.ui.tables import position_frame
from velox.ui.watchlist import watchlist_frame, watchlist_text


def offline_desk() -> Desk:
    """A desk with no store: for the parts of a component that never read one."""

    def refuse(*_a: object, **_k: object) -> object:
        raise AssertionError("this test issues no command")

    return Desk(store=None, user="t", role="trader", visible_runs=list, issue=refuse)  # type: ignore[arg-type]


def test_money_groups_digits_the_indian_way() -> None:
    assert money(1234567.891) == "₹12,34,567.89"
    assert money(100000) == "₹1,00,000.00"
    assert money(-999.5) == "-₹999.50"
    assert money(123456789012.0) == "₹1,23,45,67,89,012.00"
    assert money(float("nan")) == "–"
    assert grouped(12345678, 0) == "1,23,45,678" and grouped(-1234.5) == "-1,234.50"


def test_tick_grid() -> None:
    assert on_tick_grid(2283.95, 0.05) and on_tick_grid(0.1 + 0.2, 0.05)  # float noise
    assert not on_tick_grid(2283.97, 0.05) and not on_tick_grid(100.01, 0.05)
    assert on_tick_grid(100.01, 0.01)


def test_watchlist_change_is_against_prev_close_else_the_open() -> None:
    ts = pd.Timestamp("2025-05-20 04:00", tz="UTC")
    quotes = pd.DataFrame({
        "instrument_id": ["NSE:A", "NSE:B"], "ts": [ts, ts], "ltp": [110.0, 95.0],
        "volume": [1000, None], "open": [100.0, 100.0], "high": [111.0, 101.0],
        "low": [99.0, 94.0], "prev_close": [np.nan, 90.0], "bid": np.nan, "ask": np.nan,
        "updated_at": [ts, ts],
    })  # fmt: skip
    frame = watchlist_frame(quotes)
    assert frame["change_pct"].tolist() == [10.0, 5.56]  # 110/100-1 ; 95/90-1 = 5.555…%
    assert frame["volume"].tolist() == [1000, 0]
    assert frame["time"].tolist() == ["09:30:00", "09:30:00"]  # IST shown
    big = pd.DataFrame({"instrument": ["NSE:X"], "ltp": [123456.5], "change_pct": [-0.4],
                        "volume": [12345678], "high": [0.05], "low": [0.0],
                        "time": ["15:29:59"]})  # fmt: skip
    assert watchlist_text(pd.concat([frame, big], ignore_index=True)).tolist() == [
        ["NSE:A", "110.00", "+10.00%", "1,000", "111.00", "99.00", "09:30:00"],
        ["NSE:B", "95.00", "+5.56%", "0", "101.00", "94.00", "09:30:00"],
        ["NSE:X", "1,23,456.50", "-0.40%", "1,23,45,678", "0.05", "0.00", "15:29:59"],
    ]


def test_positions_are_marked_to_the_ltp_net_of_charges() -> None:
    positions = pd.DataFrame({
        "account": "A", "strategy": ["", "", "s1"], "instrument_id": ["NSE:A", "NSE:B", "NSE:A"],
        "product": "MIS", "qty": [10, -5, 10], "average_price": [100.0, 200.0, 100.0],
        "realised_pnl": [50.0, 0.0, 50.0], "charges": [3.5, 1.25, 3.5], "updated_at": None,
    })  # fmt: skip
    quotes = pd.DataFrame({"instrument_id": ["NSE:A"], "ltp": [103.0]})
    frame = position_frame(positions, quotes).set_index("instrument")
    assert len(frame) == 2  # the account's own rows only
    # A: 50 + 10*(103-100) - 3.5 ; B has no quote yet: marked at its average price
    assert frame.loc["NSE:A", "net_pnl"] == pytest.approx(50 + 30 - 3.5)
    assert frame.loc["NSE:B", "net_pnl"] == pytest.approx(-1.25)
    assert frame.loc["NSE:B", "unrealised"] == 0.0


def _candle_frames(closes: np.ndarray) -> list[pd.DataFrame]:
    """What a chart receives over a run: every candle forming over three reads, then closed."""
    start = pd.Timestamp("2025-05-20 03:45", tz="UTC")
    frames, rows = [], []
    for i, close in enumerate(closes):
        when = start + pd.Timedelta(minutes=i)
        for step, (c, closed) in enumerate(((close - 1, False), (close + 1, False),
                                            (close, True))):  # fmt: skip
            row = {"start": when, "open": closes[i - 1] if i else close, "high": close + 2,
                   "low": close - 2, "close": c, "volume": 100 + step,
                   "closed": closed}  # fmt: skip
            rows = [r for r in rows if r["start"] != when] + [row]
            frames.append(pd.DataFrame(rows[-3:]))
    return frames


def test_chart_streams_and_patches_candles_with_a_talib_exact_ema() -> None:
    from velox.indicators.streaming import EMA

    closes = 100 + np.cumsum(np.random.default_rng(7).normal(0, 1, 60))
    chart = CandleChart(offline_desk(), autostart=False)
    chart._ema = EMA(window=20)
    frames = _candle_frames(closes)
    for frame in frames:
        chart._merge(frame)
    data = chart.source.data
    assert len(data["x"]) == len(closes)  # one row per minute: forming updates were patches
    np.testing.assert_allclose(data["close"], closes)
    assert np.all(np.diff(data["x"]) == 60_000)
    reference = talib.EMA(closes, timeperiod=20)
    np.testing.assert_allclose(np.asarray(data["ema"], float)[19:], reference[19:], rtol=1e-12)
    assert np.isnan(np.asarray(data["ema"], float)[:19]).all()
    x0 = pd.Timestamp("2025-05-20 09:15").value // 1_000_000  # IST wall clock on the axis
    assert data["x"][0] == x0
    assert chart.updates <= 2 * len(frames)  # a patch and/or a stream per read, never a redraw
