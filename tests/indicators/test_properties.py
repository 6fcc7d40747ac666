"""Property-based checks (hypothesis) on arbitrary price paths.

Random OHLCV paths on the 0.05 tick grid (including flat stretches and large jumps), random
windows and random forming-candle previews: streaming must reproduce batch exactly, and batch
must match TA-Lib.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import talib
from hypothesis import given, settings
from hypothesis import strategies as hs

import velox.indicators as vi
from velox.indicators import streaming as st


@hs.composite
def ohlcv(draw: hs.DrawFn) -> pd.DataFrame:
    """Return a small random OHLCV frame on a 1-minute IST index spanning sessions."""
    n = draw(hs.integers(min_value=0, max_value=80))
    steps = draw(
        hs.lists(
            hs.one_of(hs.just(0.0), hs.floats(-0.2, 0.2, allow_nan=False)),
            min_size=n,
            max_size=n,
        )
    )
    # Prices on NSE's 0.05 tick grid, as real quotes are (flat stretches included).
    close = 100.0 * np.exp(np.cumsum(steps)) if n else np.array([], dtype=float)
    close = np.maximum(np.round(close / 0.05) * 0.05, 0.05)
    spread = np.array(draw(hs.lists(hs.integers(0, 40), min_size=n, max_size=n))) * 0.05
    open_ = np.concatenate([[100.0], close[:-1]])[:n]
    high = np.maximum(open_, close) + spread
    low = np.maximum(np.minimum(open_, close) - spread, 0.05)
    volume = np.array(draw(hs.lists(hs.floats(0, 1e6), min_size=n, max_size=n)))
    index = pd.date_range("2024-04-01 15:20", periods=n, freq="1min", tz="Asia/Kolkata")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def _stream(obj: st.StreamingIndicator, frame: pd.DataFrame, previews: list[float]) -> np.ndarray:
    if frame.empty:
        return np.empty((0, 1 if obj._result is None else len(obj._result._fields)))
    single = obj._spec.inputs == ("close",)
    rows = []
    for k, (ts, bar) in enumerate(frame.iterrows()):
        b = SimpleNamespace(ts=ts, **bar.to_dict())
        if previews:
            f = previews[k % len(previews)]
            fake = SimpleNamespace(
                ts=ts, open=b.open, high=b.high * (1 + abs(f)), low=b.low * (1 - abs(f)),
                close=b.close * (1 + f), volume=b.volume,
            )  # fmt: skip
            obj.preview(fake.close if single else fake)
        value = obj.update(b.close if single else b)
        rows.append(value if isinstance(value, tuple) else (value,))
    return np.array(rows, dtype=float).reshape(len(frame), -1)


def _matrix(result: object, rows: int) -> np.ndarray:
    if rows == 0:
        width = len(result) if isinstance(result, tuple) else 1
        return np.empty((0, width))
    if isinstance(result, tuple):
        return np.column_stack([np.asarray(x, dtype=float) for x in result]).reshape(rows, -1)
    return np.asarray(result, dtype=float).reshape(rows, -1)


PREVIEWS = hs.lists(hs.floats(-0.05, 0.05), max_size=5)
WINDOW = hs.integers(min_value=1, max_value=30)


@settings(max_examples=40, deadline=None)
@given(frame=ohlcv(), window=WINDOW, previews=PREVIEWS)
def test_single_input_streaming_equals_batch(
    frame: pd.DataFrame, window: int, previews: list[float]
) -> None:
    for obj, batch in [
        (st.EMA(window), vi.ema(frame.close, window)),
        (st.SMA(window), vi.sma(frame.close, window)),
        (st.RSI(window), vi.rsi(frame.close, window)),
        (st.BBands(window), vi.bbands(frame.close, window)),
        (st.MACD(window, window + 3, 3), vi.macd(frame.close, window, window + 3, 3)),
        (st.StochRSI(window, 3, 2), vi.stochrsi(frame.close, window, 3, 2)),
        (st.WMA(window), vi.wma(frame.close, window)),
        (st.DEMA(window), vi.dema(frame.close, window)),
        (st.TEMA(window), vi.tema(frame.close, window)),
        (st.ROC(window), vi.roc(frame.close, window)),
    ]:
        np.testing.assert_array_equal(_stream(obj, frame, previews), _matrix(batch, len(frame)))


@settings(max_examples=40, deadline=None)
@given(frame=ohlcv(), window=WINDOW, previews=PREVIEWS)
def test_bar_input_streaming_equals_batch(
    frame: pd.DataFrame, window: int, previews: list[float]
) -> None:
    h, lo, c, v = frame.high, frame.low, frame.close, frame.volume
    for obj, batch in [
        (st.ATR(window), vi.atr(h, lo, c, window)),
        (st.ADX(window), vi.adx(h, lo, c, window)),
        (st.Stoch(window, 3, 2), vi.stoch(h, lo, c, window, 3, 2)),
        (st.MFI(window), vi.mfi(h, lo, c, v, window)),
        (st.Supertrend(window, 2.0), vi.supertrend(h, lo, c, window, 2.0)),
        (st.VWAP(), vi.vwap(h, lo, c, v)),
        (st.Ichimoku(window, window + 2, window + 5, 3), vi.ichimoku(h, lo, window, window + 2,
                                                                     window + 5, 3)),
        (st.PSAR(), vi.psar(h, lo)),
        (st.Pivots(), vi.pivots(h, lo, c)),
        (st.NATR(window), vi.natr(h, lo, c, window)),
        (st.CCI(window), vi.cci(h, lo, c, window)),
        (st.WillR(window), vi.willr(h, lo, c, window)),
        (st.OBV(), vi.obv(c, v)),
        (st.Donchian(window), vi.donchian(h, lo, window)),
        (st.Keltner(window, window + 1, 1.5), vi.keltner(h, lo, c, window, window + 1, 1.5)),
        (st.HeikinAshi(), vi.heikin_ashi(frame.open, h, lo, c)),
    ]:  # fmt: skip
        np.testing.assert_array_equal(_stream(obj, frame, previews), _matrix(batch, len(frame)))


@settings(max_examples=150, deadline=None)
@given(frame=ohlcv(), window=hs.integers(min_value=2, max_value=30))
def test_batch_equals_talib_on_random_paths(frame: pd.DataFrame, window: int) -> None:
    h, lo, c, v = (frame[k].to_numpy() for k in ("high", "low", "close", "volume"))
    # Whole shares: with sub-1 (e.g. denormal) volumes TA-Lib 0.8's MFI snaps window sums to 0
    # by a rule we do not reproduce bit for bit; no real volume is fractional.
    v = np.floor(v) + 1.0
    pairs = {
        "ema": (vi.ema(c, window), talib.EMA(c, window)),
        "wma": (vi.wma(c, window), talib.WMA(c, window)),
        "tema": (vi.tema(c, window), talib.TEMA(c, window)),
        "rsi": (vi.rsi(c, window), talib.RSI(c, window)),
        "roc": (vi.roc(c, window), talib.ROC(c, window)),
        "atr": (vi.atr(h, lo, c, window), talib.ATR(h, lo, c, window)),
        "natr": (vi.natr(h, lo, c, window), talib.NATR(h, lo, c, window)),
        "adx": (vi.adx(h, lo, c, window), talib.ADX(h, lo, c, window)),
        "willr": (vi.willr(h, lo, c, window), talib.WILLR(h, lo, c, window)),
        "cci": (vi.cci(h, lo, c, window), talib.CCI(h, lo, c, window)),
        "mfi": (vi.mfi(h, lo, c, v, window), talib.MFI(h, lo, c, v, window)),
        "obv": (vi.obv(c, v), talib.OBV(c, v)),
        "sar": (vi.psar(h, lo), talib.SAR(h, lo)),
    }
    multi = {
        "bbands": (vi.bbands(c, window), talib.BBANDS(c, window)),
        "macd": (vi.macd(c, window, window + 5, 3), talib.MACD(c, window, window + 5, 3)),
        "stoch": (vi.stoch(h, lo, c, window, 3, 2), talib.STOCH(h, lo, c, window, 3, 0, 2, 0)),
        "stochrsi": (vi.stochrsi(c, window, 4, 2), talib.STOCHRSI(c, window, 4, 2)),
    }
    for name, (ours_all, theirs_all) in multi.items():
        for i, (ours, theirs) in enumerate(zip(ours_all, theirs_all, strict=True)):
            pairs[f"{name}[{i}]"] = (ours, theirs)
    for name, (ours, theirs) in pairs.items():
        # 1e-9 relative to the series' own scale (e.g. 100 for 0–100 oscillators): near-zero
        # values such as a %K a hair above the window low have no meaningful relative error.
        scale = max(1.0, float(np.nanmax(np.abs(theirs)))) if np.isfinite(theirs).any() else 1.0
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9 * scale, err_msg=name)
