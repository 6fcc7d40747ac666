"""Indicators TA-Lib lacks, checked against small examples worked by hand from the definitions
cited in each function's docstring (the arithmetic is written out next to each expectation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import velox.indicators as vi

NAN = np.nan
H = np.array([11.0, 12, 13, 12, 16, 17])
L = np.array([9.0, 10, 11, 8, 12, 15])
C = np.array([10.0, 11, 12, 9, 15, 16])


def test_supertrend_hand_worked() -> None:
    # TR from bar 1: 2, 2, 4, 7, 2. ATR(2): bar2 (2+2)/2=2; bar3 (2·1+4)/2=3; bar4 (3+7)/2=5;
    # bar5 (5+2)/2=3.5. Bands (hl2 ± 1·ATR):
    # bar2 mid 12 → 14/10, first bar: down-trend, line = upper 14
    # bar3 mid 10 → basic 13/7: upper 13<14 → 13; lower 7<10 and close 12≥10 → keeps 10;
    #      close 9 ≤ 13 → stays down, line 13
    # bar4 mid 14 → basic 19/9: upper stays 13 (19>13, prev close 9≤13); lower: prev close
    #      9<10 → resets to 9; close 15 > 13 → flips up, line = lower 9
    # bar5 mid 16 → basic 19.5/12.5: upper resets (prev close 15>13) to 19.5; lower 12.5>9 → 12.5;
    #      close 16 ≥ 12.5 → stays up, line 12.5
    out = vi.supertrend(H, L, C, window=2, multiplier=1.0)
    np.testing.assert_allclose(out.supertrend, [NAN, NAN, 14, 13, 9, 12.5])
    np.testing.assert_allclose(out.direction, [NAN, NAN, -1, -1, 1, 1])


def test_keltner_hand_worked() -> None:
    # EMA(2): seed (10+11)/2=10.5; bar2 10.5+(12−10.5)·2/3=11.5; bar3 11.5+(9−11.5)·2/3=9.8333…
    # ATR(2) as above: 2, 3. Bands: mid ± 2·ATR.
    out = vi.keltner(H, L, C, window=2, atr_window=2, multiplier=2.0)
    np.testing.assert_allclose(out.middle[:4], [NAN, NAN, 11.5, 9.0 + 5.0 / 6.0])
    np.testing.assert_allclose(out.upper[2:4], [15.5, 9.0 + 5.0 / 6.0 + 6.0])
    np.testing.assert_allclose(out.lower[2:4], [7.5, 9.0 + 5.0 / 6.0 - 6.0])


def test_vwap_resets_each_session() -> None:
    index = pd.DatetimeIndex(
        ["2024-04-01 09:15", "2024-04-01 09:16", "2024-04-02 09:15", "2024-04-02 09:16"],
        tz="Asia/Kolkata",
    )
    high = pd.Series([101.0, 103, 91, 96], index=index)
    low = pd.Series([99.0, 101, 89, 94], index=index)
    close = pd.Series([100.0, 102, 90, 95], index=index)
    volume = pd.Series([10.0, 30, 5, 5], index=index)
    # tp 100, 102 | 90, 95. Day 1: 100; (100·10 + 102·30)/40 = 101.5. Day 2 restarts: 90;
    # (90·5 + 95·5)/10 = 92.5.
    out = vi.vwap(high, low, close, volume)
    np.testing.assert_allclose(out.to_numpy(), [100.0, 101.5, 90.0, 92.5])
    # the same with explicit int64 UTC nanoseconds
    ns = index.tz_convert("UTC").as_unit("ns").asi8
    np.testing.assert_allclose(
        vi.vwap(high.to_numpy(), low.to_numpy(), close.to_numpy(), volume.to_numpy(), ns),
        [100.0, 101.5, 90.0, 92.5],
    )


def test_vwap_session_is_the_ist_date_not_the_utc_date() -> None:
    # 09:15 IST is 03:45 UTC the same day; 05:29 IST would be the previous UTC date.
    index = pd.DatetimeIndex(["2024-04-01 05:29", "2024-04-01 09:15"], tz="Asia/Kolkata")
    p = pd.Series([100.0, 200.0], index=index)
    v = pd.Series([1.0, 1.0], index=index)
    assert vi.vwap(p, p, p, v).iloc[-1] == 150.0


def test_classic_and_camarilla_pivots_from_previous_row() -> None:
    high, low, close = np.array([110.0, 120]), np.array([90.0, 100]), np.array([100.0, 115])
    classic = vi.pivots(high, low, close)
    # P = (110+90+100)/3 = 100; R1 = 2·100−90 = 110; S1 = 2·100−110 = 90; R2 = 100+20 = 120;
    # S2 = 80; R3 = 110+2·(100−90) = 130; S3 = 90−2·(110−100) = 70.
    row = [classic.pivot[1], classic.r1[1], classic.s1[1], classic.r2[1], classic.s2[1]]
    np.testing.assert_allclose(row, [100, 110, 90, 120, 80])
    np.testing.assert_allclose([classic.r3[1], classic.s3[1]], [130, 70])
    assert np.isnan(classic.pivot[0])
    cam = vi.pivots(high, low, close, method="camarilla")
    # C ± 20·1.1/d, d = 12, 6, 4, 2
    np.testing.assert_allclose(
        [cam.r1[1], cam.r2[1], cam.r3[1], cam.r4[1]], [100 + 22 / 12, 100 + 22 / 6, 105.5, 111]
    )
    np.testing.assert_allclose(
        [cam.s1[1], cam.s2[1], cam.s3[1], cam.s4[1]], [100 - 22 / 12, 100 - 22 / 6, 94.5, 89]
    )


def test_intraday_pivots_use_the_previous_session() -> None:
    index = pd.DatetimeIndex(
        ["2024-04-01 09:15", "2024-04-01 09:16", "2024-04-02 09:15", "2024-04-02 09:16"],
        tz="Asia/Kolkata",
    )
    high = pd.Series([105.0, 110, 130, 131], index=index)
    low = pd.Series([95.0, 90, 125, 120], index=index)
    close = pd.Series([100.0, 100, 128, 121], index=index)
    out = vi.pivots(high, low, close)  # day 1: H 110, L 90, C 100 → P 100, R1 110
    np.testing.assert_allclose(out.pivot.to_numpy(), [NAN, NAN, 100, 100])
    np.testing.assert_allclose(out.r1.to_numpy(), [NAN, NAN, 110, 110])


def test_heikin_ashi_hand_worked() -> None:
    ha = vi.heikin_ashi(
        np.array([10.0, 12]), np.array([13.0, 14]), np.array([9.0, 11]), np.array([12.0, 13])
    )
    # bar0: close (10+13+9+12)/4 = 11, open (10+12)/2 = 11, high max(13,11,11), low min(9,…)
    # bar1: close (12+14+11+13)/4 = 12.5, open (11+11)/2 = 11, high 14, low min(11, 11, 12.5)
    np.testing.assert_allclose(ha.open, [11, 11])
    np.testing.assert_allclose(ha.close, [11, 12.5])
    np.testing.assert_allclose(ha.high, [13, 14])
    np.testing.assert_allclose(ha.low, [9, 11])


ICHI_H = np.array([10.0, 12, 11, 14, 13, 15])
ICHI_L = np.array([8.0, 9, 7, 10, 11, 12])


def test_ichimoku_hand_worked_with_small_windows() -> None:
    out = vi.ichimoku(ICHI_H, ICHI_L, tenkan_window=2, kijun_window=3, senkou_window=4,
                      displacement=2)  # fmt: skip
    # tenkan (2-bar midpoint): (12+8)/2, (12+7)/2, (14+7)/2, (14+10)/2, (15+11)/2
    np.testing.assert_allclose(out.tenkan, [NAN, 10, 9.5, 10.5, 12, 13])
    # kijun (3-bar): (12+7)/2, (14+7)/2, (14+7)/2, (15+10)/2
    np.testing.assert_allclose(out.kijun, [NAN, NAN, 9.5, 10.5, 10.5, 12.5])
    # raw span A = (tenkan+kijun)/2 = 9.5 @2, 10.5 @3 → in force 2 bars later
    np.testing.assert_allclose(out.senkou_a, [NAN, NAN, NAN, NAN, 9.5, 10.5])
    # raw span B (4-bar midpoint) = (14+7)/2 @3 → in force at bar 5
    np.testing.assert_allclose(out.senkou_b, [NAN, NAN, NAN, NAN, NAN, 10.5])


def test_donchian_hand_worked() -> None:
    out = vi.donchian(ICHI_H, ICHI_L, window=3)
    np.testing.assert_allclose(out.upper, [NAN, NAN, 12, 14, 14, 15])
    np.testing.assert_allclose(out.lower, [NAN, NAN, 7, 7, 7, 10])
    np.testing.assert_allclose(out.middle, [NAN, NAN, 9.5, 10.5, 10.5, 12.5])


@pytest.mark.parametrize("window", [1, 5, 20])
def test_donchian_matches_pandas_rolling(window: int, daily: dict[str, pd.DataFrame]) -> None:
    frame = daily["INFY"]
    out = vi.donchian(frame.high, frame.low, window)
    expected_upper = frame.high.rolling(window).max()
    expected_lower = frame.low.rolling(window).min()
    np.testing.assert_array_equal(out.upper.to_numpy(), expected_upper.to_numpy())
    np.testing.assert_array_equal(out.lower.to_numpy(), expected_lower.to_numpy())


def test_ichimoku_matches_pandas_rolling_on_real_data(daily: dict[str, pd.DataFrame]) -> None:
    frame = daily["HDFCBANK"]
    out = vi.ichimoku(frame.high, frame.low)

    def mid(n: int) -> pd.Series:
        return (frame.high.rolling(n).max() + frame.low.rolling(n).min()) / 2

    np.testing.assert_allclose(out.tenkan, mid(9), rtol=1e-12)
    np.testing.assert_allclose(out.kijun, mid(26), rtol=1e-12)
    np.testing.assert_allclose(out.senkou_a, ((mid(9) + mid(26)) / 2).shift(26), rtol=1e-12)
    np.testing.assert_allclose(out.senkou_b, mid(52).shift(26), rtol=1e-12)


def test_vwap_matches_pandas_groupby_on_real_minutes(intraday: dict[str, pd.DataFrame]) -> None:
    frame = intraday["NIFTY"].iloc[:5000].copy()
    frame["volume"] = np.arange(1, len(frame) + 1, dtype=float) % 97 + 1  # index data has none
    tp = (frame.high + frame.low + frame.close) / 3
    day = frame.index.date
    expected = (tp * frame.volume).groupby(day).cumsum() / frame.volume.groupby(day).cumsum()
    out = vi.vwap(frame.high, frame.low, frame.close, frame.volume)
    np.testing.assert_allclose(out.to_numpy(), expected.to_numpy(), rtol=1e-9)
