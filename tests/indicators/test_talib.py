"""Every indicator TA-Lib also has equals TA-Lib (≤ 1e-9 relative) on real NSE data.

TA-Lib is the independent reference: the expected values come from ``talib`` itself, run on the
same arrays. Warm-up NaN positions must match exactly too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib
from indicator_checks import assert_matches

import velox.indicators as vi

Case = tuple[Callable[[pd.DataFrame], object], Callable[[pd.DataFrame], object]]


def _hlc(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return d.high.to_numpy(), d.low.to_numpy(), d.close.to_numpy()


PRICE_CASES: dict[str, Case] = {
    "sma": (lambda d: vi.sma(d.close.to_numpy(), 30), lambda d: talib.SMA(d.close, 30)),
    "sma_5": (lambda d: vi.sma(d.close.to_numpy(), 5), lambda d: talib.SMA(d.close, 5)),
    "ema": (lambda d: vi.ema(d.close.to_numpy(), 30), lambda d: talib.EMA(d.close, 30)),
    "ema_9": (lambda d: vi.ema(d.close.to_numpy(), 9), lambda d: talib.EMA(d.close, 9)),
    "wma": (lambda d: vi.wma(d.close.to_numpy(), 30), lambda d: talib.WMA(d.close, 30)),
    "dema": (lambda d: vi.dema(d.close.to_numpy(), 30), lambda d: talib.DEMA(d.close, 30)),
    "tema": (lambda d: vi.tema(d.close.to_numpy(), 30), lambda d: talib.TEMA(d.close, 30)),
    "rsi": (lambda d: vi.rsi(d.close.to_numpy()), lambda d: talib.RSI(d.close)),
    "rsi_2": (lambda d: vi.rsi(d.close.to_numpy(), 2), lambda d: talib.RSI(d.close, 2)),
    "macd": (lambda d: vi.macd(d.close.to_numpy()), lambda d: talib.MACD(d.close)),
    "macd_5_35_5": (
        lambda d: vi.macd(d.close.to_numpy(), 5, 35, 5),
        lambda d: talib.MACD(d.close, 5, 35, 5),
    ),
    "macd_swapped": (
        lambda d: vi.macd(d.close.to_numpy(), 26, 12, 9),
        lambda d: talib.MACD(d.close, 26, 12, 9),
    ),
    "bbands": (lambda d: vi.bbands(d.close.to_numpy()), lambda d: talib.BBANDS(d.close)),
    "bbands_20_2_1": (
        lambda d: vi.bbands(d.close.to_numpy(), 20, 2.0, 1.0),
        lambda d: talib.BBANDS(d.close, 20, 2.0, 1.0),
    ),
    "roc": (lambda d: vi.roc(d.close.to_numpy()), lambda d: talib.ROC(d.close)),
    "stochrsi": (lambda d: vi.stochrsi(d.close.to_numpy()), lambda d: talib.STOCHRSI(d.close)),
    "atr": (lambda d: vi.atr(*_hlc(d)), lambda d: talib.ATR(*_hlc(d))),
    "atr_1": (lambda d: vi.atr(*_hlc(d), window=1), lambda d: talib.ATR(*_hlc(d), 1)),
    "natr": (lambda d: vi.natr(*_hlc(d)), lambda d: talib.NATR(*_hlc(d))),
    "adx": (lambda d: vi.adx(*_hlc(d)), lambda d: talib.ADX(*_hlc(d))),
    "adx_5": (lambda d: vi.adx(*_hlc(d), window=5), lambda d: talib.ADX(*_hlc(d), 5)),
    "cci": (lambda d: vi.cci(*_hlc(d)), lambda d: talib.CCI(*_hlc(d))),
    "willr": (lambda d: vi.willr(*_hlc(d)), lambda d: talib.WILLR(*_hlc(d))),
    "stoch": (lambda d: vi.stoch(*_hlc(d)), lambda d: talib.STOCH(*_hlc(d))),
    "stoch_14_3_3": (
        lambda d: vi.stoch(*_hlc(d), 14, 3, 3),
        lambda d: talib.STOCH(*_hlc(d), 14, 3, 0, 3, 0),
    ),
    "psar": (
        lambda d: vi.psar(d.high.to_numpy(), d.low.to_numpy()),
        lambda d: talib.SAR(d.high, d.low),
    ),
    "psar_fast": (
        lambda d: vi.psar(d.high.to_numpy(), d.low.to_numpy(), 0.04, 0.4),
        lambda d: talib.SAR(d.high, d.low, 0.04, 0.4),
    ),
}

VOLUME_CASES: dict[str, Case] = {
    "obv": (
        lambda d: vi.obv(d.close.to_numpy(), d.volume.to_numpy()),
        lambda d: talib.OBV(d.close, d.volume),
    ),
    "mfi": (
        lambda d: vi.mfi(*_hlc(d), d.volume.to_numpy()),
        lambda d: talib.MFI(*_hlc(d), d.volume),
    ),
    "mfi_5": (
        lambda d: vi.mfi(*_hlc(d), d.volume.to_numpy(), 5),
        lambda d: talib.MFI(*_hlc(d), d.volume, 5),
    ),
}


def _check(case: Case, frame: pd.DataFrame) -> None:
    ours, theirs = case[0](frame), case[1](frame)
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, e in zip(ours, theirs, strict=True):
            assert_matches(a, e)
    else:
        assert_matches(ours, theirs)


@pytest.mark.parametrize("name", sorted(PRICE_CASES))
def test_matches_talib_on_daily_stocks(name: str, daily: dict[str, pd.DataFrame]) -> None:
    for frame in daily.values():
        _check(PRICE_CASES[name], frame)


@pytest.mark.parametrize("name", sorted(PRICE_CASES))
def test_matches_talib_on_1min_indices(name: str, intraday: dict[str, pd.DataFrame]) -> None:
    for frame in intraday.values():
        _check(PRICE_CASES[name], frame)


@pytest.mark.parametrize("name", sorted(VOLUME_CASES))
def test_volume_indicators_match_talib_on_daily_stocks(
    name: str, daily: dict[str, pd.DataFrame]
) -> None:
    for frame in daily.values():
        _check(VOLUME_CASES[name], frame)


def test_dataframe_of_symbols_matches_talib_per_column(daily: dict[str, pd.DataFrame]) -> None:
    closes = pd.DataFrame({s: f.close for s, f in daily.items()})  # outer join: leading NaNs
    closes = closes.dropna()
    out = vi.rsi(closes, 14)
    assert isinstance(out, pd.DataFrame) and out.columns.equals(closes.columns)
    assert out.index.equals(closes.index)
    for symbol in closes:
        assert_matches(out[symbol], talib.RSI(closes[symbol].to_numpy(), 14))
